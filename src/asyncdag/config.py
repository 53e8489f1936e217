"""Config schemas and run config: validate everything up front, report every problem at once.

Solids and resources declare ``config_schema`` the way Dagster users do::

    @solid(config_schema={"greeting": str, "times": Field(int, default=1)})

and a run's config (a dict, or YAML files merged in order) has Dagster's shape::

    solids: {hey: {config: {greeting: Hello}, inputs: {name: Kan}}}
    resources: {http: {config: {timeout: 5}}}
    execution: {max_concurrency: 20, concurrency_limits: {http: 10}}
    execution: {dask: {cluster: {existing: {address: "tcp://scheduler:8786"}}}}

A ``@graph``'s solids nest under its name (``solids: {g: {solids: {...}}}``), or the
graph takes a config of its own that its ``config_fn`` maps onto them
(``solids: {g: {config: ...}}``); inputs a graph's caller left unwired are given
as ``solids: {g: {inputs: ...}}``.  A ``configured()`` copy's config goes through
its mapping (or is fixed in code) and is checked against the original's schema.

:func:`resolve_run_config` checks a run's config against a pipeline before
anything runs and raises one :class:`~asyncdag._errors.ConfigError` listing every
problem with its dotted path; :func:`run_config_json_schema` and
:func:`default_run_config` give the CLI and the web UI a schema and a scaffold.
"""

from __future__ import annotations

import copy
import inspect
import os
import weakref
from collections.abc import Collection, Mapping, Sequence
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
    "definition_config",
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
    """How many steps may run at once, overall and per concurrency key (``None``: unbounded),
    and where they run: ``dask`` is the validated ``execution.dask`` section
    (``{"cluster": {"existing": {...}}}`` or ``{"cluster": {"local": {...}}}``), None
    for this process."""

    max_concurrency: int | None = None
    concurrency_limits: dict[str, int] = attrs.field(factory=dict)
    dask: dict[str, Any] | None = None


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
    #: The nodes whose entry in ``solids`` says something (config or inputs), in node
    #: order: what a run reads, without walking every node of a big pipeline.
    configured: tuple[str, ...] = attrs.field(default=(), eq=False)


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
# execution.dask.cluster takes exactly one of these, in Dagster's shape.
_DASK_CLUSTERS = {
    "existing": field_spec(
        {"address": Field(str, description="The scheduler's address, e.g. tcp://scheduler:8786.")},
        where="execution.dask.cluster.existing",
    ),
    "local": field_spec(
        {
            "n_workers": Field(int | None, default=None, description="Worker processes."),
            "threads_per_worker": Field(int | None, default=None, description="Threads each."),
            "processes": Field(bool, default=True, description="False: workers are threads."),
            "memory_limit": Field(str | None, default=None, description="Per worker, e.g. 4GiB."),
            "resources": Field(
                dict[str, float],
                default={},
                description="Abstract resources each worker offers, e.g. {GPU: 1}.",
            ),
        },
        where="execution.dask.cluster.local",
    ),
}


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


class _GraphIndex:
    """What run config needs to know about a pipeline's ``@graph`` uses, gathered once per call."""

    __slots__ = ("fed", "graphs", "mapped")

    def __init__(self, pipeline: _Pipeline) -> None:
        self.graphs: Mapping[str, Any] = getattr(pipeline, "graphs", None) or {}
        # node -> {input: (graph, graph input)}: inputs fed by a graph input left unwired.
        self.fed: dict[str, dict[str, tuple[str, str]]] = {}
        for use in self.graphs.values():
            for graph_input, consumers in use.config_inputs.items():
                for node, input_name in consumers:
                    self.fed.setdefault(node, {})[input_name] = (use.name, graph_input)
        # Graphs mapping their own config onto their solids, innermost last.
        self.mapped = sorted(
            (name for name, use in self.graphs.items() if use.graph.config_fn is not None),
            key=lambda name: name.count("."),
        )

    def mapped_owner(self, name: str) -> str | None:
        """The innermost config-mapping graph that ``name`` (a node or a graph) is inside."""
        owner = None
        for namespace in self.mapped:
            if name.startswith(namespace + "."):
                owner = namespace
        return owner

    def is_graph(self, name: str, nodes: Mapping[str, Any]) -> bool:
        if self.graphs:
            return name in self.graphs
        return name not in nodes and any(node.startswith(name + ".") for node in nodes)


