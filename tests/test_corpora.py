"""Corpus readers, the catalogue and its checksummed cache, cleaning and grouped splits."""

from __future__ import annotations

import gzip
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from regard.cli import main
from regard.data import corpora
from regard.config import config_from_dict
from regard.data.cleaning import clean_pairs, format_report
from regard.data.corpora import (CORPORA, Corpus, CorpusFile, Download, TsvSplit, corpus_dir, fetch,
                                 group_key, grouped_split, split_files)
from regard.data.text import iter_parallel, read_tsv
from regard.errors import RegardError
from regard.data.prepare import data_files, load_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# sha256 of the derived Tatoeba test split (seed 1, 2,000 pairs) of the project's copy: the split is part
# of the project's record and must change only if the split procedure or the catalogue entry does.
TATOEBA_TEST_EN_SHA256 = "26498834843379e76e22be3efabdeed500eeede9d29af4a619362c17765883f2"
TATOEBA_TEST_FR_SHA256 = "2b7cddc9a534c6fc1cd1f0e472e43fcbfd644f441e448aefe3aa1128414af885"

EN = "A man rides a bike.\nTwo dogs\u00a0play.\nA child smiles.\n"
FR = "Un homme fait du vélo.\nDeux chiens jouent\u202f!\nUn enfant sourit.\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def toy_corpus(name: str = "toy", en: str = EN, fr: str = FR, url: str = "file:///nowhere/toy") -> Corpus:
    """A two-file catalogue entry whose checksums match EN and FR."""
    files = (CorpusFile("train.en", sha(en.encode()), Download(f"{url}.en", "0" * 64)),
             CorpusFile("train.fr", sha(fr.encode()), Download(f"{url}.fr", "0" * 64)))
    return Corpus(name, "toy corpus", files, {"train": ("train.en", "train.fr")}, "CC0", "nobody")


# ---------------------------------------------------------------- readers

def test_iter_parallel_reads_gzip_and_normalises(tmp_path):
    pairs = list(iter_parallel(write(tmp_path / "a.en.gz", EN), write(tmp_path / "a.fr", FR)))
    assert pairs[1] == ("Two dogs play.", "Deux chiens jouent !")
    assert len(pairs) == 3


def test_iter_parallel_streams(tmp_path):
    src = write(tmp_path / "a.en", EN + "\xff\n")  # invalid UTF-8 on line 4
    stream = iter_parallel(src, write(tmp_path / "a.fr", FR + "x\n"))
    assert next(stream) == ("A man rides a bike.", "Un homme fait du vélo.")  # read before the bad line


@pytest.mark.parametrize("en, fr, message", [
    (EN + "Extra.\n", FR, "a.en:4: no matching line in {dir}/a.fr, which has only 3 lines"),
    (EN, FR + "En plus.\n", "a.fr:4: no matching line in {dir}/a.en, which has only 3 lines"),
    (EN.replace("Two", "\xffTwo"), FR, "a.en:2: invalid UTF-8"),
    (EN, FR.replace("Deux chiens jouent\u202f!", "  "), "a.fr:2: empty line"),
])
def test_iter_parallel_names_file_and_line(tmp_path, en, fr, message):
    src = write(tmp_path / "a.en", en.encode("latin-1") if "\xff" in en else en)
    with pytest.raises(RegardError, match=message.format(dir=tmp_path).replace(".", r"\.")):
        list(iter_parallel(src, write(tmp_path / "a.fr", fr)))


def test_iter_parallel_may_keep_empty_lines(tmp_path):
    pairs = list(iter_parallel(write(tmp_path / "a.en", "a\n\n"), write(tmp_path / "a.fr", "b\nc\n"), allow_empty=True))
    assert pairs == [("a", "b"), ("", "c")]


def test_read_tsv(tmp_path):
    tsv = write(tmp_path / "p.tsv.gz", "Go.\tVa\u202f!\nHi.\tSalut !\n")
    assert list(read_tsv(tsv)) == [("Go.", "Va !"), ("Hi.", "Salut !")]


