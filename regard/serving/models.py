"""``--model NAME=DIR`` specifications → named, loaded translators."""

from __future__ import annotations

from pathlib import Path

from regard.errors import RegardError
from regard.translator import Translator


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``NAME=DIR`` → (NAME, DIR); a bare ``DIR`` is named after its folder (a run's, for ``best/``)."""
    name, sep, folder = spec.partition("=")
    if not sep:
        folder = spec
        path = Path(spec).resolve()
        name = path.parent.name if path.name in ("best", "last") else path.name
    name = name.strip()
    if not name or not folder:
        raise RegardError(f"--model {spec!r}: expected DIR or NAME=DIR")
    return name, folder


def load_models(specs: list[str], precision: str = "fp32", stopping: str | None = None,
                device: str = "auto") -> dict[str, Translator]:
    """Load every model onto ``device``; the order of ``specs`` is kept (the first is the default).
    ``stopping`` replaces each model's beam-search stopping rule."""
    models: dict[str, Translator] = {}
    for spec in specs:
        name, folder = parse_model_spec(spec)
        if name in models:
            raise RegardError(f"two models are named {name!r}: name them with --model NAME=DIR")
        models[name] = Translator.load(folder, precision=precision, device=device)
        if stopping:
            models[name].cfg.search.stopping = stopping
    return models
