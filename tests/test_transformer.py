"""The Transformer on tiny seeded models: shapes, masks, incremental decoding, the cache, files."""

import pytest
import torch

from regard.data.batching import Batch
from regard.data.tokenizer import BOS, PAD
from tests.conftest import random_batch, random_transformer, save_random


def teacher_batch(seed: int = 2) -> Batch:
    src, lengths = random_batch(batch=3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randint(4, 13, (3, 5), generator=g)
    tgt_in = torch.cat([torch.full((3, 1), BOS), tgt[:, :-1]], dim=1)
    return Batch(src, lengths, tgt_in, tgt)


def test_shapes_of_logits_and_of_each_attention_view():
    model, b = random_transformer(), teacher_batch()
    logits, layer = model(b)
    _, heads = model(b, "heads")
    assert logits.shape == (3, 5, 13) and layer.shape == (3, 5, 7)
    assert heads.shape == (3, 5, 2, 2, 7)  # (B, T, layers, heads, S)
    assert torch.allclose(layer, heads[:, :, -1].mean(dim=2))  # the last layer's heads, averaged
    assert model(b, "none")[1] is None
    first = random_transformer(attention_layer=1)
    assert torch.allclose(first(b)[1], first(b, "heads")[1][:, :, 0].mean(dim=2))


def test_cross_attention_rows_sum_to_one_over_real_source_tokens_only():
    model, b = random_transformer(), teacher_batch()
    _, heads = model(b, "heads")
    for i, n in enumerate(b.src_lengths.tolist()):
        assert torch.allclose(heads[i].sum(-1), torch.ones(5, 2, 2), atol=1e-5)
        assert (heads[i, ..., n:] == 0).all()  # padding gets exactly nothing


def test_padding_does_not_change_a_sentences_outputs():
    """Each sentence, alone and unpadded, gets the logits and attention it gets in the padded batch."""
    model, b = random_transformer(seed=4), teacher_batch()
    b.tgt_in[1, 3:] = PAD  # a shorter target, padded too
    logits, heads = model(b, "heads")
    for i, n in enumerate(b.src_lengths.tolist()):
        alone = Batch(b.src[i:i + 1, :n], b.src_lengths[i:i + 1], b.tgt_in[i:i + 1, :3], b.tgt_out[i:i + 1, :3])
        own_logits, own_heads = model(alone, "heads")
        assert torch.allclose(own_logits[0], logits[i, :3], atol=1e-5)
        assert torch.allclose(own_heads[0], heads[i, :3, ..., :n], atol=1e-5)


def test_incremental_decoding_equals_the_full_forward_pass():
    """Step by step with cached keys and values: the logits and every head's attention of
    teacher forcing, position by position."""
    model, b = random_transformer(seed=5), teacher_batch()
    logits, heads = model(b, "heads")
    state = model.start(b.src, b.src_lengths, "heads")
    for t in range(b.tgt_in.shape[1]):
        step_logits, step_heads, state = model.step(state, b.tgt_in[:, t])
        assert torch.allclose(step_logits, logits[:, t], atol=1e-5)
        assert torch.allclose(step_heads, heads[:, t], atol=1e-5)
    assert state.cache[0][0].shape == (3, 2, 5, 8)  # (N, H, t, D/H): every position cached


def test_reordering_the_cache_follows_the_rows():
    """Rows picked and repeated (as beam search does) decode as their originals; sentences
    picked take their encoder keys along."""
    model, b = random_transformer(seed=6), teacher_batch()
    state = model.start(b.src, b.src_lengths)
    for t in range(2):
        _, _, state = model.step(state, b.tgt_in[:, t])
    expected, _, _ = model.step(state, b.tgt_in[:, 2])
    beams = torch.tensor([0, 0, 1, 1, 2, 2])  # 2 hypotheses per sentence, within their sentences
    got, _, _ = model.step(state.reorder(beams), b.tgt_in[beams, 2])
    assert torch.allclose(got, expected[beams], atol=1e-5)
    order = torch.tensor([2, 0])  # sentence 1 leaves, the others swap
    got, attention, _ = model.step(state.reorder(order, order), b.tgt_in[order, 2])
    assert torch.allclose(got, expected[order], atol=1e-5)
    assert attention.shape == (2, 7)
    rows = torch.tensor([1])
    assert torch.allclose(model.step(state, b.tgt_in[:, 2], rows)[0], expected[rows], atol=1e-5)


def test_tied_and_shared_embeddings_are_one_tensor_and_checked():
    from regard.errors import RegardError
    from regard.model.transformer import Transformer
    model = random_transformer(tied_embeddings=True, shared_embeddings=True)
    assert model.output.weight is model.tgt_embed.weight is model.src_embed.weight
    separate = random_transformer()
    assert separate.output.weight is not separate.tgt_embed.weight
    with pytest.raises(RegardError, match="shared_embeddings needs source and target vocabularies of one size"):
        Transformer(model.cfg, 13, 14)


def test_save_and_load_round_trip(tmp_path, tiny_tokenizer):
    from regard.checkpoint import load_model_dir
    model = random_transformer(vocab=len(tiny_tokenizer), tied_embeddings=True, shared_embeddings=True)
    loaded, cfg, _, _ = load_model_dir(save_random(tmp_path, model, tiny_tokenizer))
    assert type(loaded) is type(model) and cfg.model.arch == "transformer"
    b = teacher_batch()
    assert torch.equal(loaded(b, "heads")[1], model(b, "heads")[1])
    assert torch.equal(loaded(b)[0], model(b)[0])
    assert loaded.output.weight is loaded.tgt_embed.weight is loaded.src_embed.weight  # still one tensor


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_bf16_and_int8_transformers_translate_close_to_fp32(precision):
    from regard.precision import PRECISIONS
    from regard.search.beam import beam_search
    fp32 = random_transformer(seed=8, tied_embeddings=True)
    b = teacher_batch()
    expected = torch.log_softmax(fp32(b)[0], dim=-1)
    model = PRECISIONS[precision](random_transformer(seed=8, tied_embeddings=True))
    assert torch.allclose(torch.log_softmax(model(b)[0].float(), dim=-1), expected, atol=0.1)
    found = beam_search(model, b.src, b.src_lengths, beam=3, nbest=2, attention="heads")
    assert all(len(hyps) == 2 and hyps[0].attention.shape[1:3] == (2, 2) for hyps in found)
    if precision == "int8":
        assert "quantized" in type(model.decoder_layers[0].ff.inner).__module__


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory, grammar_data):
    """A tiny Transformer trained for 40 steps by the same trainer as the RNN."""
    from regard.training.trainer import train
    from tests.conftest import tiny_config
    out = tmp_path_factory.mktemp("transformer") / "run"
    cfg = tiny_config(out, steps=40, arch="transformer", d_model=32, heads=2, ff_size=64, encoder_layers=2,
                      decoder_layers=2, tied_embeddings=True)
    cfg.data.valid_max_sentences = 8
    train(cfg, data=grammar_data, show_progress=False)
    return out


