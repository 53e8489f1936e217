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

from .._definitions import (
    Collect,
    Constant,
    FanIn,
    FromOutput,
    Node,
    Out,
    PipelineDefinition,
    RetryPolicy,
    SolidDefinition,
)
from .._errors import DefinitionError

__all__ = ["DynamicGroup", "ExecutionPlan", "Step"]

# How a step reads one input at run time: (input name, kind, payload).
#   kind 0: a constant, payload is the value
#   kind 1: another step's output, payload is (step index, output name)
#   kind 2: a fan-in list, payload is a tuple of (is_step, step index | value, output name)
#   kind 3: a collected fan-out, payload is (group id, mapped node name | None, output name)
INPUT_CONSTANT = 0
INPUT_STEP = 1
INPUT_FAN_IN = 2
INPUT_COLLECT = 3

# A generator solid with no ``outs`` yields Output(value) for ``result``.
_SINGLE_OUT = {"result": Out()}


class Step:
    """One node of the plan, with everything the engine needs resolved up front."""

    __slots__ = (
        "collects",
        "downstream",
        "finished_prefix",
        "hooks",
        "index",
        "inputs",
        "key",
        "mapping_key",
        "node",
        "outs",
        "pool",
        "retry_policy",
        "solid",
        "started_message",
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
        hooks: tuple[Any, ...] = (),
        collects: tuple[int, ...] = (),
        mapping_key: str | None = None,
    ) -> None:
        self.index = index
        self.key = key
        # Built once per plan (plans are cached per pipeline), not once per run.
        self.started_message = f"Started execution of step {key!r}."
        self.finished_prefix = f"Finished execution of step {key!r} in "
        self.node = node
        self.solid: SolidDefinition = node.solid
        self.inputs = inputs
        self.upstream = upstream
        self.downstream: list[int] = []
        self.pool: str | None = node.solid.pool
        self.retry_policy: RetryPolicy | None = node.solid.retry_policy
        self.timeout: float | None = node.solid.timeout
        # None for the single ``result`` output: the engine's fast path.
        self.outs = node.solid.outs
        if self.outs is None and node.solid.is_generator:
            self.outs = _SINGLE_OUT
        self.hooks = hooks
        # Fan-out groups this step collects: it waits for each to settle.
        self.collects = collects
        self.mapping_key = mapping_key

    def __repr__(self) -> str:
        return f"<Step {self.key!r} #{self.index}>"


class DynamicGroup:
    """One fan-out: a producer step's DynamicOut and the nodes mapped over its items."""

    __slots__ = ("id", "output", "producer", "templates")

    def __init__(self, id: int, producer: int, output: str, templates: tuple[Node, ...]) -> None:
        self.id = id
        self.producer = producer
        self.output = output
        self.templates = templates


def _topological_order(
    pipeline: PipelineDefinition, nodes: Mapping[str, Node], waits_on: Mapping[str, str]
) -> list[Node]:
    """Kahn's algorithm: the nodes in an order where every node follows its inputs.

    ``waits_on`` maps a mapped (template) node to its producer: a static node
    collecting a fan-out waits on the producer as far as ordering goes.
    """
    indegree: dict[str, int] = {}
    dependents: dict[str, list[str]] = {name: [] for name in nodes}
    for name, node in nodes.items():
        upstream = dict.fromkeys(waits_on.get(up, up) for up in node.upstream)
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


def _unfed(node: Node, name: str) -> str:
    return (
        f"solid {node.name!r} input {name!r} is not connected: pass it another "
        f"solid's output in the pipeline body, give the parameter a default, or "
        f"set solids.{node.name}.inputs.{name} in run config"
    )