@pytest.mark.parametrize("text, columns, message", [
    ("Go.\tVa !\nHi. Salut !\n", 2, r"p\.tsv:2: expected 2 tab-separated fields, found 1"),
    ("Go.\tVa !\tCC-BY 2.0 (France) #1\n", 2, r"p\.tsv:1: expected 2 tab-separated fields, found 3"),
    ("Go.\tVa !\n\t Salut\n", 2, r"p\.tsv:2: empty source field"),
    ("Go.\tVa !\n", 3, r"p\.tsv:1: expected 3 tab-separated fields, found 2"),
])
def test_read_tsv_names_file_and_line(tmp_path, text, columns, message):
    with pytest.raises(RegardError, match=message):
        list(read_tsv(write(tmp_path / "p.tsv", text), columns))


def test_read_tsv_takes_the_first_two_of_three_columns(tmp_path):
    tsv = write(tmp_path / "p.tsv", "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n")
    assert list(read_tsv(tsv, columns=3)) == [("Go.", "Va !")]


# ---------------------------------------------------------------- fetch

@pytest.mark.parametrize("layout", ["corpus folder", "parent folder", "gzipped"])
def test_fetch_from_local_copy(tmp_path, layout):
    source = tmp_path / "src"
    suffix = ".gz" if layout == "gzipped" else ""
    folder = source / "toy" if layout == "parent folder" else source
    write(folder / f"train.en{suffix}", EN)
    write(folder / f"train.fr{suffix}", FR)
    out = fetch(toy_corpus(), tmp_path / "cache", from_dir=source)
    assert out == tmp_path / "cache" / "toy"
    assert (out / "train.fr").read_text(encoding="utf-8") == FR
    manifest = json.loads((out / "corpus.json").read_text())
    assert manifest["files"]["train.en"] == sha(EN.encode())
    assert manifest["origin"] == str(source.resolve())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["toy"]


def test_checksum_mismatch_is_an_error_and_leaves_the_cache_as_it_was(tmp_path):
    cache = tmp_path / "cache"
    write(tmp_path / "good" / "train.en", EN)
    write(tmp_path / "good" / "train.fr", FR)
    fetch(toy_corpus(), cache, from_dir=tmp_path / "good")
    write(tmp_path / "bad" / "train.en", EN)
    write(tmp_path / "bad" / "train.fr", FR + "tampered\n")
    actual = sha((FR + "tampered\n").encode())
    with pytest.raises(RegardError) as err:
        fetch(toy_corpus(), cache, from_dir=tmp_path / "bad")
    assert str(tmp_path / "bad" / "train.fr") in str(err.value)
    assert sha(FR.encode()) in str(err.value) and actual in str(err.value)
    assert sorted(p.name for p in cache.iterdir()) == ["toy"]  # no temporary folder left
    assert (cache / "toy" / "train.fr").read_text(encoding="utf-8") == FR  # the good copy survives


def test_checksum_mismatch_on_first_fetch_leaves_nothing(tmp_path):
    write(tmp_path / "src" / "train.en", EN)
    write(tmp_path / "src" / "train.fr", FR)
    with pytest.raises(RegardError, match="checksum mismatch"):
        fetch(toy_corpus(fr=FR.upper()), tmp_path / "cache", from_dir=tmp_path / "src")
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_verifies_the_archive_and_its_content(tmp_path):
    """file:// URLs exercise the download path offline: .gz decompressed, zip member extracted."""
    gz = write(tmp_path / "web" / "train.en.gz", EN)
    with zipfile.ZipFile(tmp_path / "web" / "pairs.zip", "w") as archive:
        archive.writestr("fra-eng/fra.txt", FR)
    zipped = tmp_path / "web" / "pairs.zip"
    corpus = Corpus("web", "d", (
        CorpusFile("train.en", sha(EN.encode()), Download(gz.as_uri(), sha(gz.read_bytes()))),
        CorpusFile("train.fr", sha(b"the curated copy"), Download(
            zipped.as_uri(), sha(zipped.read_bytes()), member="fra-eng/fra.txt", content_sha256=sha(FR.encode())))),
        {"train": ("train.en", "train.fr")}, "CC0", "nobody")
    out = fetch(corpus, tmp_path / "cache")
    assert sorted(p.name for p in out.iterdir()) == ["corpus.json", "train.en", "train.fr"]
    assert (out / "train.fr").read_text(encoding="utf-8") == FR
    bad = Corpus("web", "d", (CorpusFile("train.en", sha(EN.encode()), Download(gz.as_uri(), "f" * 64)),),
                 {}, "CC0", "nobody")
    with pytest.raises(RegardError, match=f"checksum mismatch for {gz.as_uri()}: expected sha256 f{{64}}"):
        fetch(bad, tmp_path / "cache2")
    assert list((tmp_path / "cache2").iterdir()) == []


