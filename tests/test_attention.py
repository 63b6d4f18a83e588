"""Attention: weights form a distribution over real tokens, each scorer matches its formula."""

import pytest
import torch

from regard.model.attention import ConcatAttention, DotAttention, GeneralAttention, NoAttention, build_attention

B, S, D, H = 2, 5, 6, 6


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(B, S, D, generator=g)
    query = torch.randn(B, H, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return query, memory, mask


@pytest.mark.parametrize("name", ["dot", "general", "concat"])
def test_weights_sum_to_one_and_padding_gets_exactly_zero(name):
    torch.manual_seed(0)
    attention = build_attention(name, H, D)
    query, memory, mask = inputs()
    context, weights = attention(query, attention.prepare(memory, memory[:, -1]), memory, mask)
    assert weights.shape == (B, S) and context.shape == (B, D)
    assert torch.allclose(weights.sum(-1), torch.ones(B))
    assert torch.all(weights[1, 3:] == 0.0)
    assert torch.all(weights[1, :3] > 0.0)
    # the context is the weighted sum of encoder states
    assert torch.allclose(context, torch.einsum("bs,bsd->bd", weights, memory), atol=1e-6)


def softmax_masked(scores, mask):
    """Hand-written softmax over real positions (no torch.softmax)."""
    out = torch.zeros_like(scores)
    for b in range(scores.shape[0]):
        real = [s for s in range(scores.shape[1]) if mask[b, s]]
        exps = [float(torch.exp(scores[b, s])) for s in real]
        for s, e in zip(real, exps):
            out[b, s] = e / sum(exps)
    return out


def hand_scores(fn):
    query, memory, mask = inputs()
    return torch.tensor([[fn(query[b], memory[b, s]) for s in range(S)] for b in range(B)]), mask


def check(attention, fn):
    query, memory, mask = inputs()
    scores, _ = hand_scores(fn)
    _, weights = attention(query, attention.prepare(memory, memory[:, -1]), memory, mask)
    assert torch.allclose(weights, softmax_masked(scores, mask), atol=1e-5)


def test_dot_scorer_is_the_inner_product():
    check(DotAttention(), lambda h, hs: float(h @ hs))


def test_general_scorer_is_bilinear():
    torch.manual_seed(1)
    attention = GeneralAttention(H, D)
    W = attention.W.weight.detach()  # (H, D)
    check(attention, lambda h, hs: float(h @ (W @ hs)))


def test_concat_scorer_is_bahdanau_mlp():
    torch.manual_seed(2)
    attention = ConcatAttention(H, D)
    Wq, bq = attention.W_q.weight.detach(), attention.W_q.bias.detach()
    Wk, v = attention.W_k.weight.detach(), attention.v.weight.detach()[0]
    W = torch.cat([Wq, Wk], dim=1)  # W [h_t; h̄_s] form
    check(attention, lambda h, hs: float(v @ torch.tanh(W @ torch.cat([h, hs]) + bq)))


def test_concat_hidden_layer_has_the_decoder_state_size():
    attention = ConcatAttention(query_size=5, memory_size=7)
    assert attention.W_q.weight.shape == (5, 5) and attention.W_k.weight.shape == (5, 7)
    assert attention.v.weight.shape == (1, 5)


def test_none_gives_the_final_state_and_no_weights():
    query, memory, mask = inputs()
    final = torch.randn(B, D)
    attention = NoAttention()
    context, weights = attention(query, attention.prepare(memory, final), memory, mask)
    assert weights is None and torch.equal(context, final)


def test_keys_are_projected_once_per_sentence_not_per_step(monkeypatch):
    from tests.conftest import random_batch, random_model
    from regard.data.batching import Batch
    model = random_model("general")
    calls = []
    original = model.decoder.attention.W.forward
    monkeypatch.setattr(model.decoder.attention.W, "forward", lambda x: calls.append(x.shape) or original(x))
    src, lengths = random_batch()
    tgt = torch.randint(4, 13, (3, 6))
    model(Batch(src, lengths, tgt, tgt))
    assert len(calls) == 1  # one projection of all encoder states, for 6 decoder steps


def test_dot_needs_equal_sizes():
    with pytest.raises(ValueError):
        build_attention("dot", 4, 6)
