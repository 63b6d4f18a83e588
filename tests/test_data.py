"""Text reading, normalisation, subwords, batching and word-level attention."""

import gzip

import pytest

from regard.data.batching import Example, batch_indices, collate
from regard.data.text import normalize, read_lines, read_parallel
from regard.data.tokenizer import BOS, EOS, PAD, Tokenizer
from regard.errors import RegardError
from regard.translator import word_attention


def test_normalize_maps_french_no_break_spaces_and_collapses_whitespace():
    assert normalize("Il est là\u202f!  Oui\u00a0: «\u00a0non\u00a0»\t") == "Il est là ! Oui : « non »"
    assert normalize("cafe\u0301") == "café"  # NFC
    assert normalize("\ufeffa\u200bb") == "ab"


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_read_parallel_reads_pairs_and_gzip(tmp_path):
    src = write(tmp_path / "a.en", b"the cat\nthe dog\n")
    with gzip.open(tmp_path / "a.fr.gz", "wb") as f:
        f.write("le chat\nle chien\u00a0\n".encode())
    assert read_parallel(src, tmp_path / "a.fr.gz") == [("the cat", "le chat"), ("the dog", "le chien")]


@pytest.mark.parametrize("src, tgt, message", [
    (b"a\nb\n", b"x\n", "must be line-aligned"),
    (b"a\n\nc\n", b"x\ny\nz\n", "a.en:2: empty line"),
    (b"a\nb\n", b"x\n\xff\xfe\n", "a.fr:2: invalid UTF-8"),
])
def test_bad_parallel_files_name_file_and_line(tmp_path, src, tgt, message):
    with pytest.raises(RegardError, match=message):
        read_parallel(write(tmp_path / "a.en", src), write(tmp_path / "a.fr", tgt))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RegardError, match="file not found: .*nope.en"):
        list(read_lines(tmp_path / "nope.en"))


def test_empty_lines_are_kept_when_allowed(tmp_path):
    assert list(read_lines(write(tmp_path / "t", b"a\n\nb\n"), allow_empty=True)) == ["a", "", "b"]


@pytest.fixture(scope="module")
def tokenizer():
    sentences = ["le chat noir a mangé la souris", "les chats noirs ont mangé", "la souris blanche"] * 30
    return Tokenizer.train(sentences, vocab_size=40)


def test_tokenizer_round_trip_and_word_grouping(tokenizer):
    ids = tokenizer.encode("le chat noir a mangé la souris")
    assert min(ids) > EOS
    assert tokenizer.decode(ids) == "le chat noir a mangé la souris"
    words, word_of_piece = tokenizer.words(ids)
    assert words == ["le", "chat", "noir", "a", "mangé", "la", "souris"]
    assert len(word_of_piece) == len(ids) and word_of_piece == sorted(word_of_piece)
    assert Tokenizer(tokenizer.proto).encode("la souris") == tokenizer.encode("la souris")


@pytest.mark.parametrize("text", ["le chat noir a mangé la souris", "Zoë § le  chat, xyz!", "q w e"])
def test_words_are_what_sentencepiece_decodes_for_each_group(tokenizer, text):
    """The fast join of a word's pieces equals SentencePiece's own decoding, for ordinary
    words, words split after a lone "▁" piece, and words with unknown characters."""
    ids = tokenizer.encode(text)
    words, word_of_piece = tokenizer.words(ids)
    groups = [[i for i, w in zip(ids, word_of_piece) if w == k] for k in range(len(words))]
    assert words == [tokenizer.sp.decode(g) or tokenizer.sp.id_to_piece(g[0]) for g in groups]


def test_corrupt_tokenizer_is_a_clear_error():
    with pytest.raises(RegardError, match="corrupt SentencePiece model"):
        Tokenizer(b"not a model")


def test_word_attention_sums_source_pieces_and_averages_target_pieces():
    # target pieces: [w0a, w0b, w1]; source pieces: [s0a, s0b, s1]
    sub = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]]
    words = word_attention(sub, src_word_of_piece=[0, 0, 1], tgt_word_of_piece=[0, 0, 1])
    # word 0 rows: [0.5+0.3, 0.2] and [0.1+0.1, 0.8], averaged
    assert [w for row in words for w in row] == pytest.approx([0.5, 0.5, 0.0, 1.0])
    assert all(sum(row) == pytest.approx(1.0) for row in words)


def examples(n=200):
    return [Example([5] * (1 + i % 13), [6] * (1 + (i * 7) % 17)) for i in range(n)]


def test_batches_respect_the_token_budget_cover_every_example_and_are_deterministic():
    data = examples()
    batches = batch_indices(data, batch_tokens=60, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(data)))
    for b in batches:
        assert len(b) * (max(len(data[i].tgt) for i in b) + 1) <= 60
    assert batches == batch_indices(data, 60, seed=1, epoch=0)
    assert batches != batch_indices(data, 60, seed=1, epoch=1)


def test_length_bucketing_keeps_padding_low():
    data = examples(1000)
    batches = batch_indices(data, batch_tokens=200, seed=1, epoch=0)
    real = sum(len(e.tgt) + 1 for e in data)
    padded = sum(len(b) * (max(len(data[i].tgt) for i in b) + 1) for b in batches)
    assert padded / real < 1.05


def test_collate_builds_shifted_decoder_inputs():
    batch = collate([Example([7, 8], [9]), Example([7], [9, 10, 11])])
    assert batch.src.tolist() == [[7, 8], [7, PAD]]
    assert batch.src_lengths.tolist() == [2, 1]
    assert batch.tgt_in.tolist() == [[BOS, 9, PAD, PAD], [BOS, 9, 10, 11]]
    assert batch.tgt_out.tolist() == [[9, EOS, PAD, PAD], [9, 10, 11, EOS]]
    assert batch.n_tokens == 6
