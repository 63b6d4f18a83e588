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
    ({"train": {"batch_tokens": 0}}, "'train.batch_tokens' must be at least 1, got 0"),
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


@pytest.mark.parametrize("key, value, message", [
    ("train.lr", float("inf"), "must be a finite number greater than 0, got inf"),
    ("train.lr", 0, "must be greater than 0, got 0"),
    ("train.lr", float("nan"), "must be a finite number greater than 0"),
    ("train.threads", -1, "must be at least 0, got -1"),
    ("train.workers", 0, "must be at least 1, got 0"),
    ("train.max_epochs", 0, "must be at least 1, got 0"),
    ("train.min_lr", -1e-5, "must be at least 0"),
    ("train.label_smoothing", 1.0, "must be in [0, 1), got 1.0"),
    ("data.valid_max_sentences", 0, "must be at least 1, got 0"),
    ("data.max_ratio", 0.5, "must be 0 (off) or at least 1, got 0.5"),
    ("tokenizer.character_coverage", 0, "must be in (0, 1], got 0"),
    ("tokenizer.character_coverage", 1.01, "must be in (0, 1], got 1.01"),
    ("tokenizer.src_vocab_size", 4, "must be at least 5, got 4"),
    ("model.embedding_size", -8, "must be at least 1, got -8"),
    ("model.decoder_layers", 0, "must be at least 1, got 0"),
    ("search.max_ratio", 0, "must be greater than 0"),
    ("train.max_steps", 10**30, "at most 2147483647"),
])
def test_numbers_out_of_their_range_are_one_line_naming_the_key(key, value, message):
    section, name = key.split(".")
    with pytest.raises(RegardError) as err:
        config_from_dict({section: {name: value}}, source="x.yaml")
    assert str(err.value).startswith(f"x.yaml: '{key}' ") and message in str(err.value)
    assert "\n" not in str(err.value)


def numeric_keys():
    """SECTION.KEY of every number in the config, from the dataclasses themselves."""
    config = Config()
    return [f"{s.name}.{f.name}" for s in dataclasses.fields(Config)
            for f in dataclasses.fields(getattr(config, s.name))
            if type(getattr(getattr(config, s.name), f.name)) in (int, float)]


@pytest.mark.parametrize("key", numeric_keys())
def test_every_number_is_range_checked_even_one_nobody_listed(key):
    """Negative and non-finite values are refused for every numeric key, declared range or not;
    the defaults are inside their ranges."""
    section, name = key.split(".")
    config_from_dict({section: {name: getattr(getattr(Config(), section), name)}})
    for bad in (-1, float("nan"), float("-inf")):
        with pytest.raises(RegardError, match=f"'{key}' must be"):
            config_from_dict({section: {name: bad}})


def test_malformed_config_files_are_one_line(tmp_path):
    cases = {
        "deep.yaml": "model: " + "[" * 5000 + "]" * 5000 + "\n",
        "list.yaml": "- 1\n- 2\n",
        "nul.yaml": 'data: {train_src: "a\\0b"}\n',
        "huge.yaml": "data: {train_src: [" + ", ".join(["1"] * 10000) + "]}\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(RegardError) as err:
            load_config(tmp_path / name)
        assert "\n" not in str(err.value) and len(str(err.value)) < 300, name
