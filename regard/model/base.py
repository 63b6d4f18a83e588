"""What every architecture offers: teacher forcing, the training loss, and the decoder-state
interface that search uses.

Search (:mod:`regard.search`) knows nothing of RNNs or Transformers. It calls::

    state = model.start(src, lengths)               # encode; one row per sentence
    logits, attention, state = model.step(state, prev)
    state = state.reorder(rows, sentences)          # beam search: follow the hypotheses

Shapes: B sentences, S source length, N decoder rows (B × G: G = 1 in greedy search and at
beam search's first step, the beam size after), V target vocabulary, L decoder layers, H
attention heads. ``attention`` chooses the attention returned: ``layer`` (the default) the
(N, S) or (B, T, S) weights of the layer shown (for a Transformer, the average of its heads),
``heads`` every layer and head, (N, L, H, S) or (B, T, L, H, S), and ``none`` nothing (a
Transformer then computes no weights at all). A state keeps per-row tensors (what each hypothesis has decoded: an RNN's
hidden state, a Transformer's cached keys and values) and per-sentence tensors (the encoder's
output, read by all G rows of its sentence).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from regard.alignment.guide import guided_loss
from regard.data.batching import Batch
from regard.data.tokenizer import PAD
from regard.model.loss import OutputLayerLoss


class SearchState(Protocol):
    """A decoder's state between search steps."""

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> SearchState:
        """The state of rows ``rows`` (n,) (indices of the current rows, in their new order).
        Per-sentence tensors are picked by ``sentences`` (B',), or kept when None (beam search
        reordering hypotheses within their sentences)."""
        ...


class EncoderDecoder(nn.Module):
    """Base class of the architectures (:data:`regard.model.archs.ARCHS`).

    A subclass defines :meth:`features` (teacher forcing up to the output layer),
    :attr:`output` (the output layer, an ``nn.Linear``), :meth:`start` and :meth:`step`.
    """

    output: nn.Linear

    @property
    def has_attention(self) -> bool:
        return True

    @property
    def attention_layer(self) -> int:
        """The decoder layer (from 0) whose attention, averaged over its heads, is the one shown."""
        return 0

    def features(self, batch: Batch, attention: str = "layer") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: states before the output layer (B, T, D) and ``attention`` (B, T, S),
        (B, T, L, H, S) or None."""
        raise NotImplementedError

    def start(self, src: torch.Tensor, lengths: torch.Tensor, attention: str = "layer") -> SearchState:
        """Encode src (B, S) of lengths (B,): the state before the first step, whose steps return
        ``attention``."""
        raise NotImplementedError

    def step(self, state: SearchState, prev: torch.Tensor,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, SearchState]:
        """One decoder step from the previous tokens prev (N,) → fp32 logits (N, V), or
        (n, V) for ``rows`` (n,) only (the output layer is half of a step), the attention the
        state was started for, (N, S), (N, L, H, S) or None, and the state after the step."""
        raise NotImplementedError

    def forward(self, batch: Batch, attention: str = "layer") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (B, T, V) and ``attention`` (as :meth:`features`)."""
        states, weights = self.features(batch, attention)
        return self.output(states), weights

    def loss(self, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy per real target token (with optional label smoothing)."""
        logits, _ = self.forward(batch, "none")
        return F.cross_entropy(logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=PAD,
                               label_smoothing=label_smoothing)

    def training_loss(self, batch: Batch, label_smoothing: float = 0.0, scale: float = 1.0,
                      chunk_rows: int = 512, grad_scale: float = 1.0) -> torch.Tensor:
        """``scale`` × :meth:`loss`, for training: one ``backward()`` gives the same gradients.

        The output layer and the loss run ``chunk_rows`` real target tokens at a time
        inside one autograd node (:class:`~regard.model.loss.OutputLayerLoss`), with their
        gradient written out by hand, and padding rows are dropped before the output layer.
        The (tokens, V) logits, log-probabilities and their gradients then never exist
        whole, and each chunk's buffers are small enough for the allocator to reuse rather
        than fetch fresh, zeroed pages from the kernel — on CPU that page-faulting costs
        more than the softmax itself. Runs under the caller's autocast, if any.
        ``grad_scale``: see :class:`~regard.model.loss.OutputLayerLoss`.
        """
        states, _ = self.features(batch, "none")
        return self.output_loss(states, batch, label_smoothing, scale, chunk_rows, grad_scale)

    def guided_training_loss(self, batch: Batch, label_smoothing: float = 0.0, scale: float = 1.0,
                             chunk_rows: int = 512, grad_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`training_loss` and ``scale`` × :func:`~regard.alignment.guide.guided_loss` per real
        target token of the attention shown (for a Transformer, :attr:`attention_layer`'s heads
        averaged: the attention that plots, the explorer and ``regard align`` read) against
        ``batch.guide`` (B, T, S), from one teacher-forced pass. Backward through their weighted sum."""
        states, attention = self.features(batch, "layer")
        loss = self.output_loss(states, batch, label_smoothing, scale, chunk_rows, grad_scale)
        return loss, scale * guided_loss(attention, batch.guide, tokens=batch.n_tokens)

    def output_loss(self, states: torch.Tensor, batch: Batch, label_smoothing: float, scale: float,
                    chunk_rows: int, grad_scale: float) -> torch.Tensor:
        """The output layer and the loss of :meth:`training_loss` on the states (B, T, D)."""
        targets = batch.tgt_out.flatten()
        real = targets != PAD
        rows = states.flatten(0, 1)[real]  # (N, D), N real target tokens
        return OutputLayerLoss.apply(rows, self.output.weight, self.output.bias, targets[real], label_smoothing,
                                     scale / max(1, int(real.sum())), chunk_rows, grad_scale)

    def count_parameters(self) -> int:
        """Parameters, each shared tensor counted once."""
        return sum(p.numel() for p in self.parameters())