@attrs.define
class _Expanded:
    """The ``solids`` section with graphs expanded: entries by node name, graph input values."""

    solids: dict[str, Any] = attrs.field(factory=dict)
    # (node, input) -> (value, path) for inputs fed by a graph input that run config gives.
    inputs: dict[tuple[str, str], tuple[Any, str]] = attrs.field(factory=dict)
    # Graphs whose config could not be mapped: their solids' config is unknown, not wrong.
    unmapped: list[str] = attrs.field(factory=list)

    def lost(self, node: str) -> bool:
        """True when ``node`` is inside a graph whose config mapping already failed."""
        return any(node.startswith(graph + ".") for graph in self.unmapped)


def _expand_graphs(
    section: Mapping[str, Any],
    nodes: Mapping[str, Any],
    index: _GraphIndex,
    errors: list[ConfigErrorItem],
) -> _Expanded:
    """The ``solids`` section by flat node name, with every graph's part resolved.

    Graphs are flattened into dotted node names when the pipeline is built; config
    may name those directly or nest by graph (``{outer: {solids: {inner: ...}}}``),
    as in Dagster.  A graph with a ``config_fn`` takes ``{config: ...}`` instead and
    its function writes its solids' entries.  Graph inputs its caller left unwired
    are given under ``{inputs: ...}``.  Every graph that maps config or needs an
    input is visited even when run config does not name it.
    """
    out = _Expanded()
    visited: set[str] = set()

    def expand(section: Mapping[str, Any], prefix: str, mapped_by: str | None) -> None:
        for key, value in section.items():
            full = prefix + str(key)
            if index.is_graph(full, nodes):
                graph_entry(full, value, mapped_by)
            elif mapped_by is None and (owner := index.mapped_owner(full)) is not None:
                errors.append(_mapped_elsewhere("solid", full, owner))
            elif mapped_by is not None and full not in nodes:
                errors.append(
                    ConfigErrorItem(
                        f"solids.{full}",
                        f"the config_fn of {mapped_by} gave config for {full!r}, which is not "
                        f"one of its solids; it has {sorted(n for n in nodes if n.startswith(prefix))}",
                    )
                )
            else:
                out.solids[full] = value

    def graph_entry(full: str, value: Any, mapped_by: str | None) -> None:
        visited.add(full)
        path = f"solids.{full}"
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(value).__name__}"))
            return
        if mapped_by is None and (owner := index.mapped_owner(full)) is not None:
            errors.append(_mapped_elsewhere("graph", full, owner))
            return
        use = index.graphs.get(full)
        maps = use is not None and use.graph.config_fn is not None
        extra = sorted(set(value) - {"inputs", "config" if maps else "solids"})
        if extra:
            what = (
                "its own config under 'config' (its config_fn maps it onto its solids)"
                if maps
                else "its solids' config under 'solids' (per solid)"
            )
            errors.append(
                ConfigErrorItem(
                    path,
                    f"{full!r} is a graph: give {what} and its inputs under 'inputs', not {extra}",
                )
            )
        if use is not None:
            _graph_inputs(use, value.get("inputs"), path, out, errors)
        if maps and use is not None:
            mapped = _map_graph_config(use.graph, full, value.get("config", MISSING), errors)
            if mapped is None:
                out.unmapped.append(full)
            else:
                expand(mapped, full + ".", f"graph {full!r}")
            return
        inner = value.get("solids") or {}
        if not isinstance(inner, Mapping):
            errors.append(ConfigErrorItem(f"{path}.solids", "expected a mapping"))
            return
        expand(inner, full + ".", mapped_by)

    expand(section, "", None)
    for full in sorted(index.graphs, key=lambda name: name.count(".")):
        use = index.graphs[full]
        if full not in visited and (use.graph.config_fn is not None or use.config_inputs):
            owner = index.mapped_owner(full)
            graph_entry(full, None, None if owner is None else f"graph {owner!r}")
    return out


def _mapped_elsewhere(kind: str, name: str, owner: str) -> ConfigErrorItem:
    return ConfigErrorItem(
        f"solids.{name}",
        f"{kind} {name!r} takes its config from the config_fn of graph {owner!r}; "
        f"set solids.{owner}.config instead",
    )


