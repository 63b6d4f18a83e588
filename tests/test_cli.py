"""The command line: translate, plot, and clear errors for user mistakes (exit 2, no traceback)."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from regard.cli import build_parser, main
from regard.errors import RegardError
from regard.config import Stopping
from regard.options import INFERENCE_OPTIONS, flag
from regard.precision import PRECISIONS
from regard.search.common import STOPPING

ROOT = Path(__file__).parent.parent


def run(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        import io
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("workers", [1, 2])
def test_translate_file_to_file_one_line_per_line(tmp_path, trained_run, capsys, workers):
    src = tmp_path / "in.en"
    src.write_text("the black cat ate the mouse\n\nthe dogs eat\n")
    code, _, err = run(["translate", "--model", str(trained_run), "-i", str(src), "-o", str(tmp_path / "out.fr"),
                        "--beam", "2", "--workers", str(workers)], capsys)
    assert code == 0, err
    lines = (tmp_path / "out.fr").read_text().split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # empty line in, empty line out
    import torch
    from regard.translator import Translator
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if workers > 1 else threads)  # a worker has one thread: the same sums
    try:
        expected = Translator.load(trained_run).translate(["the black cat ate the mouse", "the dogs eat"], beam=2)
    finally:
        torch.set_num_threads(threads)
    assert [lines[0], lines[2]] == [t.text for t in expected]


def test_translate_stdin_nbest_and_json(trained_run, capsys, monkeypatch):
    code, out, _ = run(["translate", "--model", str(trained_run), "--beam", "3", "--nbest", "3"], capsys,
                       stdin=b"the cat\nthe dog\n", monkeypatch=monkeypatch)
    rows = out.splitlines()
    assert code == 0 and len(rows) == 6
    assert [r.split(" ||| ")[0] for r in rows] == ["0", "0", "0", "1", "1", "1"]
    scores = [float(r.split(" ||| ")[2]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True)
    code, out, _ = run(["translate", "--model", str(trained_run), "--json"], capsys, stdin=b"the cat\n",
                       monkeypatch=monkeypatch)
    data = json.loads(out)
    assert data["source_words"] == ["the", "cat"] and len(data["word_attention"]) == len(data["target_words"])


def test_plot_writes_a_png(tmp_path, trained_run, capsys):
    code, _, err = run(["plot", "--model", str(trained_run), "the black cat", "-o", str(tmp_path / "a.png")], capsys)
    assert code == 0, err
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["translate", "--model", "{tmp}/missing"], "model folder not found"),
    (["translate", "--model", "{run}", "-i", "{tmp}/nope.en"], "file not found"),
    (["translate", "--model", "{run}", "-i", "{tmp}/bad.en"], "bad.en:2: invalid UTF-8"),
    (["translate", "--model", "{run}", "--beam", "2", "--nbest", "3"], "--nbest must be between 1 and the beam"),
    (["translate", "--model", "{run}", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["translate", "--model", "{run}", "--beam", "0"], "--beam must be at least 1, got 0"),
    (["translate", "--model", "{run}", "--nbest", "-1"], "--nbest must be at least 1, got -1"),
    (["translate", "--model", "{run}", "--max-chars", "-5"], "--max-chars must be at least 1, got -5"),
    (["evaluate", "--model", "{run}", "--beam", "-3"], "--beam must be at least 1, got -3"),
    (["translate", "--model", "{run}", "--beam", "65"], "--beam 65 is wider than --max-beam 64"),
    (["translate", "--model", "{run}", "--max-beam", "2"], "the model's beam (3, search.beam) is wider than --max-beam 2"),
    (["translate", "--model", "{run}", "--beam", "two"], "--beam must be a whole number, got 'two'"),
    (["train", "--config", "{tmp}/unknown.yaml", "--workers", "0"], "--workers must be at least 1"),
    (["train", "--config", "{tmp}/nope.yaml"], "config file not found"),
    (["train", "--config", "{tmp}/unknown.yaml"], "unknown key 'model.atention'"),
    (["train", "--config", "{tmp}/mismatch.yaml"], "must be line-aligned"),
    (["train", "--config", "{tmp}/mismatch.yaml", "--set", "train.lr=.inf"],  # before the data is read
     "'train.lr' must be a finite number greater than 0, got inf"),
    (["plot", "--model", "{run}", "  ", "-o", "{tmp}/x.png"], "sentence to plot is empty"),
])
def test_user_mistakes_are_one_clear_line(tmp_path, trained_run, capsys, argv, message):
    (tmp_path / "bad.en").write_bytes(b"the cat\n\xc3\x28 oops\n")
    (tmp_path / "unknown.yaml").write_text("model:\n  atention: dot\n")
    (tmp_path / "a.en").write_text("a\nb\n")
    (tmp_path / "a.fr").write_text("x\n")
    (tmp_path / "mismatch.yaml").write_text(
        "data: {train_src: a.en, train_tgt: a.fr, valid_src: a.en, valid_tgt: a.fr}\n"
        f"train: {{out_dir: {tmp_path}/run}}\n")
    argv = [a.format(tmp=tmp_path, run=trained_run) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert err.startswith("regard: error:") and len(err.strip().splitlines()) == 1


def test_failed_translation_keeps_the_existing_output_file(tmp_path, trained_run, capsys):
    out = tmp_path / "out.fr"
    out.write_text("precious earlier output\n")
    (tmp_path / "bad.en").write_bytes(b"the cat\n\xff\n")
    code, _, _ = run(["translate", "--model", str(trained_run), "-i", str(tmp_path / "bad.en"), "-o", str(out)], capsys)
    assert code == 2
    assert out.read_text() == "precious earlier output\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.fr")] == []


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its words, from the parser itself: {"translate": ..., "data fetch": ...}."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(commands(sub, f"{prefix}{name} "))
    return found


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def listed(word: str, text: str) -> bool:
    """``word`` appears in ``text`` as a whole option or name (``--beam`` is not in ``--max-beam``)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_help_lists_every_command_and_each_of_its_options(capsys):
    parser = build_parser()
    found = commands(parser)
    assert {"train", "translate", "plot", "demo", "data", "data fetch", "evaluate", "serve"} <= set(found)
    top = help_of([], capsys)
    for name in (n for n in found if " " not in n):
        assert re.search(rf"^\s+{name}\s+\w", top, re.MULTILINE), f"'regard --help' does not explain {name}"
    for name, sub in found.items():
        text = help_of(name.split(), capsys)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):  # its commands, each with its help line
                words = list(action.choices)
                assert all(re.search(rf"^\s+{w}\s+\w", text, re.MULTILINE) for w in words), f"{name}: {words}"
                continue
            words = action.option_strings or [action.metavar or action.dest]
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {words[0]} has no help"
            assert all(listed(word, text) for word in words), f"'regard {name} --help' lacks {words}"


