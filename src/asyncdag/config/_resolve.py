"""Resolving a run's config against a pipeline: every problem found at once, with its dotted path."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Collection, Mapping
from typing import Any

from asyncdag._errors import ConfigError, ConfigErrorItem, DefinitionError

from ._data import json_data
from ._execution import _resolve_execution
from ._graphs import _expand_graphs, _Expanded, _GraphIndex
from ._protocols import _InputDef, _Node, _Pipeline, _Resource
from ._resolved import ResolvedRunConfig, SolidRunConfig
from ._schemas import _annotate, _definition_config
from ._sections import _RESOURCE_KEYS, _SOLID_KEYS, _TOP_KEYS, _check_keys, _deep_merge, _section
from ._types import (
    MISSING,
    ConfigType,
    normalize_schema,
    unknown_key_item,
)

_INPUT_TYPES: dict[Any, ConfigType | None] = {}


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
