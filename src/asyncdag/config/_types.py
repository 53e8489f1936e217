"""The internal config type tree every schema form normalizes to.

Users write config schemas the way Dagster users do (python types, nested dicts,
``Field``, attrs classes, enums...).  :func:`normalize_schema` turns any of those
into a small frozen tree of :class:`ConfigType` nodes once per definition; each
node then knows how to validate a value (collecting every problem, with its
path), describe itself as JSON Schema, and produce a scaffold value.
"""

from __future__ import annotations

import copy
import difflib
import enum
import reprlib
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, Literal, Union

import attrs

from asyncdag._errors import ConfigErrorItem, DefinitionError

__all__ = [
    "MISSING",
    "ConfigType",
    "EnumType",
    "Field",
    "FieldSpec",
    "ListType",
    "LiteralType",
    "MapType",
    "OptionalType",
    "ScalarType",
    "ShapeType",
    "field_spec",
    "jsonable",
    "normalize_schema",
    "unknown_key_item",
]


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing.MISSING
"""Marks 'no value given' where ``None`` is a legitimate value."""

_IMMUTABLE = (str, int, float, bool, type(None), enum.Enum, bytes, _Missing)
_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def unknown_key_item(
    path: str, key: object, valid: Collection[str], *, noun: str = "key"
) -> ConfigErrorItem:
    """An 'unknown key' error that points at the nearest valid key, so typos fix themselves."""
    where = _join(path, key)
    if isinstance(key, str):
        match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
        if match:
            return ConfigErrorItem(where, f"unknown {noun} {key!r}; did you mean {match[0]!r}?")
    if not valid:
        return ConfigErrorItem(where, f"unknown {noun} {key!r}; nothing is accepted here")
    shown = ", ".join(sorted(valid)[:20]) + (", ..." if len(valid) > 20 else "")
    return ConfigErrorItem(where, f"unknown {noun} {key!r}; expected one of: {shown}")


def jsonable(value: Any) -> Any:
    """Turn a validated config value (enums, attrs instances, tuples) into plain JSON data."""
    if isinstance(value, enum.Enum):
        inner = value.value
        return inner if isinstance(inner, str | int | float | bool | None) else value.name
    if attrs.has(type(value)):
        return {
            a.alias: jsonable(getattr(value, a.name)) for a in attrs.fields(type(value)) if a.init
        }
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool | None):
        return value
    return repr(value)


# --- the user-facing field ------------------------------------------------------------------


@attrs.frozen
class Field:
    """A config field with a default, a description or an explicit required flag.

    Use it where a bare type is not enough: ``{"times": Field(int, default=1)}``.
    Without ``is_required`` a field is required unless it has a default, is
    ``T | None`` (defaults to ``None``) or is a mapping whose fields all have
    defaults.  ``is_required=False`` without a default leaves the key out of the
    validated value when the run config omits it.
    """

    type: Any
    default: Any = attrs.field(default=MISSING, kw_only=True)
    description: str | None = attrs.field(default=None, kw_only=True)
    is_required: bool | None = attrs.field(default=None, kw_only=True)


# --- the normalized tree --------------------------------------------------------------------


