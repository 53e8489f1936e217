"""``asyncdag sensor list | start | stop``: sensors from the terminal (shared with ``schedule``)."""

from __future__ import annotations

from typing import Any

from ._schedules import add_toggle_commands

__all__ = ["register"]


def register(subparsers: Any) -> None:
    add_toggle_commands(subparsers, kind="sensor")
