"""What a run config may hold (JSON data), and reading it from YAML at a cost bounded by its size.

A run's config is stored with the run as JSON, served to the web UI and
replayed by "Re-run", so it must be JSON data.  :func:`json_data` checks that
once, for every way config arrives (a dict from Python, ``-c`` files, the UI's
YAML or JSON), and reports each problem with its dotted path: NaN and
infinity, bytes, sets, objects, non-string keys, structures that contain
themselves or nest deeper than :data:`MAX_DEPTH`.  Python values with an
obvious JSON form are converted: tuples become lists, enum members their value,
attrs instances mappings, dates and times ISO 8601 text.

:func:`read_yaml` reads a YAML document so that a hostile one cannot cost more
than its size: aliases may add at most :data:`ALIAS_BUDGET` values to the
document ("billion laughs" is refused before anything expands), nesting stops at
:data:`MAX_DEPTH`, and an integer too long for Python to read is an error at its
line rather than a crash.  YAML timestamps (``2024-01-01``) are read as the text
written, since JSON has no date type.
"""

from __future__ import annotations

import datetime
import enum
import functools
import math
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from asyncdag._errors import ConfigErrorItem

__all__ = ["ALIAS_BUDGET", "MAX_DEPTH", "MAX_VALUES", "YamlProblem", "json_data", "read_yaml"]

#: Deepest nesting of mappings and lists a run config may have.
MAX_DEPTH = 100
#: Most values YAML aliases (``*name``) may add to a document by repeating what they name.
ALIAS_BUDGET = 10_000
#: Most values (scalars, lists and mappings) one run config may hold.
MAX_VALUES = 1_000_000


# --- JSON data --------------------------------------------------------------------------------


def _what(value: Any) -> str:
    kind = type(value)
    return (
        kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    )


_INSTEAD: dict[type, str] = {
    bytes: "a string",
    bytearray: "a string",
    set: "a list",
    frozenset: "a list",
}


