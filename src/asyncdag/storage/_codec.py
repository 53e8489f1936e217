"""JSON text for what a run hands storage: run config, tags, event data.  Any value, never a refusal.

A run must never become unstorable because of one value in it, so this encoder
takes whatever comes: ``NaN`` and infinities (valid floats in a YAML config),
text with lone surrogates (a non-UTF-8 file name decoded by Python), a date
under an ``Any`` config field, tuples, sets, objects, keys that are not strings,
structures nested absurdly deep or referring to themselves.

* JSON values come back as they went in.  Non-finite floats are written the way
  Python's :mod:`json` writes them (``NaN``, ``Infinity``) and :func:`loads`
  reads them back; the output is ASCII, lone surrogates escaped as ``\\udcXX``,
  so every text column and encoding takes it.
* Values JSON has no type for are stored as the nearest JSON value: dates and
  times as ISO 8601 text, bytes as text, sets as lists, any other object as its
  ``repr``.  Keys that are not strings become their ``str``.
* A structure nested deeper than :data:`MAX_DEPTH` or referring to itself keeps
  everything above that point and a note in its place.

The fast path is one call into the C encoder built once (``json.dumps`` builds
a new one on every call, which was most of its cost on the engine's small event
dicts); only a value the fast path refuses walks the slow path.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "dumps", "loads", "plain"]

#: Nesting kept when a value must be walked; deeper levels are replaced by a note.
MAX_DEPTH = 200


def _substitute(value: Any) -> Any:
    """A JSON value standing for ``value``, which the encoder has no type for."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset):
        return list(value)
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not cost the run its history
        return f"<{type(value).__qualname__} object>"


def _python_encoder(*, strict: bool, indent: int | None = None) -> Callable[[Any], str]:
    separators = (",", ":") if indent is None else (",", ": ")
    return json.JSONEncoder(
        separators=separators,
        default=_substitute,
        check_circular=False,
        allow_nan=not strict,
        indent=indent,
    ).encode


def _c_encoder(*, strict: bool) -> Callable[[Any], str] | None:
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring_ascii,
        )
    except ImportError:  # pragma: no cover - an interpreter without the C accelerator
        return None
    if c_make_encoder is None:  # pragma: no cover
        return None
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
    # allow_nan): no markers means no cycle check, so a cycle ends in RecursionError, which
    # sends the value down the slow path that notes it.
    encode = c_make_encoder(
        None, _substitute, encode_basestring_ascii, None, ":", ",", False, False, not strict
    )
    join = "".join
    return lambda value: join(encode(value, 0))


_ENCODE = _c_encoder(strict=False) or _python_encoder(strict=False)
_ENCODE_STRICT = _c_encoder(strict=True) or _python_encoder(strict=True)


def dumps(value: Any, *, strict: bool = False, indent: int | None = None) -> str:
    """``value`` as ASCII JSON text, whatever it holds (see the module docstring).

    ``strict=True`` is for readers that refuse ``NaN`` (browsers, most JSON
    libraries): non-finite floats become ``null``, as JavaScript's
    ``JSON.stringify`` and the web UI's API write them.  ``indent`` pretty-prints,
    for people.
    """
    if indent is not None:
        encode = _python_encoder(strict=strict, indent=indent)
    else:
        encode = _ENCODE_STRICT if strict else _ENCODE
    try:
        return encode(value)
    except (TypeError, ValueError, RecursionError):
        return encode(_walk(value, 0, set(), _STRICT if strict else _JSON))


#: What :func:`_walk` makes of a value: JSON's types, JSON's without NaN, or Python's plain ones.
_JSON, _STRICT, _PLAIN = "json", "strict", "plain"
_ATOMS = (str, int, float, bytes)


def _walk(value: Any, depth: int, seen: set[int], mode: str) -> Any:
    """A copy of ``value`` its encoder takes: no cycles, bounded depth, and (``_JSON``,
    ``_STRICT``) only JSON's types with keys JSON takes, or (``_PLAIN``) only exact plain
    types, tuples and sets kept, for pickle.  Anything else becomes its nearest JSON value."""
    kind = type(value)
    if value is None or kind is bool or kind in _ATOMS:
        if kind is float and mode == _STRICT and not math.isfinite(value):
            return None
        if kind is bytes and mode != _PLAIN:
            return _substitute(value)
        return value
    if isinstance(value, str | int | float):  # a subclass: a StrEnum or IntEnum member...
        if mode != _PLAIN and not isinstance(value, float):
            return value  # the JSON encoder writes str and int subclasses as their value
        if isinstance(value, str):
            return _walk(str.__str__(value), depth, seen, mode)
        return _walk(int(value) if isinstance(value, int) else float(value), depth, seen, mode)
    if depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels: not stored>"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if id(value) in seen:
            return "<circular reference: not stored>"
        seen.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {
                    _key(k, depth, seen, mode): _walk(v, depth + 1, seen, mode)
                    for k, v in list(value.items())
                }
            items = [_walk(v, depth + 1, seen, mode) for v in list(value)]
            if mode == _PLAIN and isinstance(value, tuple):
                return tuple(items)
            if mode == _PLAIN and isinstance(value, set | frozenset):
                try:
                    return frozenset(items) if isinstance(value, frozenset) else set(items)
                except TypeError:  # an item became unhashable: keep them as a list
                    return items
            return items
        finally:
            seen.discard(id(value))
    return _walk(_substitute(value), depth + 1, seen, mode)


def _key(key: Any, depth: int, seen: set[int], mode: str) -> Any:
    if mode == _PLAIN:
        converted = _walk(key, depth + 1, seen, mode)
        try:
            hash(converted)
        except TypeError:
            return str(converted)
        return converted
    if key is None or isinstance(key, str | int | float):
        return key  # JSON's encoder writes these (and their subclasses) as keys
    substitute = _substitute(key)
    return substitute if isinstance(substitute, str) else str(substitute)


def loads(text: str) -> Any:
    """The value :func:`dumps` wrote (non-finite floats included)."""
    return json.loads(text)


def plain(value: Any) -> Any:
    """``value`` built only of Python's plain types (None, bool, int, float, str, bytes, list,
    tuple, dict, set, frozenset, each of the exact type), for a binary encoding such as
    pickle that must never refer to a class: anything else becomes its nearest JSON value
    as in :func:`dumps`; cycles and absurd nesting become notes."""
    return _walk(value, 0, set(), _PLAIN)
