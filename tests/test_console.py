"""A run's log output: quiet as a library, the Dagster-style console only when asked.

Each test plays a host: one that configured no logging at all (``bare_host``), or one
that gave the ``asyncdag`` logger a handler of its own.  Records are counted through
the record factory, so "nothing is built when nothing would print" is checked, not assumed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import (
    AsyncdagError,
    EventType,
    RunStatus,
    execute_pipeline,
    execute_pipeline_async,
    open_run,
    pipeline,
    solid,
)
from asyncdag._api._console import install_console_handler

SRC = Path(__file__).resolve().parent.parent / "src"


@solid
def get_name() -> str:
    return "Kan"


@solid
async def hey(context: Any, name: str) -> str:
    context.log.info(f"Hey, {name}!")
    return name


@pipeline
def hey_pipeline() -> None:
    hey(get_name())


started: dict[str, anyio.Event] = {}


@solid
async def waits(context: Any) -> None:
    started[context.run_id].set()
    await anyio.sleep_forever()


@solid
async def after(value: None) -> None:
    pass


@pipeline
def cancellable() -> None:
    for i in range(5):
        after.alias(f"after_{i}")(waits.alias(f"waits_{i}")())


class BareHost:
    """A host that configured no logging, entered with ``with bare_host as logger:``.

    pytest hangs its capture handlers on the root logger (and on non-propagating ones)
    only once the test body runs, so they are set aside inside the body, and put back.
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger("asyncdag")
        self._saved: list[tuple[logging.Logger, list[logging.Handler]]] = []

    def __enter__(self) -> logging.Logger:
        for logger in (logging.root, self.logger):
            self._saved.append((logger, logger.handlers[:]))
            logger.handlers.clear()
        return self.logger

    def __exit__(self, *exc: object) -> None:
        for logger, handlers in self._saved:
            logger.handlers[:] = handlers