def test_failed_download_suggests_a_local_copy(tmp_path):
    corpus = toy_corpus(url=(tmp_path / "missing").as_uri())
    with pytest.raises(RegardError, match=r"cannot download .*missing\.en.*regard data fetch toy --from DIR"):
        fetch(corpus, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_corpus_not_fetched_names_the_command(tmp_path):
    with pytest.raises(RegardError, match="regard data fetch multi30k"):
        split_files("multi30k", "train", tmp_path)
    with pytest.raises(RegardError, match="regard data fetch tatoeba"):
        corpus_dir("tatoeba", tmp_path)


def test_catalogue_entries_are_complete():
    for corpus in CORPORA.values():
        assert corpus.licence and corpus.credit and corpus.files
        for file in corpus.files:
            assert file.download.url.startswith("https://") and len(file.sha256) == 64
            assert len(file.download.sha256) == 64
        assert {"train", "valid", "test"} <= set(corpus.splits)
    assert "CC-BY 2.0 FR" in CORPORA["tatoeba"].licence
    assert "tatoeba.org" in CORPORA["tatoeba"].credit and "manythings.org/anki" in CORPORA["tatoeba"].credit


@pytest.mark.skipif(not (SHARED / "multi30k").is_dir(), reason="../shared/data/multi30k not present")
def test_real_multi30k_fetch_verifies_checksums_and_feeds_training(tmp_path, monkeypatch, capsys):
    out = fetch("multi30k", tmp_path, from_dir=SHARED)
    assert split_files("multi30k", "test", tmp_path) == (out / "test_2016_flickr.en", out / "test_2016_flickr.fr")
    monkeypatch.setenv("REGARD_CACHE", str(tmp_path))
    cfg = config_from_dict({"data": {"corpus": "multi30k"}})
    train_pairs, valid_pairs = load_pairs(cfg)
    files = data_files(cfg.data)
    assert (files.train_src, files.valid_tgt) == (str(out / "train.en"), str(out / "val.fr"))
    assert cfg.data.train_src == ""  # the config is not changed: the paths are resolved where data is read
    assert len(train_pairs) == 28995 and len(valid_pairs) == 1014
    assert "kept 28995 of 29000 (dropped: 5 exact duplicate)" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "tatoeba").is_dir(), reason="../shared/data/tatoeba not present")
def test_fetch_real_tatoeba_derives_the_documented_split(tmp_path):
    out = fetch("tatoeba", tmp_path, from_dir=SHARED / "tatoeba")
    manifest = json.loads((out / "corpus.json").read_text())
    assert {k: v["pairs"] for k, v in manifest["splits"].items()} == {"train": 160874, "valid": 2000, "test": 2000}
    english = {name: {group_key(s) for s, _ in iter_parallel(*split_files("tatoeba", name, tmp_path))}
               for name in ("train", "valid", "test")}
    assert not english["train"] & english["test"] and not english["train"] & english["valid"]
    assert not english["valid"] & english["test"]
    # The split is part of the project's record: these change only if the split procedure does.
    assert sha((out / "test.en").read_bytes()) == TATOEBA_TEST_EN_SHA256
    assert sha((out / "test.fr").read_bytes()) == TATOEBA_TEST_FR_SHA256


# ---------------------------------------------------------------- cleaning and splits

def test_cleaning_report_counts_each_reason():
    pairs = [("a b", "c d"), ("", "x"), ("y", ""), (" ".join("w" * 5), "v"), ("short", "x" * 30),
             ("a b", "c d"), ("a b", "c e")]
    kept, report = clean_pairs(pairs, max_words=4, max_ratio=4.0)
    assert kept == [("a b", "c d"), ("a b", "c e")]
    assert report == {"read": 7, "kept": 2, "empty side": 2, "too long": 1, "extreme length ratio": 1,
                      "exact duplicate": 1}
    assert format_report(report, "toy") == ("cleaning toy: kept 2 of 7 (dropped: 2 empty side, 1 too long, "
                                            "1 extreme length ratio, 1 exact duplicate)")
    kept, report = clean_pairs(pairs, max_words=0, max_ratio=0, dedupe=False)
    assert len(kept) == 5 and report["empty side"] == 2 and report["exact duplicate"] == 0


