"""The shape of the definitions config reads (duck-typed, so tests can stand in)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class _InputDef(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def annotation(self) -> Any: ...
    @property
    def has_default(self) -> bool: ...


class _Solid(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config_schema(self) -> Any: ...
    @property
    def input_defs(self) -> Sequence[_InputDef]: ...


class _Node(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def solid(self) -> _Solid: ...
    @property
    def inputs(self) -> Mapping[str, object]: ...


class _Resource(Protocol):
    @property
    def config_schema(self) -> Any: ...


class _Pipeline(Protocol):
    # Read-only properties: the frozen definitions satisfy them, and so do test stand-ins.
    @property
    def name(self) -> str: ...
    @property
    def default_config(self) -> dict[str, Any] | None: ...
    @property
    def nodes(self) -> Mapping[str, _Node]: ...
    @property
    def resource_defs(self) -> Mapping[str, _Resource]: ...