@pytest.mark.parametrize("command, names", [
    ("translate", list(INFERENCE_OPTIONS)), ("evaluate", list(INFERENCE_OPTIONS)),
    ("serve", ["precision", "stopping", "device"]),
    ("plot", ["beam", "device", "max_chars", "truncate", "max_beam"]),
])
def test_the_shared_inference_options_are_the_same_in_every_command(capsys, command, names):
    text = help_of([command], capsys)
    actions = {a.dest: a for a in commands(build_parser())[command]._actions}
    for name in names:
        assert listed(flag(name), text)
        expected = INFERENCE_OPTIONS[name]
        assert (actions[name].help, actions[name].default) == (expected["help"], expected["default"])
    if "precision" in names:
        assert tuple(actions["precision"].choices) == tuple(PRECISIONS)  # the table, not a copy of its names
    if "stopping" in names:
        assert tuple(actions["stopping"].choices) == STOPPING == get_args(Stopping)


HEAVY = ("torch", "sentencepiece", "safetensors", "fastapi", "matplotlib", "sacrebleu")


def test_the_command_line_and_import_regard_load_no_heavy_module():
    code = ("import sys, regard, regard.cli\n"
            "regard.cli.build_parser()\n"
            "for argv in (['--help'], ['translate', '--help'], ['serve', '--help']):\n"
            "    try:\n"
            "        regard.cli.main(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules])\n"
            "from regard import Translator, Translation\n"
            "print(Translator.__module__, Translation.__module__, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["loaded: []", "regard.translator regard.translator True"]


def test_invalid_utf8_on_stdin_names_the_line(trained_run, capsys, monkeypatch):
    code, out, err = run(["translate", "--model", str(trained_run)], capsys, stdin=b"the cat\n\xff oops\n",
                         monkeypatch=monkeypatch)
    assert code == 2 and "<stdin>:2: invalid UTF-8" in err and "Traceback" not in err


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("command", ["translate", "evaluate", "plot", "serve"])
@pytest.mark.parametrize("device, message", [
    ("cuda", "device 'cuda': CUDA is not available on this machine"),
    ("cuda:1", "device 'cuda:1': CUDA is not available on this machine"),
    ("tpu", "--device must be auto (the default: CUDA if available, else CPU), cpu, cuda, cuda:N or mps; got 'tpu'"),
])
def test_an_unavailable_or_unknown_device_is_one_clear_line(tmp_path, trained_run, capsys, no_cuda, command,
                                                            device, message):
    (tmp_path / "a.en").write_text("the cat\n")
    (tmp_path / "a.fr").write_text("le chat\n")
    argv = {"translate": ["translate"], "plot": ["plot", "the cat", "-o", str(tmp_path / "a.png")], "serve": ["serve"],
            "evaluate": ["evaluate", "--src", str(tmp_path / "a.en"), "--ref", str(tmp_path / "a.fr")]}[command]
    code, out, err = run([*argv, "--model", str(trained_run), "--device", device], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("regard: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_int8_on_a_gpu_is_one_clear_line(trained_run, capsys, monkeypatch, device):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # refused for what int8 is, not for the machine
    code, _, err = run(["translate", "--model", str(trained_run), "--precision", "int8", "--device", device], capsys)
    assert code == 2
    assert err == (f"regard: error: precision int8 runs on the CPU only (PyTorch's dynamic quantisation), not on "
                   f"'{device}': use fp32 or bf16 there, or the cpu device\n")


def test_auto_picks_cuda_when_there_is_one_and_the_cpu_for_int8(monkeypatch):
    import torch
    from regard.precision import inference_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_device("fp32", "auto") == torch.device("cuda")
    assert inference_device("int8", "auto") == inference_device("int8", "cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_device("bf16", "auto") == torch.device("cpu")


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_translate_runs_on_the_device_it_is_given(trained_run, capsys, monkeypatch, no_cuda, device):
    import torch
    from regard.translator import Translator
    translator = Translator.load(trained_run, device=device)
    assert translator.device == torch.device("cpu") and translator.model.decoder.output.weight.device.type == "cpu"
    code, out, err = run(["translate", "--model", str(trained_run), "--device", device, "--beam", "2"], capsys,
                         stdin=b"the cat\n", monkeypatch=monkeypatch)
    assert (code, out) == (0, translator.translate(["the cat"], beam=2)[0].text + "\n"), err


def test_the_nbest_rule_is_one_message_in_the_library_search_and_command_line(trained_run, capsys):
    from regard.search.beam import beam_search
    from regard.search.common import check_nbest
    from regard.translator import Translator
    from tests.conftest import random_batch, random_model
    with pytest.raises(ValueError) as rule:
        check_nbest(3, 2)
    message = str(rule.value)
    assert message == "nbest must be between 1 and the beam size (2), got 3"
    with pytest.raises(ValueError, match=re.escape(message)):
        Translator.load(trained_run).translate_nbest(["the cat"], beam=2, nbest=3)
    with pytest.raises(ValueError, match=re.escape(message)):
        beam_search(random_model(), *random_batch(), beam=2, nbest=3)
    code, _, err = run(["translate", "--model", str(trained_run), "--beam", "2", "--nbest", "3"], capsys)
    assert (code, err) == (2, f"regard: error: --{message}\n")


@pytest.mark.parametrize("argv, threads", [([], 1), (["--threads", "3"], 3)])
def test_translation_workers_get_the_threads_of_regard_threads(trained_run, capsys, monkeypatch, argv, threads):
    import torch

    import regard.pool
    seen = {}

    def fake_open_translator(path, precision, workers, device, threads):
        seen.update(workers=workers, device=device, threads=threads)
        raise RegardError("stopped here")

    monkeypatch.setattr(regard.pool, "open_translator", fake_open_translator)
    before = torch.get_num_threads()
    try:
        code, _, err = run([*argv, "translate", "--model", str(trained_run), "--workers", "2"], capsys)
    finally:
        torch.set_num_threads(before)
    assert (code, seen) == (2, {"workers": 2, "device": "auto", "threads": threads}), err


def test_a_translation_worker_sets_its_threads(trained_run):
    import queue

    import torch
    from regard.pool import work
    inbox, outbox = queue.Queue(), queue.Queue()
    inbox.put(None)  # stop at once, once loaded
    before = torch.get_num_threads()
    try:
        work(str(trained_run), "fp32", "cpu", 3, inbox, outbox)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert outbox.get_nowait() == ("ready", None)


def test_lines_over_max_chars_are_an_error_naming_the_line_or_cut_with_truncate(tmp_path, trained_run, capsys,
                                                                                monkeypatch):
    long = "the black cat ate the mouse " * 60  # 1680 characters
    code, out, err = run(["translate", "--model", str(trained_run)], capsys, stdin=f"the cat\n{long}\n".encode(),
                         monkeypatch=monkeypatch)
    assert (code, out) == (2, "")
    assert err == (f"regard: error: <stdin>:2: {len(long.strip())} characters, more than --max-chars 1000: "
                   "split the line, raise --max-chars or add --truncate\n")
    code, out, err = run(["translate", "--model", str(trained_run), "--max-chars", "13", "--truncate", "--beam", "2"],
                         capsys, stdin=f"the cat\n{long}\n".encode(), monkeypatch=monkeypatch)
    from regard.translator import Translator
    expected = Translator.load(trained_run).translate(["the cat", "the black cat"], beam=2)
    assert (code, out.splitlines()) == (0, [t.text for t in expected])
    assert err == f"regard: warning: <stdin>:2: {len(long.strip())} characters, truncated to 13 (--max-chars)\n"
    (tmp_path / "a.en").write_text(f"the cat\n{long}\n")
    (tmp_path / "a.fr").write_text("le chat\nle chat\n")
    code, _, err = run(["evaluate", "--model", str(trained_run), "--src", str(tmp_path / "a.en"), "--ref",
                        str(tmp_path / "a.fr"), "--max-chars", "100"], capsys)
    assert code == 2 and f"{tmp_path / 'a.en'}:2: {len(long.strip())} characters, more than --max-chars 100" in err