def _map_graph_config(
    graph: Any, full: str, given: Any, errors: list[ConfigErrorItem]
) -> Mapping[str, Any] | None:
    """Run a graph's ``config_fn`` on its validated config; None when that went wrong."""
    path = f"solids.{full}.config"
    before = len(errors)
    if graph.config_schema is None:
        value = None if given is MISSING else given
    else:
        spec = _spec_for(graph.config_schema, f"config_schema of graph {graph.name!r}")
        value = _validate_root(spec, given, path, errors, owner=f"graph {full!r}")
    if len(errors) > before:
        return None
    try:
        mapped = graph.config_fn(value)
    except Exception as exc:
        errors.append(
            ConfigErrorItem(
                path, f"the config_fn of graph {full!r} raised {type(exc).__name__}: {exc}"
            )
        )
        return None
    if mapped is None:
        return {}
    if not isinstance(mapped, Mapping):
        errors.append(
            ConfigErrorItem(
                path,
                f"the config_fn of graph {full!r} returned {type(mapped).__name__}; it must "
                "return its solids' config, {solid: {'config': ...}}",
            )
        )
        return None
    return mapped


def _graph_inputs(
    use: Any, given: Any, path: str, out: _Expanded, errors: list[ConfigErrorItem]
) -> None:
    """Hand the value of each unwired graph input to the solid inputs it feeds."""
    if given is None:
        given = {}
    elif not isinstance(given, Mapping):
        errors.append(ConfigErrorItem(f"{path}.inputs", "expected a mapping"))
        return
    unwired = use.config_inputs
    for key, value in given.items():
        consumers = unwired.get(key)
        if consumers is None:
            if key in use.graph.input_names:
                errors.append(
                    ConfigErrorItem(
                        f"{path}.inputs.{key}",
                        f"input {key!r} of graph {use.name!r} is already fed inside the "
                        "pipeline body; remove it from the run config",
                    )
                )
            else:
                errors.append(unknown_key_item(f"{path}.inputs", key, list(unwired), noun="input"))
            continue
        for node_input in consumers:
            out.inputs[node_input] = (value, f"{path}.inputs.{key}")
    for name, consumers in unwired.items():
        if consumers and name not in given:
            errors.append(
                ConfigErrorItem(
                    f"{path}.inputs.{name}",
                    f"input {name!r} of graph {use.name!r} is fed by nothing in the pipeline "
                    "body; give its value here",
                )
            )


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


def _unfed_required_inputs(node: _Node, cut: Collection[str] = ()) -> list[str]:
    wired = node.inputs
    return [
        d.name
        for d in node.solid.input_defs
        if not d.has_default and (d.name not in wired or d.name in cut)
    ]


def _source_names(source: object) -> list[str]:
    """The solids an input's source reads, for messages (duck-typed: FromOutput, FanIn, Collect)."""
    parts = getattr(source, "sources", None)
    if parts is not None:
        return [n for part in parts if (n := getattr(part, "node", None)) is not None]
    name = getattr(source, "producer", None) or getattr(source, "node", None)
    return [name] if isinstance(name, str) else []


