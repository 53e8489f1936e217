"""The engine's :class:`~asyncdag._engine.OutputIO` over an :class:`~asyncdag.outputs.OutputStore`.

The engine hands over a step and its outputs; this picks each output's
serializer from its declaration (``Out(serializer=...)``, pickle when there is
none), addresses it by run, step key, output name and mapping key, and says
what the STEP_OUTPUT event records: ``path``, ``size`` and ``serializer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..outputs import OutputKey, OutputStore, OutputStoreError, StoredOutput, builtin_serializer

if TYPE_CHECKING:
    from .._plan import RecordedOutput, Step

__all__ = ["StoreIO"]


def _event_data(stored: StoredOutput) -> dict[str, Any]:
    return {"path": stored.location, "size": stored.size, "serializer": stored.serializer}


class StoreIO:
    """Writes a run's outputs to ``store`` and reads earlier runs' outputs from it."""

    __slots__ = ("store",)

    def __init__(self, store: OutputStore) -> None:
        self.store = store

    def save(
        self, run_id: str, step: Step, outputs: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        outs = step.outs or {}
        saved = {}
        for name, value in outputs.items():
            spec = outs.get(name)
            stored = self.store.put(
                OutputKey(run_id, step.key, name),
                value,
                serializer=spec.serializer if spec is not None else None,
            )
            saved[name] = _event_data(stored)
        return saved

    def save_item(
        self, run_id: str, step: Step, output: str, mapping_key: str, value: Any
    ) -> dict[str, Any]:
        spec = (step.outs or {}).get(output)
        stored = self.store.put(
            OutputKey(run_id, step.key, output, mapping_key=mapping_key),
            value,
            serializer=spec.serializer if spec is not None else None,
        )
        return _event_data(stored)

    def load(self, record: RecordedOutput, spec: Any) -> Any:
        serializer = spec.serializer if spec is not None else None
        declared = serializer.name if serializer is not None else "pickle"
        if record.serializer is not None and record.serializer != declared:
            # The solid's declaration changed since: read the value as it was written.
            serializer = builtin_serializer(record.serializer)
            if serializer is None:
                raise OutputStoreError(
                    f"step {record.step_key!r} output {record.output!r} of run {record.run_id} "
                    f"was stored with the {record.serializer!r} serializer, but the solid now "
                    f"declares {declared!r}; declare the serializer it was stored with, or "
                    "select the step to compute it again"
                )
        key = OutputKey(
            record.run_id, record.step_key, record.output, mapping_key=record.mapping_key
        )
        return self.store.get(key, serializer=serializer)
