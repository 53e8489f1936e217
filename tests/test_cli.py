"""The ``asyncdag`` command line, driven through the real console script in subprocesses."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import RunStatus

pytestmark = pytest.mark.slow

PIPELINES = Path(__file__).parent / "pipelines"
HELLO = str(PIPELINES / "hello.py")
SEVERAL = str(PIPELINES / "several.py")
FAILING = str(PIPELINES / "failing.py")
SLOW = str(PIPELINES / "slow.py")
STUBBORN = str(PIPELINES / "stubborn.py")
CONFIGURED = str(PIPELINES / "config_needed.py")
WIDE = str(PIPELINES / "wide.py")
TIMEOUT = 120


def _script() -> str:
    beside = Path(sys.executable).parent / "asyncdag"
    if beside.exists():
        return str(beside)
    found = shutil.which("asyncdag")
    assert found, "the asyncdag console script is not installed"
    return found


ASYNCDAG = _script()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_")
        and k
        not in (
            "ASYNCDAG_LOG_LEVEL",
            "ASYNCDAG_OUTPUT_STORE",
            "ASYNCDAG_STORAGE_URL",
            "COLUMNS",
            "NO_COLOR",
        )
    }
    env["ASYNCDAG_HOME"] = str(home)
    return env


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ASYNCDAG, *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def runs(home: Path, *args: str) -> list[dict[str, Any]]:
    done = cli(home, "run", "list", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.stderr.startswith("asyncdag: error: "), done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr, first)


# -- help and usage ------------------------------------------------------------------------


def test_help_lists_every_command(home: Path) -> None:
    done = cli(home, "--help")
    assert done.returncode == 0
    for command in ("pipeline", "run", "ui"):
        assert command in done.stdout
    done = cli(home, "pipeline", "--help")
    for command in ("execute", "list", "show", "bench"):
        assert command in done.stdout


def test_no_command_is_a_usage_error(home: Path) -> None:
    assert cli(home).returncode == 2
    assert cli(home, "run").returncode == 2
    assert cli(home, "pipeline", "frobnicate").returncode == 2


# -- pipeline execute ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_execute_runs_the_pipeline_and_records_it(home: Path, backend: str) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--backend", backend)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Hey, Kan!") == 1  # logged once: no second handler
    assert "Hey, Kan!" not in done.stderr
    assert "\x1b[" not in done.stdout  # not a terminal: plain text
    recorded = runs(home)
    assert [(r["pipeline_name"], r["status"]) for r in recorded] == [("hey_pipeline", "SUCCESS")]
    run_id = recorded[0]["run_id"]
    assert run_id in done.stdout
    summary = done.stdout[done.stdout.index("attempts") :]
    assert "get_name" in summary
    assert "hey" in summary
    assert summary.count("SUCCESS") >= 3


def test_execute_json_streams_every_event_in_order(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--json")
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "RUN_START"
    assert events[-1]["type"] == "RUN_SUCCESS"
    assert [e["step_key"] for e in events if e["type"] == "STEP_SUCCESS"] == ["get_name", "hey"]
    assert any(e["type"] == "LOG" and e["message"] == "Hey, Kan!" for e in events)
    assert len({e["run_id"] for e in events}) == 1
    shown = json.loads(cli(home, "run", "show", events[0]["run_id"], "--json").stdout)
    assert shown["events"] == events


def test_execute_quiet_prints_logs_only(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "Hey, Kan!" in done.stdout
    assert "attempts" not in done.stdout


def test_execute_without_storage_records_nothing(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--no-storage")
    assert done.returncode == 0, done.stderr
    assert "not recorded" in done.stdout
    assert runs(home) == []


def test_a_failed_run_exits_1_and_says_why(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", FAILING)
    assert done.returncode == 1, done.stderr
    assert "ValueError: the input was bad" in done.stdout
    summary = done.stdout[done.stdout.index("attempts") :]
    assert "FAILURE" in summary
    assert "SKIPPED" in summary
    assert [r["status"] for r in runs(home, "--status", "failure")] == ["FAILURE"]


def test_fail_fast_reaches_the_engine(home: Path) -> None:
    events = json_lines(cli(home, "pipeline", "execute", "-f", FAILING, "--json").stdout)
    assert events[-1]["type"] == "RUN_FAILURE"
    done = cli(home, "pipeline", "execute", "-f", FAILING, "--json", "--fail-fast")
    assert done.returncode == 1
    assert json_lines(done.stdout)[-1]["type"] == "RUN_FAILURE"


def test_config_files_merge_in_order_and_tags_are_stored(home: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("solids:\n  greet:\n    config: {name: Ann, count: 5}\n")
    override = tmp_path / "override.yaml"
    override.write_text("solids:\n  greet:\n    config: {count: 2}\n")
    done = cli(
        home,
        "pipeline",
        "execute",
        "-f",
        CONFIGURED,
        "-c",
        str(base),
        "-c",
        str(override),
        "--tag",
        "team=data",
        "--tag",
        "env=dev",
        "--max-concurrency",
        "1",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert [e["message"] for e in events if e["type"] == "LOG"] == ["hello Ann", "hello Ann"]
    assert events[0]["data"]["max_concurrency"] == 1
    (record,) = runs(home)
    assert record["tags"] == {"team": "data", "env": "dev"}
    assert record["run_config"]["solids"]["greet"]["config"] == {"name": "Ann", "count": 2}


def execute_traced(home: Path, trace_file: Path, jaeger: Path) -> None:
    """Run hello world through the CLI with both trace files asked for."""
    done = cli(
        home,
        "pipeline",
        "execute",
        "-f",
        HELLO,
        "--quiet",
        "--trace-file",
        str(trace_file),
        "--jaeger-json",
        str(jaeger),
    )
    assert done.returncode == 0, done.stderr


def test_trace_flags_write_spans(home: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "spans.jsonl"
    jaeger = tmp_path / "trace.json"
    execute_traced(home, trace_file, jaeger)
    names = {json.loads(line)["name"] for line in trace_file.read_text().splitlines()}
    assert {"get_name", "hey"} <= names
    assert json.loads(jaeger.read_text())["data"]


def test_jaeger_json_gathers_one_trace_per_run_like_trace_file_appends(
    home: Path, tmp_path: Path
) -> None:
    trace_file = tmp_path / "spans.jsonl"
    jaeger = tmp_path / "trace.json"
    execute_traced(home, trace_file, jaeger)
    execute_traced(home, trace_file, jaeger)
    traces = json.loads(jaeger.read_text())["data"]
    assert len(traces) == 2
    run_ids = [r["run_id"] for r in runs(home)]
    for trace in traces:
        ops = {span["operationName"] for span in trace["spans"]}
        assert ops == {"run hey_pipeline", "get_name", "hey"}
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert len({line["trace_id"] for line in lines}) == 2
    assert {line["attributes"]["cicd.pipeline.run.id"] for line in lines} == set(run_ids)


def test_jaeger_json_that_is_another_file_is_bad_input(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "config.json"
    other.write_text('{"keep": true}')
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--quiet", "--jaeger-json", str(other))
    assert_one_clear_line(done, "not a Jaeger JSON trace file")
    assert other.read_text() == '{"keep": true}'


# -- bad input: one clear line, exit 2, nothing recorded ------------------------------------


def test_missing_file(home: Path) -> None:
    assert_one_clear_line(cli(home, "pipeline", "execute", "-f", "nope.py"), "nope.py")


def test_no_source_given(home: Path) -> None:
    assert_one_clear_line(cli(home, "pipeline", "execute"), "-f FILE")


def test_syntax_error_names_file_and_line(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("x = 1\ndef f(:\n")
    assert_one_clear_line(cli(home, "pipeline", "execute", "-f", str(path)), f"{path}:2: syntax")


def test_verbose_shows_the_traceback(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("x = 1\ndef f(:\n")
    done = cli(home, "pipeline", "execute", "-f", str(path), "--verbose")
    assert done.returncode == 2
    assert "Traceback" in done.stderr


def test_import_error(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "imports.py"
    path.write_text("import no_such_module_xyz\n")
    assert_one_clear_line(
        cli(home, "pipeline", "execute", "-f", str(path)), "imports.py:1", "no_such_module_xyz"
    )


def test_definition_error(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "wiring.py"
    path.write_text(
        textwrap.dedent(
            """\
            from asyncdag import pipeline, solid

            @solid
            def one():
                return 1

            @pipeline
            def wired_wrong():
                one(unknown=1)
            """
        )
    )
    assert_one_clear_line(cli(home, "pipeline", "execute", "-f", str(path)), "wiring.py:")


def test_no_pipeline_in_the_file(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "nothing.py"
    path.write_text("x = 1\n")
    assert_one_clear_line(cli(home, "pipeline", "execute", "-f", str(path)), "defines no pipeline")


def test_several_pipelines_without_p(home: Path) -> None:
    assert_one_clear_line(cli(home, "pipeline", "execute", "-f", SEVERAL), "etl, report", "-p")


def test_unknown_pipeline_name_suggests_one(home: Path) -> None:
    assert_one_clear_line(
        cli(home, "pipeline", "execute", "-f", SEVERAL, "-p", "repot"), "did you mean 'report'"
    )


def test_invalid_yaml(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("solids: [\n")
    assert_one_clear_line(
        cli(home, "pipeline", "execute", "-f", CONFIGURED, "-c", str(config)),
        str(config),
        "invalid YAML",
        "line 2",
    )


def test_missing_config_file(home: Path, tmp_path: Path) -> None:
    assert_one_clear_line(
        cli(home, "pipeline", "execute", "-f", CONFIGURED, "-c", str(tmp_path / "none.txt")),
        "none.txt not found",
    )


def test_config_errors_are_all_reported_with_paths(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("solids:\n  greet:\n    config: {}\n")
    done = cli(home, "pipeline", "execute", "-f", CONFIGURED, "-c", str(config))
    assert_one_clear_line(done, "solids.greet.config.name", "solids.greet.config.count")
    assert runs(home) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--tag", "no-equals"],
        ["--max-concurrency", "0"],
        ["--backend", "curio"],
        ["--json", "--quiet"],
    ],
)
def test_bad_options_exit_2(home: Path, args: list[str]) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert runs(home) == []


# -- pipeline list / show ------------------------------------------------------------------


def test_pipeline_list(home: Path) -> None:
    done = cli(home, "pipeline", "list", "-f", SEVERAL)
    assert done.returncode == 0, done.stderr
    assert "etl" in done.stdout
    assert "report" in done.stdout
    listed = json.loads(cli(home, "pipeline", "list", "-f", SEVERAL, "--json").stdout)
    assert {(p["name"], p["solids"]) for p in listed} == {("etl", 3), ("report", 2)}


def test_pipeline_show_prints_graph_policies_and_schema(home: Path) -> None:
    done = cli(home, "pipeline", "show", "-f", SEVERAL, "-p", "etl")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for fragment in (
        "extract -> scale",
        "scale -> total",
        "pool=db",
        "priority=2",
        "timeout=30s",
        "max_retries=2",
        "input numbers: list <- extract.result",
        '"factor"',
        "JSON Schema",
    ):
        assert fragment in out, fragment
    described = json.loads(
        cli(home, "pipeline", "show", "-f", SEVERAL, "-p", "etl", "--json").stdout
    )
    assert [(s["name"], s["priority"]) for s in described["steps"]] == [
        ("extract", 2),
        ("scale", 0),
        ("total", 0),
    ]
    assert described["edges"] == [
        {"from": "extract", "to": "scale"},
        {"from": "scale", "to": "total"},
    ]
    schema = described["config_schema"]["properties"]["solids"]["properties"]["scale"]
    assert "factor" in json.dumps(schema)


def test_a_bad_asyncdag_log_level_is_one_clear_line_and_nothing_runs(home: Path) -> None:
    done = subprocess.run(
        [ASYNCDAG, "pipeline", "execute", "-f", HELLO],
        env={**_env(home), "ASYNCDAG_LOG_LEVEL": "LOUD"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert_one_clear_line(done, "ASYNCDAG_LOG_LEVEL='LOUD' is not a logging level", "DEBUG")
    assert runs(home) == []


def test_pipeline_show_needs_a_choice_among_several(home: Path) -> None:
    assert_one_clear_line(cli(home, "pipeline", "show", "-f", SEVERAL), "etl, report")


# -- run list / show / delete --------------------------------------------------------------


@pytest.fixture
def three_runs(home: Path) -> list[str]:
    ids = []
    for path in (HELLO, FAILING, HELLO):
        done = cli(home, "pipeline", "execute", "-f", path, "--json")
        ids.append(json_lines(done.stdout)[0]["run_id"])
    return ids


def test_run_list_filters(home: Path, three_runs: list[str]) -> None:
    assert [r["run_id"] for r in runs(home)] == three_runs[::-1]
    assert [r["run_id"] for r in runs(home, "--pipeline", "failing")] == [three_runs[1]]
    assert [r["run_id"] for r in runs(home, "--status", "SUCCESS")] == [
        three_runs[2],
        three_runs[0],
    ]
    assert [r["run_id"] for r in runs(home, "--limit", "1")] == [three_runs[2]]
    table = cli(home, "run", "list")
    assert table.returncode == 0
    assert all(run_id in table.stdout for run_id in three_runs)


def test_run_list_rejects_an_unknown_status(home: Path) -> None:
    assert cli(home, "run", "list", "--status", "DONE").returncode == 2


def test_run_show_by_prefix(home: Path, three_runs: list[str]) -> None:
    failed = three_runs[1]
    done = cli(home, "run", "show", failed[:8])
    assert done.returncode == 0, done.stderr
    assert failed in done.stdout
    assert "FAILURE" in done.stdout
    assert "ValueError: the input was bad" in done.stdout
    assert "STEP_SKIPPED" in done.stdout
    shown = json.loads(cli(home, "run", "show", failed[:8], "--json").stdout)
    assert shown["run"]["status"] == "FAILURE"
    steps = {s["key"]: (s["status"], s["attempts"]) for s in shown["steps"]}
    assert steps == {
        "boom": ("FAILURE", 1),
        "after": ("SKIPPED", 0),
        "independent": ("SUCCESS", 1),
    }


def test_run_show_unknown_and_ambiguous_ids(home: Path, three_runs: list[str]) -> None:
    assert_one_clear_line(cli(home, "run", "show", "zzzz"), "no run with id 'zzzz'")
    assert_one_clear_line(cli(home, "run", "show", ""), "matches 3 runs")


def test_run_delete(home: Path, three_runs: list[str]) -> None:
    done = cli(home, "run", "delete", three_runs[0][:10])
    assert done.returncode == 0, done.stderr
    assert [r["run_id"] for r in runs(home)] == three_runs[:0:-1]
    assert cli(home, "run", "show", three_runs[0]).returncode == 2
    assert cli(home, "run", "delete", three_runs[0]).returncode == 2


def _started_run_of_this_process(home: Path) -> str:
    """A run recorded as STARTED by a live process (this one), as if it were still going."""
    from asyncdag.storage import RunRecord, SqliteStorage

    record = RunRecord(
        run_id="still-running-1234",
        pipeline_name="slow",
        status=RunStatus.STARTED,
        start_time=1.0,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )
    with SqliteStorage(home / "asyncdag.db") as storage:
        anyio.run(storage.create_run, record)
    return record.run_id


def test_run_delete_refuses_a_run_still_going_unless_forced(home: Path) -> None:
    run_id = _started_run_of_this_process(home)
    assert_one_clear_line(cli(home, "run", "delete", run_id), "still running", "--force", "cancel")
    assert [r["run_id"] for r in runs(home)] == [run_id]
    done = cli(home, "run", "delete", run_id, "--force")
    assert done.returncode == 0, done.stderr
    assert runs(home) == []


def test_run_show_summarises_a_big_run_and_pages_its_events(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", WIDE)
    assert done.returncode == 1, done.stderr
    assert "120 steps: 119 SUCCESS, 1 FAILURE" in done.stdout
    # No row for every step: the failed one and the five slowest (which ones depends on timing).
    rows = re.findall(r"^(s\d+|broken)\s+(SUCCESS|FAILURE)", done.stdout, re.MULTILINE)
    assert ("broken", "FAILURE") in rows and len(rows) == 6
    (run,) = runs(home)
    total = json.loads(cli(home, "run", "show", run["run_id"], "--json").stdout)
    assert len(total["steps"]) == 120
    events = total["events"]
    assert [e["seq"] for e in events] == list(range(len(events)))

    shown = cli(home, "run", "show", run["run_id"][:8])
    assert shown.returncode == 0, shown.stderr
    assert "120 steps: 119 SUCCESS, 1 FAILURE" in shown.stdout
    assert "steps that did not succeed" in shown.stdout
    assert "cannot parse report-\\udce9t\\udce9.csv" in shown.stdout  # escaped, not a crash
    assert f"showed 200 of {len(events)} events" in shown.stdout
    assert shown.stdout.count("STEP_START") == len(
        [e for e in events[:200] if e["type"] == "STEP_START"]
    )

    every = cli(home, "run", "show", run["run_id"], "--events", "all")
    assert every.stdout.count("STEP_SUCCESS") == 119 and "showed" not in every.stdout
    one_step = cli(home, "run", "show", run["run_id"], "--step", "broken")
    assert "STEP_FAILURE" in one_step.stdout and "STEP_SUCCESS" not in one_step.stdout
    warnings = cli(home, "run", "show", run["run_id"], "--level", "warning", "--json")
    levels = {e["level"] for e in json.loads(warnings.stdout)["events"]}
    assert levels and min(levels) >= 30
    after = json.loads(
        cli(home, "run", "show", run["run_id"], "--after", "9", "--events", "3", "--json").stdout
    )
    assert [e["seq"] for e in after["events"]] == [10, 11, 12]


def test_a_run_deleted_while_it_runs_exits_3_with_one_line(home: Path) -> None:
    process = _start(home, SLOW)
    try:
        seen = list(_read_until(process, "STEP_START", "wait_forever"))
        deleted = cli(home, "run", "delete", seen[0]["run_id"], "--force")
        assert deleted.returncode == 0, deleted.stderr
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("asyncdag: error:")]
    assert "was deleted from the run history while it ran" in line


def test_a_history_locked_by_a_long_write_is_still_listed(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--json")
    assert done.returncode == 0, done.stderr
    holder = sqlite3.connect(home / "asyncdag.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        listed = cli(home, "run", "list", "--json")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 1


def test_a_damaged_page_of_events_is_one_line_and_exit_2(home: Path) -> None:
    run_ids = []
    for _ in range(3):
        done = cli(home, "pipeline", "execute", "-f", WIDE, "--json")
        run_ids.append(json_lines(done.stdout)[0]["run_id"])
    path = home / "asyncdag.db"
    size = path.stat().st_size
    assert size > 16 * 4096
    with path.open("r+b") as file:  # the schema and the runs stay; pages of events go bad
        file.seek(10 * 4096)
        file.write(bytes(range(256)) * ((size - 10 * 4096) // 256 + 1))
    assert len(runs(home)) == 3  # what can be read still is
    done = cli(home, "run", "show", run_ids[-1])
    assert_one_clear_line(done, "it is damaged", "move it aside")
    assert len(done.stderr.strip().splitlines()) == 1


# -- signals -------------------------------------------------------------------------------


def _start(home: Path, path: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ASYNCDAG, "pipeline", "execute", "-f", path, "--json", *args],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], event_type: str, step_key: str | None) -> Iterator:
    """Events from the process's stdout up to and including the one awaited."""
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        yield event
        if event["type"] == event_type and event["step_key"] == step_key:
            return
    raise AssertionError(f"the process ended before {event_type} of {step_key}")


