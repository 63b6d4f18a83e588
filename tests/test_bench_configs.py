"""The benchmark's Transformer: Regard's and OpenNMT-py's configs describe the same model and schedule."""

import pytest

from bench.configs import onmt_model, regard_config, regard_model
from bench.data import Prepared


def test_both_toolkits_get_the_same_transformer():
    mine, theirs = regard_model("transformer"), onmt_model("transformer")
    assert mine.arch == "transformer" and theirs["encoder_type"] == theirs["decoder_type"] == "transformer"
    assert (mine.d_model, mine.heads, mine.ff_size, mine.encoder_layers, mine.decoder_layers) == (
        theirs["hidden_size"], theirs["heads"], theirs["transformer_ff"], theirs["enc_layers"], theirs["dec_layers"])
    assert theirs["word_vec_size"] == mine.d_model
    assert [mine.dropout] == theirs["dropout"] and [mine.attention_dropout] == theirs["attention_dropout"]
    assert mine.tied_embeddings and theirs["share_decoder_embeddings"]


@pytest.mark.parametrize("step", [1, 500, 2000, 2001, 9000])
def test_opennmt_noam_schedule_is_regards_inverse_sqrt(step, tmp_path):
    from regard.config import config_from_dict
    from regard.training.trainer import lr_at
    theirs = onmt_model("transformer")
    d, warmup = theirs["hidden_size"], theirs["warmup_steps"]
    noam = theirs["learning_rate"] * d ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
    cfg = regard_config(Prepared(tmp_path, tmp_path, {"max_len": 100}), tmp_path / "run", 10, arch="transformer")
    config_from_dict(cfg.to_dict())  # a valid config
    assert cfg.model == regard_model("transformer")
    assert lr_at(step, cfg) == pytest.approx(noam, rel=1e-9)
