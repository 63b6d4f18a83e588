"""Model shapes and variants: every configuration builds, runs, and learns through one code path."""

import pytest
import torch

from regard.data.batching import Batch
from tests.conftest import random_batch, random_model, random_transformer


def batch():
    src, lengths = random_batch()
    tgt = torch.randint(4, 13, (3, 4))
    tgt_out = tgt.clone()
    tgt_out[1, 2:] = 0  # padding in the target
    return Batch(src, lengths, tgt, tgt_out)


@pytest.mark.parametrize("variant", [{}, {"tied_embeddings": True, "embedding_size": 12},
                                     {"arch": "transformer"},
                                     {"arch": "transformer", "tied_embeddings": True, "shared_embeddings": True}])
def test_training_loss_equals_the_plain_loss_in_value_and_gradient(variant):
    """Training's loss (output layer and loss in chunks, padding rows dropped, the loss's
    gradient written by hand, one backward) must give :meth:`loss`'s value and every
    parameter's gradient, for both architectures."""
    model, b = (random_transformer(**variant) if variant.get("arch") else random_model(**variant)), batch()
    (model.loss(b, label_smoothing=0.1) * 0.3).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    value = float(model.loss(b, label_smoothing=0.1).detach()) * 0.3
    model.zero_grad()
    got = model.training_loss(b, label_smoothing=0.1, scale=0.3, chunk_rows=4)  # 10 real tokens: 3 chunks
    (got * 2).backward()  # the incoming gradient is honoured
    assert got.item() == pytest.approx(value, rel=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, 2 * expected[name], atol=1e-7, rtol=1e-5), name


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_output_layer_loss_matches_torch_in_value_and_gradient(smoothing):
    from regard.model.loss import OutputLayerLoss
    torch.manual_seed(0)
    states = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, requires_grad=True)
    gold = torch.randint(0, 11, (7,))
    inputs = (states, weight, bias)
    ours = OutputLayerLoss.apply(states, weight, bias, gold, smoothing, 0.5, 3, 8.0)  # grad scale 8: divided out
    theirs = 0.5 * torch.nn.functional.cross_entropy(torch.nn.functional.linear(states, weight, bias), gold,
                                                      reduction="sum", label_smoothing=smoothing)
    assert torch.allclose(ours, theirs)
    for a, b in zip(torch.autograd.grad(ours * 2, inputs), torch.autograd.grad(theirs * 2, inputs)):
        assert torch.allclose(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = OutputLayerLoss.apply(states.float(), weight.float(), bias.float(), gold, smoothing, 1.0, 3)
    assert low.dtype == torch.float32  # bf16 products, the softmax in fp32
    assert low.item() == pytest.approx(theirs.item() * 2, rel=2e-2)
