"""Greedy and beam search on tiny seeded models: golden equivalences and exact scores."""

import pytest
import torch

from regard.data.batching import Batch
from regard.data.tokenizer import BOS, EOS
from regard.search.beam import beam_search
from regard.search.greedy import greedy_search, length_penalty
from tests.conftest import random_batch, random_model


@torch.no_grad()
def forced_score(model, src, length, tokens, alpha):
    """Log-probability of ``tokens + </s>`` under teacher forcing, divided by the length penalty."""
    ys = tokens + [EOS]
    tgt_in = torch.tensor([[BOS] + ys[:-1]])
    logits, attention = model(Batch(src, torch.tensor([length]), tgt_in, torch.tensor([ys])))
    logp = torch.log_softmax(logits.float(), -1)[0, torch.arange(len(ys)), torch.tensor(ys)]
    return float(logp.sum()) / length_penalty(len(ys), alpha), attention


@pytest.mark.parametrize("attention", ["general", "concat", "none"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_size_one_equals_greedy(attention, alpha):
    model = random_model(attention, seed=7)
    src, lengths = random_batch(batch=5)
    greedy = greedy_search(model, src, lengths, max_ratio=2.0, alpha=alpha)
    beam = beam_search(model, src, lengths, beam=1, nbest=1, alpha=alpha, max_ratio=2.0)
    for g, (b,) in zip(greedy, beam):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-5)
        if attention != "none":
            assert torch.allclose(g.attention, b.attention)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_scores_and_attention_match_teacher_forcing(alpha):
    model = random_model("general", seed=3)
    src, lengths = random_batch(batch=4)
    for b, hyps in enumerate(beam_search(model, src, lengths, beam=4, nbest=3, alpha=alpha)):
        n = int(lengths[b])
        assert len(hyps) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            score, attention = forced_score(model, src[b:b + 1, :n], n, h.tokens, alpha)
            assert h.score == pytest.approx(score, abs=1e-4)
            assert h.attention.shape == (len(h.tokens) + 1, n)
            assert torch.allclose(h.attention, attention[0], atol=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_batched_search_equals_one_sentence_at_a_time(beam):
    """Sentences leave the batch as they finish; that must not change anyone's result."""
    model = random_model("concat", seed=11)
    src, lengths = random_batch(batch=6)
    search = lambda s, n: ([[h] for h in greedy_search(model, s, n)] if beam == 1  # noqa: E731
                           else beam_search(model, s, n, beam=beam, nbest=beam - 1))
    together = search(src, lengths)
    assert len({len(hyps[0].tokens) for hyps in together}) > 1  # they finish at different steps
    for b in range(6):
        n = int(lengths[b])
        alone = search(src[b:b + 1, :n], lengths[b:b + 1])[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[b]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[b]], abs=1e-5)
        for a, t in zip(alone, together[b]):
            assert torch.allclose(a.attention, t.attention, atol=1e-5)


def exhaustive_best(model, src, length, max_len, alpha, vocab=13):
    """Best normalised score over every output up to max_len tokens (tiny vocab only)."""
    best = (float("-inf"), None)
    frontier = [([], 0.0)]
    for _ in range(max_len + 1):
        nxt = []
        for tokens, _ in frontier:
            score, _ = forced_score(model, src, length, tokens, alpha)
            best = max(best, (score, tokens), key=lambda x: x[0])
            if len(tokens) < max_len:
                nxt += [(tokens + [w], 0.0) for w in range(4, vocab)]
        frontier = nxt
    return best


def test_large_beam_finds_the_exact_best_under_a_length_penalty():
    """With the beam as wide as the search space, stopping early must not lose the optimum."""
    model = random_model("general", vocab=6, seed=5)  # 2 real words: 4, 5
    src = torch.tensor([[4, 5, 4]])
    lengths = torch.tensor([3])
    # max output = 3*0.5 + 4 = 5 tokens; 2^5 = 32 paths per level, beam 40 keeps them all
    for alpha in (0.0, 1.0, 2.0):
        hyp = beam_search(model, src, lengths, beam=40, nbest=1, alpha=alpha, max_ratio=0.5)[0][0]
        score, tokens = exhaustive_best(model, src, 3, 5, alpha, vocab=6)
        assert hyp.score == pytest.approx(score, abs=1e-5)
        assert hyp.tokens == tokens


def test_outputs_respect_the_max_length_ratio():
    model = random_model("general", seed=2)
    src, lengths = random_batch(batch=4)
    for h, n in zip(greedy_search(model, src, lengths, max_ratio=0.5), lengths.tolist()):
        assert len(h.tokens) <= int(n * 0.5) + 4


def test_nbest_cannot_exceed_beam():
    model = random_model()
    src, lengths = random_batch()
    with pytest.raises(ValueError):
        beam_search(model, src, lengths, beam=2, nbest=3)
