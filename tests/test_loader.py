"""Loading pipelines from files and modules, and the one-line errors when that goes wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncdag import AsyncdagError, pipeline, solid
from asyncdag._workspace import LoadError, load_pipelines, select_pipeline

PIPELINES = Path(__file__).parent / "pipelines"


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def test_a_file_with_one_pipeline_loads_it_by_its_name() -> None:
    pipelines = load_pipelines(files=[PIPELINES / "hello.py"])
    assert list(pipelines) == ["hey_pipeline"]
    assert select_pipeline(pipelines, None) is pipelines["hey_pipeline"]


def test_pipelines_are_keyed_by_their_declared_name_not_the_variable() -> None:
    pipelines = load_pipelines(files=[PIPELINES / "several.py"])
    assert sorted(pipelines) == ["etl", "report"]
    assert pipelines["report"].fn is not None
    assert pipelines["report"].fn.__name__ == "report_pipeline"


def test_several_pipelines_without_a_name_lists_them() -> None:
    pipelines = load_pipelines(files=[PIPELINES / "several.py"])
    with pytest.raises(LoadError, match=r"several pipelines \(etl, report\).*-p NAME"):
        select_pipeline(pipelines, None)


def test_an_unknown_name_suggests_the_nearest() -> None:
    pipelines = load_pipelines(files=[PIPELINES / "several.py"])
    with pytest.raises(LoadError, match=r"no pipeline named 'reprot'; did you mean 'report'\?"):
        select_pipeline(pipelines, "reprot")


def test_a_missing_file_is_named() -> None:
    with pytest.raises(LoadError, match=r"nope\.py: no such file"):
        load_pipelines(files=["nope.py"])


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="is a directory"):
        load_pipelines(files=[tmp_path])


def test_a_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken_syntax.py", "x = 1\ndef f(:\n    pass\n")
    with pytest.raises(LoadError) as info:
        load_pipelines(files=[path])
    message = str(info.value)
    assert f"{path}:2: syntax error" in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, SyntaxError)


def test_an_import_error_names_the_line_that_imported(tmp_path: Path) -> None:
    path = write(tmp_path, "bad_import.py", "import os\nimport no_such_module_xyz\n")
    with pytest.raises(LoadError, match=r"bad_import\.py:2: .*import error.*no_such_module_xyz"):
        load_pipelines(files=[path])


def test_an_exception_at_import_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "raises_at_import.py", "x = 1\n\nraise RuntimeError('nope')\n")
    with pytest.raises(LoadError, match=r"raises_at_import\.py:3: .*RuntimeError: nope"):
        load_pipelines(files=[path])


def test_a_definition_error_while_building_a_pipeline_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad_wiring.py",
        """\
        from asyncdag import pipeline, solid

        @solid
        def one():
            return 1

        @pipeline
        def wired_wrong():
            one(unknown=1)
        """,
    )
    with pytest.raises(LoadError, match=r"bad_wiring\.py:\d+: .*") as info:
        load_pipelines(files=[path])
    assert isinstance(info.value.__cause__, AsyncdagError)


def test_a_file_without_pipelines_says_how_to_make_one(tmp_path: Path) -> None:
    path = write(tmp_path, "empty_module.py", "x = 1\n")
    with pytest.raises(LoadError, match=r"defines no pipeline; decorate a function with @pipeline"):
        load_pipelines(files=[path])


def test_no_source_at_all_is_an_error() -> None:
    with pytest.raises(LoadError, match="-f FILE"):
        load_pipelines()


def test_a_file_imports_its_siblings(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sibling_solids_abc.py",
        "from asyncdag import solid\n\n@solid\ndef one():\n    return 1\n",
    )
    path = write(
        tmp_path,
        "uses_sibling.py",
        """\
        from asyncdag import pipeline
        from sibling_solids_abc import one

        @pipeline
        def uses_sibling():
            one()
        """,
    )
    assert list(load_pipelines(files=[path])) == ["uses_sibling"]


def test_a_file_named_like_a_stdlib_module_does_not_shadow_it(tmp_path: Path) -> None:
    import json

    path = write(
        tmp_path,
        "json.py",
        "from asyncdag import pipeline, solid\n\n@solid\ndef s():\n    pass\n\n"
        "@pipeline\ndef shadow():\n    s()\n",
    )
    assert list(load_pipelines(files=[path])) == ["shadow"]
    import sys

    assert sys.modules["json"] is json


def test_modules_load_by_dotted_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "loader_pkg_abc"
    package.mkdir()
    write(package, "__init__.py", "")
    write(
        package,
        "defs.py",
        "from asyncdag import pipeline, solid\n\n@solid\ndef s():\n    pass\n\n"
        "@pipeline\ndef from_module():\n    s()\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(load_pipelines(modules=["loader_pkg_abc.defs"])) == ["from_module"]


def test_a_missing_module_is_named() -> None:
    with pytest.raises(LoadError, match=r"no module named 'no_such_pkg_xyz\.defs'"):
        load_pipelines(modules=["no_such_pkg_xyz.defs"])


def test_two_pipelines_with_one_name_in_two_files_is_an_error(tmp_path: Path) -> None:
    source = (
        "from asyncdag import pipeline, solid\n\n@solid\ndef s():\n    pass\n\n"
        "@pipeline(name='same')\ndef p():\n    s()\n"
    )
    first = write(tmp_path, "dup_one.py", source)
    second = write(tmp_path, "dup_two.py", source)
    with pytest.raises(LoadError, match=r"two pipelines are named 'same'"):
        load_pipelines(files=[first, second])


@solid
def _noop() -> None:
    pass


def _pipelines_named(names: set[str]) -> dict:
    found = {}
    for name in names:

        def body() -> None:
            _noop()

        found[name] = pipeline(name=name)(body)
    return found


_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)


@given(st.sets(_names, min_size=1, max_size=5), _names)
def test_select_returns_the_named_pipeline_or_lists_every_name(names: set[str], query: str) -> None:
    pipelines = _pipelines_named(names)
    if query in names:
        assert select_pipeline(pipelines, query).name == query
        return
    with pytest.raises(LoadError) as info:
        select_pipeline(pipelines, query)
    for name in names:
        assert name in str(info.value)


# -- schedules and sensors ---------------------------------------------------------------


def test_load_workspace_finds_schedules_and_sensors_beside_the_pipelines() -> None:
    from asyncdag._workspace import load_workspace

    scheduled = Path(__file__).parent / "pipelines" / "scheduled.py"
    workspace = load_workspace(files=[scheduled])
    assert list(workspace.pipelines) == ["weekly_report"]
    assert list(workspace.schedules) == ["monday_morning"]
    assert list(workspace.sensors) == ["report_requests"]
    assert [d.name for d in workspace.automation] == ["monday_morning", "report_requests"]


def test_a_schedules_imported_pipeline_counts_as_loaded(tmp_path: Path) -> None:
    from asyncdag._workspace import load_pipelines

    (tmp_path / "jobs.py").write_text(
        "from asyncdag import pipeline, solid\n"
        "@solid\ndef a(): return 1\n"
        "@pipeline\ndef job(): a()\n"
    )
    (tmp_path / "schedules.py").write_text(
        "import jobs\nfrom asyncdag import schedule\n"
        "@schedule(cron_schedule='@daily', pipeline=jobs.job)\ndef daily(context): return {}\n"
    )
    assert list(load_pipelines(files=[tmp_path / "schedules.py"])) == ["job"]


def test_two_schedules_with_one_name_in_two_files_are_refused(tmp_path: Path) -> None:
    from asyncdag._workspace import LoadError, load_workspace

    body = (
        "from asyncdag import pipeline, solid, schedule\n"
        "@solid\ndef a(): return 1\n"
        "@pipeline(name='job_{n}')\ndef job(): a()\n"
        "@schedule(cron_schedule='@daily', pipeline=job, name='daily')\n"
        "def daily(context): return {{}}\n"
    )
    for n in (1, 2):
        (tmp_path / f"s{n}.py").write_text(body.format(n=n))
    with pytest.raises(LoadError, match="two schedules or sensors are named 'daily'"):
        load_workspace(files=[tmp_path / "s1.py", tmp_path / "s2.py"])
