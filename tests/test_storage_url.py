"""``open_storage``: one URL (or ``$ASYNCDAG_STORAGE_URL``) names the run storage for every shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncdag.storage import (
    STORAGE_URL_ENV,
    InMemoryStorage,
    PostgresStorage,
    SqliteStorage,
    StorageError,
    open_storage,
)


@pytest.fixture(autouse=True)
def no_storage_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h:5433/db", "POSTGRESQL://h"])
def test_postgres_urls_open_postgres_storage(url: str) -> None:
    storage = open_storage(url)
    assert isinstance(storage, PostgresStorage)
    assert str(storage) == url


def test_memory_url_opens_in_memory_storage() -> None:
    assert isinstance(open_storage("memory://"), InMemoryStorage)
    assert str(open_storage("memory://")) == "memory://"


def test_sqlite_urls_and_plain_paths_open_sqlite_storage(tmp_path: Path) -> None:
    target = tmp_path / "runs dir" / "asyncdag.db"
    for given in (f"sqlite:///{target}", f"sqlite:///{str(target).replace(' ', '%20')}"):
        storage = open_storage(given)
        assert isinstance(storage, SqliteStorage) and storage.path == target, given
    assert open_storage(str(target)).path == target  # type: ignore[attr-defined]
    assert open_storage(target).path == target  # type: ignore[attr-defined]
    home = Path("~").expanduser()
    assert open_storage("~/runs.db").path == home / "runs.db"  # type: ignore[attr-defined]


def test_no_url_means_the_environment_then_the_shared_sqlite_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ASYNCDAG_HOME", str(tmp_path))
    default = open_storage()
    assert isinstance(default, SqliteStorage) and default.path == tmp_path / "asyncdag.db"
    monkeypatch.setenv(STORAGE_URL_ENV, "postgresql://asyncdag@db.internal/runs")
    assert isinstance(open_storage(), PostgresStorage)
    assert isinstance(open_storage("memory://"), InMemoryStorage)  # a URL given wins


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "the storage URL is empty"),
        ("mysql://u@h/db", "scheme 'mysql'"),
        ("sqlite://relative/runs.db", "names host 'relative'"),
        ("sqlite:///", "names no file"),
    ],
)
def test_a_url_naming_no_storage_is_one_clear_error(url: str, fragment: str) -> None:
    with pytest.raises(StorageError, match=fragment) as caught:
        open_storage(url)
    assert "\n" not in str(caught.value)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(StorageError) as caught:
        open_storage("mysql://admin:hunter2@db/runs")
    assert "hunter2" not in str(caught.value) and "admin:***@db" in str(caught.value)
    assert "postgresql://" in str(caught.value)  # says which schemes work


def test_a_password_in_the_query_is_never_shown_either() -> None:
    storage = open_storage("postgresql://db/runs?user=admin&password=hunter2&sslmode=require")
    assert str(storage) == "postgresql://db/runs?user=admin&password=***&sslmode=require"
    assert "hunter2" not in repr(storage)
