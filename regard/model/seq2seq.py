"""The RNN encoder–decoder: building it from config, teacher forcing, and its search state."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from regard.config import ModelConfig
from regard.data.batching import Batch
from regard.data.tokenizer import PAD
from regard.model.base import EncoderDecoder
from regard.model.decoder import Decoder, DecoderState
from regard.model.encoder import Encoder, EncoderOutput


@dataclass
class RNNState:
    """The decoder state (per row; attention keys per sentence) and the encoder output (per
    sentence) between search steps; ``attention``: what steps return (layer, heads or none)."""

    dec: DecoderState
    enc: EncoderOutput
    attention: str = "layer"

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> RNNState:
        enc = self.enc if sentences is None else self.enc.index_select(sentences)
        return RNNState(self.dec.index_select(rows, sentences), enc, self.attention)


class Seq2Seq(EncoderDecoder):
    """Encoder + attentional decoder (``model.arch: rnn``)."""

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
    def output(self) -> nn.Linear:
        return self.decoder.output

    @property
    def has_attention(self) -> bool:
        return self.cfg.attention != "none"

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return self.encoder(src, lengths)

    def features(self, batch: Batch, attention: str = "layer") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attentional states h̃ (B, T, H) and attention (B, T, S), as (B, T, 1, 1, S) for ``heads``
        (one layer of one head)."""
        attentional, weights = self.decoder(batch.tgt_in, self.encode(batch.src, batch.src_lengths))
        return attentional, shaped(weights, attention)

    def start(self, src: torch.Tensor, lengths: torch.Tensor, attention: str = "layer") -> RNNState:
        enc = self.encode(src, lengths)
        return RNNState(self.decoder.init_state(enc), enc, attention)

    def step(self, state: RNNState, prev: torch.Tensor,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, RNNState]:
        out, dec, weights = self.decoder.step(self.decoder.embed(prev), state.dec, state.enc)
        logits = self.decoder.logits(out if rows is None else out.index_select(0, rows)).float()
        return logits, shaped(weights, state.attention), RNNState(dec, state.enc, state.attention)


def shaped(weights: torch.Tensor | None, attention: str) -> torch.Tensor | None:
    """The RNN's attention (…, S) as asked: itself (layer), (…, 1, 1, S) (heads), or None."""
    if weights is None or attention == "none":
        return None
    return weights.unsqueeze(-2).unsqueeze(-2) if attention == "heads" else weights
