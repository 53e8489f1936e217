"""The ``asyncdag`` command line: run pipelines, inspect them, and browse run history.

Kept out of ``import asyncdag``: only the console script imports it.  Each
command lives in its own module exposing ``register(subparsers)``; see
:mod:`asyncdag.cli._app` for how another module adds a command.
"""

from __future__ import annotations

from ._app import main

__all__ = ["main"]
