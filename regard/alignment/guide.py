"""Guided alignment (Chen et al. 2016; Marian's ``--guided-alignment``): a training loss that
pulls the attention toward word links given for the training data (e.g. eflomal's).

The links join whitespace-separated words of a training pair, as the model's own text has
them; :func:`guide_matrix` spreads them over the subwords (training builds a batch's guides
with :func:`regard.data.guides.batch_guide`), and :func:`guided_loss` is the cross-entropy of
the attention against that guide, which training adds, × ``train.guided_alignment_weight``,
to its loss (:meth:`regard.model.base.EncoderDecoder.guided_training_loss`).
"""

from __future__ import annotations

import numpy as np
import torch

from regard.alignment.links import Link
from regard.data.guides import pair_guide


def guide_matrix(links: set[Link], src_word_of_piece: list[int], tgt_word_of_piece: list[int]) -> torch.Tensor:
    """The (T, S) guide of one pair: target subword t's row spreads 1 evenly over the source
    subwords of the words its word is linked to; rows of unlinked target words stay 0
    (:func:`regard.data.guides.pair_guide`, which training uses a batch at a time).

    ``*_word_of_piece``: the word of each subword (:meth:`regard.data.tokenizer.Tokenizer.words`).
    """
    return torch.from_numpy(pair_guide(np.array(sorted(links), dtype=np.int64).reshape(-1, 2),
                                       np.array(src_word_of_piece, dtype=np.int64),
                                       np.array(tgt_word_of_piece, dtype=np.int64)))


def guided_loss(attention: torch.Tensor, guide: torch.Tensor, tokens: int | None = None) -> torch.Tensor:
    """−Σ_s guide · log attention, summed over the guided target positions and divided by their
    number, or by ``tokens`` when given (training: the batch's target tokens, which the
    translation loss is averaged over too; a batch split between processes then has the same
    loss as whole).

    attention (B, T, S), rows summing to 1; guide (B, T, S), each row summing to 1 or all 0
    (a target position without links, or padding, adds nothing). Returns a scalar.
    """
    if attention.shape != guide.shape:
        raise ValueError(f"attention {tuple(attention.shape)} and guide {tuple(guide.shape)} differ")
    guided = guide.sum(dim=-1) > 0  # (B, T)
    per_row = -(guide * attention.float().clamp(min=1e-9).log()).sum(dim=-1)  # (B, T)
    return per_row[guided].sum() / (max(1, tokens) if tokens is not None else guided.sum().clamp(min=1))
