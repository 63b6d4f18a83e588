"""``regard serve``: a REST API and a web page to translate and see the attention.

:class:`ServeSettings` is light; :func:`create_app` (FastAPI, torch) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regard.serving.settings import ServeSettings

if TYPE_CHECKING:
    from regard.serving.app import create_app

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from regard.serving.app import create_app
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