def tatoeba_like(n_groups: int = 300) -> list[tuple[str, str]]:
    pairs = []
    for g in range(n_groups):
        for k in range(1 + g % 3):  # 1 to 3 translations per English sentence, casing/punctuation varied
            pairs.append((f"Sentence {g}." if k != 1 else f"sentence {g}!", f"Phrase {g} variante {k}."))
    return pairs


def test_grouped_split_keeps_each_english_sentence_in_one_split():
    pairs = tatoeba_like()
    split = grouped_split(pairs, valid=50, test=60, seed=7)
    keys = {name: {group_key(s) for s, _ in part} for name, part in split.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"] and not keys["valid"] & keys["test"]
    assert sorted(sum(split.values(), [])) == sorted(pairs)
    assert 60 <= len(split["test"]) < 63 and 50 <= len(split["valid"]) < 53


def test_grouped_split_is_deterministic_for_a_seed():
    pairs = tatoeba_like()
    assert grouped_split(pairs, 50, 60, seed=7) == grouped_split(list(pairs), 50, 60, seed=7)
    assert grouped_split(pairs, 50, 60, seed=7)["test"] != grouped_split(pairs, 50, 60, seed=8)["test"]


def test_grouped_split_needs_training_data():
    with pytest.raises(RegardError, match="nothing left for training"):
        grouped_split(tatoeba_like(10), valid=10, test=10, seed=1)


def test_tsv_corpus_fetch_writes_its_split(tmp_path):
    text = "".join(f"{en}\t{fr}\n" for en, fr in tatoeba_like())
    corpus = Corpus("tsv", "d", (CorpusFile("pairs.tsv", sha(text.encode()), Download("https://x/p", "0" * 64)),),
                    {name: (f"{name}.en", f"{name}.fr") for name in ("train", "valid", "test")}, "CC0", "n",
                    derived_split=TsvSplit("pairs.tsv", seed=3, valid=40, test=40))
    out = fetch(corpus, tmp_path / "cache", from_dir=write(tmp_path / "src" / "pairs.tsv", text).parent)
    test = list(iter_parallel(out / "test.en", out / "test.fr"))
    assert test == grouped_split(read_tsv(tmp_path / "src" / "pairs.tsv"), 40, 40, seed=3)["test"]


# ---------------------------------------------------------------- config, training data, command line

def test_training_data_is_cleaned_and_validation_data_read_strictly(tmp_path, capsys):
    cfg = config_from_dict({"data": {
        "train_src": str(write(tmp_path / "t.en", EN + EN + "\n")),
        "train_tgt": str(write(tmp_path / "t.fr", FR + FR + "Rien.\n")),
        "valid_src": str(write(tmp_path / "v.en", EN)), "valid_tgt": str(write(tmp_path / "v.fr", FR))}})
    train_pairs, valid_pairs = load_pairs(cfg)
    assert train_pairs == valid_pairs == list(iter_parallel(tmp_path / "v.en", tmp_path / "v.fr"))
    assert "kept 3 of 7 (dropped: 1 empty side, 3 exact duplicate)" in capsys.readouterr().err
    cfg.data.valid_src = str(write(tmp_path / "v.en", EN + "\n"))
    cfg.data.valid_tgt = str(write(tmp_path / "v.fr", FR + "Rien.\n"))
    with pytest.raises(RegardError, match=r"v\.en:4: empty line"):
        load_pairs(cfg)


def test_config_rejects_an_unknown_corpus_and_bad_cleaning_limits():
    with pytest.raises(RegardError, match="'data.corpus': unknown corpus 'wmt'; known: multi30k, tatoeba"):
        load_pairs(config_from_dict({"data": {"corpus": "wmt"}}))
    for bad, message in (({"max_ratio": 0.5}, r"'data.max_ratio' must be 0 \(off\) or at least 1, got 0.5"),
                         ({"max_words": -1}, "'data.max_words' must be at least 0, got -1")):
        with pytest.raises(RegardError, match=message):
            config_from_dict({"data": bad})
    assert config_from_dict({"data": {"corpus": "tatoeba", "max_ratio": 0, "max_words": 0}}).data.corpus == "tatoeba"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["data", "fetch", "wmt"], "unknown corpus 'wmt'"),
    (["data", "fetch", "multi30k", "--from", "/nonexistent/dir"], "--from folder not found"),
    (["data", "split", "--src", "x.en", "--out", "o"], "give either --tsv FILE or both"),
    (["data", "clean", "--tsv", "/nonexistent.tsv"], "file not found: /nonexistent.tsv"),
    (["data", "split", "--tsv", "p.tsv", "--suffixes", "en", "--out", "o"], "--suffixes must be two names"),
])
def test_cli_errors_are_one_clean_line(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, *argv, *(["--cache", str(tmp_path)] if argv[1] == "fetch" else []))
    assert code == 2
    assert err.startswith("regard: error: ") and message in err and err.count("\n") == 1


