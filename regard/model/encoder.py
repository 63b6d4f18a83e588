"""The RNN encoder: embeds the source and returns *all* its hidden states."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from regard.data.tokenizer import PAD

RNN_CLASSES = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class EncoderOutput:
    """What the decoder receives.

    memory: (B, S, D) every hidden state (D = hidden × directions), 0 at padding
    mask: (B, S) True at real tokens
    final: (B, D) top layer's final state (both directions concatenated)
    """

    memory: torch.Tensor
    mask: torch.Tensor
    final: torch.Tensor

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows ``index`` of every tensor (used to expand for beam search)."""
        return EncoderOutput(self.memory.index_select(0, index), self.mask.index_select(0, index),
                             self.final.index_select(0, index))


class Encoder(nn.Module):
    """Embedding → (bi)directional GRU/LSTM over a packed batch."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, layers: int = 1,
                 bidirectional: bool = True, rnn: str = "gru", dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.rnn = RNN_CLASSES[rnn](embedding_size, hidden_size, num_layers=layers, batch_first=True,
                                    bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.layers = layers
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """src (B, S) ids, lengths (B,) → :class:`EncoderOutput`."""
        B, S = src.shape
        embedded = self.dropout(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=S)  # (B, S, D)
        h_n = final[0] if isinstance(final, tuple) else final  # (layers·dirs, B, H)
        top = h_n.view(self.layers, self.directions, B, -1)[-1]  # (dirs, B, H)
        final_state = torch.cat(list(top), dim=-1)  # (B, D)
        mask = src != PAD
        assert memory.shape == (B, S, self.output_size) and final_state.shape == (B, self.output_size)
        return EncoderOutput(self.dropout(memory), mask, final_state)
