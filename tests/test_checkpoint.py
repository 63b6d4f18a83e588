"""Damaged models are named: checksums of the weights, tensors of the wrong shape, weights that
are not finite (refused when saving and when loading), and folders older than the checksum."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from regard.checkpoint import WEIGHTS, load_model_dir, save_model_dir
from regard.errors import RegardError
from regard.translator import Translator


@pytest.fixture
def model_dir(tmp_path, trained_run) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(trained_run / "best", folder)
    return folder


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_weights_checksum_is_recorded_and_a_changed_byte_names_the_file(model_dir):
    meta = json.loads((model_dir / "config.json").read_text())
    assert set(meta["sha256"]) == {WEIGHTS} and len(meta["sha256"][WEIGHTS]) == 64
    data = bytearray((model_dir / WEIGHTS).read_bytes())
    data[-3] ^= 0x01  # one bit of one weight: still a valid safetensors file
    (model_dir / WEIGHTS).write_bytes(bytes(data))
    load_file(str(model_dir / WEIGHTS))  # safetensors itself sees nothing wrong
    with pytest.raises(RegardError) as err:
        Translator.load(model_dir)
    assert str(err.value).startswith(f"corrupt checkpoint {model_dir / WEIGHTS}: its sha256 ")
    assert "recorded when it was saved" in str(err.value)


def test_a_training_state_with_another_checksum_is_named(tmp_path, trained_run):
    from regard.training.state import load_trainer_state
    last = tmp_path / "last"
    shutil.copytree(trained_run / "last", last)
    assert len(json.loads((last / "trainer.json").read_text())["sha256"]) == 64
    tensors = load_file(str(last / "trainer.safetensors"))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(last / "trainer.safetensors"))
    model, *_ = load_model_dir(last)
    with pytest.raises(RegardError, match=r"corrupt checkpoint .*trainer.safetensors: its sha256"):
        load_trainer_state(last, torch.optim.Adam(model.parameters()))


def test_a_folder_saved_before_checksums_still_loads(model_dir, trained_run):
    edit_json(model_dir / "config.json", lambda meta: meta.pop("sha256"))
    one = Translator.load(model_dir).translate(["the black cat"], beam=2)[0]
    two = Translator.load(trained_run / "best").translate(["the black cat"], beam=2)[0]
    assert one.text == two.text and one.score == two.score


def test_a_tensor_of_another_shape_is_named_with_both_shapes(model_dir):
    edit_json(model_dir / "config.json", lambda meta: meta["config"]["model"].update(embedding_size=20))
    with pytest.raises(RegardError) as err:
        Translator.load(model_dir)
    assert "tensor 'encoder.embed.weight' has shape (" in str(err.value)
    assert ", 16), the model its config.json describes needs (" in str(err.value)
    assert str(err.value).endswith(", 20)")


def test_non_finite_weights_are_refused_at_load_and_never_saved(model_dir, tmp_path):
    model, cfg, src_tok, tgt_tok = load_model_dir(model_dir)
    with torch.no_grad():
        model.decoder.output.weight[3, 2] = float("nan")
    with pytest.raises(RegardError, match=r"refusing to save .*: weight 'decoder.output.weight' holds NaN or inf"):
        save_model_dir(tmp_path / "nan", model, cfg, src_tok, tgt_tok)
    assert not (tmp_path / "nan").exists() or not any((tmp_path / "nan").iterdir())
    tensors = load_file(str(model_dir / WEIGHTS))
    tensors["decoder.output.weight"][0, 0] = float("inf")
    save_file(tensors, str(model_dir / WEIGHTS))
    edit_json(model_dir / "config.json", lambda meta: meta.pop("sha256"))  # as if saved so by an older version
    with pytest.raises(RegardError, match=r"broken checkpoint .*model.safetensors: weight 'decoder.output.weight' "
                                          r"holds NaN or inf"):
        Translator.load(model_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda meta: meta.update(src_vocab=-3), "vocabulary sizes -3"),
    (lambda meta: meta.update(config=[1, 2]), "'top level' must be a mapping"),
    (lambda meta: meta["config"].update(train="fast"), "'train' must be a mapping"),
    (lambda meta: meta["config"]["model"].update(encoder_hidden=-5), "'model.encoder_hidden' must be at least 1"),
    (lambda meta: meta["config"]["model"].update(dropout=float("nan")), "'model.dropout' must be a finite number"),
])
def test_malformed_model_configs_are_one_line(model_dir, damage, message):
    edit_json(model_dir / "config.json", damage)
    with pytest.raises(RegardError) as err:
        Translator.load(model_dir)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_deeply_nested_config_json_is_one_line(model_dir):
    (model_dir / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(RegardError, match=r"^corrupt checkpoint file .*config.json: nested too deeply$"):
        Translator.load(model_dir)
