"""The output store's contract, on a local directory and on fsspec's memory filesystem,
and what it says on the hostile day: a value it cannot write, a full disk, a denied write."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncdag import DefinitionError, Out
from asyncdag.outputs import (
    FilesystemOutputStore,
    JsonSerializer,
    OutputKey,
    OutputNotFoundError,
    OutputStoreError,
    PickleSerializer,
    Serializer,
    default_output_location,
)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FilesystemOutputStore]:
    if request.param == "local":
        yield FilesystemOutputStore(tmp_path / "outputs")
    else:
        base = f"memory://asyncdag-test-{uuid.uuid4().hex}"
        yield FilesystemOutputStore(base)
        import fsspec

        with contextlib.suppress(FileNotFoundError):
            fsspec.filesystem("memory").rm(base.removeprefix("memory://"), recursive=True)


KEY = OutputKey("run-1", "fetch", "result")


def test_put_then_get_gives_the_value_back(store: FilesystemOutputStore) -> None:
    value = {"rows": [1, 2, 3], "name": "Kan", "nested": (1.5, None)}
    stored = store.put(KEY, value)
    assert store.get(KEY) == value
    assert stored.size > 0
    assert stored.serializer == "pickle"
    assert stored.location.endswith("run-1/fetch@result.pkl")


def test_exists_is_true_only_after_put(store: FilesystemOutputStore) -> None:
    assert not store.exists(KEY)
    store.put(KEY, 1)
    assert store.exists(KEY)


def test_a_missing_key_is_output_not_found_naming_the_step(store: FilesystemOutputStore) -> None:
    with pytest.raises(OutputNotFoundError, match=r"step 'fetch' output 'result' of run 'run-1'"):
        store.get(KEY)


def test_items_of_a_fan_out_are_kept_apart_by_mapping_key(store: FilesystemOutputStore) -> None:
    a = OutputKey("run-1", "discover", "urls", mapping_key="a")
    b = OutputKey("run-1", "discover", "urls", mapping_key="b")
    store.put(a, "https://a")
    store.put(b, "https://b")
    assert (store.get(a), store.get(b)) == ("https://a", "https://b")


def test_put_replaces_what_a_key_held(store: FilesystemOutputStore) -> None:
    store.put(KEY, "old")
    store.put(KEY, "new")
    assert store.get(KEY) == "new"


def test_json_serializer_writes_json_other_tools_read(tmp_path: Path) -> None:
    store = FilesystemOutputStore(tmp_path)
    stored = store.put(KEY, {"a": [1, "é"]}, serializer=JsonSerializer())
    assert stored.serializer == "json"
    assert Path(stored.location).read_text(encoding="utf-8") == '{"a": [1, "é"]}'
    assert store.get(KEY, serializer=JsonSerializer()) == {"a": [1, "é"]}


def test_json_refuses_nan_naming_step_output_and_type(store: FilesystemOutputStore) -> None:
    with pytest.raises(OutputStoreError) as caught:
        store.put(KEY, float("nan"), serializer=JsonSerializer())
    message = str(caught.value)
    assert "step 'fetch' output 'result'" in message and "type float" in message
    assert not store.exists(KEY, serializer=JsonSerializer())


class Local:
    """A class defined in a function's scope: plain pickle cannot take its instances."""


def test_cloudpickle_takes_what_plain_pickle_cannot(store: FilesystemOutputStore) -> None:
    def make() -> Any:
        class Point:
            def __init__(self, x: int) -> None:
                self.x = x

        return Point(3), (lambda y: y * 2)

    point, double = make()
    store.put(KEY, (point, double))
    loaded_point, loaded_double = store.get(KEY)
    assert loaded_point.x == 3
    assert loaded_double(21) == 42