class ConfigType:
    """One node of a normalized schema."""

    __slots__ = ()

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        """Return the validated (converted, defaulted) value; append problems to ``errors``."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def scaffold(self) -> Any:
        """A JSON value of this type, to show a user what to fill in."""
        raise NotImplementedError

    def implicit_default(self) -> Any:
        """The value an absent field of this type takes when it has no default (or MISSING)."""
        return MISSING

    def _mismatch(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        errors.append(ConfigErrorItem(path, f"expected {self.describe()}, got {_type_name(value)}"))
        return value


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_none(v: Any) -> bool:
    return v is None


_SCALARS: Final = {
    "str": (_is_str, {"type": "string"}, ""),
    "int": (_is_int, {"type": "integer"}, 0),
    "float": (_is_number, {"type": "number"}, 0.0),
    "bool": (_is_bool, {"type": "boolean"}, False),
    "None": (_is_none, {"type": "null"}, None),
}


@attrs.frozen
class ScalarType(ConfigType):
    """str, int, float (accepts int, returns float), bool (no int coercion), None, or Any."""

    kind: Literal["str", "int", "float", "bool", "None", "Any"]

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        if self.kind == "Any":
            return value
        if not _SCALARS[self.kind][0](value):
            return self._mismatch(value, path, errors)
        if self.kind == "float" and not isinstance(value, float):
            try:
                return float(value)
            except OverflowError:
                errors.append(ConfigErrorItem(path, f"{value} is too large for a float"))
        return value

    def describe(self) -> str:
        return self.kind

    def json_schema(self) -> dict[str, Any]:
        return {} if self.kind == "Any" else dict(_SCALARS[self.kind][1])

    def scaffold(self) -> Any:
        return None if self.kind == "Any" else _SCALARS[self.kind][2]

    def implicit_default(self) -> Any:
        return None if self.kind == "None" else MISSING


@attrs.frozen
class ListType(ConfigType):
    """A list (YAML sequence) of items of one type; tuples are accepted and become lists."""

    item: ConfigType

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        if not isinstance(value, list | tuple):
            return self._mismatch(value, path, errors)
        item = self.item
        return [item.validate(v, f"{path}[{i}]", errors) for i, v in enumerate(value)]

    def describe(self) -> str:
        return f"list[{self.item.describe()}]"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.json_schema()}

    def scaffold(self) -> Any:
        return []


@attrs.frozen
class MapType(ConfigType):
    """A mapping with free-form string keys and values of one type."""

    value: ConfigType

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        if not isinstance(value, Mapping):
            return self._mismatch(value, path, errors)
        out = {}
        inner = self.value
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(
                    ConfigErrorItem(path, f"keys must be strings, got {_short.repr(key)}")
                )
                continue
            out[key] = inner.validate(item, _join(path, key), errors)
        return out

    def describe(self) -> str:
        return f"dict[str, {self.value.describe()}]"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.json_schema()}

    def scaffold(self) -> Any:
        return {}


@attrs.frozen
class OptionalType(ConfigType):
    """``T | None``: may be null, and defaults to ``None`` when absent."""

    inner: ConfigType

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        return None if value is None else self.inner.validate(value, path, errors)

    def describe(self) -> str:
        return f"{self.inner.describe()} | None"

    def json_schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.json_schema(), {"type": "null"}]}

    def scaffold(self) -> Any:
        return None

    def implicit_default(self) -> Any:
        return None


@attrs.frozen
class LiteralType(ConfigType):
    """``Literal[...]``: one of a few exact values (``True`` does not match ``1``)."""

    values: tuple[Any, ...]

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        for allowed in self.values:
            if type(allowed) is type(value) and allowed == value:
                return allowed
        errors.append(
            ConfigErrorItem(path, f"expected {self.describe()}, got {_short.repr(value)}")
        )
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def json_schema(self) -> dict[str, Any]:
        return {"enum": [jsonable(v) for v in self.values]}

    def scaffold(self) -> Any:
        return jsonable(self.values[0])


@attrs.frozen
class EnumType(ConfigType):
    """An ``enum.Enum`` subclass, given by member, by value or by name; validates to the member."""

    cls: type[enum.Enum]

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        cls = self.cls
        if isinstance(value, cls):
            return value
        for member in cls:
            if type(member.value) is type(value) and member.value == value:
                return member
        if isinstance(value, str) and value in cls.__members__:
            return cls.__members__[value]
        errors.append(
            ConfigErrorItem(path, f"expected {self.describe()}, got {_short.repr(value)}")
        )
        return value

    def describe(self) -> str:
        names = ", ".join(repr(jsonable(m)) for m in self.cls)
        return f"{self.cls.__name__} (one of {names})"

    def json_schema(self) -> dict[str, Any]:
        choices: list[Any] = []
        for member in self.cls:
            for choice in (jsonable(member), member.name):
                if choice not in choices:
                    choices.append(choice)
        return {"title": self.cls.__name__, "enum": choices}

    def scaffold(self) -> Any:
        return jsonable(next(iter(self.cls)))


@attrs.frozen
class FieldSpec:
    """A normalized field: its type, whether it must be given, and what fills it in otherwise."""

    type: ConfigType
    required: bool
    default: Any = MISSING
    description: str | None = None

    def fill(self) -> Any:
        """A fresh copy of the default, so one run cannot mutate another's config."""
        default = self.default
        return default if isinstance(default, _IMMUTABLE) else copy.deepcopy(default)

    def json_schema(self) -> dict[str, Any]:
        out = self.type.json_schema()
        if self.default is not MISSING:
            out["default"] = jsonable(self.default)
        if self.description:
            out["description"] = self.description
        return out

    def scaffold(self) -> Any:
        return jsonable(self.default) if self.default is not MISSING else self.type.scaffold()


