"""A whole run config's JSON Schema and a scaffold to fill in, for the CLI and the web UI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._graphs import _GraphIndex
from ._protocols import _InputDef, _Node, _Pipeline
from ._resolve import _input_type, _unfed_required_inputs
from ._schemas import JSON_SCHEMA_DIALECT, _spec_for
from ._sections import _DASK_CLUSTERS, _EXECUTION_SPEC, _deep_merge
from ._types import (
    FieldSpec,
    jsonable,
)


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
