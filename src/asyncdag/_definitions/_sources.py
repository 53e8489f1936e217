"""Where a node's input value comes from, as the built graph records it.

Kept apart from the handles and the builder because it is the one part of a
definition that every later layer reads: the plan compiles these into step
inputs, the UI and CLI render them, dynamic mapping rewrites them.  Pure
data with no behaviour, so a reader can use them without loading the builder.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["DEFAULT_OUTPUT", "Collect", "Constant", "FanIn", "FromOutput", "InputSource"]

DEFAULT_OUTPUT = "result"


@attrs.frozen
class FromOutput:
    """The value of another node's output."""

    node: str
    output: str = DEFAULT_OUTPUT


@attrs.frozen
class Constant:
    """A value written into the pipeline body itself."""

    value: Any


@attrs.frozen
class FanIn:
    """A list input gathered from several outputs (and constants), in the order given."""

    sources: tuple[FromOutput | Constant, ...]


@attrs.frozen
class Collect:
    """Every item of a fan-out, as a list in mapping-key order.

    ``node``/``output`` is what is gathered: a mapped (template) node's output,
    or the producer's dynamic output itself; ``producer``/``producer_output``
    name the fan-out it belongs to.
    """

    node: str
    output: str
    producer: str
    producer_output: str


InputSource = FromOutput | Constant | FanIn | Collect
