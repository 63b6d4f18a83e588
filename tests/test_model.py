"""Model shapes and variants: every configuration builds, runs, and learns through one code path."""

import pytest
import torch

from regard.data.batching import Batch
from tests.conftest import random_batch, random_model


def batch():
    src, lengths = random_batch()
    tgt = torch.randint(4, 13, (3, 4))
    tgt_out = tgt.clone()
    tgt_out[1, 2:] = 0  # padding in the target
    return Batch(src, lengths, tgt, tgt_out)


@pytest.mark.parametrize("variant", [
    {"attention": "general"}, {"attention": "dot", "encoder_hidden": 6, "decoder_hidden": 12},
    {"attention": "concat"}, {"attention": "none"}, {"rnn": "lstm"}, {"rnn": "lstm", "decoder_layers": 2},
    {"encoder_layers": 2, "bidirectional": False}, {"input_feeding": False},
    {"tied_embeddings": True, "embedding_size": 12},
])
def test_variants_give_shaped_outputs_and_gradients(variant):
    model = random_model(**variant).train()
    b = batch()
    logits, attention = model(b)
    assert logits.shape == (3, 4, 13)
    if variant.get("attention") == "none":
        assert attention is None
    else:
        assert attention.shape == (3, 4, 7)
        assert torch.allclose(attention.sum(-1), torch.ones(3, 4))
        assert torch.all(attention[1, :, 3:] == 0)  # sentence 1 has 3 real source tokens
    loss = model.loss(b, label_smoothing=0.1)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_padding_does_not_change_a_sentence_encoding():
    model = random_model()
    src, lengths = random_batch()
    alone = model.encode(src[1:2, :3], lengths[1:2])
    together = model.encode(src, lengths)
    assert torch.allclose(alone.memory[0], together.memory[1, :3], atol=1e-6)
    assert torch.allclose(alone.final[0], together.final[1], atol=1e-6)
    assert torch.all(together.memory[1, 3:] == 0)


def test_tied_embeddings_share_one_matrix():
    model = random_model(tied_embeddings=True, embedding_size=12)
    assert model.decoder.output.weight is model.decoder.embed.weight


def test_init_is_uniform_within_range_and_seeded():
    a, b = random_model(seed=4), random_model(seed=4)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q)
        assert float(p.detach().abs().max()) <= 0.5


@pytest.mark.parametrize("variant", [{}, {"tied_embeddings": True, "embedding_size": 12}])
def test_chunked_backward_loss_equals_the_plain_loss_backward(variant):
    """Training's backward (output layer and loss in chunks, padding rows dropped, the loss's
    gradient written by hand) must give :meth:`loss`'s value and every parameter's gradient."""
    model, b = random_model(**variant), batch()
    (model.loss(b, label_smoothing=0.1) * 0.3).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    value = float(model.loss(b, label_smoothing=0.1).detach()) * 0.3
    model.zero_grad()
    got = model.backward_loss(b, label_smoothing=0.1, scale=0.3, chunk_rows=4)  # 10 real tokens: 3 chunks
    assert got == pytest.approx(value, rel=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[name], atol=1e-7, rtol=1e-5), name


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_smoothed_cross_entropy_matches_torch_in_value_and_gradient(smoothing):
    from regard.model.loss import smoothed_cross_entropy
    torch.manual_seed(0)
    logits = torch.randn(6, 11, dtype=torch.float64, requires_grad=True)
    gold = torch.randint(0, 11, (6,))
    ours = smoothed_cross_entropy(logits, gold, smoothing)
    theirs = torch.nn.functional.cross_entropy(logits, gold, reduction="sum", label_smoothing=smoothing)
    assert torch.allclose(ours, theirs)
    assert torch.allclose(torch.autograd.grad(ours * 2, logits)[0], torch.autograd.grad(theirs * 2, logits)[0])
    low = smoothed_cross_entropy(logits.detach().bfloat16().requires_grad_(), gold, smoothing)
    assert low.dtype == torch.float32  # the softmax of bf16 logits runs in fp32