def _resolve_solid(
    node: _Node,
    entry: Any,
    path: str,
    errors: list[ConfigErrorItem],
    *,
    fed: Mapping[str, tuple[str, str]] | None = None,
    expanded: _Expanded | None = None,
    cut: Collection[str] = (),
    computed: bool = True,
) -> SolidRunConfig:
    """One node's config and inputs; ``fed`` names its inputs that graph inputs feed, ``cut``
    those a subset run does not feed (their source is not in it), ``computed`` whether the
    run computes the node (only then must its inputs be fed)."""
    if entry is None:
        entry = {}
    elif not isinstance(entry, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(entry).__name__}"))
        return SolidRunConfig()
    _check_keys(entry, _SOLID_KEYS, path, errors)
    solid = node.solid
    owner = f"solid {node.name!r}"
    config = _definition_config(
        solid, entry.get("config", MISSING), f"{path}.config", errors, owner=owner
    )
    inputs: dict[str, Any] = {}
    given = _section(entry, "inputs", f"{path}.inputs", errors)
    defs = {d.name: d for d in solid.input_defs}
    for key, value in given.items():
        input_path = f"{path}.inputs.{key}"
        input_def = defs.get(key)
        if input_def is None:
            unfed = [name for name in defs if name not in node.inputs or name in cut]
            errors.append(unknown_key_item(f"{path}.inputs", key, unfed, noun="input"))
        elif fed is not None and key in fed:
            graph, graph_input = fed[key]
            errors.append(
                ConfigErrorItem(
                    input_path,
                    f"input {key!r} of {owner} is fed by input {graph_input!r} of graph "
                    f"{graph!r}; give it as solids.{graph}.inputs.{graph_input}",
                )
            )
        elif key in node.inputs and key not in cut:
            errors.append(
                ConfigErrorItem(
                    input_path,
                    f"input {key!r} of {owner} is already fed inside the pipeline body; "
                    "remove it from the run config",
                )
            )
        else:
            inputs[key] = _checked_input(input_def, value, input_path, errors)
    if fed is not None and expanded is not None:
        for key in fed:
            from_graph = expanded.inputs.get((node.name, key))
            if from_graph is not None and key in defs:
                inputs[key] = _checked_input(defs[key], from_graph[0], from_graph[1], errors)
    for name in _unfed_required_inputs(node, cut) if computed else ():
        if name in given or (fed is not None and name in fed):
            continue
        if name in cut:
            sources = " and ".join(repr(s) for s in _source_names(node.inputs.get(name)))
            message = (
                f"input {name!r} of {owner} comes from solid {sources or '?'}, which this run "
                "does not execute; give its value here, select that solid too, or re-execute "
                "from a run that stored its outputs"
            )
        else:
            message = (
                f"input {name!r} of {owner} is fed by no solid and has no default; "
                "give its value here"
            )
        errors.append(ConfigErrorItem(f"{path}.inputs.{name}", message))
    return SolidRunConfig(config=config, inputs=inputs)


def _checked_input(
    input_def: _InputDef, value: Any, path: str, errors: list[ConfigErrorItem]
) -> Any:
    ctype = _input_type(input_def.annotation)
    return value if ctype is None else ctype.validate(value, path, errors)


def _resolve_resource(
    key: str, resource: _Resource, entry: Any, path: str, errors: list[ConfigErrorItem]
) -> Any:
    if entry is None:
        entry = {}
    elif not isinstance(entry, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(entry).__name__}"))
        return None
    _check_keys(entry, _RESOURCE_KEYS, path, errors)
    return _definition_config(
        resource, entry.get("config", MISSING), f"{path}.config", errors, owner=f"resource {key!r}"
    )


def _resolve_execution(section: Any, errors: list[ConfigErrorItem]) -> ExecutionConfig:
    if section is None:  # the commonest case, and all defaults: no schema walk per run
        return ExecutionConfig()
    before = len(errors)
    dask = None
    if isinstance(section, Mapping) and "dask" in section:
        dask = _resolve_dask(section["dask"], errors)
        section = {k: v for k, v in section.items() if k != "dask"}
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
    return ExecutionConfig(
        max_concurrency=limit, concurrency_limits=value["concurrency_limits"], dask=dask
    )


def _resolve_dask(section: Any, errors: list[ConfigErrorItem]) -> dict[str, Any]:
    """``execution.dask``: ``{cluster: {existing: {address}}}`` or ``{cluster: {local: {...}}}``
    (empty or null: a local cluster sized to the machine)."""
    path = "execution.dask"
    dask = {} if section is None else section
    if not isinstance(dask, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(dask).__name__}"))
        return {}
    _check_keys(dask, ("cluster",), path, errors)
    cluster = dask.get("cluster") or {"local": None}
    if not isinstance(cluster, Mapping):
        errors.append(
            ConfigErrorItem(f"{path}.cluster", f"expected a mapping, got {type(cluster).__name__}")
        )
        return {}
    _check_keys(cluster, tuple(_DASK_CLUSTERS), f"{path}.cluster", errors, noun="cluster kind")
    kinds = [kind for kind in _DASK_CLUSTERS if kind in cluster]
    if len(kinds) != 1:
        if not errors or not errors[-1].path.startswith(f"{path}.cluster"):
            errors.append(
                ConfigErrorItem(
                    f"{path}.cluster",
                    "give exactly one of 'existing' ({address: tcp://host:8786}, a running "
                    "scheduler) or 'local' ({n_workers: 2, ...}, a LocalCluster for the run), "
                    f"got {kinds or 'neither'}",
                )
            )
        return {}
    (kind,) = kinds
    where = f"{path}.cluster.{kind}"
    options = _validate_root(
        _DASK_CLUSTERS[kind], cluster[kind], where, errors, owner=f"a Dask {kind} cluster"
    )
    for key in ("n_workers", "threads_per_worker"):
        if kind == "local" and options and options[key] is not None and options[key] < 1:
            errors.append(
                ConfigErrorItem(f"{where}.{key}", f"must be at least 1, got {options[key]}")
            )
    return {"cluster": {kind: options or {}}}