def _stored_run(home: Path, run_id: str, *, recover: bool) -> Any:
    from asyncdag.storage import SqliteStorage

    with SqliteStorage(home / "asyncdag.db", recover_orphans=recover) as storage:
        return anyio.run(functools.partial(storage.get_run, run_id))


def _signal_after(
    process: subprocess.Popen[str], step_key: str, *signals: signal.Signals
) -> tuple[list[dict[str, Any]], str]:
    """Once ``step_key`` started, send ``signals`` (each after the run says it is canceling);
    return every event the process printed, and its stderr."""
    try:
        seen = list(_read_until(process, "STEP_START", step_key))
        for number, sig in enumerate(signals):
            if number:
                seen += list(_read_until(process, "RUN_CANCELING", None))
            process.send_signal(sig)
        rest, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    return seen + json_lines(rest), err


def _assert_stored_all_printed(home: Path, printed: list[dict[str, Any]]) -> None:
    shown = json.loads(cli(home, "run", "show", printed[0]["run_id"], "--json").stdout)
    stored = [e["seq"] for e in shown["events"]]
    assert stored == list(range(len(stored)))
    assert {e["seq"] for e in printed} <= set(stored)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_cancels_the_run_records_it_canceled_and_exits_128_plus_n(
    home: Path, backend: str, sig: signal.Signals, code: int
) -> None:
    process = _start(home, SLOW, "--backend", backend)
    events, err = _signal_after(process, "wait_forever", sig)
    assert process.returncode == code == 128 + sig, err  # the shell's "ended by signal N"
    assert events[-1]["type"] == "RUN_CANCELED"
    assert "STEP_CANCELED" in [e["type"] for e in events]
    record = _stored_run(home, events[0]["run_id"], recover=False)
    assert record.status is RunStatus.CANCELED


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_second_ctrl_c_exits_at_once_and_records_the_run_canceled(home: Path, backend: str) -> None:
    process = _start(home, STUBBORN, "--backend", backend)
    events, err = _signal_after(process, "stubborn", signal.SIGINT, signal.SIGINT)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    record = _stored_run(home, events[0]["run_id"], recover=False)
    assert record.status is RunStatus.CANCELED  # recorded before exiting, not FAILURE "killed?"
    _assert_stored_all_printed(home, events)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_ends_a_run_stuck_in_a_sync_solid_and_records_it_canceled(
    home: Path, backend: str
) -> None:
    # One signal only: the grace period, not a second signal, ends the process.
    process = _start(home, STUBBORN, "--backend", backend, "--grace-period", "0.2")
    events, err = _signal_after(process, "stubborn", signal.SIGTERM)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert _stored_run(home, events[0]["run_id"], recover=False).status is RunStatus.CANCELED
    _assert_stored_all_printed(home, events)


