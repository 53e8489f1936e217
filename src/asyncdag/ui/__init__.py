"""The web UI: pipeline graphs, a run config playground, and runs watched live.

``asyncdag ui -f pipelines.py`` serves it on http://127.0.0.1:3000;
:func:`create_app` returns the same ASGI app for mounting in a Starlette or
FastAPI service.  Needs the ``ui`` extra (``pip install 'asyncdag[ui]'``).
"""

from __future__ import annotations

from ._app import create_app

__all__ = ["create_app"]

from asyncdag._public import publish as _publish

_publish(__name__, globals(), __all__)
del _publish
