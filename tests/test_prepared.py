"""Training data prepared once into memory-mapped shards: the same training as before, and
stale, corrupt or half-written prepared data never used."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from regard.cli import main
from regard.config import Config
from regard.data import binarise
from regard.data.batching import Batch, collate
from regard.data.binarise import (FileSource, ensure_prepared, folder_problem, open_prepared, prepare, prepared_dir,
                                  stale_reason)
from regard.data.prepare import encode_pairs, load_pairs
from regard.data.shards import MANIFEST
from regard.errors import RegardError
from regard.training import trainer
from regard.training.trainer import train
from tests.conftest import tiny_config

ROOT = Path(__file__).parent.parent

GOLDEN = Path(__file__).parent / "golden" / "prepared.json"
WRITE_GOLDEN = os.environ.get("REGARD_WRITE_GOLDEN") == "1"  # re-record (only when the training itself changes)
GOLDEN_CPU = ("AVX512", "AuthenticAMD")  # the kernels the golden weights came from: torch's CPU
# capability and the CPU's vendor (MKL and oneDNN choose other kernels on Intel's AVX-512 and AMX).
# After 40 Adam steps the weights carry the rounding of the CPU's kernels: exact to 1e-6 on the
# kernels of the recording, to 1e-5 on others (an AVX2-only CPU: 1.4e-6 seen; Intel with AMX: 1.1e-6).


def cpu_vendor() -> str:
    """``vendor_id`` of /proc/cpuinfo ("" where there is none)."""
    try:
        return next((line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("vendor_id")), "")
    except OSError:
        return ""


WEIGHTS_REL = 1e-6 if (torch.backends.cpu.get_cpu_capability(), cpu_vendor()) == GOLDEN_CPU else 1e-5


def golden_corpus(folder: Path, grammar_data) -> dict[str, str]:
    """Files with what cleaning and the length filter drop: duplicates, an empty side, long pairs."""
    train_pairs = grammar_data[0][:260]
    dirty = train_pairs[:200] + train_pairs[:15] + [("", "rien"), ("a b c", "")] + train_pairs[200:]
    for name, pairs in (("train", dirty), ("valid", grammar_data[1][:20])):
        for side, lang in ((0, "en"), (1, "fr")):
            (folder / f"{name}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
    return {"train_src": str(folder / "train.en"), "train_tgt": str(folder / "train.fr"),
            "valid_src": str(folder / "valid.en"), "valid_tgt": str(folder / "valid.fr")}


def record_training(monkeypatch, cfg, data=None) -> dict:
    """Train, recording every step's global batch, the tensors this process computed on, the loss,
    and the final weights."""
    steps: list[dict] = []
    step_fn, forward = trainer.train_step, trainer.LossOf.forward

    def recording_step(run, idx, step):
        steps.append({"batch": [int(i) for i in idx]})
        loss, total = step_fn(run, idx, step)
        steps[-1].update(loss=loss, tokens=total)
        return loss, total

    def recording_forward(self, batch, scale, grad_scale):
        digest = hashlib.sha256()
        for t in (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out):
            digest.update(str(tuple(t.shape)).encode() + t.to(torch.int64).numpy().tobytes())
        steps[-1].update(tensors=digest.hexdigest()[:16], scale=scale)
        return forward(self, batch, scale, grad_scale)

    monkeypatch.setattr(trainer, "train_step", recording_step)
    monkeypatch.setattr(trainer.LossOf, "forward", recording_forward)
    out = train(cfg, data=data, show_progress=False)
    weights = load_file(str(out / "last" / "model.safetensors"))
    return {"steps": steps, "weights": {k: [float(v.double().sum()), float(v.double().square().sum())]
                                        for k, v in sorted(weights.items())}}


def test_prepared_data_trains_exactly_as_the_list_of_ids_path_did(tmp_path, monkeypatch, grammar_data):
    """Golden: the batches, the tensors of every step, the losses and the final weights that the
    training path holding the corpus as Python lists gave (recorded before it was replaced), for a
    corpus read from files (cleaned, length-filtered) and one given in memory."""
    runs = {}
    for name in ("files", "memory"):
        cfg = tiny_config(tmp_path / name, steps=40)
        cfg.train.eval_every, cfg.train.batch_tokens, cfg.data.max_len = 20, 500, 24
        if name == "files":
            for key, value in golden_corpus(tmp_path, grammar_data).items():
                setattr(cfg.data, key, value)
            runs[name] = record_training(monkeypatch, cfg)
        else:
            runs[name] = record_training(monkeypatch, cfg, data=(grammar_data[0][:250], grammar_data[1][:20]))
        monkeypatch.undo()
    if WRITE_GOLDEN:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(runs, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    for name, run in runs.items():
        want = golden[name]
        assert len(run["steps"]) == len(want["steps"]) == 40
        for step, (got, expected) in enumerate(zip(run["steps"], want["steps"]), start=1):
            assert got["batch"] == expected["batch"], f"{name}: batch of step {step}"
            assert (got["tensors"], got["tokens"], got["scale"]) == (expected["tensors"], expected["tokens"],
                                                                     expected["scale"]), f"{name}: step {step}"
            assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6), f"{name}: loss of step {step}"
        assert run["weights"].keys() == want["weights"].keys()
        for key, stats in run["weights"].items():
            assert stats == pytest.approx(want["weights"][key], rel=WEIGHTS_REL), f"{name}: weights {key}"


# ---------------------------------------------------------------- the prepared folder

def corpus_config(tmp_path: Path, grammar_data, n: int = 300, name: str = "prep") -> Config:
    """A tiny config reading ``n`` grammar pairs (with duplicates) from files, prepared into ``tmp_path/name``."""
    pairs = grammar_data[0][:n] + grammar_data[0][:10]
    for split, part in (("train", pairs), ("valid", grammar_data[1][:20])):
        for side, lang in ((0, "en"), (1, "fr")):
            path = tmp_path / f"{split}.{lang}"
            if not path.exists():
                path.write_text("".join(p[side] + "\n" for p in part), encoding="utf-8")
    cfg = tiny_config(tmp_path / "run")
    cfg.tokenizer.src_vocab_size = cfg.tokenizer.tgt_vocab_size = 60
    cfg.data.train_src, cfg.data.train_tgt = str(tmp_path / "train.en"), str(tmp_path / "train.fr")
    cfg.data.valid_src, cfg.data.valid_tgt = str(tmp_path / "valid.en"), str(tmp_path / "valid.fr")
    cfg.data.prepared, cfg.data.max_len = str(tmp_path / name), 30
    return cfg


def shard_digests(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / MANIFEST).read_text())
    return {f: d["blake2b"] for r in manifest["shards"] for f, d in r["files"].items()}


def test_prepared_pairs_are_the_cleaned_corpus_encoded_in_order(tmp_path, grammar_data):
    cfg = corpus_config(tmp_path, grammar_data)
    manifest = prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0, shard_tokens=1000)
    prepared = open_prepared(prepared_dir(cfg))
    pairs, _ = load_pairs(cfg, report=False)
    examples = encode_pairs(pairs, *prepared.tokenizers, cfg.data.max_len)
    assert manifest["cleaning"]["exact duplicate"] == 10 and len(manifest["shards"]) > 3
    assert manifest["pairs"] == len(prepared.pairs) == len(examples) < len(pairs)  # max_len dropped some
    assert prepared.pairs.src_len.dtype == np.uint8
    assert all(prepared.pairs.files[0][side].dtype == np.uint16 for side in ("src", "tgt"))
    for i, e in enumerate(examples):
        src, tgt = prepared.pairs.pair(i)
        assert (src.tolist(), tgt.tolist()) == (e.src, e.tgt)
    idx = np.array([5, 0, len(examples) - 1, 77, 150])
    got, want = Batch.from_numpy(*prepared.pairs.padded(idx)), collate([examples[i] for i in idx])
    for name in ("src", "src_lengths", "tgt_in", "tgt_out"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert sorted(p.name for p in prepared_dir(cfg).iterdir() if not p.name.startswith("shard-")) == \
        ["manifest.json", "src.spm", "tgt.spm"]  # the work files are gone


def test_worker_processes_write_the_same_shards_as_one_process(tmp_path, grammar_data, monkeypatch):
    monkeypatch.setattr(binarise, "CHUNK", 40)  # 8 chunks: 2 here, 6 on the workers
    digests = {}
    for processes in (0, 2):
        cfg = corpus_config(tmp_path, grammar_data, name=f"p{processes}")
        prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=processes, shard_tokens=1000)
        digests[processes] = shard_digests(prepared_dir(cfg))
    assert digests[0] == digests[2] and len(digests[0]) > 12


def test_a_worker_error_is_one_line_naming_file_and_line(tmp_path, grammar_data, monkeypatch):
    monkeypatch.setattr(binarise, "CHUNK", 40)
    cfg = corpus_config(tmp_path, grammar_data)
    lines = (tmp_path / "train.fr").read_bytes().split(b"\n")
    lines[200] = b"\xff" + lines[200]  # in the sixth chunk: a worker's
    (tmp_path / "train.fr").write_bytes(b"\n".join(lines))
    with pytest.raises(RegardError, match=r"^\S*train\.fr:201: invalid UTF-8 \(byte 1 of the line\)$"):
        prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=2)
    assert not (prepared_dir(cfg) / MANIFEST).exists()


def rebuilds(cfg, **kwargs) -> list[str]:
    """What ensure_prepared says (one message per line) for the config's files."""
    messages: list[str] = []
    ensure_prepared(cfg, FileSource.from_config(cfg), log=messages.append, processes=0, **kwargs)
    return messages


