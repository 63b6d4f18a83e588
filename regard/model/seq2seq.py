"""The encoder–decoder model: building it from config and the training loss."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from regard.config import ModelConfig
from regard.data.batching import Batch
from regard.data.tokenizer import PAD
from regard.model.decoder import Decoder
from regard.model.encoder import Encoder, EncoderOutput
from regard.model.loss import smoothed_cross_entropy


class Seq2Seq(nn.Module):
    """Encoder + attentional decoder."""

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(src_vocab, cfg.embedding_size, cfg.encoder_hidden, cfg.encoder_layers,
                               cfg.bidirectional, cfg.rnn, cfg.dropout)
        self.decoder = Decoder(tgt_vocab, cfg.embedding_size, cfg.decoder_hidden, self.encoder.output_size,
                               cfg.decoder_layers, cfg.rnn, cfg.attention, cfg.input_feeding,
                               cfg.dropout, cfg.tied_embeddings)
        if cfg.init_range > 0:
            for p in self.parameters():
                nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        with torch.no_grad():
            self.encoder.embed.weight[PAD].zero_()
            self.decoder.embed.weight[PAD].zero_()

    @property
    def has_attention(self) -> bool:
        return self.cfg.attention != "none"

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return self.encoder(src, lengths)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (B, T, V) and attention (B, T, S) or None."""
        enc = self.encode(batch.src, batch.src_lengths)
        attentional, attention = self.decoder(batch.tgt_in, enc)
        return self.decoder.logits(attentional), attention

    def loss(self, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy per real target token (with optional label smoothing)."""
        logits, _ = self.forward(batch)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=PAD,
                               label_smoothing=label_smoothing)

    def backward_loss(self, batch: Batch, label_smoothing: float = 0.0, scale: float = 1.0,
                      chunk_rows: int = 512,
                      autocast: Callable[[], ContextManager] = nullcontext) -> float:
        """Backward of ``scale`` × :meth:`loss`; returns that scaled loss.

        Same gradient as ``(loss(batch) * scale).backward()``, but the output layer and
        the loss run ``chunk_rows`` real target tokens at a time, each chunk's backward
        straight after its forward. The (tokens, V) logits, log-probabilities and their
        gradients then never exist whole, and each chunk's buffers are small enough for
        the allocator to reuse rather than fetch fresh, zeroed pages from the kernel —
        on CPU that page-faulting costs more than the softmax itself. The loss's gradient
        is written out by hand (:mod:`regard.model.loss`). Padding rows are dropped
        before the output layer. ``autocast`` wraps every forward computation.
        """
        with autocast():
            attentional, _ = self.decoder(batch.tgt_in, self.encode(batch.src, batch.src_lengths))
        targets = batch.tgt_out.flatten()
        real = targets != PAD
        states = attentional.flatten(0, 1)[real]  # (N, H), N real target tokens
        targets = targets[real]
        cut = states.detach().requires_grad_()
        weight = scale / targets.numel()
        total = 0.0
        for rows, gold in zip(cut.split(chunk_rows), targets.split(chunk_rows)):
            with autocast():
                logits = self.decoder.logits(rows)  # (≤ chunk_rows, V)
            loss = smoothed_cross_entropy(logits, gold, label_smoothing) * weight
            loss.backward()
            total += loss.item()
        states.backward(cut.grad)
        return total

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