def _merged(pipeline: _Pipeline, run_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's config over the pipeline's default, as JSON data; ConfigError if it is not JSON.

    Checked before anything else walks it, so a NaN, a date object or a
    structure nested thousands deep is one error with its path, never a crash.
    """
    if not pipeline.default_config and (
        run_config is None or (isinstance(run_config, Mapping) and not run_config)
    ):
        return {}  # no config at all: nothing to check or merge
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
    pipeline: _Pipeline,
    run_config: Mapping[str, Any] | None = None,
    *,
    resource_defs: Mapping[str, _Resource] | None = None,
    given_resources: Collection[str] = (),
    computed: Collection[str] | None = None,
    cut: Mapping[str, Collection[str]] | None = None,
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

    ``resource_defs`` replaces the pipeline's resource definitions for this run;
    ``given_resources`` are keys the run was given as ready values: they take no
    config, and an entry for one (from the pipeline's default config, say) is
    not an error.

    A run of a subset of the solids says which it ``computed`` (only their
    required inputs must be fed) and, by solid, the inputs ``cut`` from their
    source (fed by a solid outside the run), which config may and must feed.
    """
    raw = _merged(pipeline, run_config)
    errors: list[ConfigErrorItem] = []
    _check_keys(raw, _TOP_KEYS, "", errors)

    nodes = pipeline.nodes
    solids_section = _section(raw, "solids", "solids", errors)
    index = _GraphIndex(pipeline)
    expanded = None
    needing, dotted = _pipeline_facts(pipeline)
    if index.graphs or dotted:
        expanded = _expand_graphs(solids_section, nodes, index, errors)
        solids_section = expanded.solids
    _check_keys(solids_section, nodes, "solids", errors, noun="solid")
    # Every node starts with no config; only those that have a schema, an input to
    # feed, or an entry in this config are resolved (in node order, as errors are listed).
    solids: dict[str, SolidRunConfig] = dict.fromkeys(nodes, _NO_CONFIG)
    cut = cut or {}
    if computed is None and not cut:
        to_resolve = needing
        extra = [name for name in (*solids_section, *index.fed) if name in nodes]
        if extra:
            wanted = {*to_resolve, *extra}
            to_resolve = tuple(name for name in nodes if name in wanted)
    else:  # a subset run: which inputs must be fed depends on what it computes and cuts
        to_resolve = tuple(nodes)
    configured: list[str] = []
    for name in to_resolve:
        node = nodes[name]
        entry = solids_section.get(name)
        node_cut = cut.get(name, ())
        runs = computed is None or name in computed
        fed = index.fed.get(name) if index.fed else None
        if (
            entry is None
            and fed is None
            and node.solid.config_schema is None
            and getattr(node.solid, "config_mapping", None) is None
            and (
                not runs or not node.solid.input_defs or not _unfed_required_inputs(node, node_cut)
            )
        ):
            continue  # no config: _NO_CONFIG
        if expanded is not None and expanded.unmapped and expanded.lost(name):
            continue  # its graph's config is at fault, already reported
        before = len(errors)
        solids[name] = resolved = _resolve_solid(
            node,
            entry,
            f"solids.{name}",
            errors,
            fed=fed,
            expanded=expanded,
            cut=node_cut,
            computed=runs,
        )
        if resolved.config is not None or resolved.inputs:
            configured.append(name)
        owner = index.mapped_owner(name) if index.mapped and len(errors) > before else None
        if owner is not None:
            _annotate(errors, before, f"given by the config_fn of graph {owner!r}")

    if resource_defs is None:
        resource_defs = pipeline.resource_defs
    resources_section = _section(raw, "resources", "resources", errors)
    known = {**resource_defs, **dict.fromkeys(given_resources)}
    _check_keys(resources_section, known, "resources", errors, noun="resource")
    resources = {
        key: _resolve_resource(
            key, resource, resources_section.get(key), f"resources.{key}", errors
        )
        for key, resource in resource_defs.items()
    }

    execution = _resolve_execution(raw.get("execution"), errors)
    if errors:
        # A graph input feeding several solids is checked once per solid: report it once.
        errors = list(dict.fromkeys(errors))
        raise ConfigError(errors, subject=f"run config for pipeline {pipeline.name!r}")
    return ResolvedRunConfig(
        solids=solids,
        resources=resources,
        execution=execution,
        raw=raw,
        configured=tuple(configured),
    )


def _needs_config(node: _Node) -> bool:
    """Whether ``node`` is resolved even when run config does not name it."""
    solid = node.solid
    return (
        solid.config_schema is not None
        or getattr(solid, "config_mapping", None) is not None
        or bool(solid.input_defs and _unfed_required_inputs(node))
    )


# pipeline -> (the nodes that need resolving whatever the run config says, in node order;
# whether a node name is dotted, as a flattened graph's are).
_FACTS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], bool]] = weakref.WeakKeyDictionary()


