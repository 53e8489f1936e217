"""Which run storage a URL names: the one place the CLI, the UI and the scheduler ask.

One string says where history lives, so every shell takes the same ``--storage
URL`` and the same ``ASYNCDAG_STORAGE_URL``, and a new backend is one more
scheme here.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from asyncdag.storage._base import RunStorage, StorageError, default_storage_path

__all__ = ["STORAGE_URL_ENV", "open_storage", "redact"]

#: The environment variable naming the run storage when no ``--storage`` is given.
STORAGE_URL_ENV = "ASYNCDAG_STORAGE_URL"

_SCHEMES = "postgresql://..., sqlite:///path/to/file.db, memory://, or a file path"


def open_storage(url: str | os.PathLike[str] | None = None) -> RunStorage:
    """The run storage ``url`` names, not yet connected (the first use or ``open()`` connects).

    * ``postgresql://user@host/db`` (or ``postgres://``): :class:`PostgresStorage`,
      shared by hosts; needs ``pip install 'asyncdag[postgres]'``.
    * ``sqlite:///abs/path/file.db`` (also ``sqlite:////abs/...``) or a plain path
      (relative, or ``~/...``): :class:`SqliteStorage`.
    * ``memory://``: :class:`InMemoryStorage`, gone with the process.
    * ``None``: ``$ASYNCDAG_STORAGE_URL`` if set, else the SQLite file the CLI and
      UI share by default (``$ASYNCDAG_HOME/asyncdag.db``).

    Anything else raises :class:`StorageError` naming the schemes it knows.
    """
    if url is None:
        url = os.environ.get(STORAGE_URL_ENV) or None
        if url is None:
            from asyncdag.storage._sqlite import SqliteStorage

            return SqliteStorage(default_storage_path())
    if isinstance(url, os.PathLike):
        from asyncdag.storage._sqlite import SqliteStorage

        return SqliteStorage(url)
    text = url.strip()
    if not text:
        raise StorageError(f"the storage URL is empty; give one of {_SCHEMES}")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        from asyncdag.storage._postgres import PostgresStorage

        return PostgresStorage(text)
    if scheme == "memory":
        from asyncdag.storage._memory import InMemoryStorage

        return InMemoryStorage()
    if scheme == "sqlite":
        from asyncdag.storage._sqlite import SqliteStorage

        return SqliteStorage(_sqlite_path(text))
    if scheme:
        raise StorageError(
            f"storage URL {redact(text)!r} has scheme {scheme!r}, which asyncdag does not "
            f"store runs in; use {_SCHEMES}"
        )
    from asyncdag.storage._sqlite import SqliteStorage

    return SqliteStorage(Path(text).expanduser())


def _sqlite_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc:
        raise StorageError(
            f"storage URL {url!r} names host {parts.netloc!r}: SQLite is a local file; "
            "write sqlite:///path/to/file.db (three slashes, then the path)"
        )
    path = unquote(parts.path)
    if path.strip("/") == "":
        raise StorageError(f"storage URL {url!r} names no file; write sqlite:///path/to/file.db")
    if path.startswith("//"):  # sqlite:////abs/file.db, SQLAlchemy's spelling of an absolute path
        path = "/" + path.lstrip("/")
    return Path(path)


def redact(url: str) -> str:
    """``url`` without its password (``user:***@`` or ``password=***``), fit to print."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return "<unparseable storage URL>"
    if password is None and "password=" not in parts.query:
        return url
    if password is not None:
        host = parts.hostname or ""
        if port is not None:
            host = f"{host}:{port}"
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query:
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)
