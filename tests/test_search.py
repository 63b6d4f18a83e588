"""Greedy and beam search on tiny seeded models: golden equivalences and exact scores, for
both architectures (one search implementation behind the decoder-state interface)."""

import pytest
import torch

from regard.data.batching import Batch
from regard.data.tokenizer import BOS, EOS
from regard.search.beam import advance, beam_search
from regard.search.common import length_penalty, max_lengths, row_candidates, top_k
from regard.search.greedy import greedy_search
from tests.conftest import random_arch, random_batch, random_model, random_transformer

ARCHS = ["rnn", "transformer"]


@torch.no_grad()
def forced_score(model, src, length, tokens, alpha):
    """Log-probability of ``tokens + </s>`` under teacher forcing, divided by the length penalty."""
    ys = tokens + [EOS]
    tgt_in = torch.tensor([[BOS] + ys[:-1]])
    logits, attention = model(Batch(src, torch.tensor([length]), tgt_in, torch.tensor([ys])))
    logp = torch.log_softmax(logits.float(), -1)[0, torch.arange(len(ys)), torch.tensor(ys)]
    return float(logp.sum()) / length_penalty(len(ys), alpha), attention


@pytest.mark.parametrize("attention", ["general", "concat", "none", "transformer"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("stopping", ["exact", "first"])
def test_beam_size_one_equals_greedy(attention, alpha, stopping):
    model = random_transformer(seed=7) if attention == "transformer" else random_model(attention, seed=7)
    src, lengths = random_batch(batch=5)
    greedy = greedy_search(model, src, lengths, max_ratio=2.0, alpha=alpha)
    beam = beam_search(model, src, lengths, beam=1, nbest=1, alpha=alpha, max_ratio=2.0, stopping=stopping)
    for g, (b,) in zip(greedy, beam):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-5)
        if attention != "none":
            assert torch.allclose(g.attention, b.attention)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("stopping", ["exact", "first"])
def test_scores_and_attention_match_teacher_forcing(arch, alpha, stopping):
    model = random_arch(arch, seed=3)
    src, lengths = random_batch(batch=4)
    for b, hyps in enumerate(beam_search(model, src, lengths, beam=4, nbest=3, alpha=alpha, stopping=stopping)):
        n = int(lengths[b])
        assert len(hyps) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            score, attention = forced_score(model, src[b:b + 1, :n], n, h.tokens, alpha)
            assert h.score == pytest.approx(score, abs=1e-4)
            assert h.attention.shape == (len(h.tokens) + 1, n)
            assert torch.allclose(h.attention, attention[0], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("beam,stopping", [(1, "exact"), (3, "exact"), (3, "first")])
def test_batched_search_equals_one_sentence_at_a_time(arch, beam, stopping):
    """Sentences leave the batch as they finish, and padding fills the shorter sources; neither
    may change anyone's result."""
    model = random_model("concat", seed=11) if arch == "rnn" else random_transformer(seed=11)
    src, lengths = random_batch(batch=6)
    search = lambda s, n: ([[h] for h in greedy_search(model, s, n)] if beam == 1  # noqa: E731
                           else beam_search(model, s, n, beam=beam, nbest=beam - 1, stopping=stopping))
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


@pytest.mark.parametrize("arch", ARCHS)
def test_large_beam_finds_the_exact_best_under_a_length_penalty(arch):
    """With the beam as wide as the search space, stopping early must not lose the optimum."""
    model = random_arch(arch, vocab=6, seed=5)  # 2 real words: 4, 5
    src = torch.tensor([[4, 5, 4]])
    lengths = torch.tensor([3])
    # max output = 3*0.5 + 4 = 5 tokens; 2^5 = 32 paths per level, beam 40 keeps them all
    for alpha in (0.0, 1.0, 2.0):
        hyp = beam_search(model, src, lengths, beam=40, nbest=1, alpha=alpha, max_ratio=0.5)[0][0]
        score, tokens = exhaustive_best(model, src, 3, 5, alpha, vocab=6)
        assert hyp.score == pytest.approx(score, abs=1e-5)
        assert hyp.tokens == tokens


@torch.no_grad()
def naive_first_rule_search(model, src, length, beam, alpha, max_ratio=2.0):
    """One sentence, one hypothesis at a time, stopping at the first step whose best candidate
    is </s> (or when the exact rule's bound says so). Returns (score, tokens) of the best
    finished hypothesis and the steps taken."""
    lengths = torch.tensor([length])
    limit = int(max_lengths(lengths, max_ratio)[0])
    live, finished = [([], 0.0, model.start(src, lengths))], []
    for t in range(limit + 1):
        candidates = []
        for tokens, score, state in live:
            prev = torch.tensor([tokens[-1] if tokens else BOS])
            logits, _, new_state = model.step(state, prev)
            log_probs = torch.log_softmax(logits[0], dim=-1)
            if t >= limit:  # at the length limit only </s> may follow
                log_probs = torch.full_like(log_probs, float("-inf")).index_fill(0, torch.tensor([EOS]), log_probs[EOS])
            candidates += [(score + float(lp), tokens + [w], new_state) for w, lp in enumerate(log_probs.tolist())]
        top = sorted(candidates, key=lambda c: -c[0])[:beam]
        finished += [(score / length_penalty(len(tokens), alpha), tokens[:-1]) for score, tokens, _ in top
                     if tokens[-1] == EOS]
        live = [(tokens, score, state) for score, tokens, state in top if tokens[-1] != EOS]
        if top[0][1][-1] == EOS or not live:
            return max(finished), t + 1
        if finished and max(finished)[0] >= max(score for _, score, _ in live) / length_penalty(limit + 1, alpha):
            return max(finished), t + 1  # the exact rule's proof that nothing better can come


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seed", [3, 9])
def test_first_stopping_equals_a_naive_search_with_that_rule_and_takes_fewer_steps(monkeypatch, arch, seed):
    """'first' (OpenNMT-py's rule) ends a sentence at the first step whose best candidate is
    </s>: the same answer after the same number of steps as a plain search with that rule."""
    import regard.search.beam as beam_module
    calls = []  # the rows (hypotheses) of each decoder step
    monkeypatch.setattr(beam_module, "advance", lambda *a: calls.append(len(a[1])) or advance(*a))
    model = random_arch(arch, seed=seed)
    with torch.no_grad():
        model.output.bias[EOS] += 1.0  # </s> often ranks high, as in a trained model
    src, lengths = random_batch(batch=6, seed=seed)
    for b in range(6):
        n = int(lengths[b])
        calls.clear()
        (hyp,), = beam_search(model, src[b:b + 1, :n], lengths[b:b + 1], beam=3, alpha=1.0, stopping="first")
        (score, tokens), steps = naive_first_rule_search(model, src[b:b + 1, :n], n, beam=3, alpha=1.0)
        assert (hyp.tokens, len(calls)) == (tokens, steps)
        assert hyp.score == pytest.approx(score, abs=1e-5)
    taken = {}
    for stopping in ("exact", "first"):
        calls.clear()
        beam_search(model, src, lengths, beam=3, alpha=1.0, stopping=stopping)
        taken[stopping] = sum(calls)
    assert taken["first"] < taken["exact"]  # the exact rule's bound is loose: it computes more rows
    with pytest.raises(ValueError, match="stopping"):
        beam_search(model, src, lengths, beam=3, stopping="soon")


@pytest.mark.parametrize("arch", ARCHS)
def test_the_output_layer_runs_only_on_live_hypotheses(monkeypatch, arch):
    """The first step has one row per sentence (not K copies of it), and a hypothesis that has
    just ended does not pay for the output layer in the next step."""
    import regard.search.beam as beam_module
    model = random_arch(arch, seed=3)
    with torch.no_grad():
        model.output.bias[EOS] += 1.0  # hypotheses end often, as in a trained model
    src, lengths = random_batch(batch=6, seed=3)
    output, given, rows = model.output.forward, [], []
    monkeypatch.setattr(model.output, "forward", lambda h: given.append(len(h)) or output(h))
    monkeypatch.setattr(beam_module, "advance",
                        lambda *a: rows.append((len(a[1]), int((a[3] > float("-inf")).sum()))) or advance(*a))
    beam_search(model, src, lengths, beam=3)
    assert rows[0] == (6, 6)
    assert given == [live for _, live in rows]
    assert any(live < n for n, live in rows)  # some steps had ended hypotheses, and skipped them


@pytest.mark.parametrize("V,k", [(6000, 5), (6000, 1), (1000, 3), (130, 5), (7, 5)])
def test_block_top_k_equals_topk(V, k):
    x = torch.randn(40, V, generator=torch.Generator().manual_seed(V + k))
    x[3] = x[3].round()  # many ties
    x[5, -1] = 100.0  # the maximum in the partial last block
    best, cols = top_k(x, k)
    expected = x.topk(min(k, V), dim=1).values
    assert torch.equal(best, expected)
    assert torch.equal(x.gather(1, cols), best)  # the columns hold those values
    assert (cols.sort(dim=1).values.diff(dim=1) > 0).all()  # no column twice


def test_row_candidates_are_the_top_log_probs_and_only_eos_at_the_limit():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(0)) * 3
    must_end = torch.tensor([False, True, False, True])
    log_probs, words = row_candidates(logits, 3, must_end)
    full = torch.log_softmax(logits, dim=-1)
    expected, expected_words = full.topk(3, dim=1)
    for row in (0, 2):
        assert torch.allclose(log_probs[row], expected[row], atol=1e-6)
        assert words[row].tolist() == expected_words[row].tolist()
    for row in (1, 3):
        assert words[row].tolist() == [EOS] * 3
        assert log_probs[row, 0].item() == pytest.approx(full[row, EOS].item(), abs=1e-6)
        assert log_probs[row, 1:].eq(float("-inf")).all()
    assert row_candidates(logits, 20, must_end)[0].shape == (4, 9)  # k is capped at the vocabulary


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("beam", [1, 3])
def test_search_on_cuda_finds_what_it_finds_on_the_cpu(beam):
    model = random_model("concat", seed=11)
    src, lengths = random_batch(batch=6)
    search = lambda m, s, n: ([[h] for h in greedy_search(m, s, n)] if beam == 1  # noqa: E731
                              else beam_search(m, s, n, beam=beam, nbest=2))
    on_cpu = search(model, src, lengths)
    on_cuda = search(model.to("cuda"), src.cuda(), lengths.cuda())
    for cpu_hyps, cuda_hyps in zip(on_cpu, on_cuda):
        assert [h.tokens for h in cuda_hyps] == [h.tokens for h in cpu_hyps]
        assert [h.score for h in cuda_hyps] == pytest.approx([h.score for h in cpu_hyps], abs=1e-4)
        for c, g in zip(cpu_hyps, cuda_hyps):
            assert g.attention.device.type == "cpu" and torch.allclose(g.attention, c.attention, atol=1e-4)
