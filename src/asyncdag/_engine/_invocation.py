"""Calling a solid directly, outside any run: how a solid is unit-tested.

``build_solid_context(resources=..., solid_config=...)`` makes a context with
no run behind it; passing it to a solid called outside a pipeline body
(``my_solid(context, x=1)``) binds it to that solid first, as a run would:
the solid's config is validated and defaulted (through ``configured()``
copies), it sees exactly the resources it declared, and a missing one is an
error naming it.  Its log lines go to the standard ``"asyncdag"`` logger (no
handler installed), where pytest's ``caplog`` sees them.  Nothing here starts
an event loop: an async solid's call returns its coroutine, to be awaited.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import DefinitionError
from ._context import SolidContext
from ._log import StepLog
from ._resources import Resources

if TYPE_CHECKING:
    from .._definitions import SolidDefinition
    from .._events import EventType

__all__ = ["DirectSolidContext", "build_solid_context"]

_LOGGER = logging.getLogger("asyncdag")


def _to_logging(
    type: EventType,
    /,
    *,
    step_key: str | None = None,
    level: int = logging.DEBUG,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """A directly called solid's ``context.log``: the ``"asyncdag"`` logger, as the console
    listener would print it (step key and event type as record attributes)."""
    _LOGGER.log(level, message, extra={"step_key": step_key, "event_type": type.value})


class DirectSolidContext(SolidContext):
    """A context with no run behind it, from :func:`build_solid_context`.

    Usable as it is (its resources are all those given), and bound to a solid
    when that solid is called with it.
    """

    __slots__ = ("_given_config", "_given_resources")

    def __init__(
        self,
        *,
        resources: Mapping[str, Any],
        solid_config: Any,
        tags: Mapping[str, str],
        run_config: Mapping[str, Any],
        mapping_key: str | None,
        run_id: str,
    ) -> None:
        super().__init__(
            run_id=run_id,
            pipeline_name="",
            solid_name="",
            step_key="",
            retry_number=0,
            log=StepLog(_to_logging, None),
            solid_config=solid_config,
            resources=Resources(resources, frozenset(resources), "the directly built context"),
            tags=tags,
            run_config=run_config,
            mapping_key=mapping_key,
        )
        self._given_resources = resources
        self._given_config = solid_config

    def _bind_to_solid(self, solid: SolidDefinition) -> SolidContext:
        """The context ``solid`` receives when called with this one (called by the solid)."""
        from ..config import definition_config

        owner = f"solid {solid.name!r}"
        missing = sorted(solid.required_resources - self._given_resources.keys())
        if missing:
            raise DefinitionError(
                f"{owner} requires resource(s) {missing}; give their values to "
                f"build_solid_context(resources={{...}})"
            )
        key = solid.name if self.mapping_key is None else f"{solid.name}[{self.mapping_key}]"
        return SolidContext(
            run_id=self.run_id,
            pipeline_name=self.pipeline_name,
            solid_name=solid.name,
            step_key=key,
            retry_number=0,
            log=StepLog(_to_logging, key),
            solid_config=definition_config(solid, self._given_config, owner=owner),
            resources=Resources(self._given_resources, solid.required_resources, owner),
            tags=self.tags,
            run_config=self.run_config,
            mapping_key=self.mapping_key,
            solid_tags=solid.tags,
        )

    def __repr__(self) -> str:
        return f"<DirectSolidContext resources={sorted(self._given_resources)}>"


def build_solid_context(
    *,
    resources: Mapping[str, Any] | None = None,
    solid_config: Any = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    mapping_key: str | None = None,
    run_id: str = "direct",
) -> DirectSolidContext:
    """A ``context`` for calling a solid directly, outside a run: Dagster's ``build_op_context``.

    ``my_solid(build_solid_context(resources={"db": fake_db}, solid_config={"n": 2}), x=1)``
    runs the solid's function with its config validated and defaulted as a run
    would, and with the resources it declares (give their values: nothing is set
    up or torn down here).  ``mapping_key`` stands for the item a mapped step
    was made for (``context.get_mapping_key()``).
    """
    given = dict(resources or {})
    from .._definitions import ResourceDefinition

    for key, value in given.items():
        if isinstance(value, ResourceDefinition):
            raise DefinitionError(
                f"build_solid_context(resources=...): {key!r} is the resource definition "
                f"{value!r}; give the value the solid should use (a client, a fake), since a "
                "directly called solid sets up no resources"
            )
    return DirectSolidContext(
        resources=given,
        solid_config=solid_config,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        run_config=dict(run_config or {}),
        mapping_key=mapping_key,
        run_id=run_id,
    )
