"""Streaming fan-out at run time: mapped steps created as their items are yielded.

The plan holds mapped nodes as templates (``DynamicGroup.templates``).  When a
producer yields ``DynamicOutput(value, mapping_key=k)``, :meth:`on_item` makes
one runtime step ``node[k]`` per template, appended to the executor's states
and wired to what it waits for: earlier templates of the same key (through
the runtime step's own ``downstream`` list) and static steps (through
``watch``, since the shared plan's steps must not change).  The producer keeps
running meanwhile, so mapped steps overlap with the generator.

A collecting step waits for its group to *settle*: the producer ended and
every instance made so far ended.  It then gets the values in mapping-key
order (sorted), or is skipped when the producer or any instance failed.

Everything here runs on the event loop between awaits, like the executor's own
bookkeeping, so it needs no locks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._definitions import Collect, Constant, DynamicOutput, FanIn, FromOutput, Output, OutputError
from .._definitions._outputs import check_mapping_key, resolve_output_name
from .._events import EventType, StepStatus
from .._plan import INPUT_CONSTANT, INPUT_FAN_IN, INPUT_STEP, DynamicGroup, Step

if TYPE_CHECKING:
    from ._executor import Executor, StepState

__all__ = ["DynamicRuntime", "consumed_missing"]

_WAITING = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRYING)


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

    def __init__(self, executor: Executor) -> None:
        self.x = executor
        plan = executor.plan
        self.groups = [_Group(spec, plan.steps[spec.producer].key) for spec in plan.groups]
        self.by_output = {(g.spec.producer, g.spec.output): g for g in self.groups}
        self.by_producer: dict[int, list[_Group]] = {}
        for group in self.groups:
            self.by_producer.setdefault(group.spec.producer, []).append(group)
        states = executor.states
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

    def on_item(self, state: StepState, item: Any, outputs: dict[str, Any]) -> None:
        step = state.step
        outs = step.outs or {}
        if isinstance(item, DynamicOutput):
            name = resolve_output_name(step.key, outs, item.output_name, dynamic=True)
            key = check_mapping_key(step.key, item.mapping_key)
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
                    f"#{count}: {_short(item.value)}); mapping keys must be unique in a fan-out"
                )
            group.items[key] = item.value
            group.positions[key] = count
            self.x._emit(
                EventType.STEP_OUTPUT,
                step.key,
                logging.DEBUG,
                f"Yielded output {name!r} item {key!r}.",
                {"output": name, "mapping_key": key},
            )
            if group.spec.templates:
                self._instantiate(group, key)
        elif isinstance(item, Output):
            name = resolve_output_name(step.key, outs, item.output_name, dynamic=False)
            if name in outputs:
                raise OutputError(f"step {step.key!r} yielded output {name!r} twice")
            outputs[name] = item.value
        else:
            raise OutputError(
                f"step {step.key!r} yielded {type(item).__name__} {_short(item)}; a generator "
                "solid yields Output(value, name) or DynamicOutput(value, mapping_key=...)"
            )

    def _instantiate(self, group: _Group, key: str) -> None:
        x = self.x
        states = x.states
        by_key = x.plan.by_key
        producer = group.spec.producer
        producer_node = states[producer].step.node.name
        created: dict[str, int] = {}
        item = group.items[key]
        for template in group.spec.templates:
            index = len(states)
            waits: dict[int, None] = {}
            skip: list[str] = []

            def ref(
                node: str,
                output: str | None,
                waits: dict[int, None] = waits,
                skip: list[str] = skip,
            ) -> int:
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

            inputs: list[tuple[str, int, Any]] = []
            from_config = x.plan.input_values.get(template.name, {})
            for input_def in template.solid.input_defs:
                name = input_def.name
                source = template.inputs.get(name)
                if isinstance(source, FromOutput):
                    if source.node == producer_node and source.output == group.spec.output:
                        inputs.append((name, INPUT_CONSTANT, item))
                    else:
                        up = ref(source.node, source.output)
                        inputs.append((name, INPUT_STEP, (up, source.output)))
                elif isinstance(source, FanIn):
                    parts: list[tuple[bool, Any, str | None]] = []
                    for part in source.sources:
                        if isinstance(part, FromOutput):
                            if part.node == producer_node and part.output == group.spec.output:
                                parts.append((False, item, None))
                            else:
                                parts.append((True, ref(part.node, part.output), part.output))
                        else:
                            parts.append((False, part.value, None))
                    inputs.append((name, INPUT_FAN_IN, tuple(parts)))
                elif isinstance(source, Constant):
                    inputs.append((name, INPUT_CONSTANT, source.value))
                elif isinstance(source, Collect):  # rejected when the graph is built
                    raise AssertionError("collect inside a mapped node")
                elif name in from_config:
                    inputs.append((name, INPUT_CONSTANT, from_config[name]))
                else:
                    inputs.append((name, INPUT_CONSTANT, input_def.default))
            for after in template.after:
                if after != producer_node:
                    ref(after, None)
            hooks = template.hooks | self.pipeline_hooks
            step = Step(
                index=index,
                key=f"{template.name}[{key}]",
                node=template,
                inputs=tuple(inputs),
                upstream=tuple(waits),
                hooks=tuple(sorted(hooks, key=lambda h: h.name)),
                mapping_key=key,
            )
            state = x._new_state(step)
            created[template.name] = index
            group.instances[template.name][key] = index
            self.instance_group[index] = group
            group.unfinished += 1
            for up in waits:
                if up < self.static_count:
                    self.watch.setdefault(up, []).append(index)
                else:
                    states[up].step.downstream.append(index)
            if skip:
                x._skip(state, skip[0])
            elif not waits:
                x._make_ready(state)
        x._spawn_workers(0)

    # --- completion ----------------------------------------------------------------------------

    def on_complete(self, state: StepState) -> None:
        """A step reached a final state (success, failure or skip)."""
        index = state.step.index
        states = self.x.states
        watchers = self.watch.pop(index, None)
        if watchers:
            ok = state.status is StepStatus.SUCCESS
            for i in watchers:
                dependent = states[i]
                if dependent.status is not StepStatus.PENDING:
                    continue
                if not ok:
                    self.x._skip(
                        dependent,
                        f"upstream step {state.step.key!r} did not succeed ({state.status.value})",
                    )
                    continue
                missing = consumed_missing(dependent.step, index, state.outputs or {})
                if missing is not None:
                    self.x._skip(
                        dependent,
                        f"output {missing!r} of step {state.step.key!r} was not produced",
                    )
                    continue
                dependent.remaining -= 1
                if dependent.remaining == 0:
                    self.x._make_ready(dependent)
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
        states = self.x.states
        for index in group.collectors:
            collector = states[index]
            if collector.status is not StepStatus.PENDING:
                continue
            if group.failed is not None:
                self.x._skip(collector, group.failed)
                continue
            collector.remaining -= 1
            if collector.remaining == 0:
                self.x._make_ready(collector)

    def collect(self, payload: tuple[int, str | None, str]) -> list[Any]:
        """The values a collecting input receives, in mapping-key order."""
        gid, mapped, output = payload
        group = self.groups[gid]
        keys = sorted(group.items)
        if mapped is None:
            return [group.items[k] for k in keys]
        states = self.x.states
        instances = group.instances[mapped]
        values = []
        for key in keys:
            state = states[instances[key]]
            outputs = state.outputs
            if state.status is StepStatus.SUCCESS and outputs is not None and output in outputs:
                values.append(outputs[output])
        return values


def consumed_missing(step: Step, up: int, produced: dict[str, Any]) -> str | None:
    """The output of step ``up`` that ``step`` takes but ``up`` did not produce, if any."""
    for _name, kind, payload in step.inputs:
        if kind == INPUT_STEP:
            if payload[0] == up and payload[1] not in produced:
                return payload[1]  # type: ignore[no-any-return]
        elif kind == INPUT_FAN_IN:
            for is_step, ref, output in payload:
                if is_step and ref == up and output not in produced:
                    return output  # type: ignore[no-any-return]
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
