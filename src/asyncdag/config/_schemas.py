"""One schema at a time: a solid's or resource's config checked against its ``config_schema``."""

from __future__ import annotations

from typing import Any

from asyncdag._errors import ConfigError, ConfigErrorItem

from ._types import (
    MISSING,
    FieldSpec,
    ShapeType,
    field_spec,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# id(schema) -> (schema, spec).  The schema is kept alive so its id cannot be reused.
_SPECS: dict[int, tuple[Any, FieldSpec]] = {}


def _spec_for(schema: Any, where: str) -> FieldSpec:
    """The normalized root field of a definition's schema, computed once per schema object."""
    cached = _SPECS.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    spec = field_spec(schema, where=where)
    _SPECS[id(schema)] = (schema, spec)
    return spec


def _validate_root(
    spec: FieldSpec, value: Any, path: str, errors: list[ConfigErrorItem], *, owner: str
) -> Any:
    ctype = spec.type
    # ``None`` at the root means "not given" (YAML's empty ``config:`` line) unless it is a value.
    if value is None:
        probe: list[ConfigErrorItem] = []
        ctype.validate(None, path, probe)
        if probe:
            value = MISSING
    if value is not MISSING:
        return ctype.validate(value, path, errors)
    if spec.required:
        if isinstance(ctype, ShapeType):
            needed = [f"{n} ({s.type.describe()})" for n, s in ctype.fields.items() if s.required]
            detail = "required fields: " + ", ".join(needed)
        else:
            detail = f"expected {ctype.describe()}"
        errors.append(ConfigErrorItem(path, f"{owner} requires config; {detail}"))
        return None
    return None if spec.default is MISSING else spec.fill()


def _annotate(errors: list[ConfigErrorItem], start: int, note: str) -> None:
    """Say where the config at fault came from, on the errors found since ``start``."""
    for i in range(start, len(errors)):
        errors[i] = ConfigErrorItem(errors[i].path, f"{errors[i].message} ({note})")


def _definition_config(
    definition: Any, given: Any, path: str, errors: list[ConfigErrorItem], *, owner: str
) -> Any:
    """A solid's or resource's config from what run config gives it.

    For a ``configured()`` copy the given config is checked against the copy's own
    schema, mapped (or replaced by the config fixed in code), then checked against
    the original's schema, and so on down a chain of copies, as Dagster does.
    """
    mapping = getattr(definition, "config_mapping", None)
    schema = definition.config_schema
    where = f"config_schema of {owner}"
    before = len(errors)
    if mapping is not None and mapping.is_fixed:
        if given is not MISSING and given is not None:
            errors.append(
                ConfigErrorItem(
                    path,
                    f"{owner} has its config fixed in code by configured(); remove it here",
                )
            )
        value = None
    elif schema is None:
        value = None if given is MISSING else given
    else:
        value = _validate_root(_spec_for(schema, where), given, path, errors, owner=owner)
    while mapping is not None and len(errors) == before:
        if mapping.is_fixed:
            value, note = mapping.value, "in the config configured() fixed for it"
        else:
            try:
                value = mapping.config_fn(value)
            except Exception as exc:
                errors.append(
                    ConfigErrorItem(
                        path,
                        f"the config function given to configured() for {owner} raised "
                        f"{type(exc).__name__}: {exc}",
                    )
                )
                return None
            note = "in what the config function given to configured() returned"
        if mapping.original_schema is not None:
            spec = _spec_for(mapping.original_schema, where)
            value = _validate_root(spec, value, path, errors, owner=owner)
            _annotate(errors, before, note)
        mapping = mapping.original_mapping
    return value


def definition_config(definition: Any, config: Any = None, *, owner: str) -> Any:
    """The config a solid or resource receives when given ``config``: validated, defaulted,
    and mapped through ``configured()`` copies, as a run's config would be.

    For calling a solid directly (``build_solid_context(solid_config=...)``);
    raises one ConfigError listing every problem.  ``None`` means none given.
    """
    errors: list[ConfigErrorItem] = []
    value = _definition_config(definition, config, "config", errors, owner=owner)
    if errors:
        raise ConfigError(errors, subject=f"config of {owner}")
    return value


def validate_config(
    schema: Any, value: Any, *, path: str = ""
) -> tuple[Any, list[ConfigErrorItem]]:
    """Check ``value`` against ``schema``; return the defaulted value and every problem found.

    Errors carry dotted paths under ``path`` (``opts.deep[2]``), name missing
    required fields and suggest the nearest valid key for unknown ones.  With
    errors, the returned value is best effort and should not be used.  ``None``
    for a whole mapping schema means "nothing given" and gets its defaults.
    Normalizes ``schema`` on each call; pass ``field_spec(schema)`` to reuse that work.
    """
    spec = field_spec(schema)
    errors: list[ConfigErrorItem] = []
    result = _validate_root(spec, value, path, errors, owner="the schema")
    return result, errors


def config_json_schema(schema: Any) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one config schema, for editors, the CLI and the UI."""
    out = field_spec(schema).json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, **out}
