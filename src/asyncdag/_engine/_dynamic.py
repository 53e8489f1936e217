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
from typing import TYPE_CHECKING, Any, Protocol

from .._definitions import FromOutput, OutputError
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
    __slots__ = (
        "collectors",
        "failed",
        "instances",
        "items",
        "open",
        "positions",
        "producer_key",
        "settled",
        "spec",
        "unfinished",
    )

    def __init__(self, spec: DynamicGroup, producer_key: str) -> None:
        self.spec = spec
        self.producer_key = producer_key
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
        self.groups = [_Group(spec, plan.steps[spec.producer].key) for spec in plan.groups]
        self.by_output = {(g.spec.producer, g.spec.output): g for g in self.groups}
        self.by_producer: dict[int, list[_Group]] = {}
        for group in self.groups:
            self.by_producer.setdefault(group.spec.producer, []).append(group)
        states = host.states
        for step in plan.steps:
            for gid in step.collects:
                self.groups[gid].collectors.append(step.index)
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
            group = self.by_output[(step.index, name)] = _Group(
                DynamicGroup(-1, step.index, name, ()), step.key
            )
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

    def _instantiate(self, group: _Group, key: str) -> None:
        host = self.host
        states = host.states
        by_key = host.plan.by_key
        producer = group.spec.producer
        producer_node = states[producer].step.node.name
        created: dict[str, int] = {}
        item = ConstantInput(group.items[key])
        reused = host.plan.reused
        for template in group.spec.templates:
            step_key = f"{template.name}[{key}]"
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
                        reuse=reuse,
                    )
                )
                created[template.name] = self._add_instance(group, template.name, key, state)
                host.make_ready(state)
                continue
            waits: dict[int, None] = {}
            skip: list[str] = []

            def ref(
                node: str,
                output: str | None,
                waits: dict[int, None] = waits,
                skip: list[str] = skip,
            ) -> int:
                """The step a mapped step reads ``node`` from, noting whether it waits or skips."""
                up = created.get(node)
                if up is None:
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
                if source.node == producer_node and source.output == group.spec.output:
                    return item  # the item this step was made for
                return StepOutputInput(ref(source.node, source.output), source.output)

            inputs, unfed = resolve_inputs(
                template,
                from_config=host.plan.input_values.get(template.name, {}),
                link=link,
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
                )
            )
            index = created[template.name] = self._add_instance(group, template.name, key, state)
            for up in waits:
                if up < self.static_count:
                    self.watch.setdefault(up, []).append(index)
                else:
                    states[up].step.downstream.append(index)
            if skip:
                host.skip(state, skip[0])
            elif not waits:
                host.make_ready(state)
        host.dispatch()

    def _add_instance(self, group: _Group, template: str, key: str, state: StepState) -> int:
        """Count a mapped step made for item ``key`` in its group; its index."""
        index = state.step.index
        group.instances[template][key] = index
        self.instance_group[index] = group
        group.unfinished += 1
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

    def collect(self, source: CollectInput) -> list[Any]:
        """The values a collecting input receives, in mapping-key order."""
        group = self.groups[source.group]
        keys = sorted(group.items)
        if source.mapped is None:
            return [group.items[k] for k in keys]
        states = self.host.states
        output = source.output
        instances = group.instances[source.mapped]
        values = []
        for key in keys:
            state = states[instances[key]]
            outputs = state.outputs
            if state.status is StepStatus.SUCCESS and outputs is not None and output in outputs:
                values.append(outputs[output])
        return values


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
