"""The output store on fsspec: a local directory by default, any fsspec URL otherwise.

``FilesystemOutputStore("s3://bucket/asyncdag")`` works when ``s3fs`` is
installed (``gs://`` with ``gcsfs``, ``memory://`` always).  Layout, one file
per output::

    {base}/{run_id}/{step_key}/{output}{extension}
    {base}/{run_id}/{step_key}/{output}/{mapping_key}{extension}   # an item of a fan-out

Each path segment is percent-encoded where it holds anything but letters,
digits and ``_-.[]``, so a run id such as ``../x`` cannot leave the base.  A
value is written to a temporary file beside its destination and moved into
place, so a failed write (a value that cannot be pickled, a full disk) leaves
nothing behind, and a reader never sees half a value.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import urllib.parse
import uuid
from typing import Any

from ._base import (
    OutputKey,
    OutputNotFoundError,
    OutputStore,
    OutputStoreError,
    StoredOutput,
    default_output_location,
)
from ._serializers import PickleSerializer, Serializer

__all__ = ["FilesystemOutputStore"]

_DEFAULT = PickleSerializer()
_SAFE = "-_.[]"
_PLAIN = re.compile(r"[A-Za-z0-9_.\-\[\]]+")


def _segment(text: str) -> str:
    if _PLAIN.fullmatch(text) and text not in (".", ".."):
        return text  # the common case (uuids, step keys, output names), without quote()'s cost
    # surrogatepass: a run id may hold a lone surrogate (bytes decoded with surrogateescape).
    quoted = urllib.parse.quote(text, safe=_SAFE, errors="surrogatepass")
    if quoted in (".", ".."):
        return quoted.replace(".", "%2E")
    return quoted


def _short_type(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class FilesystemOutputStore(OutputStore):
    """Outputs as files under ``base``: a directory or an fsspec URL.

    ``base`` None is :func:`~asyncdag.outputs.default_output_location`.
    ``storage_options`` go to the fsspec filesystem (credentials, endpoint...).
    Nothing is touched until the first output is stored or read.
    """

    def __init__(
        self,
        base: str | os.PathLike[str] | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.base = os.fspath(base) if base is not None else default_output_location()
        self._options = dict(storage_options or {})
        self._fs: Any = None
        self._root = ""
        self._local = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FilesystemOutputStore({self.base!r})"

    # -- where things go ---------------------------------------------------------------------

    def _filesystem(self) -> tuple[Any, str]:
        with self._lock:
            if self._fs is None:
                import fsspec.core  # imported on first use: `import asyncdag` stays light

                try:
                    fs, root = fsspec.core.url_to_fs(self.base, **self._options)
                except (ImportError, ValueError) as exc:
                    raise OutputStoreError(
                        f"cannot open the output store {self.base!r}: {exc}; install the fsspec "
                        "backend for its protocol (s3fs for s3://, gcsfs for gs://) or give a "
                        "local directory"
                    ) from exc
                self._fs, self._root = fs, root.rstrip("/")
                self._local = _is_local(fs)
            return self._fs, self._root

    def _path(self, key: OutputKey, serializer: Serializer) -> str:
        _, root = self._filesystem()
        parts = [root, _segment(key.run_id), _segment(key.step_key)]
        if key.mapping_key is None:
            parts.append(_segment(key.output) + serializer.extension)
        else:
            parts += [_segment(key.output), _segment(key.mapping_key) + serializer.extension]
        return "/".join(parts)

    def location(self, key: OutputKey, *, serializer: Serializer | None = None) -> str:
        """Where ``key`` is (or would be) stored: a local path, or a URL for other filesystems."""
        fs, _ = self._filesystem()
        return self._location(fs, self._path(key, serializer or _DEFAULT))

    def _location(self, fs: Any, path: str) -> str:
        return path if self._local else str(fs.unstrip_protocol(path))

    # -- the contract ------------------------------------------------------------------------

    def put(
        self, key: OutputKey, value: Any, *, serializer: Serializer | None = None
    ) -> StoredOutput:
        serializer = serializer or _DEFAULT
        fs, _ = self._filesystem()
        path = self._path(key, serializer)
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        written = False
        # A local directory is written with the os module: the same calls fsspec makes,
        # without the half of a small output's cost that its wrappers add.
        local = self._local
        try:
            if local:
                os.makedirs(path.rpartition("/")[0], exist_ok=True)
            else:
                fs.makedirs(path.rpartition("/")[0], exist_ok=True)
            with open(temporary, "wb") if local else fs.open(temporary, "wb") as file:
                written = True
                try:
                    serializer.dump(value, file)
                except OSError:
                    raise
                except Exception as exc:
                    raise OutputStoreError(
                        f"{key.describe()}: cannot store a value of type {_short_type(value)} "
                        f"with the {serializer.name} serializer ({type(exc).__name__}: {exc}); "
                        "return a value it can write, or give the output another serializer: "
                        "Out(serializer=...)"
                    ) from exc
                size = file.tell()
            if local:
                os.replace(temporary, path)
            else:
                fs.mv(temporary, path)
        except OutputStoreError:
            if written:
                _remove_quietly(fs, temporary)
            raise
        except OSError as exc:
            if written:
                _remove_quietly(fs, temporary)
            raise OutputStoreError(
                f"{key.describe()}: cannot write a value of type {_short_type(value)} to "
                f"{self._location(fs, path)}: {exc}; free space or fix the "
                f"permissions of {self.base}, or point the output store elsewhere"
            ) from exc
        return StoredOutput(
            key=key,
            location=self._location(fs, path),
            size=int(size),
            serializer=serializer.name,
        )

    def get(self, key: OutputKey, *, serializer: Serializer | None = None) -> Any:
        serializer = serializer or _DEFAULT
        fs, _ = self._filesystem()
        path = self._path(key, serializer)
        try:
            with fs.open(path, "rb") as file:
                return serializer.load(file)
        except FileNotFoundError:
            raise OutputNotFoundError(
                f"{key.describe()} of run {key.run_id!r} is not in the output store "
                f"({self.location(key, serializer=serializer)}): it was deleted (asyncdag run "
                "delete / gc), never stored, or stored with another serializer"
            ) from None
        except OSError as exc:
            raise OutputStoreError(
                f"{key.describe()} of run {key.run_id!r}: cannot read "
                f"{self.location(key, serializer=serializer)}: {exc}"
            ) from exc

    def exists(self, key: OutputKey, *, serializer: Serializer | None = None) -> bool:
        fs, _ = self._filesystem()
        return bool(fs.exists(self._path(key, serializer or _DEFAULT)))

    def delete_run(self, run_id: str) -> bool:
        fs, root = self._filesystem()
        path = f"{root}/{_segment(run_id)}"
        if not fs.exists(path):
            return False
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise OutputStoreError(
                f"cannot delete the outputs of run {run_id!r} at {path}: {exc}"
            ) from exc
        return True

    def run_ids(self) -> list[str]:
        fs, root = self._filesystem()
        try:
            entries = fs.ls(root, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            urllib.parse.unquote(
                entry["name"].rstrip("/").rpartition("/")[2], errors="surrogatepass"
            )
            for entry in entries
            if entry.get("type") == "directory"
        )

    def last_modified(self, run_id: str) -> float | None:
        fs, root = self._filesystem()
        newest: float | None = None
        try:
            found = fs.find(f"{root}/{_segment(run_id)}", detail=True)
        except FileNotFoundError:
            return None
        for info in found.values():
            when = _mtime(info)
            if when is not None and (newest is None or when > newest):
                newest = when
        return newest


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


def _mtime(info: dict[str, Any]) -> float | None:
    for field in ("mtime", "LastModified", "updated", "created"):
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        timestamp = getattr(value, "timestamp", None)
        if callable(timestamp):
            return float(timestamp())
    return None


def _remove_quietly(fs: Any, path: str) -> None:
    # Nothing was written, or the disk refuses even this: the file's name says it is temporary.
    with contextlib.suppress(OSError):
        if os.path.exists(path) if _is_local(fs) else fs.exists(path):
            fs.rm(path)