@pytest.fixture
def bare_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[BareHost]:
    """No ``ASYNCDAG_LOG_LEVEL``, and the ``asyncdag`` logger as the library leaves it."""
    monkeypatch.delenv("ASYNCDAG_LOG_LEVEL", raising=False)
    logger = logging.getLogger("asyncdag")
    saved = (logger.level, logger.propagate, logger.disabled)
    logger.propagate = True
    logger.disabled = False
    logger.setLevel(logging.NOTSET)  # also clears the loggers' isEnabledFor caches
    yield BareHost()
    _, logger.propagate, logger.disabled = saved
    logger.setLevel(saved[0])


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every log record built for the ``asyncdag`` hierarchy while the test runs."""
    built: list[logging.LogRecord] = []
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.split(".")[0] == "asyncdag":
            built.append(record)
        return record

    logging.setLogRecordFactory(factory)
    yield built
    logging.setLogRecordFactory(previous)


class Collect(logging.Handler):
    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def cancel_a_run(**options: Any) -> None:
    """Start ``cancellable`` and cancel it once its five steps are running."""
    async with open_run(cancellable, **options) as handle:
        event = started[handle.run_id] = anyio.Event()
        await event.wait()
        handle.cancel()
    assert (await handle.result()).status is RunStatus.CANCELED


# --- quiet by default --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_library_run_prints_nothing_and_builds_no_record(
    bare_host: BareHost, records: list[logging.LogRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    with bare_host as logger:
        for _ in range(3):
            result = await execute_pipeline_async(hey_pipeline)
            assert result.success
        await cancel_a_run()
        assert logger.handlers == []  # and the library installed nothing
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""
    assert records == []


@pytest.mark.anyio
async def test_cancelling_a_run_is_one_warning_not_one_per_step(
    bare_host: BareHost, records: list[logging.LogRecord]
) -> None:
    handler = Collect(logging.WARNING)
    with bare_host as logger:
        logger.addHandler(handler)
        await cancel_a_run()
    assert [(r.levelname, r.event_type) for r in handler.records] == [  # type: ignore[attr-defined]
        ("WARNING", "RUN_CANCELED")
    ]
    # Records were built only for what the handler prints.
    assert len(records) == len(handler.records)


@pytest.mark.anyio
async def test_step_cancellations_are_debug_events() -> None:
    async with open_run(cancellable) as handle:
        event = started[handle.run_id] = anyio.Event()
        await event.wait()
        handle.cancel()
    result = await handle.result()
    cancelled = [e for e in result.events if e.type is EventType.STEP_CANCELED]
    assert len(cancelled) == 10  # five running, five that never started
    assert {e.level for e in cancelled} == {logging.DEBUG}
    (canceling,) = [e for e in result.events if e.type is EventType.RUN_CANCELING]
    assert canceling.level == logging.INFO


# --- the console, when asked -----------------------------------------------------------------


def console_line(result: Any, level: str, step: str, text: str) -> str:
    """The tail of a console line: ``... - LEVEL - pipeline - run id - step - text``."""
    return f" - asyncdag - {level} - {result.pipeline_name} - {result.run_id} - {step} - {text}"


@pytest.mark.anyio
async def test_console_true_prints_the_dagster_style_console_on_stderr(
    bare_host: BareHost, capsys: pytest.CaptureFixture[str]
) -> None:
    with bare_host as logger:
        result = await execute_pipeline_async(hey_pipeline, console=True)
        lines = capsys.readouterr().err.splitlines()
        # Asked for one run: nothing was installed for the next.
        assert logger.handlers == []
        await execute_pipeline_async(hey_pipeline)
    assert any(console_line(result, "DEBUG", "hey", "STEP_START - ") in line for line in lines)
    assert any(line.endswith(console_line(result, "INFO", "hey", "Hey, Kan!")) for line in lines)
    assert len(lines) == len(result.events)
    assert capsys.readouterr().err == ""


@pytest.mark.anyio
async def test_asyncdag_log_level_turns_the_console_on_at_that_level(
    bare_host: BareHost, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCDAG_LOG_LEVEL", "info")
    with bare_host:
        result = await execute_pipeline_async(hey_pipeline)
        lines = capsys.readouterr().err.splitlines()
        await execute_pipeline_async(hey_pipeline, console=False)
    assert len(lines) == 1
    assert lines[0].endswith(console_line(result, "INFO", "hey", "Hey, Kan!"))
    assert capsys.readouterr().err == ""


@pytest.mark.anyio
async def test_a_bad_asyncdag_log_level_is_one_clear_error_before_anything_runs(
    bare_host: BareHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCDAG_LOG_LEVEL", "LOUD")
    ran: list[str] = []

    @solid
    def note() -> None:
        ran.append("note")

    @pipeline
    def p() -> None:
        note()

    with bare_host:
        with pytest.raises(
            AsyncdagError, match=r"ASYNCDAG_LOG_LEVEL='LOUD' is not a logging level"
        ):
            await execute_pipeline_async(p)
        assert ran == []
        await execute_pipeline_async(p, console=False)  # a run that prints nothing never reads it
    assert ran == ["note"]


@pytest.mark.anyio
async def test_the_applications_handlers_get_the_events_and_the_console_stays_quiet(
    bare_host: BareHost, records: list[logging.LogRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    handler = Collect()
    with bare_host as logger:
        logging.root.addHandler(handler)  # the host's own logging, at the root
        logger.setLevel(logging.INFO)
        await execute_pipeline_async(hey_pipeline, console=True)
    assert [r.getMessage() for r in handler.records] == ["Hey, Kan!"]
    assert handler.records[0].name == "asyncdag"
    assert handler.records[0].step_key == "hey"  # type: ignore[attr-defined]
    assert capsys.readouterr().err == ""  # never twice
    assert len(records) == 1  # no record built for the DEBUG events nobody prints


def test_execute_pipeline_prints_the_console_by_default(
    anyio_backend: str, bare_host: BareHost, capsys: pytest.CaptureFixture[str]
) -> None:
    with bare_host:
        result = execute_pipeline(hey_pipeline, backend=anyio_backend)
        err = capsys.readouterr().err
        execute_pipeline(hey_pipeline, backend=anyio_backend, console=False)
    assert err.splitlines()[-1].endswith(
        "RUN_SUCCESS - Finished execution of run for 'hey_pipeline'."
    )
    assert "Hey, Kan!" in err
    assert len(err.splitlines()) == len(result.events)
    assert capsys.readouterr().err == ""


def test_install_console_handler_is_for_processes_that_are_the_application(
    bare_host: BareHost, capsys: pytest.CaptureFixture[str]
) -> None:
    with bare_host as logger:
        install_console_handler()
        install_console_handler()  # once is enough
        assert len(logger.handlers) == 1
        assert logger.level == logging.DEBUG
        execute_pipeline(hey_pipeline, console=False)  # its runs print through the logger
        logger.handlers.clear()
    assert "Hey, Kan!" in capsys.readouterr().err


# --- in a host process, as a web service would run it ------------------------------------------


HOST = """
import sys
import anyio
from asyncdag import execute_pipeline_async, open_run, pipeline, solid

started = {}

@solid
async def hey(context, n: int = 0):
    context.log.info("hello")
    context.log.warning("careful")

@solid
async def waits(context):
    started[context.run_id].set()
    await anyio.sleep_forever()

@pipeline
def greet():
    for i in range(5):
        hey.alias(f"hey_{i}")()

@pipeline
def hangs():
    for i in range(5):
        waits.alias(f"waits_{i}")()

async def main():
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(execute_pipeline_async, greet)
    for _ in range(5):
        async with open_run(hangs) as run:
            started[run.run_id] = anyio.Event()
            await started[run.run_id].wait()
            run.cancel()
    print("done")

anyio.run(main, backend=sys.argv[1])
"""


def test_a_host_awaiting_and_cancelling_runs_keeps_its_stderr(
    anyio_backend: str, tmp_path: Path
) -> None:
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(HOST))
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script), anyio_backend],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert done.stderr == ""
    # Asked for, the same runs print: 20 greetings of 5 steps, each with two lines logged.
    loud = subprocess.run(
        [sys.executable, str(script), anyio_backend],
        capture_output=True,
        text=True,
        env={**env, "ASYNCDAG_LOG_LEVEL": "WARNING"},
        timeout=120,
    )
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert sum(" - careful" in line for line in lines) == 100
    assert sum("RUN_CANCELED" in line for line in lines) == 5
    assert len(lines) == 105