def _freeze_fields(fields: Mapping[str, FieldSpec]) -> Mapping[str, FieldSpec]:
    return types.MappingProxyType(dict(fields))


@attrs.frozen
class ShapeType(ConfigType):
    """A mapping with known keys (a dict schema), or an attrs class built from one."""

    fields: Mapping[str, FieldSpec] = attrs.field(converter=_freeze_fields)
    cls: type | None = None

    def validate(self, value: Any, path: str, errors: list[ConfigErrorItem]) -> Any:
        cls = self.cls
        if cls is not None and isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            return self._mismatch(value, path, errors)
        fields = self.fields
        before = len(errors)
        for key in value:
            if key not in fields:
                errors.append(unknown_key_item(path, key, fields))
        out: dict[str, Any] = {}
        for name, spec in fields.items():
            if name in value:
                out[name] = spec.type.validate(value[name], _join(path, name), errors)
            elif spec.required:
                errors.append(
                    ConfigErrorItem(
                        _join(path, name),
                        f"required field {name!r} is missing (expected {spec.type.describe()})",
                    )
                )
            elif spec.default is not MISSING:
                out[name] = spec.fill()
        if cls is None or len(errors) > before:
            return out
        try:
            return cls(**out)
        except Exception as exc:  # the class's own validators said no
            errors.append(
                ConfigErrorItem(path, f"{cls.__name__} rejected it: {type(exc).__name__}: {exc}")
            )
            return out

    def describe(self) -> str:
        return f"a mapping for {self.cls.__name__}" if self.cls is not None else "a mapping"

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if self.cls is not None:
            out["title"] = self.cls.__name__
        out["properties"] = {name: spec.json_schema() for name, spec in self.fields.items()}
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out

    def scaffold(self) -> Any:
        return {name: spec.scaffold() for name, spec in self.fields.items()}

    def implicit_default(self) -> Any:
        if any(spec.required for spec in self.fields.values()):
            return MISSING
        errors: list[ConfigErrorItem] = []
        value = self.validate({}, "", errors)
        return MISSING if errors else value


# --- normalization --------------------------------------------------------------------------

_ANY: Final = ScalarType("Any")
_BY_PYTHON_TYPE: Final[dict[Any, ConfigType]] = {
    str: ScalarType("str"),
    int: ScalarType("int"),
    float: ScalarType("float"),
    bool: ScalarType("bool"),
    None: ScalarType("None"),
    type(None): ScalarType("None"),
    Any: _ANY,
    object: _ANY,
    list: ListType(_ANY),
    dict: MapType(_ANY),
}
_LIST_ORIGINS: Final = (list, Sequence)
_MAP_ORIGINS: Final = (dict, Mapping)
_HINT = (
    "use str, int, float, bool, Any, None, list[T], dict[str, T], T | None, Literal[...], "
    "an Enum, an attrs class, a dict of field name -> schema, or Field(...)"
)


def normalize_schema(schema: Any, *, where: str = "config schema") -> ConfigType:
    """Turn any accepted schema form into its frozen :class:`ConfigType` tree.

    Done once per definition (callers cache it), so validating a run is a walk of
    the small tree, never a re-interpretation of the user's schema.  A ``Field``
    at the root contributes only its type here; see :func:`field_spec` for the rest.
    Raises DefinitionError naming ``where`` and the offending field when the schema
    itself is wrong.
    """
    return _normalize(schema, _Where(where, ""), ())


def field_spec(schema: Any, *, where: str = "config schema") -> FieldSpec:
    """Normalize a root schema with its required flag and default (a ``Field`` or a bare type)."""
    return _field_spec(schema, _Where(where, ""), ())


@attrs.frozen
class _Where:
    """Which schema, and which field inside it, a DefinitionError is about."""

    subject: str
    path: str

    def __str__(self) -> str:
        return f"{self.subject}, field {self.path!r}" if self.path else self.subject

    def __truediv__(self, part: str) -> _Where:
        sep = "" if not self.path or part.startswith("[") else "."
        return _Where(self.subject, f"{self.path}{sep}{part}")