def test_the_trainer_trains_a_transformer_and_the_translator_shows_its_heads(transformer_run):
    from regard.translator import Translator
    translator = Translator.load(transformer_run)
    assert translator.cfg.model.arch == "transformer" and translator.has_attention
    plain, = translator.translate(["the black cat ate the mouse"], beam=3)
    t, = translator.translate(["the black cat ate the mouse"], beam=3, heads=True)
    assert plain.head_attention is None and "head_attention" not in plain.to_dict()
    assert (t.text, len(t.head_attention), len(t.head_attention[0])) == (plain.text, 2, 2)  # layers, heads
    last = torch.tensor(t.head_attention[-1]).mean(dim=0)  # the last layer's heads averaged
    assert torch.allclose(last, torch.tensor(plain.attention), atol=1e-5)
    words = torch.tensor(t.head_word_attention)
    assert words.shape[2:] == (len(t.target_words), len(t.source_words))
    assert torch.allclose(words.sum(-1), torch.ones(words.shape[:-1]), atol=1e-4)


def test_plot_draws_a_layer_a_head_or_a_grid_of_heads(transformer_run, tmp_path, capsys):
    from regard.cli import main
    base = ["plot", "--model", str(transformer_run), "the black cat"]
    for extra in ([], ["--layer", "1", "--head", "2"], ["--heads-grid", "--level", "subword"]):
        code, err = main([*base, "-o", str(tmp_path / "a.png"), *extra]), capsys.readouterr().err
        assert code == 0, err
        assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
        (tmp_path / "a.png").unlink()
    for extra, message in ((["--layer", "3"], "--layer must be from 1 to 2"), (["--head", "0"], "--head must be")):
        assert main([*base, "-o", str(tmp_path / "a.png"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "a.png").exists()


def test_the_worker_pool_translates_a_transformer_as_one_process_does(transformer_run):
    from regard.pool import TranslatorPool
    from regard.translator import Translator
    texts = ["the black cat ate the mouse", "", "the dogs eat", "a small white dog saw the horses"]
    expected = Translator.load(transformer_run, precision="int8").translate(texts, beam=2, batch_size=2)
    with TranslatorPool.load(transformer_run, precision="int8", workers=2) as pool:
        got = pool.translate(texts, beam=2, batch_size=2)
    assert [t.text for t in got] == [t.text for t in expected]
    assert [t.attention for t in got] == [t.attention for t in expected]


def test_the_api_returns_every_head_only_when_asked_and_describes_the_layers(transformer_run, trained_run):
    from tests.test_serving import call, post
    from regard.serving import ServeSettings, create_app
    from regard.translator import Translator
    app = create_app({"tr": Translator.load(transformer_run), "rnn": Translator.load(trained_run)}, ServeSettings())
    try:
        info = {m["name"]: m for m in call(app, "GET", "/api/models").json()["models"]}
        assert [info["tr"][k] for k in ("arch", "attention", "layers", "heads", "attention_layer")] == [
            "transformer", "multi-head", 2, 2, 2]
        assert [info["rnn"][k] for k in ("arch", "layers", "heads")] == ["rnn", 1, 1]
        for name in ("tr", "rnn"):
            plain = post(app, {"text": "the black cat", "model": name, "beam": 2}).json()
            hyp = plain["results"][0]["hypotheses"][0]
            assert set(hyp) == {"text", "score", "tokens", "target_words", "attention", "word_attention"}
        data = post(app, {"text": "the black cat", "model": "tr", "beam": 2, "heads": True}).json()
        result = data["results"][0]
        hyp = result["hypotheses"][0]
        heads = torch.tensor(hyp["head_attention"])
        assert heads.shape == (2, 2, len(hyp["tokens"]), len(result["source_tokens"]))
        assert torch.allclose(heads[-1].mean(0), torch.tensor(hyp["attention"]), atol=1e-4)
        assert torch.tensor(hyp["head_word_attention"]).shape == (2, 2, len(hyp["target_words"]),
                                                                  len(result["source_words"]))
    finally:
        app.state.batcher.close()


@pytest.mark.parametrize("raw, message", [
    ({"model": {"arch": "transformers"}}, "'model.arch' must be one of ['rnn', 'transformer']"),
    ({"model": {"arch": "transformer", "d_model": 100, "heads": 3}}, "'model.d_model' (100) must be a multiple"),
    ({"model": {"arch": "transformer", "decoder_layers": 2, "attention_layer": 3}}, "'model.attention_layer' must be"),
    ({"model": {"arch": "transformer", "attention_dropout": 1.0}}, "'model.attention_dropout' must be in [0, 1)"),
    ({"model": {"arch": "transformer", "ff_size": 0}}, "'model.ff_size' must be at least 1, got 0"),
    ({"train": {"keep_checkpoints": -1}}, "'train.keep_checkpoints' must be at least 0"),
])
def test_transformer_settings_are_checked_with_the_key_named(raw, message):
    from regard.config import config_from_dict
    from regard.errors import RegardError
    with pytest.raises(RegardError) as err:
        config_from_dict(raw, source="x.yaml")
    assert message in str(err.value) and str(err.value).startswith("x.yaml")


def test_rnn_only_rules_do_not_bind_the_transformer():
    from regard.config import config_from_dict
    cfg = config_from_dict({"model": {"arch": "transformer", "tied_embeddings": True, "embedding_size": 7,
                                      "attention": "dot", "decoder_hidden": 300}})
    assert cfg.model.arch == "transformer" and cfg.model.attention_kind == "multi-head"


def test_the_transformer_recipe_loads_and_shares_the_rnn_recipes_data_and_subwords():
    """Same data, cleaning and tokenizer settings: the same SentencePiece models, so the two
    recipes' models can form an ensemble."""
    from pathlib import Path
    from regard.config import load_config
    recipes = Path(__file__).parent.parent / "recipes"
    rnn, transformer = (load_config(recipes / f"multi30k-en-fr{name}.yaml") for name in ("", "-transformer"))
    assert transformer.model.arch == "transformer" and rnn.model.arch == "rnn"
    assert (transformer.data, transformer.tokenizer) == (rnn.data, rnn.tokenizer)
    assert transformer.train.max_minutes <= 110 and transformer.train.keep_checkpoints > 0