def append_pair(tmp_path: Path, en: str, fr: str) -> None:
    for name, text in (("train.en", en), ("train.fr", fr)):
        with open(tmp_path / name, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


@pytest.mark.parametrize("change, notice", [
    ("grown", r"\S*/train\.en has changed \(\d+ bytes then, \d+ now\)"),
    ("rewritten", r"\S*/train\.fr has changed \(same size, other content\)"),
    ("truncated", r"shard-00000\.tgt\.npy is \d+ bytes where the manifest says \d+ \(truncated or rewritten\)"),
    ("format", r"it is in format 0, and this version of Regard reads format 1"),
    ("settings", r"it was prepared with other settings \(data\.max_len, tokenizer\.src_vocab_size\)"),
    ("manifest", r"its manifest is unreadable"),
    ("tokenizer file", r"tgt\.spm is missing or is not the one the manifest records"),
])
def test_stale_or_corrupt_prepared_data_is_rebuilt_saying_why(tmp_path, grammar_data, change, notice):
    cfg = corpus_config(tmp_path, grammar_data)
    folder = prepared_dir(cfg)
    assert rebuilds(cfg)[0] == f"preparing the training data in {folder}"
    before = json.loads((folder / MANIFEST).read_text())
    if change == "grown":
        append_pair(tmp_path, "the cat", "le chat")
    elif change == "rewritten":
        text = (tmp_path / "train.fr").read_text(encoding="utf-8")
        (tmp_path / "train.fr").write_text(text.replace("chat", "chut", 1), encoding="utf-8")
        os.utime(tmp_path / "train.fr", ns=(1, 1))
    elif change == "truncated":
        path = folder / "shard-00000.tgt.npy"
        path.write_bytes(path.read_bytes()[:-6])
        with pytest.raises(RegardError, match=f"^prepared training data in {folder} cannot be used: {notice}$"):
            open_prepared(folder)
    elif change in ("format", "manifest"):
        (folder / MANIFEST).write_text("{" if change == "manifest" else json.dumps({**before, "format": 0}))
    elif change == "settings":
        cfg.data.max_len, cfg.tokenizer.src_vocab_size = 12, 70
    else:
        (folder / "tgt.spm").write_bytes(b"another model")
    messages = rebuilds(cfg)
    assert re.fullmatch(f"preparing the training data in {re.escape(str(folder))} again: {notice}", messages[0])
    after = json.loads((folder / MANIFEST).read_text())
    assert folder_problem(folder, after) is None and stale_reason(cfg, FileSource.from_config(cfg)) is None
    if change == "grown":
        assert after["cleaning"]["read"] == before["cleaning"]["read"] + 1


def test_up_to_date_prepared_data_is_used_as_it_is(tmp_path, grammar_data):
    cfg = corpus_config(tmp_path, grammar_data)
    rebuilds(cfg)
    written = {p.name: p.stat().st_mtime_ns for p in prepared_dir(cfg).iterdir()}
    os.utime(tmp_path / "train.en")  # a new time, the same content: the digest says it is the same
    assert rebuilds(cfg) == [f"cleaning {tmp_path / 'train.en'}: kept 300 of 310 (dropped: 10 exact duplicate)"]
    written.pop(MANIFEST)  # which now records the new time, so that the file is not digested again
    assert {p.name: p.stat().st_mtime_ns for p in prepared_dir(cfg).iterdir() if p.name != MANIFEST} == written
    recorded = json.loads((prepared_dir(cfg) / MANIFEST).read_text())["plan"]["source"]["files"][0]
    assert recorded["mtime_ns"] == (tmp_path / "train.en").stat().st_mtime_ns


def test_data_prepared_with_other_tokenizers_is_rebuilt_with_the_runs(tmp_path, grammar_data):
    cfg = corpus_config(tmp_path, grammar_data)
    rebuilds(cfg)
    other = corpus_config(tmp_path, grammar_data, name="other")
    other.tokenizer.tgt_vocab_size = 80
    rebuilds(other)
    theirs = open_prepared(prepared_dir(other)).tokenizers
    with pytest.raises(RegardError, match="prepared with other subword models than the run being resumed"):
        open_prepared(prepared_dir(cfg), theirs)
    messages = rebuilds(cfg, tokenizers=theirs)
    assert messages[0].endswith("again: it was prepared with other subword models than the run being resumed")
    assert [t.proto for t in open_prepared(prepared_dir(cfg), theirs).tokenizers] == [t.proto for t in theirs]


def test_a_folder_holding_other_files_is_never_emptied(tmp_path, grammar_data):
    cfg = corpus_config(tmp_path, grammar_data)
    cfg.data.prepared = str(tmp_path)  # the folder of the corpus itself
    with pytest.raises(RegardError, match=r"holds files that are not prepared training data \(train\.en, "
                                          r"train\.fr, valid\.en\): choose another data\.prepared"):
        rebuilds(cfg)
    assert (tmp_path / "train.en").is_file()


# ---------------------------------------------------------------- interrupted prepares

def test_a_prepare_that_fails_mid_way_is_completed_by_a_rerun(tmp_path, grammar_data, monkeypatch):
    """A failure while writing the second shard: no manifest; the rerun keeps the first shard
    and ends with the folder that an uninterrupted prepare gives."""
    cfg = corpus_config(tmp_path, grammar_data)
    folder, write = prepared_dir(cfg), binarise.write_shard

    def failing(folder, number, *args):
        if number == 1:
            raise OSError("disk full")
        return write(folder, number, *args)

    monkeypatch.setattr(binarise, "write_shard", failing)
    with pytest.raises(OSError, match="disk full"):
        prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0, shard_tokens=1000)
    assert not (folder / MANIFEST).exists() and (folder / "shard-00000.json").is_file()
    first = (folder / "shard-00000.src.npy").stat().st_mtime_ns
    monkeypatch.undo()
    prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0, shard_tokens=1000)
    assert (folder / "shard-00000.src.npy").stat().st_mtime_ns == first  # kept, not written again
    fresh = corpus_config(tmp_path, grammar_data, name="fresh")
    prepare(fresh, FileSource.from_config(fresh), log=lambda m: None, processes=0, shard_tokens=1000)
    assert shard_digests(folder) == shard_digests(prepared_dir(fresh))