def test_an_unpicklable_value_fails_naming_step_output_and_type(
    store: FilesystemOutputStore,
) -> None:
    with pytest.raises(OutputStoreError) as caught:
        store.put(KEY, threading.Lock())
    message = str(caught.value)
    assert "step 'fetch' output 'result'" in message
    assert "_thread.lock" in message
    assert "Out(serializer=...)" in message
    assert not store.exists(KEY)
    assert store.run_ids() in ([], ["run-1"])  # the step's folder may exist, with no file in it


def test_run_ids_that_would_leave_the_base_stay_inside_it(tmp_path: Path) -> None:
    store = FilesystemOutputStore(tmp_path / "base")
    key = OutputKey("../../escape", "..", "result")
    stored = store.put(key, 1)
    assert Path(stored.location).resolve().is_relative_to((tmp_path / "base").resolve())
    assert store.get(key) == 1
    assert store.run_ids() == ["../../escape"]


def test_a_run_id_with_a_lone_surrogate_or_a_slash_is_stored_and_listed(tmp_path: Path) -> None:
    store = FilesystemOutputStore(tmp_path)
    odd = "run-\udcff/é x"
    store.put(OutputKey(odd, "fetch", "result"), 7)
    assert store.get(OutputKey(odd, "fetch", "result")) == 7
    assert store.run_ids() == [odd]
    assert store.delete_run(odd) is True


def test_delete_run_removes_only_that_run(store: FilesystemOutputStore) -> None:
    other = OutputKey("run-2", "fetch", "result")
    store.put(KEY, 1)
    store.put(other, 2)
    assert store.delete_run("run-1") is True
    assert store.delete_run("run-1") is False
    assert not store.exists(KEY)
    assert store.get(other) == 2
    assert store.run_ids() == ["run-2"]


def test_last_modified_is_known_for_a_stored_run(store: FilesystemOutputStore) -> None:
    assert store.last_modified("run-1") is None
    store.put(KEY, 1)
    assert store.last_modified("run-1") is not None


def test_the_default_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCDAG_OUTPUT_STORE", "memory://elsewhere")
    assert default_output_location() == "memory://elsewhere"
    monkeypatch.delenv("ASYNCDAG_OUTPUT_STORE")
    monkeypatch.setenv("ASYNCDAG_HOME", "/srv/dag")
    assert default_output_location() == os.path.join("/srv/dag", "outputs")
    assert FilesystemOutputStore().base == os.path.join("/srv/dag", "outputs")


def test_an_unknown_protocol_says_which_backend_to_install() -> None:
    store = FilesystemOutputStore("nosuchproto://bucket/x")
    with pytest.raises(OutputStoreError, match="install the fsspec backend"):
        store.put(KEY, 1)


# --- the hostile day: the filesystem refuses ------------------------------------------------


class _Refusing:
    """A local filesystem that fails writes as a full disk or a denied directory would."""

    def __init__(self, fs: Any, error: OSError, *, after_bytes: int = 0) -> None:
        self._fs = fs
        self._error = error
        self._after = after_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" not in mode:
            return self._fs.open(path, mode, **kwargs)
        if self._after == 0 and isinstance(self._error, PermissionError):
            raise self._error
        file = self._fs.open(path, mode, **kwargs)
        error, limit = self._error, self._after

        class Full:
            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: object) -> None:
                file.close()

            def write(self, data: bytes) -> int:
                if file.tell() + len(data) > limit:
                    raise error
                return int(file.write(data))

            def tell(self) -> int:
                return int(file.tell())

        return Full()


def _refusing(tmp_path: Path, error: OSError, after_bytes: int = 0) -> FilesystemOutputStore:
    """A store whose filesystem refuses writes, through fsspec (what a bucket would do)."""
    store = FilesystemOutputStore(tmp_path / "outputs")
    fs, _root = store._filesystem()
    store._fs = _Refusing(fs, error, after_bytes=after_bytes)
    store._local = False  # through the fsspec calls, not the local directory's os calls
    return store


