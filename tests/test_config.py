"""Config: YAML → typed dataclasses, with errors that name the key."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from regard.config import Config, config_from_dict, load_config
from regard.errors import RegardError

EXAMPLE = Path(__file__).parent.parent / "configs" / "example.yaml"


def test_example_config_loads_and_documents_every_option():
    cfg = load_config(EXAMPLE)
    raw = yaml.safe_load(EXAMPLE.read_text())
    for section in dataclasses.fields(Config):
        names = {f.name for f in dataclasses.fields(getattr(cfg, section.name))}
        assert set(raw[section.name]) == names, section.name
        defaults = dataclasses.asdict(getattr(Config(), section.name))
        for key, value in raw[section.name].items():
            if section.name != "data" and key != "out_dir":
                assert value == defaults[key], f"{section.name}.{key} differs from the code default"
    assert Path(cfg.data.train_src).is_absolute()


@pytest.mark.parametrize("raw, message", [
    ({"model": {"atention": "dot"}}, "unknown key 'model.atention' (did you mean 'model.attention'?)"),
    ({"trian": {}}, "unknown key 'trian'"),
    ({"model": {"attention": "luong"}}, "'model.attention' must be one of"),
    ({"train": {"lr": "fast"}}, "'train.lr' must be float"),
    ({"train": {"max_steps": 1.5}}, "'train.max_steps' must be an integer"),
    ({"model": {"bidirectional": "yes"}}, "'model.bidirectional' must be true or false"),
    ({"model": {"dropout": 1.5}}, "'model.dropout' must be in [0, 1)"),
    ({"train": {"batch_tokens": 0}}, "'train.batch_tokens' must be positive"),
    ({"model": {"attention": "dot", "decoder_hidden": 300}}, "needs encoder outputs (512)"),
    ({"model": []}, "'model' must be a mapping"),
])
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(RegardError) as err:
        config_from_dict(raw, source="x.yaml")
    assert message in str(err.value) and str(err.value).startswith("x.yaml")


def test_ints_are_accepted_for_floats_and_values_are_typed():
    cfg = config_from_dict({"train": {"lr": 1}, "model": {"rnn": "lstm"}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.model.rnn == "lstm"


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(RegardError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(RegardError, match="not valid YAML"):
        load_config(bad)


def test_overrides_set_typed_values_and_are_checked_like_the_file():
    cfg = load_config(EXAMPLE, ["train.threads=1", "model.attention=dot", "train.lr=0.0005", "search.beam=3"])
    assert (cfg.train.threads, cfg.model.attention, cfg.train.lr, cfg.search.beam) == (1, "dot", 0.0005, 3)
    assert load_config(EXAMPLE).model.attention != "dot"  # the file itself is unchanged
    with pytest.raises(RegardError, match="unknown key 'train.thread'"):
        load_config(EXAMPLE, ["train.thread=1"])
    with pytest.raises(RegardError, match="'train.threads' must be an integer"):
        load_config(EXAMPLE, ["train.threads=many"])
    for bad in ("threads=1", "train.threads", "a.b.c=1"):
        with pytest.raises(RegardError, match="expected SECTION.KEY=VALUE"):
            load_config(EXAMPLE, [bad])


def test_a_model_saved_with_the_old_bf16_key_loads_and_a_config_file_is_told_the_new_name():
    from regard.config import upgrade
    old = {"train": {"bf16": True, "seed": 4}, "model": {"attention": "dot", "encoder_hidden": 6, "decoder_hidden": 12}}
    cfg = config_from_dict(upgrade(old))
    assert (cfg.train.precision, cfg.train.seed) == ("bf16", 4)
    assert config_from_dict(upgrade({"train": {"bf16": False}})).train.precision == "fp32"
    with pytest.raises(RegardError, match=r"unknown key 'train.bf16' \(it is now 'train.precision'\)"):
        config_from_dict({"train": {"bf16": True}})
