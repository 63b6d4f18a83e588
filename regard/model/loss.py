"""Label-smoothed cross-entropy with its gradient written out by hand.

With ε the smoothing and V the vocabulary, each row's target distribution is
q = (1 − ε)·onehot(gold) + ε/V, its loss −Σ_v q_v log p_v, and the gradient with
respect to the logits is simply p − q. Autograd through ``F.cross_entropy`` gets
there in several passes over the (rows, V) tensor (the log-softmax backward, a
fill for the smoothing term, an add of the two gradients, a dtype cast); this
computes p − q in place in one, which halves the cost of the loss on CPU.

:class:`OutputLayerLoss` runs the output layer and this loss a chunk of rows at a
time, inside one autograd node.
"""

from __future__ import annotations

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matrix product of ``x`` in (``x``'s own outside autocast)."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class OutputLayerLoss(torch.autograd.Function):
    """Output layer + label-smoothed cross-entropy, a chunk of rows at a time, with the
    gradient computed in the forward pass.

    states (N, H), weight (V, H), bias (V,), gold (N,) → ``scale`` × the summed loss (scalar).
    The (N, V) logits never exist whole: each chunk's logits, softmax and p − q are made,
    used for the three gradients and dropped, so the buffers stay small enough to reuse.
    Doing the backward work in the forward keeps a training step to one ``backward()`` call,
    the contract DistributedDataParallel's gradient hooks rely on. ``grad_scale`` is the
    factor a gradient scaler (fp16) multiplies the loss by: the gradients are computed
    already scaled, so small ones do not underflow in fp16, and backward divides it out
    of the incoming gradient.
    """

    @staticmethod
    def forward(ctx, states, weight, bias, gold, smoothing: float, scale: float, chunk_rows: int,
                grad_scale: float = 1.0):
        dtype = compute_dtype(states)
        with torch.autocast(states.device.type, enabled=False):
            w, b = weight.to(dtype), bias.to(dtype)
            grads = torch.empty_like(states), torch.zeros_like(weight), torch.zeros_like(bias)
            total = states.new_zeros((), dtype=torch.promote_types(dtype, torch.float32))
            for start in range(0, len(gold), chunk_rows):
                rows = states[start:start + chunk_rows].to(dtype)
                p_minus_q, loss = _smoothed_ce_and_grad(torch.addmm(b, rows, w.t()), gold[start:start + chunk_rows],
                                                        smoothing)
                total += loss
                g = p_minus_q.mul_(scale * grad_scale).to(dtype)  # (n, V)
                grads[0][start:start + chunk_rows] = g @ w
                grads[1].add_(g.t() @ rows)
                grads[2].add_(g.sum(0))
        ctx.save_for_backward(*grads)
        ctx.grad_scale = grad_scale
        return total * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        factor = grad / ctx.grad_scale
        return *(g * factor.to(g.dtype) for g in ctx.saved_tensors), None, None, None, None, None


def _smoothed_ce_and_grad(logits: torch.Tensor, gold: torch.Tensor,
                          smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (n, V) → p − q (n, V) and the summed smoothed cross-entropy, both in at least fp32."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    V = logp.shape[1]
    loss = -(1 - smoothing) * logp.gather(1, gold.unsqueeze(1)).sum() - smoothing / V * logp.sum()
    p_minus_q = logp.exp_().sub_(smoothing / V)
    p_minus_q[torch.arange(len(gold), device=gold.device), gold] -= 1 - smoothing
    return p_minus_q, loss
