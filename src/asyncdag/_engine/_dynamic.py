"""Streaming fan-out at run time: mapped steps created as their items are yielded.

The plan holds mapped nodes as templates (``DynamicGroup.templates``).  When a
producer yields ``DynamicOutput(value, mapping_key=k)``, :meth:`fan_out` makes
one runtime step ``node[k]`` per template, appended to the executor's states
and wired to what it waits for: earlier templates of the same key (through
the runtime step's own ``downstream`` list) and static steps (through
``watch``, since the shared plan's steps must not change).  The producer keeps
running meanwhile, so mapped steps overlap with the generator.

A collecting step waits for its group to *settle*: the producer ended and
every instance made so far ended.  It then gets the values in mapping-key
order (sorted), or is skipped when the producer or any instance failed.

Everything here runs on the event loop between awaits, like the executor's own
bookkeeping, so it needs no locks.  It reaches the executor only through the
narrow :class:`FanOutHost` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from .._definitions import Collect, FromOutput, OutputError
from .._events import EventType, StepStatus
from .._plan import (
    CollectInput,
    ConstantInput,
    DynamicGroup,
    ExecutionPlan,
    Step,
    StepOutputInput,
    consumed_missing,
    resolve_inputs,
)

if TYPE_CHECKING:
    from ._keeper import OutputKeeper
    from ._log import Emit
    from ._state import StepState

__all__ = ["DynamicRuntime", "FanOutHost"]

_WAITING = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRYING)
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


class FanOutHost(Protocol):
    """What the fan-out needs from the executor that owns the run's steps."""

    plan: ExecutionPlan
    states: list[StepState]
    emit: Emit

    def add_step(self, step: Step) -> StepState:
        """Append a runtime step to the run (not yet scheduled)."""
        ...

    def skip(self, state: StepState, reason: str) -> None:
        """Mark a pending step SKIPPED, and what depends on it."""
        ...

    def make_ready(self, state: StepState) -> None:
        """Queue a step whose inputs are all there (it waits for its pool's slot)."""
        ...

    def dispatch(self) -> None:
        """Start workers for what was queued outside a worker."""
        ...


class _Group:
    """One fan-out of this run: a top-level one, or a nested one made for one item.

    ``scope`` and ``outer_items`` are what its mapped steps may read besides their
    own item, for a nested fan-out: the steps made for the items it is nested in
    (template name -> step index, innermost item first) and those items themselves;
    ``path`` is their keys, outermost first.
    """

    __slots__ = (
        "collectors",
        "failed",
        "id",
        "instances",
        "items",
        "open",
        "outer_items",
        "path",
        "positions",
        "producer",
        "producer_node",
        "scope",
        "settled",
        "spec",
        "unfinished",
    )

    def __init__(
        self,
        id: int,
        spec: DynamicGroup,
        producer: int,
        producer_node: str,
        *,
        scope: tuple[Mapping[str, int], ...] = (),
        outer_items: Mapping[tuple[str, str], ConstantInput] = _EMPTY,
        path: tuple[str, ...] = (),
    ) -> None:
        self.id = id
        self.spec = spec
        self.producer = producer
        self.producer_node = producer_node
        self.scope = scope
        self.outer_items = outer_items
        self.path = path
        self.items: dict[str, Any] = {}
        self.positions: dict[str, int] = {}
        self.instances: dict[str, dict[str, int]] = {t.name: {} for t in spec.templates}
        self.collectors: list[int] = []
        self.open = True
        self.unfinished = 0
        self.failed: str | None = None
        self.settled = False