KILLED = """
import os, signal, sys
from regard.data import binarise
from regard.config import config_from_dict
cfg = config_from_dict({config})
write = binarise.write_shard
def write_then_die(folder, number, *args):
    if number == 2:
        (folder / ".shard-00002.src.npy.x.tmp").write_bytes(b"half")  # what a kill leaves behind
        os.kill(os.getpid(), signal.SIGKILL)
    return write(folder, number, *args)
binarise.write_shard = write_then_die
binarise.prepare(cfg, binarise.FileSource.from_config(cfg), processes=0, shard_tokens=1000)
"""


def test_a_prepare_killed_mid_shard_is_completed_by_a_rerun(tmp_path, grammar_data):
    cfg = corpus_config(tmp_path, grammar_data)
    folder = prepared_dir(cfg)
    code = KILLED.format(config=repr(cfg.to_dict()))
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not (folder / MANIFEST).exists()
    assert {"shard-00000.json", "shard-00001.json", ".shard-00002.src.npy.x.tmp"} <= {p.name for p in folder.iterdir()}
    written = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-0000[01].*")}
    prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0, shard_tokens=1000)
    assert {name: (folder / name).stat().st_mtime_ns for name in written if "json" not in name} == \
        {name: t for name, t in written.items() if "json" not in name}  # the complete shards were kept
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    fresh = corpus_config(tmp_path, grammar_data, name="fresh")
    prepare(fresh, FileSource.from_config(fresh), log=lambda m: None, processes=0, shard_tokens=1000)
    assert shard_digests(folder) == shard_digests(prepared_dir(fresh))


