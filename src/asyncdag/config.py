"""Config schemas and run config: validate everything up front, report every problem at once.

Solids and resources declare ``config_schema`` the way Dagster users do::

    @solid(config_schema={"greeting": str, "times": Field(int, default=1)})

and a run's config (a dict, or YAML files merged in order) has Dagster's shape::

    solids: {hey: {config: {greeting: Hello}, inputs: {name: Kan}}}
    resources: {http: {config: {timeout: 5}}}
    execution: {max_concurrency: 20, concurrency_limits: {http: 10}}

:func:`resolve_run_config` checks a run's config against a pipeline before
anything runs and raises one :class:`~asyncdag._errors.ConfigError` listing every
problem with its dotted path; :func:`run_config_json_schema` and
:func:`default_run_config` give the CLI and the web UI a schema and a scaffold.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from asyncdag._config_data import YamlProblem, json_data, read_yaml
from asyncdag._config_types import (
    MISSING,
    ConfigType,
    Field,
    FieldSpec,
    ShapeType,
    field_spec,
    jsonable,
    normalize_schema,
    unknown_key_item,
)
from asyncdag._errors import ConfigError, ConfigErrorItem, DefinitionError

__all__ = [
    "ConfigType",
    "ExecutionConfig",
    "Field",
    "FieldSpec",
    "ResolvedRunConfig",
    "SolidRunConfig",
    "config_json_schema",
    "default_run_config",
    "field_spec",
    "load_run_config",
    "normalize_schema",
    "resolve_run_config",
    "run_config_json_schema",
    "validate_config",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# --- what this module needs from definitions (duck-typed, so tests can stand in) ------------


class _InputDef(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def annotation(self) -> Any: ...
    @property
    def has_default(self) -> bool: ...


class _Solid(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config_schema(self) -> Any: ...
    @property
    def input_defs(self) -> Sequence[_InputDef]: ...


class _Node(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def solid(self) -> _Solid: ...
    @property
    def inputs(self) -> Mapping[str, object]: ...


class _Resource(Protocol):
    @property
    def config_schema(self) -> Any: ...


class _Pipeline(Protocol):
    # Read-only properties: the frozen definitions satisfy them, and so do test stand-ins.
    @property
    def name(self) -> str: ...
    @property
    def default_config(self) -> dict[str, Any] | None: ...
    @property
    def nodes(self) -> Mapping[str, _Node]: ...
    @property
    def resource_defs(self) -> Mapping[str, _Resource]: ...


# --- resolved run config --------------------------------------------------------------------


@attrs.frozen
class SolidRunConfig:
    """One node's validated config and the input values run config gives it."""

    config: Any = None
    inputs: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExecutionConfig:
    """How many steps may run at once, overall and per concurrency key (``None``: unbounded)."""

    max_concurrency: int | None = None
    concurrency_limits: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen
class ResolvedRunConfig:
    """A run config checked against its pipeline: what the plan and engine consume.

    ``solids`` has an entry for every node; ``raw`` is the merged config as the
    user gave it (pipeline default overlaid by the run's own), for storage.
    """

    solids: dict[str, SolidRunConfig]
    resources: dict[str, Any]
    execution: ExecutionConfig
    raw: dict[str, Any]


# --- single schemas -------------------------------------------------------------------------

# id(schema) -> (schema, spec).  The schema is kept alive so its id cannot be reused.
_SPECS: dict[int, tuple[Any, FieldSpec]] = {}
_INPUT_TYPES: dict[Any, ConfigType | None] = {}


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


# --- run config -----------------------------------------------------------------------------

_TOP_KEYS = ("solids", "resources", "execution")
_SOLID_KEYS = ("config", "inputs")
_RESOURCE_KEYS = ("config",)
_EXECUTION_SPEC = field_spec(
    {
        "max_concurrency": Field(
            int | None,
            default=None,
            description="Most steps running at once in this run; null for no bound.",
        ),
        "concurrency_limits": Field(
            dict[str, int],
            default={},
            description="Most steps running at once per concurrency key (e.g. a resource key).",
        ),
    },
    where="execution config",
)


