"""The output store contract: what a stored output is called, what storing one returns, the errors.

Run history (``asyncdag.storage``) keeps what happened; the output store keeps
what steps *produced*, so that a later run can take a value instead of
computing it again (re-execution from failure, a subset of steps).  An output
is addressed by the run that computed it, its step key, its output name and,
for one item of a dynamic fan-out, the item's mapping key.

Stores are synchronous and thread-safe: asyncdag calls them from worker
threads, never on the event loop, so a slow disk or a remote bucket never
stalls a run.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import attrs

from asyncdag._errors import AsyncdagError

from ._serializers import Serializer

__all__ = [
    "OutputKey",
    "OutputNotFoundError",
    "OutputStore",
    "OutputStoreError",
    "StoredOutput",
    "default_output_location",
]


class OutputStoreError(AsyncdagError):
    """An output could not be stored or read: a value the serializer cannot take, a full disk,
    a permission denied, a bucket that is not there."""


class OutputNotFoundError(OutputStoreError, LookupError):
    """The store holds no such output (never stored, deleted, or stored with another serializer)."""


def _non_empty(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"OutputKey.{attribute.name} must be a non-empty string, got {value!r}")


def _optional_non_empty(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _non_empty(instance, attribute, value)


@attrs.frozen
class OutputKey:
    """Where one output lives: the run that computed it, its step, its name, and for an item
    of a dynamic output, its mapping key."""

    run_id: str = attrs.field(validator=_non_empty)
    step_key: str = attrs.field(validator=_non_empty)
    output: str = attrs.field(validator=_non_empty)
    mapping_key: str | None = attrs.field(default=None, kw_only=True, validator=_optional_non_empty)

    def describe(self) -> str:
        """``step 'fetch' output 'result'`` (and ``item 'k'``): how messages name it."""
        item = f" item {self.mapping_key!r}" if self.mapping_key is not None else ""
        return f"step {self.step_key!r} output {self.output!r}{item}"


@attrs.frozen
class StoredOutput:
    """What storing an output gives back: where it went, how big it is, how it was written."""

    key: OutputKey
    location: str
    size: int
    serializer: str


class OutputStore(abc.ABC):
    """Keeps step outputs beyond the run that produced them.  Subclass it to add a backend.

    Contract (``tests/test_output_store.py`` holds implementations to it):
    ``put`` replaces what a key held, atomically (a reader sees the old value or
    the new one, never half of one; a failed put leaves nothing behind) and
    raises :class:`OutputStoreError` naming the step, the output and the
    value's type when the value cannot be written; ``get`` raises
    :class:`OutputNotFoundError` for a key it does not hold.  ``serializer``
    None means the default, :class:`~asyncdag.outputs.PickleSerializer`.
    """

    @abc.abstractmethod
    def put(
        self, key: OutputKey, value: Any, *, serializer: Serializer | None = None
    ) -> StoredOutput:
        """Store ``value`` under ``key``."""

    @abc.abstractmethod
    def get(self, key: OutputKey, *, serializer: Serializer | None = None) -> Any:
        """The value stored under ``key``."""

    @abc.abstractmethod
    def exists(self, key: OutputKey, *, serializer: Serializer | None = None) -> bool:
        """Whether a value is stored under ``key``."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> bool:
        """Remove every output of ``run_id``; False when it had none."""

    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """The runs that have outputs stored (for retention: ``asyncdag run gc``)."""

    @abc.abstractmethod
    def last_modified(self, run_id: str) -> float | None:
        """When ``run_id``'s outputs were last written (a POSIX time), or None if unknown."""


def default_output_location() -> str:
    """Where the CLI and UI store outputs, and ``persist_outputs=True`` too.

    ``$ASYNCDAG_OUTPUT_STORE`` when set (a directory, or an fsspec URL such as
    ``s3://bucket/asyncdag``), else ``outputs/`` beside the run history:
    ``$ASYNCDAG_HOME/outputs``, ``~/.asyncdag/outputs`` by default.
    """
    given = os.environ.get("ASYNCDAG_OUTPUT_STORE")
    if given:
        return given
    home = os.environ.get("ASYNCDAG_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".asyncdag"
    return str(base / "outputs")