def _normalize(schema: Any, where: _Where, stack: tuple[type, ...]) -> ConfigType:
    if isinstance(schema, ConfigType):
        return schema
    if isinstance(schema, Field):
        return _normalize(schema.type, where, stack)
    try:
        found = _BY_PYTHON_TYPE.get(schema)
    except TypeError:  # unhashable: a dict or list schema
        found = None
    if found is not None:
        return found
    if isinstance(schema, Mapping):
        return _shape(schema, where, stack)
    if isinstance(schema, list):
        if len(schema) != 1:
            raise DefinitionError(
                f"{where}: a list schema holds exactly one item type, like [int], "
                f"not {_short.repr(schema)}; or write list[int]"
            )
        return ListType(_normalize(schema[0], where / "[]", stack))
    if isinstance(schema, type) and issubclass(schema, enum.Enum):
        if not list(schema):
            raise DefinitionError(f"{where}: enum {schema.__name__} has no members")
        return EnumType(schema)
    if isinstance(schema, type) and attrs.has(schema):
        return _attrs_shape(schema, where, stack)
    origin = typing.get_origin(schema)
    args = typing.get_args(schema)
    if origin is not None and origin in _LIST_ORIGINS:
        return ListType(_normalize(args[0] if args else Any, where / "[]", stack))
    if origin is not None and origin in _MAP_ORIGINS:
        key, value = args if args else (str, Any)
        if key is not str:
            raise DefinitionError(f"{where}: config mappings have str keys; write dict[str, ...]")
        return MapType(_normalize(value, where / "*", stack))
    if origin is Literal:
        bad = [v for v in args if not isinstance(v, str | int | bool | enum.Enum | None)]
        if bad:
            raise DefinitionError(
                f"{where}: Literal values must be str, int, bool or None: {bad!r}"
            )
        return LiteralType(tuple(args))
    if origin is Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return OptionalType(_normalize(rest[0], where, stack))
        raise DefinitionError(
            f"{where}: {schema!r} is a union; only T | None is supported "
            "(use Literal[...] or an Enum for a choice of values)"
        )
    raise DefinitionError(f"{where}: {_short.repr(schema)} is not a config schema; {_HINT}")


def _field_spec(entry: Any, where: _Where, stack: tuple[type, ...]) -> FieldSpec:
    if isinstance(entry, FieldSpec):
        return entry
    if isinstance(entry, Field):
        ctype = _normalize(entry.type, where, stack)
        return _make_spec(ctype, entry.default, entry.description, entry.is_required, where)
    return _make_spec(_normalize(entry, where, stack), MISSING, None, None, where)


def _make_spec(
    ctype: ConfigType, default: Any, description: Any, is_required: bool | None, where: _Where
) -> FieldSpec:
    if description is not None and not isinstance(description, str):
        raise DefinitionError(f"{where}: description must be a str, got {_type_name(description)}")
    if default is not MISSING:
        if is_required:
            raise DefinitionError(
                f"{where}: a field cannot have a default and is_required=True; drop one of them"
            )
        errors: list[ConfigErrorItem] = []
        value = ctype.validate(default, "", errors)
        if errors:
            problems = "; ".join(str(e) for e in errors)
            raise DefinitionError(
                f"{where}: default {_short.repr(default)} does not fit its type: {problems}"
            )
        return FieldSpec(ctype, required=False, default=value, description=description)
    implicit = ctype.implicit_default()
    required = implicit is MISSING if is_required is None else bool(is_required)
    return FieldSpec(
        ctype, required=required, default=MISSING if required else implicit, description=description
    )


def _shape(schema: Mapping[Any, Any], where: _Where, stack: tuple[type, ...]) -> ShapeType:
    fields = {}
    for name, entry in schema.items():
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"{where}: field names must be non-empty str, got {name!r}")
        fields[name] = _field_spec(entry, where / name, stack)
    return ShapeType(fields)


def _attrs_shape(cls: type, where: _Where, stack: tuple[type, ...]) -> ShapeType:
    if cls in stack:
        raise DefinitionError(f"{where}: attrs class {cls.__qualname__} contains itself")
    try:
        attrs.resolve_types(cls)
    except Exception as exc:
        raise DefinitionError(
            f"{where}: cannot resolve the type hints of attrs class {cls.__qualname__} ({exc}); "
            "import the names it uses at module level"
        ) from exc
    stack = (*stack, cls)
    fields = {}
    for a in attrs.fields(cls):
        if not a.init:
            continue
        sub = where / a.alias
        ctype = _normalize(a.type if a.type is not None else Any, sub, stack)
        description = a.metadata.get("description")
        default = a.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                # Only attrs can compute it: leave the key out and let __init__ fill it.
                fields[a.alias] = FieldSpec(ctype, required=False, description=description)
                continue
            default = default.factory()
        elif default is attrs.NOTHING:
            default = MISSING
        fields[a.alias] = _make_spec(ctype, default, description, None, sub)
    return ShapeType(fields, cls=cls)
