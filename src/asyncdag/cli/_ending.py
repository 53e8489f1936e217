"""How ``pipeline execute`` ends: by the run's fate, by a signal, or by abandoning a stuck run.

Exit codes: 0 success, 1 failed, and for a run stopped by a signal ``128 + N``:
130 after Ctrl-C (SIGINT), 143 after SIGTERM, whether the run wound down
within the grace period or was abandoned after it (see
:mod:`asyncdag._workspace._stop`).  Either way the history says CANCELED.

A run may end while a thread it started still runs (a sync solid abandoned by
a timeout or a cancel); Python would wait for that thread at exit, possibly
forever, so the command leaves without it and says so.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, NoReturn

from asyncdag._workspace import summarize_steps
from asyncdag._workspace._stop import exit_code_for, exit_now, leave, record_canceled

from ._app import EXIT_FAILURE, EXIT_OK, warn
from ._common import where

if TYPE_CHECKING:
    from asyncdag._api import PipelineRunResult, RunHandle

__all__ = ["RunEnding"]

#: Seconds telemetry may take to export the last spans at exit (an unreachable collector).
TELEMETRY_EXIT_TIMEOUT = 2.0


class RunEnding:
    """What one ``pipeline execute`` holds until it ends: the view, storage, tracing, the signal.

    ``view`` has ``note(text)``; ``storage`` is a RunStorage or None; ``telemetry``
    is the :mod:`asyncdag.telemetry` module when tracing was configured, else None.
    """

    def __init__(self, *, view: Any, storage: Any, telemetry: Any, grace: float) -> None:
        self.view = view
        self.storage = storage
        self.telemetry = telemetry
        self.grace = grace
        self.stopped_by: signal.Signals | None = None
        #: What the run history could not store of a run that ended (then exit 3).
        self.history_error: Exception | None = None
        self._closed = False

    # -- signals (called by stop_on_signals) ---------------------------------------------

    def cancel(self, handle: RunHandle, sig: signal.Signals) -> None:
        self.stopped_by = sig
        self.view.note(
            f"{sig.name}: canceling the run (a second signal, or the run still going "
            f"{self.grace:g}s from now, exits at once and records it CANCELED)"
        )
        handle.cancel()

    async def abandon(self, handle: RunHandle, sig: signal.Signals, when: str) -> NoReturn:
        first = self.stopped_by or sig
        running = [
            row.key
            for row in summarize_steps(handle.event_log)
            if row.status in ("RUNNING", "RETRYING")
        ]
        steps = ", ".join(running) or "none"
        self.view.close_display()
        self.view.note(f"exiting {when} without waiting for the steps still running: {steps}")
        if self.storage is not None:
            reason = (
                f"canceled by {first.name}; the process exited {when} without waiting for the "
                f"steps still running: {steps}"
            )
            recorded = await record_canceled(
                self.storage, handle.run_id, handle.event_log, reason=reason
            )
            if not recorded:
                self.view.note(
                    f"could not record run {handle.run_id} as CANCELED in {where(self.storage)}; "
                    "the next command that opens the history marks it FAILED"
                )
        self.close(keep_storage=True)
        exit_now(exit_code_for(sig))

    # -- the normal end ----------------------------------------------------------------------

    def close(self, *, keep_storage: bool = False) -> None:
        """Release storage and flush traces (bounded), once; report spans that were lost."""
        if self._closed:
            return
        self._closed = True
        if self.storage is not None and not keep_storage:
            self.storage.close()
        if self.telemetry is not None:
            for problem in self.telemetry.shutdown(timeout=TELEMETRY_EXIT_TIMEOUT):
                warn(problem)

    def exit_code(self, result: PipelineRunResult) -> int:
        from asyncdag._events import RunStatus

        if result.status is RunStatus.SUCCESS:
            return EXIT_OK
        if result.status is RunStatus.CANCELED:
            return exit_code_for(self.stopped_by or signal.SIGINT)
        return EXIT_FAILURE

    def leave(self, code: int) -> int:
        """``code``, or exit with it now when threads the run left would hold the process."""
        return leave(code, prog="asyncdag")