def test_a_thread_the_run_left_running_does_not_hold_the_process(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", str(PIPELINES / "leaves_a_thread.py"))
    assert done.returncode == 0, done.stderr
    assert "waits-forever" in done.stderr  # said, in one line, why it did not wait
    assert len(done.stderr.strip().splitlines()) == 1
    assert [r["status"] for r in runs(home)] == ["SUCCESS"]


def test_sigkill_leaves_a_started_run_that_the_next_command_marks_failed(home: Path) -> None:
    process = _start(home, SLOW)
    try:
        seen = list(_read_until(process, "STEP_START", "wait_forever"))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    run_id = seen[0]["run_id"]
    assert _stored_run(home, run_id, recover=False).status is RunStatus.STARTED
    (listed,) = runs(home)
    assert listed["run_id"] == run_id
    assert listed["status"] == "FAILURE"
    assert "killed" in listed["failure_reason"]
    table = cli(home, "run", "list")
    assert "FAILURE" in table.stdout
    assert "killed" in table.stdout


def test_pipeline_show_describes_fan_out_and_collect(home: Path) -> None:
    crawler = str(Path(__file__).resolve().parent.parent / "examples" / "crawler.py")
    done = cli(home, "pipeline", "show", "-f", crawler)
    assert done.returncode == 0, done.stderr
    assert "mapped over each item of discover.urls" in done.stdout
    assert "<- collect fetch.result over each item of discover.urls" in done.stdout


# -- a reader that leaves early (| head -1) --------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "backend"),
    [([], "asyncio"), (["--quiet"], "trio"), (["--json"], "asyncio"), (["--json"], "trio")],
)
def test_a_reader_leaving_early_changes_neither_the_run_nor_the_exit_code(
    home: Path, tmp_path: Path, mode: list[str], backend: str
) -> None:
    gate = tmp_path / "gate"
    config = tmp_path / "gate.yaml"
    config.write_text(f"solids: {{wait_for_gate: {{config: {{gate: {json.dumps(str(gate))}}}}}}}")
    gated = str(PIPELINES / "gated_chatter.py")
    process = subprocess.Popen(
        [
            ASYNCDAG,
            "pipeline",
            "execute",
            "-f",
            gated,
            "-c",
            str(config),
            "--backend",
            backend,
            *mode,
        ],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline()  # like `| head -1`: one line, then the reader leaves
        process.stdout.close()
        process.stdout = None
        gate.touch()  # only now do the 300 log lines come, into a closed pipe
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert err == ""
    (record,) = runs(home)
    assert record["status"] == "SUCCESS"
    shown = json.loads(cli(home, "run", "show", record["run_id"], "--json").stdout)
    assert sum(e["message"].startswith("line ") for e in shown["events"]) == 300
    assert shown["events"][-1]["type"] == "RUN_SUCCESS"


# -- more bad input: one clear line, exit 2 --------------------------------------------------


def test_config_file_that_is_not_utf8(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("solids: {greet: {config: {name: Zo\xeb}}}\n".encode("latin-1"))
    assert_one_clear_line(
        cli(home, "pipeline", "execute", "-f", CONFIGURED, "-c", str(config)),
        str(config),
        "not UTF-8",
    )


def test_config_path_that_is_a_directory(home: Path, tmp_path: Path) -> None:
    assert_one_clear_line(
        cli(home, "pipeline", "execute", "-f", CONFIGURED, "-c", str(tmp_path)),
        str(tmp_path),
        "is a directory",
    )


def test_pipeline_file_calling_sys_exit_at_import(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "exits.py"
    path.write_text("import sys\n\nsys.exit(3)\n")
    done = cli(home, "pipeline", "execute", "-f", str(path))
    assert_one_clear_line(done, "exits.py:3", "sys.exit(3)", "while being imported")


@pytest.mark.parametrize("limit", ["0", "-1", str(2**63), str(10**30)])
def test_run_list_limit_out_of_range(home: Path, limit: str) -> None:
    assert_one_clear_line(cli(home, "run", "list", "--limit", limit), "--limit", limit)


def test_jaeger_json_naming_a_directory(home: Path, tmp_path: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--jaeger-json", str(tmp_path))
    assert_one_clear_line(done, "jaeger_json", str(tmp_path), "is a directory")
    assert runs(home) == []


def test_jaeger_json_in_a_directory_that_cannot_exist(home: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    target = a_file / "trace.json"
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--jaeger-json", str(target))
    assert_one_clear_line(done, "cannot write jaeger_json", str(target))


def test_unreachable_otlp_endpoint_is_one_warning_and_the_run_stands(home: Path) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        done = cli(home, "pipeline", "execute", "-f", HELLO, "--json", "--otlp-endpoint", endpoint)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("asyncdag: warning: ")
    assert endpoint in line
    assert json_lines(done.stdout)[-1]["type"] == "RUN_SUCCESS"
    assert [r["status"] for r in runs(home)] == ["SUCCESS"]


def test_run_history_failing_mid_run_is_one_line(home: Path) -> None:
    done = cli(home, "pipeline", "execute", "-f", str(PIPELINES / "history_deleted.py"))
    # The run itself succeeded (its summary is printed); its history is incomplete: exit 3.
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "SUCCESS" in done.stdout
    assert done.stderr.startswith("asyncdag: error: ")
    for fragment in ("run history", str(home / "asyncdag.db"), "could not be stored"):
        assert fragment in done.stderr, (fragment, done.stderr)
    assert "ExceptionGroup" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_every_help_page_works(home: Path) -> None:
    pages = [[], ["pipeline"], ["run"]]
    pages += [["pipeline", c] for c in ("execute", "list", "show", "bench")]
    pages += [["run", c] for c in ("list", "show", "delete")]
    pages += [["ui"]]
    for page in pages:
        done = cli(home, *page, "--help")
        assert done.returncode == 0, (page, done.stderr)
        assert done.stdout.startswith("usage: asyncdag"), page
        assert done.stderr == "", page