def _scalar(value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
    """A JSON scalar for ``value``, or the value itself after recording why it has none."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > 64:
            try:
                str(value)
            except ValueError:
                limit = sys.get_int_max_str_digits()
                errors.append(
                    ConfigErrorItem(
                        path,
                        f"an integer of more than {limit} digits is longer than JSON readers "
                        "accept; give it as a string",
                    )
                )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            errors.append(
                ConfigErrorItem(
                    path,
                    f"{value!r} is not a finite number, and run config is stored as JSON, which "
                    "has no NaN or infinity; give a number (or null)",
                )
            )
        return value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        inner = value.value
        return inner if isinstance(inner, str | int | float | bool | None) else value.name
    instead = _INSTEAD.get(type(value), "a string, number, boolean, null, list or mapping")
    errors.append(ConfigErrorItem(path, f"a {_what(value)} is not JSON data; give {instead}"))
    return value


class _Walk:
    """One :func:`json_data` walk: the problems found, values seen, containers being copied."""

    __slots__ = ("ancestors", "count", "errors")

    def __init__(self) -> None:
        self.errors: list[ConfigErrorItem] = []
        self.ancestors: set[int] = set()  # ids of the containers on the current path (cycles)
        self.count = 0

    def value(self, value: Any, path: str, depth: int) -> Any:
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if (kind is int and value.bit_length() <= 64) or (kind is float and math.isfinite(value)):
            return value
        if kind is dict or kind is list or kind is tuple:
            return self.container(value, path, depth)
        if isinstance(value, Mapping | list | tuple):
            return self.container(value, path, depth)
        if attrs.has(kind):  # as the mapping of its fields, which validation turns back into one
            fields = {a.alias: getattr(value, a.name) for a in attrs.fields(kind) if a.init}
            return self.container(fields, path, depth)
        return _scalar(value, path, self.errors)

    def container(self, value: Any, path: str, depth: int) -> Any:
        if id(value) in self.ancestors:
            self.errors.append(
                ConfigErrorItem(path, "contains itself; run config must be a tree of values")
            )
            return None
        if depth >= MAX_DEPTH:
            self.errors.append(
                ConfigErrorItem(path, f"nests deeper than {MAX_DEPTH} levels; flatten it")
            )
            return None
        self.count += len(value)
        if self.count > MAX_VALUES:
            raise _TooLarge
        self.ancestors.add(id(value))
        try:
            if isinstance(value, list | tuple):
                return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    self.errors.append(
                        ConfigErrorItem(
                            path,
                            f"key {key!r} is a {_what(key)}; mapping keys in run config are "
                            "strings (in YAML, quote it)",
                        )
                    )
                    continue
                kind = type(item)
                if kind is str or kind is bool or item is None:  # most values: no path built
                    out[key] = item
                else:
                    out[key] = self.value(item, f"{path}.{key}" if path else key, depth + 1)
            return out
        finally:
            self.ancestors.discard(id(value))


class _TooLarge(Exception):
    pass


def json_data(value: Any, *, path: str = "") -> tuple[Any, list[ConfigErrorItem]]:
    """``value`` as plain JSON data (a copy), and every place where it is not JSON, by path.

    Recursion is bounded by :data:`MAX_DEPTH` (checked before descending), so
    nesting cannot exhaust the stack; a value holding more than :data:`MAX_VALUES`
    values or containing itself is refused without walking it all.  With errors,
    the copy is best effort and must not be used.
    """
    walk = _Walk()
    try:
        copy = walk.value(value, path, 0)
    except _TooLarge:
        return None, [ConfigErrorItem(path, f"holds more than {MAX_VALUES:,} values")]
    return copy, walk.errors


# --- YAML -------------------------------------------------------------------------------------


class YamlProblem(Exception):
    """A YAML document that cannot be run config: what is wrong, and where (1-based)."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}: " if self.line is not None else ""
        return f"{where}{self.message}"


@functools.cache
def _loader_class() -> type:
    """PyYAML's safe loader with a depth bound, bounded integers and timestamps kept as text.

    Built on first use: ``import asyncdag`` must not import yaml.
    """
    import yaml

    class RunConfigLoader(yaml.SafeLoader):  # type: ignore[misc]
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH + 1:  # MAX_DEPTH containers, then a value
                    mark = self.peek_event().start_mark
                    raise YamlProblem(
                        f"nests deeper than {MAX_DEPTH} levels; flatten it",
                        line=mark.line + 1,
                        column=mark.column + 1,
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # longer than sys.get_int_max_str_digits()
                limit = sys.get_int_max_str_digits()
                raise YamlProblem(
                    f"an integer of more than {limit} digits is longer than Python reads; "
                    "quote it to keep it as text",
                    line=node.start_mark.line + 1,
                    column=node.start_mark.column + 1,
                ) from None

        def construct_yaml_timestamp(self, node: Any) -> Any:
            return self.construct_scalar(node)

    RunConfigLoader.add_constructor("tag:yaml.org,2002:int", RunConfigLoader.construct_yaml_int)
    RunConfigLoader.add_constructor(
        "tag:yaml.org,2002:timestamp", RunConfigLoader.construct_yaml_timestamp
    )
    return RunConfigLoader


def _node_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_aliases(root: Any) -> None:
    """Refuse a document whose aliases expand to more than ALIAS_BUDGET extra values, or loop.

    An alias is the node it names, shared, so the composed document is a graph:
    its size once expanded is summed bottom-up with each node counted once, which
    costs the number of distinct nodes however large the expansion would be.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _node_children(node))
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _node_children(node):
            if id(child) in on_path:
                mark = child.start_mark
                raise YamlProblem(
                    "an alias refers to a value that contains it, so the document never ends; "
                    "run config must be a tree",
                    line=mark.line + 1,
                    column=mark.column + 1,
                )
            if id(child) not in sizes:
                stack.append((child, False))
    added = sizes[id(root)] - len(sizes)
    if added > ALIAS_BUDGET:
        raise YamlProblem(
            f"aliases (*name) would repeat {added:,} values, and run config allows them "
            f"{ALIAS_BUDGET:,} (a 'billion laughs' document?); write the values out or "
            "alias less deeply"
        )


def _unreadable(text: str, position: int, character: int) -> YamlProblem:
    line_start = text.rfind("\n", 0, position) + 1
    return YamlProblem(
        f"invalid YAML: character {character:#06x} is not allowed here "
        '(write it as an escape in a double-quoted string, such as "\\x1f")',
        line=text.count("\n", 0, position) + 1,
        column=position - line_start + 1,
    )


def read_yaml(text: str) -> tuple[Any, Any]:
    """Read one YAML document of run config: (data, root node for line numbers), or YamlProblem.

    An empty document reads as ``(None, None)``.  The data is what a safe loader
    builds, with timestamps as their text; check it with :func:`json_data`.
    """
    import yaml

    try:
        loader = _loader_class()(text)  # reads the whole text: refuses control characters here
    except yaml.reader.ReaderError as exc:
        raise _unreadable(text, exc.position, exc.character) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_aliases(root)
        return loader.construct_document(root), root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or str(exc)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise YamlProblem(f"invalid YAML: {problem}", line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
