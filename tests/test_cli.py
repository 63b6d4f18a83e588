"""The command line: translate, plot, and clear errors for user mistakes (exit 2, no traceback)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from regard.cli import main

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
    (["translate", "--model", "{run}", "--workers", "0"], "--workers must be at least 1"),
    (["train", "--config", "{tmp}/nope.yaml"], "config file not found"),
    (["train", "--config", "{tmp}/unknown.yaml"], "unknown key 'model.atention'"),
    (["train", "--config", "{tmp}/mismatch.yaml"], "must be line-aligned"),
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


def test_help_explains_every_command():
    result = subprocess.run([sys.executable, "-m", "regard", "--help"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert result.returncode == 0
    for command in ("train", "translate", "plot", "demo"):
        assert command in result.stdout


def test_invalid_utf8_on_stdin_names_the_line(trained_run, capsys, monkeypatch):
    code, out, err = run(["translate", "--model", str(trained_run)], capsys, stdin=b"the cat\n\xff oops\n",
                         monkeypatch=monkeypatch)
    assert code == 2 and "<stdin>:2: invalid UTF-8" in err and "Traceback" not in err
