"""Gold links drawn over a model's attention: where attention and the human alignment differ."""

from __future__ import annotations

from pathlib import Path

from regard.alignment.gold import GoldAlignment
from regard.alignment.links import Link, Matrix
from regard.plotting import plt, save


def plot_links(weights: Matrix, source: list[str], target: list[str], path: str | Path,
               gold: GoldAlignment | None = None, links: set[Link] | None = None,
               title: str | None = None) -> Path:
    """Attention (target tokens down, source tokens across) as a heat map, with gold sure links
    as squares, possible ones as small circles, and predicted ``links`` as crosses."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(source) + 2.0), max(3.0, 0.4 * len(target) + 1.8)))
    image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    marks = []
    if gold is not None:
        marks += [(gold.sure, dict(marker="s", s=90, facecolors="none", edgecolors="tab:orange", linewidths=1.6),
                   "gold sure"),
                  (gold.possible, dict(marker="o", s=25, facecolors="none", edgecolors="tab:orange"), "gold possible")]
    if links is not None:
        marks.append((links, dict(marker="x", s=40, c="tab:red"), "predicted"))
    for points, style, label in marks:
        if points:
            ax.scatter([i for i, _ in points], [j for _, j in points], label=label, **style)
    ax.set_xticks(range(len(source)), labels=source, rotation=60, ha="left", fontsize=9)
    ax.set_yticks(range(len(target)), labels=target, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_xlim(-0.5, len(source) - 0.5)
    ax.set_ylim(len(target) - 0.5, -0.5)
    if marks:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=8, frameon=False)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    if title:
        ax.set_title(title, fontsize=9, pad=40)
    fig.tight_layout()
    return save(fig, path)
