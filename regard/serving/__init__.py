"""``regard serve``: a REST API and a web page to translate and see the attention."""

from regard.serving.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