class ExecutionPlan:
    """Steps in topological order, with their upstream and downstream steps by index."""

    __slots__ = ("by_key", "groups", "input_values", "pipeline", "steps", "streams")

    def __init__(
        self,
        pipeline: PipelineDefinition,
        steps: list[Step],
        groups: tuple[DynamicGroup, ...] = (),
        input_values: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.steps = steps
        self.by_key = {step.key: step for step in steps}
        # Fan-outs, whose mapped steps the engine creates as items are yielded.
        self.groups = groups
        self.input_values = input_values or {}
        # True when some step is a generator: the engine then needs its fan-out bookkeeping.
        self.streams = any(step.solid.is_generator for step in steps)

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
        static: dict[str, Node] = {}
        templates: dict[tuple[str, str], list[Node]] = {}
        waits_on: dict[str, str] = {}
        for node in pipeline.nodes.values():
            if node.dynamic is None:
                static[node.name] = node
            else:
                templates.setdefault(node.dynamic, []).append(node)
                waits_on[node.name] = node.dynamic[0]
        order = _topological_order(pipeline, static, waits_on)
        index_of = {node.name: i for i, node in enumerate(order)}
        group_ids: dict[tuple[str, str], int] = {}
        groups: list[DynamicGroup] = []

        def group_id(producer: str, output: str) -> int:
            gid = group_ids.get((producer, output))
            if gid is None:
                gid = group_ids[(producer, output)] = len(groups)
                groups.append(
                    DynamicGroup(
                        gid,
                        index_of[producer],
                        output,
                        tuple(templates.get((producer, output), ())),
                    )
                )
            return gid

        pipeline_hooks = pipeline.hook_defs
        steps: list[Step] = []
        problems: list[str] = []
        for i, node in enumerate(order):
            from_config = input_values.get(node.name, {})
            resolved: list[tuple[str, int, Any]] = []
            upstream: dict[int, None] = {}
            collects: dict[int, None] = {}
            for input_def in node.solid.input_defs:
                name = input_def.name
                source = node.inputs.get(name)
                if isinstance(source, FromOutput):
                    up = index_of[source.node]
                    upstream[up] = None
                    resolved.append((name, INPUT_STEP, (up, source.output)))
                elif isinstance(source, FanIn):
                    items: list[tuple[bool, Any, str | None]] = []
                    for item in source.sources:
                        if isinstance(item, FromOutput):
                            up = index_of[item.node]
                            upstream[up] = None
                            items.append((True, up, item.output))
                        else:
                            items.append((False, item.value, None))
                    resolved.append((name, INPUT_FAN_IN, tuple(items)))
                elif isinstance(source, Collect):
                    gid = group_id(source.producer, source.producer_output)
                    collects[gid] = None
                    mapped = None if source.node == source.producer else source.node
                    resolved.append((name, INPUT_COLLECT, (gid, mapped, source.output)))
                elif isinstance(source, Constant):
                    resolved.append((name, INPUT_CONSTANT, source.value))
                elif name in from_config:
                    resolved.append((name, INPUT_CONSTANT, from_config[name]))
                elif input_def.has_default:
                    resolved.append((name, INPUT_CONSTANT, input_def.default))
                else:
                    problems.append(_unfed(node, name))
            for name in node.after:
                after_node = waits_on.get(name, name)
                if after_node == name:
                    upstream[index_of[name]] = None
                else:  # after a mapped node (outside .map()): wait for its whole fan-out
                    collects[group_id(after_node, pipeline.nodes[name].dynamic[1])] = None  # type: ignore[index]
            hooks = node.hooks | pipeline_hooks if pipeline_hooks else node.hooks
            steps.append(
                Step(
                    index=i,
                    key=node.name,
                    node=node,
                    inputs=tuple(resolved),
                    upstream=tuple(upstream),
                    hooks=tuple(sorted(hooks, key=lambda h: h.name)),
                    collects=tuple(collects),
                )
            )
        for (producer, output), template_nodes in templates.items():
            group_id(producer, output)
            for node in template_nodes:
                for input_def in node.solid.input_defs:
                    if (
                        input_def.name not in node.inputs
                        and input_def.name not in input_values.get(node.name, {})
                        and not input_def.has_default
                    ):
                        problems.append(_unfed(node, input_def.name))
        if problems:
            raise DefinitionError(
                f"pipeline {pipeline.name!r} cannot run:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        for step in steps:
            for up in step.upstream:
                steps[up].downstream.append(step.index)
        return cls(pipeline, steps, tuple(groups), input_values)


_plan_cache: weakref.WeakKeyDictionary[PipelineDefinition, ExecutionPlan] = (
    weakref.WeakKeyDictionary()
)
