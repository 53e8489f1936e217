"""``asyncdag run reexecute``, stored outputs, and their retention, through the real console
script: a run fails through a flag file, the flag is removed, and the run is re-executed from
another directory with no ``-f``."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import anyio
import pytest

from asyncdag.outputs import FilesystemOutputStore, OutputKey
from asyncdag.storage import RunRecord, SqliteStorage
from test_cli import assert_one_clear_line, cli, json_lines, runs

pytestmark = pytest.mark.slow

FLAKY = textwrap.dedent(
    """
    from pathlib import Path
    from asyncdag import pipeline, solid

    FLAG = Path(__file__).with_name("FAIL")

    @solid
    def load():
        return [1, 2, 3]

    @solid
    def fragile(rows):
        if FLAG.exists():
            raise RuntimeError("the flag file is there")
        return [r * 10 for r in rows]

    @solid
    def total(rows):
        return sum(rows)

    @solid
    def aside():
        return "independent"

    @pipeline
    def flaky():
        total(fragile(load()))
        aside()
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "flaky.py").write_text(FLAKY)
    return directory


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


def started(stdout: str) -> set[str]:
    return {e["step_key"] for e in json_lines(stdout) if e["type"] == "STEP_START"}


def failed_run(home: Path, project: Path) -> str:
    (project / "FAIL").write_text("x")
    done = cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"), "--json")
    assert done.returncode == 1, done.stderr
    (project / "FAIL").unlink()
    return str(runs(home)[0]["run_id"])