def _copy(value: Any) -> Any:
    """Copy config data; plain dicts, lists and scalars fast, anything else by deepcopy."""
    if isinstance(value, str | int | float | bool | None):
        return value
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return copy.deepcopy(value)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay ``override`` on ``base`` key by key; non-dict values (lists too) replace."""
    out = {k: _copy(v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _copy(value)
    return out


def _section(
    parent: Mapping[str, Any], key: str, path: str, errors: list[ConfigErrorItem]
) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(value).__name__}"))
        return {}
    return value


def _flatten_graph_sections(
    section: Mapping[str, Any], nodes: Mapping[str, Any], prefix: str, errors: list[ConfigErrorItem]
) -> dict[str, Any]:
    """``{outer: {solids: {inner: {...}}}}`` (a @graph's solids, nested) as ``{"outer.inner": ...}``.

    Graphs are flattened into dotted node names when the pipeline is built; config
    may name those directly or nest by graph, as in Dagster.
    """
    flat: dict[str, Any] = {}
    for key, value in section.items():
        full = prefix + key
        is_graph = full not in nodes and any(name.startswith(full + ".") for name in nodes)
        if is_graph and isinstance(value, Mapping):
            extra = sorted(set(value) - {"solids"})
            if extra:
                errors.append(
                    ConfigErrorItem(
                        f"solids.{full}",
                        f"{full!r} is a graph: its config goes under 'solids' (per solid), "
                        f"not {extra}",
                    )
                )
            inner = value.get("solids") or {}
            if not isinstance(inner, Mapping):
                errors.append(ConfigErrorItem(f"solids.{full}.solids", "expected a mapping"))
                continue
            flat.update(_flatten_graph_sections(inner, nodes, full + ".", errors))
        else:
            flat[full] = value
    return flat


def _check_keys(
    given: Mapping[str, Any],
    valid: Mapping[str, Any] | tuple[str, ...],
    path: str,
    errors: list[ConfigErrorItem],
    *,
    noun: str = "key",
) -> None:
    for key in given:
        if key not in valid:
            errors.append(unknown_key_item(path, key, list(valid), noun=noun))


def _input_type(annotation: Any) -> ConfigType | None:
    """The config type an input annotation checks against, or None when it is not checkable."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return None
    try:
        return _INPUT_TYPES[annotation]
    except KeyError:
        pass
    except TypeError:  # unhashable annotation
        return None
    try:
        ctype: ConfigType | None = normalize_schema(annotation)
    except DefinitionError:
        ctype = None  # an arbitrary class: its values cannot come from config
    _INPUT_TYPES[annotation] = ctype
    return ctype


def _unfed_required_inputs(node: _Node) -> list[str]:
    wired = node.inputs
    return [d.name for d in node.solid.input_defs if not d.has_default and d.name not in wired]


def _resolve_solid(
    node: _Node, entry: Any, path: str, errors: list[ConfigErrorItem]
) -> SolidRunConfig:
    if entry is None:
        entry = {}
    elif not isinstance(entry, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(entry).__name__}"))
        return SolidRunConfig()
    _check_keys(entry, _SOLID_KEYS, path, errors)
    solid = node.solid
    owner = f"solid {node.name!r}"
    if solid.config_schema is None:
        config = entry.get("config")
    else:
        spec = _spec_for(solid.config_schema, f"config_schema of solid {solid.name!r}")
        config = _validate_root(
            spec, entry.get("config", MISSING), f"{path}.config", errors, owner=owner
        )
    inputs: dict[str, Any] = {}
    given = _section(entry, "inputs", f"{path}.inputs", errors)
    defs = {d.name: d for d in solid.input_defs}
    for key, value in given.items():
        input_path = f"{path}.inputs.{key}"
        input_def = defs.get(key)
        if input_def is None:
            unfed = [name for name in defs if name not in node.inputs]
            errors.append(unknown_key_item(f"{path}.inputs", key, unfed, noun="input"))
        elif key in node.inputs:
            errors.append(
                ConfigErrorItem(
                    input_path,
                    f"input {key!r} of {owner} is already fed inside the pipeline body; "
                    "remove it from the run config",
                )
            )
        else:
            ctype = _input_type(input_def.annotation)
            inputs[key] = value if ctype is None else ctype.validate(value, input_path, errors)
    for name in _unfed_required_inputs(node):
        if name not in given:
            errors.append(
                ConfigErrorItem(
                    f"{path}.inputs.{name}",
                    f"input {name!r} of {owner} is fed by no solid and has no default; "
                    "give its value here",
                )
            )
    return SolidRunConfig(config=config, inputs=inputs)


def _resolve_resource(
    key: str, resource: _Resource, entry: Any, path: str, errors: list[ConfigErrorItem]
) -> Any:
    if entry is None:
        entry = {}
    elif not isinstance(entry, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(entry).__name__}"))
        return None
    _check_keys(entry, _RESOURCE_KEYS, path, errors)
    if resource.config_schema is None:
        return entry.get("config")
    spec = _spec_for(resource.config_schema, f"config_schema of resource {key!r}")
    return _validate_root(
        spec, entry.get("config", MISSING), f"{path}.config", errors, owner=f"resource {key!r}"
    )


def _resolve_execution(section: Any, errors: list[ConfigErrorItem]) -> ExecutionConfig:
    before = len(errors)
    value = _validate_root(_EXECUTION_SPEC, section, "execution", errors, owner="execution")
    if len(errors) > before:
        return ExecutionConfig()
    limit = value["max_concurrency"]
    if limit is not None and limit < 1:
        errors.append(
            ConfigErrorItem("execution.max_concurrency", f"must be at least 1, got {limit}")
        )
    for key, bound in value["concurrency_limits"].items():
        if bound < 1:
            errors.append(
                ConfigErrorItem(
                    f"execution.concurrency_limits.{key}", f"must be at least 1, got {bound}"
                )
            )
    return ExecutionConfig(max_concurrency=limit, concurrency_limits=value["concurrency_limits"])


def _merged(pipeline: _Pipeline, run_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's config over the pipeline's default, as JSON data; ConfigError if it is not JSON.

    Checked before anything else walks it, so a NaN, a date object or a
    structure nested thousands deep is one error with its path, never a crash.
    """
    subject = f"run config for pipeline {pipeline.name!r}"
    base = pipeline.default_config or {}
    for what, value in (("the pipeline's default config", base), ("run config", run_config)):
        if value is not None and not isinstance(value, Mapping):
            raise ConfigError(
                [ConfigErrorItem("", f"{what} must be a mapping, got {type(value).__name__}")],
                subject=subject,
            )
    plain_base, base_errors = json_data(base)
    plain_run, errors = json_data(run_config or {})
    errors += [
        ConfigErrorItem(e.path, f"{e.message} (in the pipeline's default config)")
        for e in base_errors
    ]
    if errors:
        raise ConfigError(errors, subject=subject)
    return _deep_merge(plain_base, plain_run)


# Shared by every node that has neither schema nor config: frozen, so sharing is safe,
# and a 10,000-node pipeline with no config allocates nothing per node.
_NO_CONFIG = SolidRunConfig()


def resolve_run_config(
    pipeline: _Pipeline, run_config: Mapping[str, Any] | None = None
) -> ResolvedRunConfig:
    """Check a run's config against ``pipeline`` before anything runs.

    The run's config overlays the pipeline's default config (dicts merge key by
    key).  Both must be JSON data, since the run stores its config and "Re-run"
    replays it: NaN, infinity, bytes, sets and other objects are errors with their
    path; tuples, enum members, attrs instances, dates and times are converted
    (to lists, values, mappings and ISO 8601 text), and solids see the converted
    values, exactly what is stored.  Every problem (unknown solid, resource or key, wrong type, missing
    required config or input, an input given in config that the pipeline already
    feeds) is collected and raised together as one ConfigError.  Cost is linear
    in nodes; a node with no schema and no config entry costs a dict lookup.
    """
    raw = _merged(pipeline, run_config)
    errors: list[ConfigErrorItem] = []
    _check_keys(raw, _TOP_KEYS, "", errors)

    nodes = pipeline.nodes
    solids_section = _section(raw, "solids", "solids", errors)
    if any("." in name for name in nodes):
        solids_section = _flatten_graph_sections(solids_section, nodes, "", errors)
    _check_keys(solids_section, nodes, "solids", errors, noun="solid")
    solids: dict[str, SolidRunConfig] = {}
    for name, node in nodes.items():
        entry = solids_section.get(name)
        if (
            entry is None
            and node.solid.config_schema is None
            and (not node.solid.input_defs or not _unfed_required_inputs(node))
        ):
            solids[name] = _NO_CONFIG
            continue
        solids[name] = _resolve_solid(node, entry, f"solids.{name}", errors)

    resource_defs = pipeline.resource_defs
    resources_section = _section(raw, "resources", "resources", errors)
    _check_keys(resources_section, resource_defs, "resources", errors, noun="resource")
    resources = {
        key: _resolve_resource(
            key, resource, resources_section.get(key), f"resources.{key}", errors
        )
        for key, resource in resource_defs.items()
    }

    execution = _resolve_execution(raw.get("execution"), errors)
    if errors:
        raise ConfigError(errors, subject=f"run config for pipeline {pipeline.name!r}")
    return ResolvedRunConfig(solids=solids, resources=resources, execution=execution, raw=raw)


# --- schema and scaffold of a whole run config ----------------------------------------------


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def _solid_json_schema(node: _Node) -> tuple[dict[str, Any], bool]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    schema = node.solid.config_schema
    if schema is not None:
        spec = _spec_for(schema, f"config_schema of solid {node.solid.name!r}")
        properties["config"] = spec.json_schema()
        if spec.required:
            required.append("config")
    else:
        properties["config"] = {}
    inputs: dict[str, Any] = {}
    for input_def in node.solid.input_defs:
        if input_def.name in node.inputs:
            continue
        ctype = _input_type(input_def.annotation)
        inputs[input_def.name] = {} if ctype is None else ctype.json_schema()
    needed = _unfed_required_inputs(node)
    properties["inputs"] = _object(inputs, needed)
    if needed:
        required.append("inputs")
    return _object(properties, required), bool(required)


def run_config_json_schema(pipeline: _Pipeline) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the merged run config of ``pipeline``.

    Describes ``solids``, ``resources`` and ``execution`` with the same
    required-ness :func:`resolve_run_config` enforces, so the UI's playground and
    the CLI can check a config before launching.
    """
    solid_props: dict[str, Any] = {}
    solid_required: list[str] = []
    for name, node in pipeline.nodes.items():
        solid_props[name], config_required = _solid_json_schema(node)
        if config_required:
            solid_required.append(name)
    resource_props: dict[str, Any] = {}
    resource_required: list[str] = []
    for key, resource in pipeline.resource_defs.items():
        if resource.config_schema is None:
            resource_props[key] = _object({"config": {}}, [])
            continue
        spec = _spec_for(resource.config_schema, f"config_schema of resource {key!r}")
        needed = ["config"] if spec.required else []
        resource_props[key] = _object({"config": spec.json_schema()}, needed)
        if needed:
            resource_required.append(key)
    properties = {
        "solids": _object(solid_props, solid_required),
        "resources": _object(resource_props, resource_required),
        "execution": _EXECUTION_SPEC.json_schema(),
    }
    required = [k for k, v in (("solids", solid_required), ("resources", resource_required)) if v]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"run config for pipeline {pipeline.name}",
        **_object(properties, required),
    }


def default_run_config(pipeline: _Pipeline) -> dict[str, Any]:
    """A run config to start editing from: every field at its default or a typed placeholder.

    Placeholders are valid values of their type ("" for str, 0 for int...), so the
    scaffold itself resolves; the pipeline's default config is overlaid on it.
    """
    solids: dict[str, Any] = {}
    for name, node in pipeline.nodes.items():
        entry: dict[str, Any] = {}
        if node.solid.config_schema is not None:
            spec = _spec_for(node.solid.config_schema, f"config_schema of solid {name!r}")
            entry["config"] = spec.scaffold()
        inputs = {}
        for input_def in node.solid.input_defs:
            if input_def.name in node.inputs:
                continue
            if input_def.has_default:
                inputs[input_def.name] = jsonable(getattr(input_def, "default", None))
            else:
                ctype = _input_type(input_def.annotation)
                inputs[input_def.name] = None if ctype is None else ctype.scaffold()
        if inputs:
            entry["inputs"] = inputs
        if entry:
            solids[name] = entry
    resources: dict[str, Any] = {}
    for key, resource in pipeline.resource_defs.items():
        if resource.config_schema is not None:
            spec = _spec_for(resource.config_schema, f"config_schema of resource {key!r}")
            resources[key] = {"config": spec.scaffold()}
    scaffold: dict[str, Any] = {}
    if solids:
        scaffold["solids"] = solids
    if resources:
        scaffold["resources"] = resources
    scaffold["execution"] = _EXECUTION_SPEC.scaffold()
    return _deep_merge(scaffold, pipeline.default_config or {})


# --- YAML -----------------------------------------------------------------------------------


def _read_yaml_source(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(name for messages, YAML text).

    A str is a file path when it is one line naming an existing file or directory
    (refused when read), or one line ending in .yaml/.yml/.json that cannot be
    YAML text ({, [ or spaces).
    """
    looks_like_path = "\n" not in source if isinstance(source, str) else True
    if isinstance(source, str) and looks_like_path:
        looks_like_path = (
            os.path.isfile(source)
            or os.path.isdir(source)
            or (source.endswith((".yaml", ".yml", ".json")) and not any(c in source for c in "{[ "))
        )
    if looks_like_path:
        name = os.fspath(source)
        try:
            with open(name, encoding="utf-8") as f:
                return name, f.read()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                [
                    ConfigErrorItem(
                        "",
                        f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "save it as UTF-8",
                    )
                ],
                subject=f"run config file {name}",
            ) from exc
        except OSError as exc:
            raise ConfigError(
                [ConfigErrorItem("", f"cannot read {name}: {exc.strerror or exc}")],
                subject=f"run config file {name}",
            ) from exc
    return "<yaml string>", os.fspath(source)


def load_run_config(*sources: str | os.PathLike[str]) -> dict[str, Any]:
    """Load run config from YAML files (or YAML text), merged in order: later ones win key by key.

    Lets a base config be shared and an environment-specific file override parts
    of it (``-c base.yaml -c prod.yaml``).  Invalid YAML raises ConfigError naming
    the file and line, and so does a document that would cost more than its size
    to read (aliases repeating more than 10,000 values, nesting past 100 levels).
    Timestamps such as ``2024-01-01`` stay the text written.
    """
    merged: dict[str, Any] = {}
    for source in sources:
        name, text = _read_yaml_source(source)
        subject = f"run config file {name}"
        try:
            data, _ = read_yaml(text)
        except YamlProblem as exc:
            raise ConfigError([ConfigErrorItem("", f"{name}: {exc}")], subject=subject) from None
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ConfigError(
                [
                    ConfigErrorItem(
                        "", f"{name}: the top level must be a mapping, got {type(data).__name__}"
                    )
                ],
                subject=subject,
            )
        merged = _deep_merge(merged, data)
    return merged
