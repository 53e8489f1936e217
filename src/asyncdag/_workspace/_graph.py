"""A pipeline's graph sized for drawing: whole when small, collapsed into groups when huge.

A browser lays out and draws a few thousand nodes at once; a pipeline of
100,000 solids (``fetch_0`` ... ``fetch_99999``) would take its page tens of
seconds and its JSON tens of megabytes.  Such a graph is almost always many
copies of a few shapes, so past :data:`LARGE_GRAPH` nodes :func:`graph_view`
folds every set of nodes that run the same solid, in the same place (the same
groups upstream), into one group node that lists its members.  A fan-out of
100,000 independent fetches becomes one node, ``fetch_0 (+99,999)``.  Each node
of a chain would stay its own (its upstream group differs from its neighbour's),
so when folding by place still leaves too many nodes, nodes are folded by solid
alone: a chain of 100,000 ``step`` calls becomes one ``step`` node (the edges
inside a group are left out; ``node_count`` and each group's ``count`` say how
many nodes there are).
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from typing import Any

from asyncdag._definitions import Node, PipelineDefinition

from ._describe import _edges, describe_node, describe_pipeline, pipeline_summary

__all__ = ["LARGE_GRAPH", "graph_view"]

#: Past this many nodes a pipeline's graph is drawn collapsed.
LARGE_GRAPH = 2000


def graph_view(pipeline: PipelineDefinition, *, max_nodes: int = LARGE_GRAPH) -> dict[str, Any]:
    """The pipeline as :func:`describe_pipeline` gives it, collapsed when it has > ``max_nodes``.

    ``node_count`` is always the pipeline's own size and ``collapsed`` says which
    form this is.  A collapsed graph's nodes each describe their first member
    and add ``members`` (every node name in the group, in definition order) and
    ``count``; edges join groups, once per input, and never a group to itself.
    """
    nodes = pipeline.nodes
    if len(nodes) <= max_nodes:
        return {**describe_pipeline(pipeline), "node_count": len(nodes), "collapsed": False}
    members = _by_place(nodes)
    if len(members) > max_nodes:
        members = _by_solid(nodes)
    # Names were given as groups grew; settle each group on its final size.
    final: dict[str, str] = {}
    for names in members.values():
        label = names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1:,})"
        for name in names:
            final[name] = label
    position = {name: i for i, name in enumerate(nodes)}
    described = []
    for names in sorted(members.values(), key=lambda g: position[g[0]]):
        entry = describe_node(nodes[names[0]])
        entry["name"] = final[names[0]]
        entry["upstream"] = sorted({final[up] for up in entry["upstream"]})
        entry["after"] = sorted({final[up] for up in entry["after"]})
        if entry["mapped_over"] is not None:
            entry["mapped_over"]["node"] = final[entry["mapped_over"]["node"]]
        entry["members"] = names
        entry["count"] = len(names)
        described.append(entry)
    edges: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for edge in _edges(pipeline):
        joined = {**edge, "from": final[edge["from"]], "to": final[edge["to"]]}
        if joined["from"] != joined["to"]:
            edges.setdefault((joined["from"], joined["to"], joined["input"]), joined)
    return {
        **pipeline_summary(pipeline),
        "nodes": described,
        "edges": list(edges.values()),
        "node_count": len(nodes),
        "collapsed": True,
    }


def _by_place(nodes: Mapping[str, Node]) -> dict[tuple[Any, ...], list[str]]:
    """Nodes running the same solid with the same groups upstream (and producer), together."""
    group_of: dict[str, str] = {}
    members: dict[tuple[Any, ...], list[str]] = {}
    for node in _topological(nodes):
        key = (
            node.solid.name,
            node.dynamic and group_of.get(node.dynamic[0]),
            tuple(sorted({group_of[up] for up in node.upstream})),
        )
        group = members.setdefault(key, [])
        group.append(node.name)
        group_of[node.name] = group[0]  # a group is known by its first member while it grows
    return members


def _by_solid(nodes: Mapping[str, Node]) -> dict[tuple[Any, ...], list[str]]:
    """Nodes running the same solid together (mapped ones apart from the others)."""
    members: dict[tuple[Any, ...], list[str]] = {}
    for node in nodes.values():
        members.setdefault((node.solid.name, node.dynamic is not None), []).append(node.name)
    return members


def _topological(nodes: Mapping[str, Node]) -> list[Node]:
    """The nodes inputs first: definition order when it is one (as a builder makes it)."""
    seen: set[str] = set()
    for node in nodes.values():
        if not seen.issuperset(node.upstream):
            break
        seen.add(node.name)
    else:
        return list(nodes.values())
    order = graphlib.TopologicalSorter({n.name: n.upstream for n in nodes.values()})
    return [nodes[name] for name in order.static_order()]