# ---------------------------------------------------------------- memory

MEMORY = """
import json, resource, sys
import numpy as np
import torch
from regard.config import config_from_dict
from regard.data import binarise
from regard.data.batching import plan_epoch

def rss():
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))

folder, what, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3])
corpus = folder + "/corpus"
cfg = config_from_dict({"data": {"train_src": corpus + ".en", "train_tgt": corpus + ".fr", "valid_src": corpus + ".en",
                                 "valid_tgt": corpus + ".fr", "prepared": folder + "/prepared"},
                        "tokenizer": {"src_vocab_size": 200, "tgt_vocab_size": 200, "max_training_sentences": 20000}})
if what == "prepare":  # chunks × 50,000 short pairs of 2 to 5 words out of 5,000
    rng = np.random.default_rng(0)
    with open(corpus + ".en", "w") as en, open(corpus + ".fr", "w") as fr:
        for _ in range(chunks):
            words, lengths = rng.integers(0, 5000, size=(50_000, 5)), rng.integers(2, 6, size=50_000)
            rows = [row[:n] for row, n in zip(words.tolist(), lengths.tolist())]
            en.write("".join(" ".join(f"w{w}" for w in row) + "\\n" for row in rows))
            fr.write("".join(" ".join(f"m{w}" for w in row[::-1]) + "\\n" for row in rows))
    del words, lengths, rows
base = rss()
if what == "prepare":
    manifest = binarise.prepare(cfg, binarise.FileSource.from_config(cfg), log=lambda m: None)
    pairs = manifest["pairs"]
else:
    prepared = binarise.open_prepared(binarise.prepared_dir(cfg))
    plan = plan_epoch(prepared.pairs.src_len, prepared.pairs.tgt_len, 2000, 1, 0)
    for k in range(100):
        batch = prepared.pairs.padded(plan.batch(k))
    pairs = len(prepared.pairs)
print(json.dumps({"pairs": pairs, "growth_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base}))
"""