def _pipeline_facts(pipeline: _Pipeline) -> tuple[tuple[str, ...], bool]:
    """What resolving needs to know of ``pipeline``'s nodes, found once per pipeline (a
    pipeline never changes once built; a stand-in that cannot be cached is walked)."""
    try:
        return _FACTS[pipeline]
    except KeyError:
        pass
    except TypeError:  # not hashable or not weakly referenceable
        return _walk_nodes(pipeline)
    facts = _FACTS[pipeline] = _walk_nodes(pipeline)
    return facts


def _walk_nodes(pipeline: _Pipeline) -> tuple[tuple[str, ...], bool]:
    nodes = pipeline.nodes
    needing = tuple(name for name, node in nodes.items() if _needs_config(node))
    return needing, any("." in name for name in nodes)


# --- schema and scaffold of a whole run config ----------------------------------------------


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def _config_field(definition: Any, owner: str) -> tuple[FieldSpec | None, bool]:
    """The spec of the config run config gives ``definition`` (None: unchecked), and whether
    it takes any: a ``configured()`` copy with its config fixed in code takes none."""
    mapping = getattr(definition, "config_mapping", None)
    if mapping is not None and mapping.is_fixed:
        return None, False
    schema = definition.config_schema
    if schema is None:
        return None, True
    return _spec_for(schema, f"config_schema of {owner}"), True


@attrs.frozen
class _EntryParts:
    """What run config may give one ``solids`` entry (a solid, or a graph use)."""

    spec: FieldSpec | None  # its config's schema; None: unchecked, or none taken
    takes_config: bool
    inputs: dict[str, _InputDef]  # by the name run config uses
    needed: list[str]  # inputs run config must give


def _entry_parts(pipeline: _Pipeline, name: str, node: Any, extra: Any) -> _EntryParts:
    if node is None:  # a graph use: its own config when it maps config, its unwired inputs
        use = extra
        spec, takes = (None, False)
        if use.graph.maps_config:
            spec, takes = _config_field(use.graph, f"graph {name!r}")
        inputs = _graph_input_defs(use, pipeline.nodes)
        return _EntryParts(spec, takes, inputs, list(inputs))
    spec, takes = _config_field(node.solid, f"solid {name!r}")
    inputs = {
        d.name: d
        for d in node.solid.input_defs
        if d.name not in node.inputs and d.name not in extra
    }
    needed = [n for n in _unfed_required_inputs(node) if n not in extra]
    return _EntryParts(spec, takes, inputs, needed)


def _input_json_schema(input_def: _InputDef) -> dict[str, Any]:
    ctype = _input_type(input_def.annotation)
    return {} if ctype is None else ctype.json_schema()


def _graph_input_defs(use: Any, nodes: Mapping[str, _Node]) -> dict[str, _InputDef]:
    """Each unwired input of a graph use that feeds something, as the first solid input it feeds."""
    found: dict[str, _InputDef] = {}
    for name, consumers in use.config_inputs.items():
        for node, input_name in consumers[:1]:
            for input_def in nodes[node].solid.input_defs:
                if input_def.name == input_name:
                    found[name] = input_def
    return found


