"""The three entry points take the same options, one RunOptions carries them, the README lists them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import attrs

from asyncdag import execute_pipeline, execute_pipeline_async, open_run
from asyncdag._api._options import RunOptions

README = Path(__file__).resolve().parent.parent / "README.md"
# What is not an option of all three, and why: backend picks the loop the blocking call starts.
ONLY = {"backend": {"execute_pipeline"}}


def keyword_options(fn: object) -> dict[str, object]:
    fn = inspect.unwrap(fn)  # type: ignore[arg-type]
    return {
        name: param.default
        for name, param in inspect.signature(fn).parameters.items()  # type: ignore[arg-type]
        if param.kind is param.KEYWORD_ONLY
    }


def test_the_entry_points_take_the_same_keyword_options() -> None:
    entries = {
        "execute_pipeline": keyword_options(execute_pipeline),
        "execute_pipeline_async": keyword_options(execute_pipeline_async),
        "open_run": keyword_options(open_run),
    }
    for name, options in entries.items():
        shared = {k for k in options if k not in ONLY}
        assert shared == {k for k in entries["open_run"] if k not in ONLY}, name
        assert {k for k in options if k in ONLY} == {
            k for k, where in ONLY.items() if name in where
        }
    # The same defaults everywhere, but for the console a script run from a terminal shows,
    # and raise_on_error: a handle is for watching a run, a call for its result.
    for option, default in entries["open_run"].items():
        if option != "raise_on_error":
            assert entries["execute_pipeline_async"][option] == default, option
        if option not in ("console", "raise_on_error"):
            assert entries["execute_pipeline"][option] == default, option
    assert entries["open_run"]["console"] is None
    assert entries["execute_pipeline"]["console"] is True
    assert entries["open_run"]["raise_on_error"] is False
    assert entries["execute_pipeline"]["raise_on_error"] is True
    assert entries["execute_pipeline_async"]["raise_on_error"] is True


def test_run_options_carries_every_option_of_the_entry_points() -> None:
    fields = {field.name for field in attrs.fields(RunOptions)}
    assert set(keyword_options(execute_pipeline_async)) <= fields
    # internal: the launcher, and where the CLI loaded the pipeline from (for re-execution)
    assert fields - set(keyword_options(execute_pipeline_async)) == {"launcher", "origin"}


def test_the_readme_lists_every_option_where_it_says_so() -> None:
    text = README.read_text()
    start = re.search(r"Options\s+\(keyword-only", text)
    assert start is not None
    paragraph = text[start.start() :].split("\n\n")[0]
    for option in keyword_options(execute_pipeline):
        assert re.search(rf"`{option}[=`]", paragraph), option