def test_reexecute_from_failure_needs_no_file_and_runs_only_what_failed(
    home: Path, project: Path, tmp_path: Path
) -> None:
    run_id = failed_run(home, project)
    done = cli(home, "run", "reexecute", run_id[:8], "--from-failure", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert started(done.stdout) == {"fragile", "total"}
    events = json_lines(done.stdout)
    stored = [e for e in events if e["type"] == "STEP_OUTPUT" and e["step_key"] == "total"]
    assert stored[0]["data"]["size"] > 0 and Path(stored[0]["data"]["path"]).exists()
    newest = runs(home)[0]
    assert (newest["parent_run_id"], newest["root_run_id"]) == (run_id, run_id)
    assert newest["status"] == "SUCCESS"


def test_the_summary_says_how_to_reexecute_a_failed_run(home: Path, project: Path) -> None:
    (project / "FAIL").write_text("x")
    done = cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"))
    assert done.returncode == 1
    assert "asyncdag run reexecute" in done.stdout and "--from-failure" in done.stdout


def test_reexecute_a_selection(home: Path, project: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"))
    assert done.returncode == 0, done.stderr
    run_id = runs(home)[0]["run_id"]
    again = cli(home, "run", "reexecute", run_id, "--steps", "fragile+", "--json")
    assert again.returncode == 0, again.stderr
    assert started(again.stdout) == {"fragile", "total"}


def test_f_overrides_where_the_run_says_its_pipeline_is(
    home: Path, project: Path, tmp_path: Path
) -> None:
    run_id = failed_run(home, project)
    moved = tmp_path / "moved"
    (project).rename(moved)
    lost = cli(home, "run", "reexecute", run_id, "--from-failure")
    assert_one_clear_line(lost, "cannot load pipeline 'flaky'", "-f FILE")
    done = cli(home, "run", "reexecute", run_id, "--from-failure", "-f", str(moved / "flaky.py"))
    assert done.returncode == 0, done.stderr


def test_a_module_pipeline_is_found_again_by_its_module(home: Path, tmp_path: Path) -> None:
    package = tmp_path / "code"
    package.mkdir()
    (package / "flakymod.py").write_text(FLAKY)
    (package / "FAIL").write_text("x")
    done = cli(home, "pipeline", "execute", "-m", "flakymod", cwd=package)
    assert done.returncode == 1, done.stderr
    (package / "FAIL").unlink()
    run_id = runs(home)[0]["run_id"]
    again = cli(home, "run", "reexecute", run_id, "--from-failure", "--json", cwd=package)
    assert again.returncode == 0, again.stderr
    assert started(again.stdout) == {"fragile", "total"}


def test_a_reexecution_that_fails_again_exits_1(home: Path, project: Path) -> None:
    run_id = failed_run(home, project)
    (project / "FAIL").write_text("x")
    done = cli(home, "run", "reexecute", run_id, "--from-failure", "--json")
    assert done.returncode == 1
    assert started(done.stdout) == {"fragile"}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("run", "reexecute", "nosuchrun", "--from-failure"), ("no run with id 'nosuchrun'",)),
        (("run", "reexecute", "{run}", "--steps", "nope"), ("has no solid 'nope'",)),
    ],
)
def test_bad_reexecutions_are_one_line_and_exit_2(
    home: Path, project: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    run_id = failed_run(home, project)
    done = cli(home, *(a.replace("{run}", run_id) for a in args))
    assert_one_clear_line(done, *fragments)


def test_from_failure_of_a_successful_run_is_bad_input(home: Path, project: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"))
    assert done.returncode == 0
    run_id = runs(home)[0]["run_id"]
    again = cli(home, "run", "reexecute", run_id, "--from-failure")
    assert_one_clear_line(again, "nothing to re-execute from failure")


def test_run_list_filters_by_root(home: Path, project: Path) -> None:
    run_id = failed_run(home, project)
    assert cli(home, "run", "reexecute", run_id, "--from-failure").returncode == 0
    cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"))
    chain = runs(home, "--root", run_id[:8])
    assert len(runs(home)) == 3
    assert {r["run_id"] for r in chain} == {
        run_id,
        next(r["run_id"] for r in chain if r["parent_run_id"]),
    }
    assert len(chain) == 2


def test_run_delete_removes_the_stored_outputs(home: Path, project: Path) -> None:
    run_id = failed_run(home, project)
    outputs = home / "outputs" / run_id
    assert (outputs / "load" / "result.pkl").exists()
    done = cli(home, "run", "delete", run_id)
    assert done.returncode == 0, done.stderr
    assert "and its stored outputs" in done.stdout
    assert not outputs.exists()


def test_no_output_store_leaves_nothing_to_reexecute_from(home: Path, project: Path) -> None:
    (project / "FAIL").write_text("x")
    done = cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"), "--no-output-store")
    assert done.returncode == 1
    assert not (home / "outputs").exists()
    (project / "FAIL").unlink()
    run_id = runs(home)[0]["run_id"]
    again = cli(home, "run", "reexecute", run_id, "--from-failure")
    assert_one_clear_line(again, "did not store its outputs")


# --- retention: run gc --------------------------------------------------------------------


async def _old_chain(home: Path) -> None:
    now = time.time()
    day = 86400.0
    async with SqliteStorage(home / "asyncdag.db") as storage:
        for run_id, start, parent in (
            ("old-root", now - 30 * day, None),
            ("old-child", now - 29 * day, "old-root"),
            ("kept-root", now - 30 * day, None),
            ("kept-child", now - 1 * day, "kept-root"),
            ("fresh", now - 60.0, None),
        ):
            await storage.create_run(
                RunRecord(
                    run_id=run_id,
                    pipeline_name="flaky",
                    start_time=start,
                    parent_run_id=parent,
                    root_run_id=parent,
                )
            )
            await storage.finish_run(run_id, "SUCCESS", end_time=start + 1)  # type: ignore[arg-type]
    store = FilesystemOutputStore(home / "outputs")
    for run_id in ("old-root", "old-child", "kept-root", "kept-child", "fresh", "orphan"):
        store.put(OutputKey(run_id, "load", "result"), [1, 2, 3])


def test_gc_deletes_outputs_of_chains_older_than_the_age(home: Path) -> None:
    anyio.run(_old_chain, home)
    stored = lambda: sorted(p.name for p in (home / "outputs").iterdir())  # noqa: E731
    dry = cli(home, "run", "gc", "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete the outputs of run old-root" in dry.stdout
    assert len(stored()) == 6
    done = cli(home, "run", "gc", "--older-than", "7d")
    assert done.returncode == 0, done.stderr
    # kept-root is a month old, but its chain was re-executed yesterday: kept-child may reuse it.
    assert stored() == ["fresh", "kept-child", "kept-root", "orphan"]  # the orphan is new
    assert {r["run_id"] for r in runs(home)} >= {"old-root", "old-child"}  # history stays
    again = cli(home, "run", "gc", "--older-than", "7d", "--delete-runs")
    assert again.returncode == 0
    assert "old-root" not in {r["run_id"] for r in runs(home)}


@pytest.mark.parametrize("age", ["7", "7y", "-1d", "nand", "infd"])
def test_gc_refuses_an_age_it_cannot_read(home: Path, age: str) -> None:
    done = cli(home, "run", "gc", f"--older-than={age}")
    assert done.returncode == 2
    assert "expected an age such as 30m, 12h, 7d or 2w" in done.stderr


def test_execute_steps_runs_a_subset_fed_by_config(
    home: Path, project: Path, tmp_path: Path
) -> None:
    config = tmp_path / "inputs.yaml"
    config.write_text("solids:\n  total:\n    inputs:\n      rows: [4, 5]\n")
    done = cli(
        home,
        "pipeline",
        "execute",
        "-f",
        str(project / "flaky.py"),
        "--steps",
        "total",
        "-c",
        str(config),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert started(done.stdout) == {"total"}
    missing = cli(home, "pipeline", "execute", "-f", str(project / "flaky.py"), "--steps", "total")
    assert_one_clear_line(missing, "solids.total.inputs.rows", "comes from solid 'fragile'")