def test_a_million_pairs_are_prepared_and_opened_in_flat_memory(tmp_path):
    """In subprocesses, preparing 1M pairs takes at most 250 MiB more peak resident memory than
    preparing 50,000 (the shard being written, the 8-byte digests: 100 MiB measured), and opening
    them, planning an epoch and collating 100 batches at most 40 MiB more than doing so with
    50,000 (the lengths, 1 byte a side and pair; the epoch's order, 4 bytes a pair: 7 MiB
    measured; memory-mapped shards, whose pages a batch maps a folio at a time, took 59 MiB here
    and 440 MiB at 20M pairs). Holding the pairs as Python lists of ids would take over 500 MiB more. Comparing two sizes cancels what a machine's libraries
    take whatever the corpus (their thread buffers, their page sizes)."""
    results: dict[int, dict[str, dict]] = {}
    for chunks in (1, 20):
        folder = tmp_path / str(chunks)
        folder.mkdir()
        for what in ("prepare", "open"):
            done = subprocess.run([sys.executable, "-c", MEMORY, str(folder), what, str(chunks)], capture_output=True,
                                  text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
            assert done.returncode == 0, done.stderr
            results.setdefault(chunks, {})[what] = json.loads(done.stdout.splitlines()[-1])
    small, large = results[1], results[20]
    assert large["prepare"]["pairs"] == large["open"]["pairs"] > 990_000
    assert small["prepare"]["pairs"] == small["open"]["pairs"] > 49_000
    assert large["prepare"]["growth_mib"] - small["prepare"]["growth_mib"] < 250, results
    assert large["open"]["growth_mib"] - small["open"]["growth_mib"] < 40, results


# ---------------------------------------------------------------- with training and the command line

def test_resuming_without_the_prepared_folder_prepares_it_again_with_the_runs_subwords(tmp_path, grammar_data):
    data = (grammar_data[0][:300], grammar_data[1])
    runs = {}
    for name, steps in (("straight", 24), ("stopped", 12)):
        cfg = tiny_config(tmp_path / name, steps=steps)
        cfg.train.eval_every = 12
        runs[name] = train(cfg, data=data, show_progress=False)
    shutil.rmtree(runs["stopped"] / "data")
    cfg.train.max_steps = 24
    train(cfg, resume=True, data=data, show_progress=False)
    a, b = (load_file(str(runs[name] / "last" / "model.safetensors")) for name in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_regard_data_prepare_then_regard_train_uses_what_it_prepared(tmp_path, grammar_data, capsys):
    cfg = corpus_config(tmp_path, grammar_data)
    cfg.train.max_steps = cfg.train.eval_every = 2
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    folder = prepared_dir(cfg)
    assert main(["data", "prepare", "--config", str(config), "--processes", "0"]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(rf"{re.escape(str(folder))}: \d+ pairs, 1 shards, \d+ pairs/s\n", out)
    assert "kept 300 of 310 (dropped: 10 exact duplicate)" in err
    assert main(["data", "prepare", "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"{folder} is up to date\n"
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "kept 300 of 310" in err and "preparing" not in err
    (tmp_path / "train.fr").write_text("un\n")
    assert main(["data", "prepare", "--config", str(config)]) == 2
    notice, error = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"preparing {re.escape(str(folder))} again: \S*train\.fr has changed \(\d+ bytes then, 3 now\)",
                        notice)
    assert error.startswith("regard: error: ") and "train.en:2: no matching line in" in error
