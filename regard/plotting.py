"""The attention diagram: target words down, source words across, darker = more attention; for a
Transformer, of one head, of a layer's heads averaged, or of every head of a layer in a grid."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

from regard.errors import RegardError  # noqa: E402
from regard.files import atomic_file, check_file_target  # noqa: E402


Matrix = list[list[float]]  # (target × source) attention weights


def attention_views(heads: list[list[Matrix]], layer: int, head: int | None = None,
                    grid: bool = False) -> dict[str, Matrix]:
    """What to draw of ``heads`` (layers × heads × target × source), named: head ``head`` of
    ``layer`` (both from 1), or when None the average of the layer's heads; with ``grid``, every
    head of the layer and their average. A :class:`RegardError` for a layer or head out of range."""
    if not 1 <= layer <= len(heads):
        raise RegardError(f"--layer must be from 1 to {len(heads)} (the decoder's layers), got {layer}")
    found = heads[layer - 1]
    if head is not None and not 1 <= head <= len(found):
        raise RegardError(f"--head must be from 1 to {len(found)} (the heads per layer), got {head}")
    name = f"layer {layer}/{len(heads)}"
    average = [[sum(values) / len(found) for values in zip(*rows)] for rows in zip(*found)]
    if grid:
        return {**{f"{name}, head {h + 1}": m for h, m in enumerate(found)}, f"{name}, heads averaged": average}
    if head is not None:
        return {f"{name}, head {head}/{len(found)}": found[head - 1]}
    return {f"{name}, {len(found)} heads averaged" if len(heads) * len(found) > 1 else "": average}


def plot_attention(weights: Matrix, source: list[str], target: list[str], path: str | Path,
                   title: str | None = None, label: str = "") -> Path:
    """Draw a (len(target) × len(source)) weight matrix as a labelled heat map, in the format of the
    extension of ``path`` (PNG, PDF, SVG, ...); ``label``: what it shows, e.g. "layer 3/3, head 2/4",
    above it."""
    if weights is None:
        raise RegardError("this model has no attention (attention: none): nothing to draw")
    check_shape(weights, source, target)
    width = max(4.0, 0.65 * len(source) + 2.0)
    height = max(3.0, 0.5 * len(target) + 1.8)
    fig, ax = plt.subplots(figsize=(width, height))
    image = draw(ax, weights, source, target, values=len(source) * len(target) <= 400)
    if label:
        ax.set_title(label, fontsize=10, pad=40)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    if title:
        fig.text(0.5, 0.015, title, ha="center", va="bottom", fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if title else 0, 1, 1))
    return save(fig, path)


def plot_attention_grid(views: dict[str, Matrix], source: list[str], target: list[str], path: str | Path,
                        title: str | None = None) -> Path:
    """Draw several (target × source) matrices, each under its name, in a grid of heat maps."""
    for weights in views.values():
        check_shape(weights, source, target)
    cols = math.ceil(math.sqrt(len(views)))
    rows = math.ceil(len(views) / cols)
    cell = (max(3.0, 0.45 * len(source) + 1.5), max(2.5, 0.35 * len(target) + 1.5))
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows + 1.0), squeeze=False)
    for ax, (name, weights) in zip(axes.flat, views.items()):
        draw(ax, weights, source, target, values=False, fontsize=8)
        ax.set_title(name, fontsize=9, pad=30)
    for ax in list(axes.flat)[len(views):]:
        ax.axis("off")
    if title:
        fig.text(0.5, 0.01, title, ha="center", va="bottom", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if title else 0, 1, 1))
    return save(fig, path)


def check_shape(weights: Matrix, source: list[str], target: list[str]) -> None:
    if len(weights) != len(target) or any(len(row) != len(source) for row in weights):
        raise ValueError(f"weights must be {len(target)}×{len(source)}")


def draw(ax, weights: Matrix, source: list[str], target: list[str], values: bool, fontsize: int = 11):
    """One heat map on ``ax``, source labels on top; ``values``: print the weights ≥ 0.05 in the cells."""
    image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), labels=source, rotation=45, ha="left", fontsize=fontsize)
    ax.set_yticks(range(len(target)), labels=target, fontsize=fontsize)
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    ax.xaxis.set_label_position("top")
    if values:
        for i, row in enumerate(weights):
            for j, w in enumerate(row):
                if w >= 0.05:
                    ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if w > 0.6 else "black")
    return image


def plot_by_length(labels: list[str], counts: list[int] | None, series: dict[str, list[float | None]],
                   ylabel: str, path: str | Path, title: str | None = None, ymax: float | None = None) -> Path:
    """One line per model: a score against source sentence length (Bahdanau et al. 2015, Fig. 2).

    ``series`` maps a legend label to one value per length bucket (None: no data).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, values in series.items():
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    ticks = [f"{w}\n(n={n})" for w, n in zip(labels, counts)] if counts else labels
    ax.set_xticks(range(len(labels)), labels=ticks)
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, ymax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def figure_format(path: str | Path) -> str:
    """The image format of ``path``'s extension (``png``, ``pdf``, ``svg``, ...), one of those
    matplotlib can write; otherwise a :class:`RegardError` listing them."""
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in formats:
        found = f"unknown image type '.{kind}'" if kind else "no extension to tell the image type"
        raise RegardError(f"{path}: {found}; use one of .{', .'.join(formats)}")
    return kind


def check_plot_target(path: str | Path, what: str) -> None:
    """Raise :class:`RegardError` unless an image can be written at ``path``: a format matplotlib
    writes here (tried on a blank figure) in a folder that takes files. ``what`` names the option."""
    try:
        kind = figure_format(path)
    except RegardError as err:
        raise RegardError(f"{what} {err}") from None
    fig = plt.figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "x")  # text needs the most of a writer (pgf: LaTeX)
    try:
        fig.savefig(io.BytesIO(), format=kind)
    except Exception as err:  # noqa: BLE001 - a writer matplotlib lists but cannot run here (pgf without LaTeX)
        raise RegardError(f"{what} {path}: matplotlib cannot write .{kind} here: "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    finally:
        plt.close(fig)
    check_file_target(path, what)


def save(fig, path: str | Path) -> Path:
    """Write a figure (150 dpi for bitmaps) in the format of ``path``'s extension, atomically
    (creating folders), and free it."""
    path = Path(path)
    try:
        kind = figure_format(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as handle:
            fig.savefig(handle, format=kind, dpi=150)
    finally:
        plt.close(fig)
    return path
