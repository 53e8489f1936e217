"""Step selection: which solids of a pipeline a run executes, in Dagster's selection syntax.

A selection is a list of clauses, each a solid name with optional graph
operators around it::

    fetch          the solid itself
    *fetch         fetch and all of its ancestors         fetch*    and all of its descendants
    +fetch         fetch and its direct upstream solids   fetch+    and its direct downstream ones
    ++fetch        two levels up (+2fetch too)            fetch+2   two levels down (fetch++ too)
    *              every solid

A clause may also hold several, comma-separated (``"fetch+,summarize"``).
Names are node names as the pipeline knows them (``outer.inner`` inside a
``@graph``; a mapped solid by its name, all of its items at once).  An
unknown name is a :class:`~asyncdag.ReexecutionError` naming the clause and
the nearest known name, before anything runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

from .._definitions import PipelineDefinition
from .._errors import ReexecutionError

__all__ = ["NodeGraph", "select_nodes"]

_CLAUSE = re.compile(r"^(?P<up>\*|\+\d+|\++)?(?P<name>[^*+\s]+)(?P<down>\*|\+\d+|\++)?$")
_ALL = -1


class NodeGraph:
    """The pipeline's nodes with their upstream and downstream neighbours, by name.

    A mapped node's upstream is its producer and what it reads; a collecting
    node's upstream is the mapped node (or producer) it collects.
    """

    def __init__(self, pipeline: PipelineDefinition) -> None:
        self.pipeline = pipeline
        self.upstream: dict[str, tuple[str, ...]] = {}
        self.downstream: dict[str, list[str]] = {name: [] for name in pipeline.nodes}
        for name, node in pipeline.nodes.items():
            ups = dict.fromkeys(up for up in node.upstream if up in pipeline.nodes)
            if node.dynamic is not None:
                ups.setdefault(node.dynamic[0], None)
            self.upstream[name] = tuple(ups)
            for up in ups:
                self.downstream[up].append(name)

    def ancestors(self, names: Iterable[str], depth: int = _ALL) -> set[str]:
        return self._walk(names, self.upstream, depth)

    def descendants(self, names: Iterable[str], depth: int = _ALL) -> set[str]:
        return self._walk(names, self.downstream, depth)

    @staticmethod
    def _walk(names: Iterable[str], edges: Mapping[str, Iterable[str]], depth: int) -> set[str]:
        """Nodes reached from ``names`` within ``depth`` hops (all: -1); a DAG never reaches
        ``names`` themselves."""
        found: set[str] = set()
        frontier = list(names)
        level = 0
        while frontier and (depth == _ALL or level < depth):
            level += 1
            following = []
            for name in frontier:
                for other in edges[name]:
                    if other not in found:
                        found.add(other)
                        following.append(other)
            frontier = following
        return found


def _depth(operator: str | None) -> int:
    if not operator:
        return 0
    if operator == "*":
        return _ALL
    if operator[1:].isdigit():
        return int(operator[1:])
    return len(operator)


def select_nodes(pipeline: PipelineDefinition, selection: Iterable[str]) -> frozenset[str]:
    """The node names ``selection`` picks out of ``pipeline`` (see the module docstring).

    Every bad clause is reported at once.  An empty selection is an error: a
    run of nothing is never what was meant.
    """
    if isinstance(selection, str):
        selection = [selection]
    graph = NodeGraph(pipeline)
    chosen: set[str] = set()
    problems: list[str] = []
    clauses = [part.strip() for item in selection for part in str(item).split(",") if part.strip()]
    for clause in clauses:
        if clause == "*":
            chosen.update(pipeline.nodes)
            continue
        match = _CLAUSE.match(clause)
        if match is None:
            problems.append(
                f"{clause!r} is not a selection clause; write NAME, *NAME, NAME*, +NAME, "
                "NAME+ or NAME+2"
            )
            continue
        name = match["name"]
        if name not in pipeline.nodes:
            close = difflib.get_close_matches(name, list(pipeline.nodes), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{clause!r}: pipeline {pipeline.name!r} has no solid {name!r}{hint}")
            continue
        chosen.add(name)
        if match["up"]:
            chosen |= graph.ancestors([name], _depth(match["up"]))
        if match["down"]:
            chosen |= graph.descendants([name], _depth(match["down"]))
    if problems:
        raise ReexecutionError(
            "step selection cannot be used:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    if not chosen:
        raise ReexecutionError(
            "step selection is empty; name at least one solid (e.g. step_selection=['fetch*'])"
        )
    return frozenset(chosen)
