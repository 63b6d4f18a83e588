"""The encoder–decoder model: building it from config and the training loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regard.config import ModelConfig
from regard.data.batching import Batch
from regard.data.tokenizer import PAD
from regard.model.decoder import Decoder
from regard.model.encoder import Encoder, EncoderOutput
from regard.model.loss import OutputLayerLoss


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
        attentional, _ = self.decoder(batch.tgt_in, self.encode(batch.src, batch.src_lengths))
        targets = batch.tgt_out.flatten()
        real = targets != PAD
        states = attentional.flatten(0, 1)[real]  # (N, H), N real target tokens
        out = self.decoder.output
        return OutputLayerLoss.apply(states, out.weight, out.bias, targets[real], label_smoothing,
                                     scale / max(1, int(real.sum())), chunk_rows, grad_scale)

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
