"""How a step gets each input's value: one typed model for the plan and the dynamic fan-out.

A node's inputs are declared as sources (``FromOutput``, ``FanIn``, ``Collect``,
``Constant``, run config, a parameter default).  :func:`resolve_inputs` turns
them into a step's inputs, one frozen value per input saying where the value
is read at run time.  The plan calls it for every static node; the fan-out
calls it for every mapped step it creates, with its own idea of what another
node's output means (the item it was made for, or a step made for the same
item), so the two never drift apart.  :func:`input_values` reads the values
when the step is about to run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import attrs

from .._definitions import Collect, Constant, FanIn, FromOutput, Node

__all__ = [
    "CollectInput",
    "ConstantInput",
    "FanInInput",
    "StepInput",
    "StepOutputInput",
    "consumed_missing",
    "input_values",
    "resolve_inputs",
]


@attrs.frozen
class ConstantInput:
    """A value known before the step runs: a constant, run config, a default, a fan-out's item."""

    value: Any


@attrs.frozen
class StepOutputInput:
    """Output ``output`` of the step at index ``step`` of the run."""

    step: int
    output: str


@attrs.frozen
class FanInInput:
    """A list of values gathered in the order the pipeline body gave them."""

    parts: tuple[ConstantInput | StepOutputInput, ...]


@attrs.frozen
class CollectInput:
    """Every item of fan-out ``group`` in mapping-key order: the items themselves when
    ``mapped`` is None, else output ``output`` of the step made from node ``mapped`` for each."""

    group: int
    mapped: str | None
    output: str


StepInput = ConstantInput | StepOutputInput | FanInInput | CollectInput
"""Where one input of a step is read at run time."""

Link = Callable[[FromOutput], ConstantInput | StepOutputInput]
"""Where another node's output is read for the step being resolved."""


def resolve_inputs(
    node: Node,
    *,
    from_config: Mapping[str, Any],
    link: Link,
    collect: Callable[[Collect], CollectInput] | None = None,
    cut: Collection[str] = (),
) -> tuple[tuple[tuple[str, StepInput], ...], list[str]]:
    """The inputs of a step made from ``node``, by name, and a message for each input nothing feeds.

    ``from_config`` holds the values run config gives for the node's inputs;
    ``link`` says where another node's output is read; ``collect`` where a
    fan-out's gathered list is (None where none can occur).
    ``cut`` names inputs whose source is not part of this run (a subset run):
    they are fed as if nothing in the pipeline body fed them.
    """
    inputs: list[tuple[str, StepInput]] = []
    unfed: list[str] = []
    for input_def in node.solid.input_defs:
        name = input_def.name
        source = node.inputs.get(name) if name not in cut else None
        if isinstance(source, FromOutput):
            inputs.append((name, link(source)))
        elif isinstance(source, FanIn):
            parts = tuple(
                link(part) if isinstance(part, FromOutput) else ConstantInput(part.value)
                for part in source.sources
            )
            inputs.append((name, FanInInput(parts)))
        elif isinstance(source, Collect):
            if collect is None:  # the caller said none can occur here
                raise AssertionError(f"node {node.name!r} collects a fan-out it is not made for")
            inputs.append((name, collect(source)))
        elif isinstance(source, Constant):
            inputs.append((name, ConstantInput(source.value)))
        elif name in from_config:
            inputs.append((name, ConstantInput(from_config[name])))
        elif input_def.has_default:
            inputs.append((name, ConstantInput(input_def.default)))
        else:
            unfed.append(
                f"solid {node.name!r} input {name!r} is not connected: pass it another "
                f"solid's output in the pipeline body, give the parameter a default, or "
                f"set solids.{node.name}.inputs.{name} in run config"
            )
    return tuple(inputs), unfed


class HasOutputs(Protocol):
    """A step of a run as input reading sees it."""

    def output(self, name: str) -> Any:
        """Output ``name``, read only once the step succeeded and produced it."""
        ...


def input_values(
    inputs: tuple[tuple[str, StepInput], ...],
    steps: Sequence[HasOutputs],
    collect: Callable[[CollectInput], list[Any]] | None,
) -> dict[str, Any]:
    """The values of a step's inputs, read once every step it waits for has succeeded.

    On every step's path, so the commonest kind is tested first and by identity.
    """
    values: dict[str, Any] = {}
    for name, source in inputs:
        if isinstance(source, StepOutputInput):
            values[name] = steps[source.step].output(source.output)  # type: ignore[attr-defined]
        elif isinstance(source, ConstantInput):
            values[name] = source.value
        elif isinstance(source, FanInInput):
            gathered = []
            for part in source.parts:
                if isinstance(part, StepOutputInput):
                    gathered.append(steps[part.step].output(part.output))  # type: ignore[attr-defined]
                else:
                    gathered.append(part.value)
            values[name] = gathered
        else:
            assert collect is not None, "a collecting step ran in a run with no fan-out"
            values[name] = collect(source)
    return values


def consumed_missing(
    inputs: tuple[tuple[str, StepInput], ...], up: int, produced: Mapping[str, Any]
) -> str | None:
    """The output of step ``up`` these inputs read but ``up`` did not produce, if any."""
    for _name, source in inputs:
        if isinstance(source, StepOutputInput):
            if source.step == up and source.output not in produced:
                return source.output
        elif isinstance(source, FanInInput):
            for part in source.parts:
                if (
                    isinstance(part, StepOutputInput)
                    and part.step == up
                    and part.output not in produced
                ):
                    return part.output
    return None
