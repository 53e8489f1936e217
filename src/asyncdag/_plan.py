"""The execution plan: a validated, indexed form of a pipeline for one run.

Building it is linear in nodes + edges.  Every check that can fail before a
step runs happens here (a cycle, an input nobody feeds, an output that does
not exist), so a run that starts has a graph that can finish.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

from ._definitions import (
    Constant,
    FanIn,
    FromOutput,
    Node,
    PipelineDefinition,
    SolidDefinition,
)
from ._errors import DefinitionError
from ._retry import RetryPolicy

__all__ = ["ExecutionPlan", "Step"]

# How a step reads one input at run time: (input name, kind, payload).
#   kind 0: a constant, payload is the value
#   kind 1: another step's output, payload is (step index, output name)
#   kind 2: a fan-in list, payload is a tuple of (is_step, step index | value, output name)
INPUT_CONSTANT = 0
INPUT_STEP = 1
INPUT_FAN_IN = 2


class Step:
    """One node of the plan, with everything the engine needs resolved up front."""

    __slots__ = (
        "downstream",
        "index",
        "inputs",
        "key",
        "node",
        "pool",
        "retry_policy",
        "solid",
        "timeout",
        "upstream",
    )

    def __init__(
        self,
        *,
        index: int,
        key: str,
        node: Node,
        inputs: tuple[tuple[str, int, Any], ...],
        upstream: tuple[int, ...],
    ) -> None:
        self.index = index
        self.key = key
        self.node = node
        self.solid: SolidDefinition = node.solid
        self.inputs = inputs
        self.upstream = upstream
        self.downstream: list[int] = []
        self.pool: str | None = node.solid.pool
        self.retry_policy: RetryPolicy | None = node.solid.retry_policy
        self.timeout: float | None = node.solid.timeout

    def __repr__(self) -> str:
        return f"<Step {self.key!r} #{self.index}>"


def _topological_order(pipeline: PipelineDefinition) -> list[Node]:
    """Kahn's algorithm: the nodes in an order where every node follows its inputs."""
    nodes = pipeline.nodes
    indegree: dict[str, int] = {}
    dependents: dict[str, list[str]] = {name: [] for name in nodes}
    for name, node in nodes.items():
        upstream = node.upstream
        for up in upstream:
            if up not in nodes:
                raise DefinitionError(
                    f"solid {name!r} takes an input from {up!r}, which is not a solid of "
                    f"pipeline {pipeline.name!r}"
                )
            dependents[up].append(name)
        indegree[name] = len(upstream)
    queue = deque(name for name, count in indegree.items() if count == 0)
    order: list[Node] = []
    while queue:
        name = queue.popleft()
        order.append(nodes[name])
        for dep in dependents[name]:
            indegree[dep] -= 1
            if indegree[dep] == 0:
                queue.append(dep)
    if len(order) != len(nodes):
        stuck = sorted(name for name, count in indegree.items() if count > 0)
        raise DefinitionError(
            f"pipeline {pipeline.name!r} has a dependency cycle through solids {stuck}; "
            "a solid cannot depend on its own output"
        )
    return order


class ExecutionPlan:
    """Steps in topological order, with their upstream and downstream steps by index."""

    __slots__ = ("by_key", "pipeline", "steps")

    def __init__(self, pipeline: PipelineDefinition, steps: list[Step]) -> None:
        self.pipeline = pipeline
        self.steps = steps
        self.by_key = {step.key: step for step in steps}

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def for_pipeline(
        cls,
        pipeline: PipelineDefinition,
        *,
        input_values: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ExecutionPlan:
        """The plan for one run of ``pipeline``.

        A plan is immutable (runs keep their state elsewhere), and a pipeline
        never changes after its body ran, so the plan of a run whose config
        feeds no inputs is built once per pipeline and reused: planning is the
        largest per-run cost that does not depend on the run.
        """
        if input_values:
            return cls.build(pipeline, input_values=input_values)
        plan = _plan_cache.get(pipeline)
        if plan is None:
            plan = _plan_cache[pipeline] = cls.build(pipeline)
        return plan

    @classmethod
    def build(
        cls,
        pipeline: PipelineDefinition,
        *,
        input_values: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ExecutionPlan:
        """Resolve ``pipeline`` into runnable steps.

        ``input_values`` are the values run config gives for inputs that no
        solid feeds.  Every unfed input is reported in one error.
        """
        input_values = input_values or {}
        order = _topological_order(pipeline)
        index_of = {node.name: i for i, node in enumerate(order)}
        steps: list[Step] = []
        problems: list[str] = []
        for i, node in enumerate(order):
            from_config = input_values.get(node.name, {})
            resolved: list[tuple[str, int, Any]] = []
            upstream: dict[int, None] = {}
            for input_def in node.solid.input_defs:
                name = input_def.name
                source = node.inputs.get(name)
                if isinstance(source, FromOutput):
                    up = index_of[source.node]
                    upstream[up] = None
                    resolved.append((name, INPUT_STEP, (up, source.output)))
                elif isinstance(source, FanIn):
                    items = []
                    for item in source.sources:
                        if isinstance(item, FromOutput):
                            up = index_of[item.node]
                            upstream[up] = None
                            items.append((True, up, item.output))
                        else:
                            items.append((False, item.value, None))
                    resolved.append((name, INPUT_FAN_IN, tuple(items)))
                elif isinstance(source, Constant):
                    resolved.append((name, INPUT_CONSTANT, source.value))
                elif name in from_config:
                    resolved.append((name, INPUT_CONSTANT, from_config[name]))
                elif input_def.has_default:
                    resolved.append((name, INPUT_CONSTANT, input_def.default))
                else:
                    problems.append(
                        f"solid {node.name!r} input {name!r} is not connected: pass it another "
                        f"solid's output in the pipeline body, give the parameter a default, or "
                        f"set solids.{node.name}.inputs.{name} in run config"
                    )
            steps.append(
                Step(
                    index=i,
                    key=node.name,
                    node=node,
                    inputs=tuple(resolved),
                    upstream=tuple(upstream),
                )
            )
        if problems:
            raise DefinitionError(
                f"pipeline {pipeline.name!r} cannot run:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        for step in steps:
            for up in step.upstream:
                steps[up].downstream.append(step.index)
        return cls(pipeline, steps)


_plan_cache: weakref.WeakKeyDictionary[PipelineDefinition, ExecutionPlan] = (
    weakref.WeakKeyDictionary()
)
