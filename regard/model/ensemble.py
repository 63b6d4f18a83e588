"""An ensemble: several models decoding together, through the same search as one model.

At every step each member scores the next word from its own state; the ensemble's logits are
the mean of the members' log-probabilities, which search's softmax turns into their
normalised geometric mean (log-linear interpolation, with equal weights). A hypothesis's
score is then the sum of these normalised log-probabilities. The attention is the first
member's. The members must share the target vocabulary (:class:`regard.translator.Translator`
checks the subword models).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regard.model.base import EncoderDecoder, SearchState


@dataclass
class EnsembleState:
    """One state per member."""

    members: list[SearchState]

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> EnsembleState:
        return EnsembleState([state.reorder(rows, sentences) for state in self.members])


class Ensemble(EncoderDecoder):
    """Models decoding together; what they say of the attention is the first model's."""

    def __init__(self, models: list[EncoderDecoder]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        self.members = torch.nn.ModuleList(models)

    @property
    def has_attention(self) -> bool:
        return self.members[0].has_attention

    @property
    def attention_layer(self) -> int:
        return self.members[0].attention_layer

    def start(self, src: torch.Tensor, lengths: torch.Tensor, attention: str = "layer") -> EnsembleState:
        first, *rest = self.members
        return EnsembleState([first.start(src, lengths, attention), *(m.start(src, lengths, "none") for m in rest)])

    def step(self, state: EnsembleState, prev: torch.Tensor,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, EnsembleState]:
        """Logits (N, V) or (n, V): the mean of the members' log-probabilities; the first member's attention."""
        total, attention, states = None, None, []
        for i, (model, member) in enumerate(zip(self.members, state.members)):
            logits, weights, new = model.step(member, prev, rows)
            log_probs = torch.log_softmax(logits, dim=-1)
            total = log_probs if total is None else total + log_probs
            attention = weights if i == 0 else attention
            states.append(new)
        return total / len(self.members), attention, EnsembleState(states)

    def count_parameters(self) -> int:
        return sum(m.count_parameters() for m in self.members)
