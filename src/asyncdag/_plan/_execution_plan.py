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
    FromOutput,
    Node,
    Out,
    PipelineDefinition,
    RetryPolicy,
    SolidDefinition,
)
from .._errors import DefinitionError
from ._inputs import CollectInput, ConstantInput, StepInput, StepOutputInput, resolve_inputs
from ._subset import ReusedStep, RunSubset

__all__ = ["DynamicGroup", "ExecutionPlan", "Step"]

# A generator solid with no ``outs`` yields Output(value) for ``result``.
_SINGLE_OUT = {"result": Out()}


class Step:
    """One node of the plan, with everything the engine needs resolved up front."""

    __slots__ = (
        "collects",
        "downstream",
        "hooks",
        "index",
        "inputs",
        "key",
        "mapping_key",
        "mapping_path",
        "node",
        "outs",
        "pool",
        "priority",
        "retry_policy",
        "reuse",
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
        inputs: tuple[tuple[str, StepInput], ...],
        upstream: tuple[int, ...],
        hooks: tuple[Any, ...] = (),
        collects: tuple[int, ...] = (),
        mapping_key: str | None = None,
        mapping_path: tuple[str, ...] = (),
        reuse: ReusedStep | None = None,
    ) -> None:
        self.index = index
        self.key = key
        self.node = node
        self.solid: SolidDefinition = node.solid
        # (input name, where its value is read), in the solid's parameter order.
        self.inputs = inputs
        self.upstream = upstream
        self.downstream: list[int] = []
        self.pool: str | None = node.solid.pool
        self.priority: int = node.solid.priority
        # The call's policy, else the solid's, else the pipeline's (the builder decided).
        self.retry_policy: RetryPolicy | None = node.retry_policy
        self.timeout: float | None = node.solid.timeout
        # None for the single ``result`` output: the engine's fast path.
        self.outs = node.solid.outs
        if self.outs is None and node.solid.is_generator:
            self.outs = _SINGLE_OUT
        self.hooks = hooks
        # Fan-out groups this step collects: it waits for each to settle.
        self.collects = collects
        # The item this step was made for: its key, and the keys of the items of every
        # fan-out it is nested in, outermost first (``("a", "x")`` for ``f[a][x]``).
        self.mapping_key = mapping_key
        self.mapping_path = mapping_path or ((mapping_key,) if mapping_key is not None else ())
        # Set for a step this run does not compute: its outputs come from an earlier run.
        self.reuse = reuse
        if reuse is not None:
            self.pool = None

    def __repr__(self) -> str:
        return f"<Step {self.key!r} #{self.index}>"


class DynamicGroup:
    """One fan-out: a producer's DynamicOut and the nodes mapped over its items.

    A fan-out whose producer is itself mapped (a DynamicOut inside ``.map()``) is
    nested: made once per item of its ``parent`` group, by the step made from
    ``producer_node`` for that item, so its ``producer`` is no step of the plan (-1).
    """

    __slots__ = ("id", "output", "parent", "producer", "producer_node", "templates")

    def __init__(
        self,
        id: int,
        producer: int,
        output: str,
        templates: tuple[Node, ...],
        *,
        parent: int | None = None,
        producer_node: str = "",
    ) -> None:
        self.id = id
        self.producer = producer
        self.output = output
        self.templates = templates
        self.parent = parent
        self.producer_node = producer_node


