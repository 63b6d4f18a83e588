"""The attentional decoder (Luong et al. 2015, with input feeding).

At step t, with y_{t-1} the previous word and h̃_{t-1} the previous attentional
state (input feeding)::

    h_t   = RNN([emb(y_{t-1}); h̃_{t-1}], h_{t-1})
    c_t   = Σ_s a_t(s) h̄_s               (attention over all encoder states)
    h̃_t   = tanh(W_c [c_t; h_t])
    p(y_t) = softmax(W_o h̃_t)

With ``attention: none`` c_t is the encoder's final state at every step —
the same code path, so the two models differ only in what the decoder sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from regard.data.tokenizer import PAD
from regard.model.attention import build_attention
from regard.model.encoder import EncoderOutput

CELL_CLASSES = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}


@dataclass
class DecoderState:
    """Recurrent state between steps.

    hidden: per layer (B, H); cell: per layer (B, H) for LSTM, else None
    feed: (B, H) previous attentional state h̃_{t-1}
    keys: attention keys precomputed once per sentence: (B', S, ·), one row per sentence
        (B = B' × beam in beam search)
    """

    hidden: list[torch.Tensor]
    cell: list[torch.Tensor] | None
    feed: torch.Tensor
    keys: torch.Tensor

    def index_select(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> DecoderState:
        """Pick ``rows`` of the per-row tensors. The attention keys belong to sentences, not
        rows: they are picked by ``sentences``, or kept as they are when None (beam search
        reordering hypotheses within their sentences)."""
        pick = lambda ts: [t.index_select(0, rows) for t in ts]  # noqa: E731
        keys = self.keys if sentences is None else self.keys.index_select(0, sentences)
        return DecoderState(pick(self.hidden), pick(self.cell) if self.cell is not None else None,
                            self.feed.index_select(0, rows), keys)


class Decoder(nn.Module):
    """RNN decoder with attention, input feeding and an encoder→decoder bridge."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, memory_size: int,
                 layers: int = 1, rnn: str = "gru", attention: str = "concat",
                 input_feeding: bool = True, dropout: float = 0.0, tied_embeddings: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.input_feeding = input_feeding
        self.hidden_size = hidden_size
        first_input = embedding_size + (hidden_size if input_feeding else 0)
        cell = CELL_CLASSES[rnn]
        self.cells = nn.ModuleList(
            [cell(first_input if i == 0 else hidden_size, hidden_size) for i in range(layers)])
        self.is_lstm = rnn == "lstm"
        self.bridge = nn.Linear(memory_size, hidden_size * layers)
        self.attention = build_attention(attention, hidden_size, memory_size)
        self.combine = nn.Linear(memory_size + hidden_size, hidden_size, bias=False)  # W_c
        self.output = nn.Linear(hidden_size, vocab_size)  # W_o
        if tied_embeddings:
            self.output.weight = self.embed.weight
        self.dropout = nn.Dropout(dropout)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        """Bridge: h_0 of every layer = tanh(W_b · final encoder state)."""
        B = enc.final.shape[0]
        hidden = list(torch.tanh(self.bridge(enc.final)).view(B, len(self.cells), -1).unbind(1))
        cell = [torch.zeros_like(h) for h in hidden] if self.is_lstm else None
        feed = enc.final.new_zeros(B, self.hidden_size)
        return DecoderState(hidden, cell, feed, self.attention.prepare(enc.memory, enc.final))

    def step(self, embedded: torch.Tensor, state: DecoderState,
             enc: EncoderOutput) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step. embedded (B, E) → h̃_t (B, H), new state, attention weights (B, S) or None."""
        x = torch.cat([embedded, state.feed], dim=-1) if self.input_feeding else embedded
        hidden, cell = [], []
        for i, rnn_cell in enumerate(self.cells):
            if self.is_lstm:
                h, c = rnn_cell(x, (state.hidden[i], state.cell[i]))
                cell.append(c)
            else:
                h = rnn_cell(x, state.hidden[i])
            hidden.append(h)
            x = self.dropout(h) if i + 1 < len(self.cells) else h
        context, weights = self.attention(x, state.keys, enc.memory, enc.mask)
        attentional = self.dropout(torch.tanh(self.combine(torch.cat([context, x], dim=-1))))
        new_state = DecoderState(hidden, cell if self.is_lstm else None, attentional, state.keys)
        return attentional, new_state, weights

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing. tgt_in (B, T) → h̃ (B, T, H), attention (B, T, S) or None."""
        embedded = self.dropout(self.embed(tgt_in))  # (B, T, E)
        state = self.init_state(enc)
        outputs, weights = [], []
        for t in range(tgt_in.shape[1]):
            out, state, w = self.step(embedded[:, t], state, enc)
            outputs.append(out)
            weights.append(w)
        attention = torch.stack(weights, dim=1) if weights[0] is not None else None
        return torch.stack(outputs, dim=1), attention

    def logits(self, attentional: torch.Tensor) -> torch.Tensor:
        """h̃ (…, H) → unnormalised scores over the vocabulary (…, V)."""
        return self.output(attentional)
