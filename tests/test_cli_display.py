"""The CLI's log lines: in a file or a pipe, the same characters a terminal shows, without styles."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from asyncdag.cli._display import ConsoleLogHandler


def _record(**fields: object) -> logging.LogRecord:
    name = str(fields.pop("name", "asyncdag"))
    level = int(fields.pop("level", logging.DEBUG))  # type: ignore[call-overload]
    record = logging.LogRecord(name, level, __file__, 1, fields.pop("msg", "hello"), None, None)
    record.created = 1_700_000_000.5
    for key, value in fields.items():
        setattr(record, key, value)
    return record


def _plain_handler() -> tuple[ConsoleLogHandler, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, color_system=None, force_terminal=False, width=120)
    return ConsoleLogHandler(console), out


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"step_key": "fetch", "event_type": "STEP_START", "asyncdag_event": object()},
        {"step_key": "fetch", "asyncdag_event": object(), "msg": "a log line"},
        {"name": "httpx", "level": logging.WARNING, "msg": "from a library"},
        {"level": logging.ERROR, "error_traceback": "Traceback...\n  boom\n", "step_key": "s"},
        {"msg": "control \x1b[31mcodes\x07 and a lone \udcff surrogate"},
    ],
)
def test_a_plain_line_has_the_characters_of_the_styled_one(fields: dict[str, object]) -> None:
    handler, out = _plain_handler()
    record = _record(**fields)
    styled = "".join(text for text, _ in handler._parts(record))
    handler.emit(record)
    assert out.getvalue() == handler._strip(styled) + "\n"


@given(
    message=st.text(),
    step_key=st.none() | st.text(min_size=1),
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]),
)
def test_any_record_prints_the_characters_a_terminal_shows(
    message: str, step_key: str | None, level: int
) -> None:
    handler, out = _plain_handler()
    record = _record(msg=message.replace("%", "%%"), step_key=step_key, level=level)
    handler.emit(record)
    styled = "".join(text for text, _ in handler._parts(record))
    assert out.getvalue() == handler._strip(styled) + "\n"


def test_whether_the_console_is_a_terminal_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            asked.append(1)
            return False

    console = Console(file=Stream(), color_system=None, force_terminal=None, width=120)
    handler = ConsoleLogHandler(console)
    before = len(asked)
    for _ in range(50):
        handler.emit(_record())
    assert len(asked) == before  # no isatty() a line