def test_cli_fetch_copies_verifies_and_keeps_the_cache_on_a_mismatch(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "CORPORA", {**CORPORA, "toy": toy_corpus()})
    src, cache = tmp_path / "src", tmp_path / "cache"
    write(src / "train.en", EN)
    write(src / "train.fr", FR)
    code, out, err = run_cli(capsys, "data", "fetch", "toy", "--from", str(src), "--cache", str(cache))
    assert code == 0
    assert err == f"copying {src / 'train.en'}\ncopying {src / 'train.fr'}\n"
    assert out.startswith(f"toy is in {cache / 'toy'}\n  train: train.en / train.fr\n")
    assert sorted(p.name for p in cache.iterdir()) == ["toy"]
    fetched = {p.name: p.read_bytes() for p in (cache / "toy").iterdir()}
    assert sorted(fetched) == ["corpus.json", "train.en", "train.fr"]
    assert (fetched["train.en"], fetched["train.fr"]) == (EN.encode(), FR.encode())
    manifest = json.loads(fetched["corpus.json"])
    assert manifest["files"] == {"train.en": sha(EN.encode()), "train.fr": sha(FR.encode())}
    assert manifest["origin"] == str(src.resolve())

    write(src / "train.fr", FR + "tampered\n")
    code, out, err = run_cli(capsys, "data", "fetch", "toy", "--from", str(src), "--cache", str(cache))
    assert code == 2 and out == ""
    assert f"checksum mismatch for {src / 'train.fr'}: expected sha256 {sha(FR.encode())}" in err
    assert sorted(p.name for p in cache.iterdir()) == ["toy"]  # no temporary folder left
    assert {p.name: p.read_bytes() for p in (cache / "toy").iterdir()} == fetched  # the good copy, untouched


def test_cli_split_and_clean(capsys, tmp_path):
    pairs = tatoeba_like()
    write(tmp_path / "src" / "pairs.tsv", "".join(f"{en}\t{fr}\n" for en, fr in pairs))
    code, out, _ = run_cli(capsys, "data", "split", "--tsv", str(tmp_path / "src/pairs.tsv"), "--out",
                           str(tmp_path / "split"), "--valid", "30", "--test", "30", "--seed", "2")
    split = grouped_split(pairs, valid=30, test=30, seed=2)
    sizes = ", ".join(f"{name} {len(part)}" for name, part in split.items())
    assert code == 0 and out == f"wrote {tmp_path / 'split'}/{{train,valid,test}}.{{en,fr}}: {sizes} pairs (seed 2)\n"
    for name, part in split.items():
        assert list(iter_parallel(tmp_path / "split" / f"{name}.en", tmp_path / "split" / f"{name}.fr")) == part
    code, out, _ = run_cli(capsys, "data", "clean", "--src", str(tmp_path / "split/train.en"), "--tgt",
                           str(tmp_path / "split/train.fr"), "--max-ratio", "1.8", "--out", str(tmp_path / "c"))
    kept, report = clean_pairs(split["train"], max_words=80, max_ratio=1.8)
    assert report["extreme length ratio"] > 0 and 0 < len(kept) < len(split["train"])
    assert code == 0 and out == format_report(report, str(tmp_path / "split/train.en")) + "\n"
    assert list(iter_parallel(tmp_path / "c.en", tmp_path / "c.fr")) == kept
