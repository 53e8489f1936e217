"""Graphs in run config: nested solids, a graph's own config mapped by its ``config_fn``, unwired inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from asyncdag._errors import ConfigErrorItem

from ._protocols import _Pipeline
from ._schemas import _spec_for, _validate_root
from ._types import (
    MISSING,
    unknown_key_item,
)


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
