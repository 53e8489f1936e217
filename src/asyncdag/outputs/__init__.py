"""Step outputs that outlive their run: the output store.

Run history (:mod:`asyncdag.storage`) says what happened; the output store keeps
what each step produced, so a later run can take those values instead of
computing them again: re-execution from failure, or a chosen subset of steps.

* :class:`OutputStore`, the contract: ``put`` / ``get`` / ``exists`` by
  :class:`OutputKey` (run id, step key, output name, and for an item of a
  dynamic fan-out its mapping key).
* :class:`FilesystemOutputStore`, on fsspec: a local directory by default
  (:func:`default_output_location`), or ``s3://``, ``gs://``, ``memory://``...
  when the matching fsspec backend is installed.
* Serializers: :class:`PickleSerializer` (the default; cloudpickle where plain
  pickle cannot), :class:`JsonSerializer`, or your own :class:`Serializer`,
  chosen per output with ``Out(serializer=...)``.

It imports neither the engine, the CLI nor the UI: the engine writes through it
from the run's API (``execute_pipeline(..., output_store=...)``).
"""

from ._base import (
    OutputKey,
    OutputNotFoundError,
    OutputStore,
    OutputStoreError,
    StoredOutput,
    default_output_location,
)
from ._filesystem import FilesystemOutputStore
from ._serializers import JsonSerializer, PickleSerializer, Serializer, builtin_serializer

__all__ = [
    "FilesystemOutputStore",
    "JsonSerializer",
    "OutputKey",
    "OutputNotFoundError",
    "OutputStore",
    "OutputStoreError",
    "PickleSerializer",
    "Serializer",
    "StoredOutput",
    "builtin_serializer",
    "default_output_location",
]

from asyncdag._public import publish as _publish

_publish(__name__, globals(), __all__)
del _publish