def test_a_full_disk_fails_the_put_clearly_and_leaves_nothing_behind(tmp_path: Path) -> None:
    good = FilesystemOutputStore(tmp_path / "outputs")
    kept = OutputKey("run-0", "a", "result")
    good.put(kept, "kept")
    store = _refusing(tmp_path, OSError(errno.ENOSPC, "No space left on device"), after_bytes=10)
    with pytest.raises(OutputStoreError) as caught:
        store.put(KEY, "x" * 1000)
    message = str(caught.value)
    assert "step 'fetch' output 'result'" in message and "No space left on device" in message
    assert "type str" in message
    files = sorted(p.name for p in (tmp_path / "outputs").rglob("*") if p.is_file())
    assert files == ["a@result.pkl"]  # the earlier run's output, and no half-written file
    assert good.get(kept) == "kept"


def test_a_denied_directory_fails_the_put_naming_the_location(tmp_path: Path) -> None:
    store = _refusing(tmp_path, PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(OutputStoreError, match="Permission denied") as caught:
        store.put(KEY, 1)
    assert str(tmp_path / "outputs") in str(caught.value)


def test_a_local_directory_that_cannot_be_made_fails_the_put_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    store = FilesystemOutputStore(blocker / "outputs")
    with pytest.raises(OutputStoreError) as caught:
        store.put(KEY, 1)
    assert "step 'fetch' output 'result'" in str(caught.value)
    assert str(blocker) in str(caught.value)
    assert blocker.read_text().startswith("a file")


def test_a_local_disk_full_on_the_final_move_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemOutputStore(tmp_path / "outputs")
    store.put(KEY, "old")

    def full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputStoreError, match="No space left on device"):
        store.put(KEY, "new")
    monkeypatch.undo()
    assert store.get(KEY) == "old"  # the earlier value stands
    assert [p.name for p in (tmp_path / "outputs").rglob("*") if p.is_file()] == [
        "fetch@result.pkl"
    ]


# --- serializers declared on outputs ---------------------------------------------------------


def test_out_takes_a_serializer_instance() -> None:
    assert Out(serializer=JsonSerializer()).serializer.name == "json"


def test_out_refuses_what_is_not_a_serializer() -> None:
    with pytest.raises(DefinitionError, match=r"pass an instance: serializer=JsonSerializer\(\)"):
        Out(serializer=JsonSerializer)
    with pytest.raises(
        DefinitionError, match="not a serializer: it lacks name, extension, dump, load"
    ):
        Out(serializer="json")


def test_a_serializer_of_ones_own_round_trips(tmp_path: Path) -> None:
    class Upper(Serializer):
        name = "upper"
        extension = ".txt"

        def dump(self, value: Any, file: Any) -> None:
            file.write(value.upper().encode())

        def load(self, file: Any) -> Any:
            return file.read().decode()

    store = FilesystemOutputStore(tmp_path)
    stored = store.put(KEY, "shout", serializer=Upper())
    assert stored.location.endswith("result.txt")
    assert store.get(KEY, serializer=Upper()) == "SHOUT"
    assert PickleSerializer().name == "pickle"


def test_names_that_hold_the_separator_never_meet(store: FilesystemOutputStore) -> None:
    # "a@b" + "c" and "a" + "b@c" would share a file if "@" were not escaped.
    first = OutputKey("run-1", "a@b", "c")
    second = OutputKey("run-1", "a", "b@c")
    store.put(first, 1)
    store.put(second, 2)
    assert (store.get(first), store.get(second)) == (1, 2)
    assert store.location(first) != store.location(second)


def test_a_run_folder_deleted_under_a_live_store_is_made_again(tmp_path: Path) -> None:
    store = FilesystemOutputStore(tmp_path / "outputs")
    store.put(OutputKey("run-1", "a", "result"), 1)
    assert store.delete_run("run-1")
    store.put(OutputKey("run-1", "b", "result"), 2)  # the store remembered the folder
    assert store.get(OutputKey("run-1", "b", "result")) == 2