def _topological_order(
    pipeline: PipelineDefinition,
    nodes: Mapping[str, Node],
    waits_on: Mapping[str, str],
    subset: RunSubset | None = None,
) -> list[Node]:
    """Kahn's algorithm: the nodes in an order where every node follows its inputs.

    ``waits_on`` maps a mapped (template) node to its producer: a static node
    collecting a fan-out waits on the producer as far as ordering goes.  In a
    subset run, a reused node waits for nothing and a computed one only for
    what is in the run.
    """
    indegree: dict[str, int] = {}
    dependents: dict[str, list[str]] = {name: [] for name in nodes}
    for name, node in nodes.items():
        ups = node.upstream
        if subset is not None:
            ups = () if name in subset.reused else tuple(u for u in ups if u in subset.in_run)
        upstream = dict.fromkeys(waits_on.get(up, up) for up in ups)
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

    __slots__ = (
        "by_key",
        "groups",
        "input_values",
        "pipeline",
        "prioritized",
        "reused",
        "steps",
        "streams",
        "subset",
    )

    def __init__(
        self,
        pipeline: PipelineDefinition,
        steps: list[Step],
        groups: tuple[DynamicGroup, ...] = (),
        input_values: Mapping[str, Mapping[str, Any]] | None = None,
        subset: RunSubset | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.steps = steps
        self.by_key = {step.key: step for step in steps}
        # Fan-outs, whose mapped steps the engine creates as items are yielded.
        self.groups = groups
        self.input_values = input_values or {}
        # A subset run (step selection, re-execution): what it computes and reuses.
        self.subset = subset
        #: Steps (static, and mapped items by key) whose outputs come from an earlier run.
        self.reused: Mapping[str, ReusedStep] = subset.reused if subset is not None else {}
        # True when some step is a generator: the engine then needs its fan-out bookkeeping.
        self.streams = any(step.solid.is_generator for step in steps)
        # True when some solid (mapped ones included) has a priority: the engine then orders
        # its ready steps by it; otherwise they go first in, first out, at a deque's cost.
        self.prioritized = any(node.solid.priority for node in pipeline.nodes.values())

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def for_pipeline(
        cls,
        pipeline: PipelineDefinition,
        *,
        input_values: Mapping[str, Mapping[str, Any]] | None = None,
        subset: RunSubset | None = None,
    ) -> ExecutionPlan:
        """The plan for one run of ``pipeline``.

        A plan is immutable (runs keep their state elsewhere), and a pipeline
        never changes after its body ran, so the plan of a run whose config
        feeds no inputs is built once per pipeline and reused: planning is the
        largest per-run cost that does not depend on the run.
        """
        if input_values or subset is not None:
            return cls.build(pipeline, input_values=input_values, subset=subset)
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
        subset: RunSubset | None = None,
    ) -> ExecutionPlan:
        """Resolve ``pipeline`` into runnable steps.

        ``input_values`` are the values run config gives for inputs that no
        solid feeds.  Every unfed input is reported in one error.  ``subset``
        makes a plan of only the solids in it: the reused ones as steps that
        load, the computed ones fed by what is in the run (else by config).
        """
        input_values = input_values or {}
        static: dict[str, Node] = {}
        templates: dict[tuple[str, str], list[Node]] = {}
        waits_on: dict[str, str] = {}
        cut: Mapping[str, frozenset[str]] = subset.cut if subset is not None else {}
        nodes = pipeline.nodes
        for node in nodes.values():
            if subset is not None and node.name not in subset.in_run:
                continue
            if node.dynamic is None:
                static[node.name] = node
            else:
                templates.setdefault(node.dynamic, []).append(node)
                # Ordered after the static step whose items it is made for, however nested.
                root = node.dynamic[0]
                while nodes[root].dynamic is not None:
                    root = nodes[root].dynamic[0]  # type: ignore[index]
                waits_on[node.name] = root
        order = _topological_order(pipeline, static, waits_on, subset)
        index_of = {node.name: i for i, node in enumerate(order)}
        group_ids: dict[tuple[str, str], int] = {}
        groups: list[DynamicGroup] = []

        def group_id(producer: str, output: str) -> int:
            gid = group_ids.get((producer, output))
            if gid is None:
                outer = nodes[producer].dynamic
                parent = None if outer is None else group_id(*outer)
                gid = group_ids[(producer, output)] = len(groups)
                groups.append(
                    DynamicGroup(
                        gid,
                        index_of[producer] if outer is None else -1,
                        output,
                        tuple(templates.get((producer, output), ())),
                        parent=parent,
                        producer_node=producer,
                    )
                )
            return gid

        pipeline_hooks = pipeline.hook_defs
        steps: list[Step] = []
        problems: list[str] = []
        for i, node in enumerate(order):
            reuse = subset.reused.get(node.name) if subset is not None else None
            if reuse is not None:
                steps.append(
                    Step(index=i, key=node.name, node=node, inputs=(), upstream=(), reuse=reuse)
                )
                continue
            upstream: dict[int, None] = {}
            collects: dict[int, None] = {}

            def link(source: FromOutput, upstream: dict[int, None] = upstream) -> StepOutputInput:
                up = index_of[source.node]
                upstream[up] = None
                return StepOutputInput(up, source.output)

            def collect(source: Collect, collects: dict[int, None] = collects) -> CollectInput:
                gid = group_id(source.producer, source.producer_output)
                collects[gid] = None
                mapped = None if source.node == source.producer else source.node
                return CollectInput(gid, mapped, source.output)

            inputs, unfed = resolve_inputs(
                node,
                from_config=input_values.get(node.name, {}),
                link=link,
                collect=collect,
                cut=cut.get(node.name, ()),
            )
            problems.extend(unfed)
            for name in node.after:
                if subset is not None and name not in subset.in_run:
                    continue
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
                    inputs=inputs,
                    upstream=tuple(upstream),
                    hooks=tuple(sorted(hooks, key=lambda h: h.name)),
                    collects=tuple(collects),
                )
            )
        for (producer, output), template_nodes in templates.items():
            group_id(producer, output)
            for node in template_nodes:
                # Mapped steps are made while the run goes on; their unfed inputs are found now.
                _, unfed = resolve_inputs(
                    node,
                    from_config=input_values.get(node.name, {}),
                    link=_placeholder,
                    collect=_collect_placeholder,
                    cut=cut.get(node.name, ()),
                )
                problems.extend(unfed)
        if problems:
            raise DefinitionError(
                f"pipeline {pipeline.name!r} cannot run:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        for step in steps:
            for up in step.upstream:
                steps[up].downstream.append(step.index)
        plan = cls(pipeline, steps, tuple(groups), input_values, subset)
        if plan.prioritized:
            # Dependents released together become ready highest priority first, so the
            # first of them to find a free pool slot is the one that should have it.
            for step in steps:
                step.downstream.sort(key=lambda index: -steps[index].priority)
        return plan


def _placeholder(source: FromOutput) -> ConstantInput:
    return ConstantInput(None)


def _collect_placeholder(source: Collect) -> CollectInput:
    return CollectInput(-1, None, source.output)


_plan_cache: weakref.WeakKeyDictionary[PipelineDefinition, ExecutionPlan] = (
    weakref.WeakKeyDictionary()
)