class DynamicRuntime:
    """The fan-out bookkeeping of one run (only runs whose plan has generators or fan-outs)."""

    def __init__(self, host: FanOutHost, keeper: OutputKeeper | None = None) -> None:
        self.host = host
        # Writes each item to the run's output store (None: the run keeps no outputs).
        self.keeper = keeper
        plan = host.plan
        # By id: the plan's top-level fan-outs first (a nested one's place stays empty: it
        # is made once per item of its parent), then nested ones as they are made.
        self.groups: list[_Group | None] = [
            None
            if spec.parent is not None
            else _Group(spec.id, spec, spec.producer, plan.steps[spec.producer].node.name)
            for spec in plan.groups
        ]
        self.by_output: dict[tuple[int, str], _Group] = {}
        self.by_producer: dict[int, list[_Group]] = {}
        for group in self.groups:
            if group is not None:
                self._register(group)
        # Template name -> the nested fan-outs its steps produce.
        self.nested: dict[str, list[DynamicGroup]] = {}
        for spec in plan.groups:
            if spec.parent is not None:
                self.nested.setdefault(spec.producer_node, []).append(spec)
        states = host.states
        for step in plan.steps:
            for gid in step.collects:
                top = self.groups[gid]
                assert top is not None, "a static step collects a top-level fan-out only"
                top.collectors.append(step.index)
                states[step.index].remaining += 1
        self.static_count = len(plan.steps)
        self.watch: dict[int, list[int]] = {}
        self.instance_group: dict[int, _Group] = {}
        self.yielded: dict[int, int] = {}
        self.pipeline_hooks = plan.pipeline.hook_defs

    # --- items as they are yielded ------------------------------------------------------------

    def fan_out(
        self,
        state: StepState,
        name: str,
        key: str,
        value: Any,
        *,
        stored: dict[str, Any] | None = None,
    ) -> None:
        """Item ``key`` of the producer's dynamic output ``name``: start its mapped steps.

        ``stored``: the item is replayed from an earlier run (a reused producer),
        and this is what its STEP_OUTPUT event says about where it is.
        """
        step = state.step
        if state.status is not StepStatus.RUNNING:
            raise OutputError(
                f"step {step.key!r} yielded item {key!r} after its attempt ended "
                f"({state.status.value}); the item is dropped"
            )
        count = self.yielded[step.index] = self.yielded.get(step.index, 0) + 1
        group = self.by_output.get((step.index, name))
        if group is None:  # a fan-out nobody maps or collects: count it, nothing to start
            group = _Group(-1, DynamicGroup(-1, step.index, name, ()), step.index, step.node.name)
            self._register(group)
        if key in group.items:
            raise OutputError(
                f"step {step.key!r} yielded mapping_key {key!r} twice on output {name!r} "
                f"(item #{group.positions[key]}: {_short(group.items[key])} and item "
                f"#{count}: {_short(value)}); mapping keys must be unique in a fan-out"
            )
        group.items[key] = value
        group.positions[key] = count
        if stored is not None:
            self.host.emit(
                EventType.STEP_OUTPUT,
                step_key=step.key,
                level=logging.DEBUG,
                message=f"Reused output {name!r} item {key!r} of run {stored.get('loaded_from')}.",
                data=stored,
            )
        elif self.keeper is not None:
            self.keeper.save_item(state, name, key, value)  # its event follows the write
        else:
            self.host.emit(
                EventType.STEP_OUTPUT,
                step_key=step.key,
                level=logging.DEBUG,
                message=f"Yielded output {name!r} item {key!r}.",
                data={"output": name, "mapping_key": key, "attempt": state.attempts},
            )
        if group.spec.templates:
            self._instantiate(group, key)

    def _register(self, group: _Group) -> None:
        self.by_output[(group.producer, group.spec.output)] = group
        self.by_producer.setdefault(group.producer, []).append(group)

    def _instantiate(self, group: _Group, key: str) -> None:
        """The steps mapped over item ``key`` of ``group``: one per template, in order.

        An input from the item's producer is the item; from another template, the
        step made for the same item; from a fan-out this one is nested in, that
        fan-out's item or step for the item it is made for (``group.scope``).  A
        template with a DynamicOut makes a nested fan-out for this item at once, so
        the steps that collect it can wait for it.
        """
        host = self.host
        states = host.states
        by_key = host.plan.by_key
        spec = group.spec
        producer_node = group.producer_node
        path = (*group.path, key)
        suffix = "".join(f"[{k}]" for k in path)
        created: dict[str, int] = {}
        scope = group.scope
        item = ConstantInput(group.items[key])
        outer_items = group.outer_items
        reused = host.plan.reused
        for template in spec.templates:
            step_key = f"{template.name}{suffix}"
            reuse = reused.get(step_key) if reused else None
            if reuse is not None:  # an item step an earlier run completed: take its outputs
                state = host.add_step(
                    Step(
                        index=len(states),
                        key=step_key,
                        node=template,
                        inputs=(),
                        upstream=(),
                        mapping_key=key,
                        mapping_path=path,
                        reuse=reuse,
                    )
                )
                self._add_instance(group, template.name, key, state, created, item)
                host.make_ready(state)
                continue
            waits: dict[int, None] = {}
            skip: list[str] = []
            collecting: list[_Group] = []

            def ref(
                node: str,
                output: str | None,
                waits: dict[int, None] = waits,
                skip: list[str] = skip,
            ) -> int:
                """The step a mapped step reads ``node`` from, noting whether it waits or skips."""
                up = created.get(node)
                if up is None:
                    for level in scope:  # the steps of the items this fan-out is nested in
                        up = level.get(node)
                        if up is not None:
                            break
                    else:
                        up = by_key[node].index
                status = states[up].status
                if status in _WAITING:
                    waits[up] = None
                elif status is not StepStatus.SUCCESS:
                    skip.append(
                        f"upstream step {states[up].step.key!r} did not succeed ({status.value})"
                    )
                elif output is not None and output not in (states[up].outputs or {}):
                    skip.append(
                        f"output {output!r} of step {states[up].step.key!r} was not produced"
                    )
                return up

            def link(source: FromOutput, ref: Any = ref) -> ConstantInput | StepOutputInput:
                if source.node == producer_node and source.output == spec.output:
                    return item  # the item this step was made for
                outer = outer_items.get((source.node, source.output))
                if outer is not None:
                    return outer  # the item of a fan-out this one is nested in
                return StepOutputInput(ref(source.node, source.output), source.output)

            def collect(source: Collect, collecting: list[_Group] = collecting) -> CollectInput:
                """A fan-out nested in this item: the one the producer's step for it makes."""
                nested = self.by_output[(created[source.producer], source.producer_output)]
                collecting.append(nested)
                mapped = None if source.node == source.producer else source.node
                return CollectInput(nested.id, mapped, source.output)

            inputs, unfed = resolve_inputs(
                template,
                from_config=host.plan.input_values.get(template.name, {}),
                link=link,
                collect=collect,
            )
            assert not unfed, "the plan reports unfed inputs of mapped nodes before the run"
            for after in template.after:
                if after != producer_node:
                    ref(after, None)
            hooks = template.hooks | self.pipeline_hooks
            state = host.add_step(
                Step(
                    index=len(states),
                    key=step_key,
                    node=template,
                    inputs=inputs,
                    upstream=tuple(waits),
                    hooks=tuple(sorted(hooks, key=lambda h: h.name)),
                    mapping_key=key,
                    mapping_path=path,
                )
            )
            index = self._add_instance(group, template.name, key, state, created, item)
            for up in waits:
                if up < self.static_count:
                    self.watch.setdefault(up, []).append(index)
                else:
                    states[up].step.downstream.append(index)
            for nested in collecting:
                if not nested.settled:
                    nested.collectors.append(index)
                    state.remaining += 1
                elif nested.failed is not None:
                    skip.append(nested.failed)
            if skip:
                host.skip(state, skip[0])
            elif not state.remaining:
                host.make_ready(state)
        host.dispatch()

    def _add_instance(
        self,
        group: _Group,
        template: str,
        key: str,
        state: StepState,
        created: dict[str, int],
        item: ConstantInput,
    ) -> int:
        """Count a mapped step made for item ``key`` in its group, and make the fan-outs nested
        in it (a template with a DynamicOut); its index."""
        index = created[template] = state.step.index
        group.instances[template][key] = index
        self.instance_group[index] = group
        group.unfinished += 1
        for nested_spec in self.nested.get(template, ()):
            nested = _Group(
                len(self.groups),
                nested_spec,
                index,
                template,
                # ``created`` itself: this item's later templates join it as they are made.
                scope=(created, *group.scope),
                outer_items={**group.outer_items, (group.producer_node, group.spec.output): item},
                path=(*group.path, key),
            )
            self.groups.append(nested)
            self._register(nested)
        return index

    # --- completion ----------------------------------------------------------------------------

    def on_complete(self, state: StepState) -> None:
        """A step reached a final state (success, failure or skip)."""
        index = state.step.index
        host = self.host
        states = host.states
        watchers = self.watch.pop(index, None)
        if watchers:
            ok = state.status is StepStatus.SUCCESS
            for i in watchers:
                dependent = states[i]
                if dependent.status is not StepStatus.PENDING:
                    continue
                if not ok:
                    host.skip(
                        dependent,
                        f"upstream step {state.step.key!r} did not succeed ({state.status.value})",
                    )
                    continue
                missing = consumed_missing(dependent.step.inputs, index, state.outputs or {})
                if missing is not None:
                    host.skip(
                        dependent,
                        f"output {missing!r} of step {state.step.key!r} was not produced",
                    )
                    continue
                dependent.remaining -= 1
                if dependent.remaining == 0:
                    host.make_ready(dependent)
        group = self.instance_group.get(index)
        if group is not None:
            group.unfinished -= 1
            if state.status is StepStatus.FAILURE or state.status is StepStatus.CANCELED:
                group.failed = group.failed or (
                    f"mapped step {state.step.key!r} did not succeed ({state.status.value})"
                )
            self._settle(group)
        for group in self.by_producer.get(index, ()):
            group.open = False
            if state.status is not StepStatus.SUCCESS:
                group.failed = group.failed or (
                    f"upstream step {state.step.key!r} did not succeed ({state.status.value})"
                )
            self._settle(group)

    def _settle(self, group: _Group) -> None:
        if group.open or group.unfinished or group.settled:
            return
        group.settled = True
        host = self.host
        states = host.states
        for index in group.collectors:
            collector = states[index]
            if collector.status is not StepStatus.PENDING:
                continue
            if group.failed is not None:
                host.skip(collector, group.failed)
                continue
            collector.remaining -= 1
            if collector.remaining == 0:
                host.make_ready(collector)

    def items_of(self, index: int) -> dict[str, dict[str, Any]]:
        """The items step ``index`` yielded so far, by dynamic output then mapping key."""
        return {group.spec.output: dict(group.items) for group in self.by_producer.get(index, ())}

    def collect(self, source: CollectInput) -> list[Any]:
        """The values a collecting input receives, in mapping-key order."""
        group = self.groups[source.group]
        assert group is not None, "a collecting step reads a fan-out that was made"
        keys = sorted(group.items)
        if source.mapped is None:
            return [group.items[k] for k in keys]
        states = self.host.states
        output = source.output
        instances = group.instances[source.mapped]
        values = []
        for key in keys:
            state = states[instances[key]]
            if state.status is not StepStatus.SUCCESS:
                continue
            if state.step.outs is None:  # the one output, kept bare
                values.append(state.value)
            elif output in state.value:
                values.append(state.value[output])
        return values


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
