"""Alignment quality against gold Sure/Possible links (Och & Ney 2003).

With A the predicted links, S the sure gold links and P ⊇ S the possible ones (sure
included), summed over all sentences:

    precision = |A ∩ P| / |A|,  recall = |A ∩ S| / |S|,
    AER = 1 − (|A ∩ S| + |A ∩ P|) / (|A| + |S|).
"""

from __future__ import annotations

from dataclasses import dataclass

from regard.alignment.gold import GoldAlignment
from regard.alignment.links import Link


@dataclass(frozen=True)
class AlignmentScore:
    """Corpus-level counts and the rates computed from them."""

    predicted: int  # |A|
    sure: int  # |S|
    possible: int  # |P|, sure links included
    hit_sure: int  # |A ∩ S|
    hit_possible: int  # |A ∩ P|

    @property
    def precision(self) -> float:
        return self.hit_possible / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.hit_sure / self.sure if self.sure else 0.0

    @property
    def aer(self) -> float:
        total = self.predicted + self.sure
        return 1.0 - (self.hit_sure + self.hit_possible) / total if total else 0.0

    def to_dict(self) -> dict:
        return {"aer": self.aer, "precision": self.precision, "recall": self.recall,
                "predicted": self.predicted, "sure": self.sure, "possible": self.possible}


def score(predicted: list[set[Link]], gold: list[GoldAlignment]) -> AlignmentScore:
    """Score one predicted link set per sentence against the gold of the same sentences."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted sentences but {len(gold)} gold ones")
    counts = [0, 0, 0, 0, 0]
    for links, g in zip(predicted, gold):
        possible = g.sure | g.possible
        for k, n in enumerate((len(links), len(g.sure), len(possible), len(links & g.sure),
                               len(links & possible))):
            counts[k] += n
    return AlignmentScore(*counts)
