"""``asyncdag schedule | sensor``: listing, turning on and off, previewing, and bad input.

Driven in-process through ``asyncdag.cli.main`` (the real parser and handlers);
``asyncdag scheduler run`` itself is tested in a subprocess, on real time, in
``test_automation_processes.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from asyncdag.cli import main
from asyncdag.storage import InstigatorStatus, SqliteStorage

SCHEDULED = str(Path(__file__).parent / "pipelines" / "scheduled.py")


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("ASYNCDAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ASYNCDAG_STORAGE_URL", raising=False)  # the history under home
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored_status(home: Path, name: str) -> InstigatorStatus | None:
    async def read() -> InstigatorStatus | None:
        async with SqliteStorage(home / "asyncdag.db") as storage:
            state = await storage.get_instigator_state(name)
            return None if state is None else state.status

    return anyio.run(read)


def test_schedule_list_shows_each_schedule_with_its_zone_and_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "schedule", "list", "-f", SCHEDULED)
    assert code == 0
    assert "monday_morning" in out
    assert "0 9 * * 1 (Europe/Berlin)" in out
    assert "STOPPED" in out
    assert "report_requests" not in out  # a sensor: `asyncdag sensor list`


def test_schedule_start_and_stop_are_stored_and_listed(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, _ = run(capsys, "schedule", "start", "monday_morning", "-f", SCHEDULED)
    assert (code, out.strip()) == (0, "schedule 'monday_morning' is now RUNNING")
    assert stored_status(home, "monday_morning") is InstigatorStatus.RUNNING
    code, out, _ = run(capsys, "schedule", "list", "-f", SCHEDULED, "--json")
    (row,) = json.loads(out)
    assert row["status"] == "RUNNING"
    assert len(row["next_ticks"]) == 1
    assert row["next_ticks"][0]["local"].endswith(("+01:00", "+02:00"))  # Berlin time
    run(capsys, "schedule", "stop", "monday_morning", "-f", SCHEDULED)
    assert stored_status(home, "monday_morning") is InstigatorStatus.STOPPED


def test_sensor_list_start_and_stop(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run(capsys, "sensor", "list", "-f", SCHEDULED)
    assert code == 0 and "report_requests" in out and "every 3600s" in out
    code, _, _ = run(capsys, "sensor", "start", "report_requests", "-f", SCHEDULED)
    assert code == 0
    assert stored_status(home, "report_requests") is InstigatorStatus.RUNNING


def test_schedule_preview_prints_the_next_ticks_in_the_schedules_zone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "schedule", "preview", "monday_morning", "-f", SCHEDULED, "-n", "3")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert " 09:00:00 CE" in line  # CET or CEST: Berlin's wall clock, not UTC
        assert line.split("(")[1].startswith(line.split()[0])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("schedule", "start", "nope"),
            "no schedule named 'nope'; schedules loaded: monday_morning",
        ),
        (("sensor", "stop", "monday_morning"), "no sensor named 'monday_morning'"),
        (("schedule", "preview", "monday_morning", "-n", "0"), "-n must be 1 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, *argv, "-f", SCHEDULED)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_scheduler_run_refuses_a_file_without_schedules(capsys: pytest.CaptureFixture[str]) -> None:
    hello = str(Path(__file__).parent / "pipelines" / "hello.py")
    code, _, err = run(capsys, "scheduler", "run", "-f", hello)
    assert code == 2
    assert "no schedule or sensor to run" in err