def _config_entries(pipeline: _Pipeline) -> list[tuple[str, Any, Any]]:
    """What run config may address under ``solids``, by flat name: (name, node, graph use).

    For a solid the third item is its inputs fed by graph inputs, for a graph use
    the node is None.  Nodes inside a config-mapping graph are left out (its
    config_fn gives their config); graph uses appear when they map config or
    have unwired inputs.
    """
    index = _GraphIndex(pipeline)
    entries: list[tuple[str, Any, Any]] = []
    for name, use in index.graphs.items():
        if index.mapped_owner(name) is None and (use.graph.maps_config or use.config_inputs):
            entries.append((name, None, use))
    for name, node in pipeline.nodes.items():
        if not index.mapped or index.mapped_owner(name) is None:
            entries.append((name, node, index.fed.get(name, {})))
    return entries


def run_config_json_schema(pipeline: _Pipeline) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the merged run config of ``pipeline``.

    Describes ``solids``, ``resources`` and ``execution`` with the same
    required-ness :func:`resolve_run_config` enforces, so the UI's playground and
    the CLI can check a config before launching.
    """
    solid_props: dict[str, Any] = {}
    solid_required: list[str] = []
    for name, node, extra in _config_entries(pipeline):
        parts = _entry_parts(pipeline, name, node, extra)
        properties: dict[str, Any] = {}
        required: list[str] = []
        if parts.spec is not None:
            properties["config"] = parts.spec.json_schema()
            if parts.spec.required:
                required.append("config")
        elif parts.takes_config:
            properties["config"] = {}
        inputs = {key: _input_json_schema(d) for key, d in parts.inputs.items()}
        properties["inputs"] = _object(inputs, parts.needed)
        if parts.needed:
            required.append("inputs")
        solid_props[name] = _object(properties, required)
        if required:
            solid_required.append(name)
    resource_props: dict[str, Any] = {}
    resource_required: list[str] = []
    for key, resource in pipeline.resource_defs.items():
        spec, takes_config = _config_field(resource, f"resource {key!r}")
        if spec is None:
            resource_props[key] = _object({"config": {}} if takes_config else {}, [])
            continue
        needed = ["config"] if spec.required else []
        resource_props[key] = _object({"config": spec.json_schema()}, needed)
        if needed:
            resource_required.append(key)
    properties = {
        "solids": _object(solid_props, solid_required),
        "resources": _object(resource_props, resource_required),
        "execution": _execution_json_schema(),
    }
    required = [k for k, v in (("solids", solid_required), ("resources", resource_required)) if v]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"run config for pipeline {pipeline.name}",
        **_object(properties, required),
    }


def _execution_json_schema() -> dict[str, Any]:
    schema = _EXECUTION_SPEC.json_schema()
    clusters = {
        kind: _object({kind: spec.json_schema()}, [kind]) for kind, spec in _DASK_CLUSTERS.items()
    }
    schema["properties"]["dask"] = {
        "anyOf": [
            _object({"cluster": {"oneOf": list(clusters.values())}}, []),
            {"type": "null"},
        ],
        "description": "Run the steps on a Dask cluster (an existing one, or a local one).",
    }
    return schema


def _input_scaffold(input_def: _InputDef) -> Any:
    if input_def.has_default:
        return jsonable(getattr(input_def, "default", None))
    ctype = _input_type(input_def.annotation)
    return None if ctype is None else ctype.scaffold()


def default_run_config(pipeline: _Pipeline) -> dict[str, Any]:
    """A run config to start editing from: every field at its default or a typed placeholder.

    Placeholders are valid values of their type ("" for str, 0 for int...), so the
    scaffold itself resolves; the pipeline's default config is overlaid on it.
    """
    solids: dict[str, Any] = {}
    for name, node, extra in _config_entries(pipeline):
        parts = _entry_parts(pipeline, name, node, extra)
        entry: dict[str, Any] = {}
        if parts.spec is not None:
            entry["config"] = parts.spec.scaffold()
        if parts.inputs:
            entry["inputs"] = {key: _input_scaffold(d) for key, d in parts.inputs.items()}
        if entry:
            solids[name] = entry
    resources: dict[str, Any] = {}
    for key, resource in pipeline.resource_defs.items():
        spec, _ = _config_field(resource, f"resource {key!r}")
        if spec is not None:
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
