"""Runs launched by the UI, and the live feeds the browser listens to.

The server owns its runs: each one is a task in :class:`LiveRuns`' task
group, entered in the app's lifespan, so a run outlives the request that
launched it.  While a run is in this process its events come straight from
its :class:`~asyncdag.RunHandle`; once it has ended (or when another process
ran it) they come from storage, read after a cursor.  Either way a feed is a
series of batches, so a run with 50,000 events costs tens of messages, not
50,000.

A run of another process on this host that dies without finishing (``kill -9``)
is marked FAILED as the CLI does (:meth:`RunStorage.recover_orphaned_runs`) the
moment a reader here sees it STARTED with its process gone, so its feed ends
and the run list stops calling it running.  A storage error in a feed ends it
with an ``error`` message saying what is wrong.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from asyncdag._api import RunHandle
from asyncdag._api._options import RunOptions
from asyncdag._api._run import run_with_options
from asyncdag._errors import AsyncdagError
from asyncdag._events import RunStatus
from asyncdag._workspace import find_error
from asyncdag.storage import StorageError, StorageUnavailableError, orphan_reason

from ._http import json_text

if TYPE_CHECKING:
    from asyncdag._definitions import PipelineDefinition
    from asyncdag.outputs import OutputStore
    from asyncdag.storage import RunRecord, RunStorage

__all__ = ["BATCH_SIZE", "LiveRuns", "UINotRunningError", "sse"]

_log = logging.getLogger("asyncdag.ui")

#: Most events in one SSE message (and one page of the events API).
BATCH_SIZE = 2000
#: Pause after sending a batch of a live run, so the next batch gathers more events.
_THROTTLE = 0.05
#: How long a quiet feed waits before a keep-alive comment (proxies drop silent connections).
_KEEPALIVE = 15.0
#: How often the runs feed re-reads storage for runs other processes started or ended.
_RUNS_RECHECK = 2.0
#: Longest a feed of a run executing in another process waits between two reads of storage
#: (storage that polls returns from wait_for_events sooner; see RunStorage.wait_for_events).
_STORAGE_POLL_MAX = 5.0


class UINotRunningError(AsyncdagError):
    """A run was launched before the UI app's lifespan started its task group."""


def sse(event: str, data: Any, *, id: int | None = None) -> str:
    """One Server-Sent Events message; its data JSON a browser parses, whatever a run stored
    (the API's own rendering: NaN as null, lone surrogates escaped)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json_text(data)}\n\n"


def _live_record(handle: RunHandle) -> dict[str, Any]:
    log = handle.event_log
    status = handle.status if handle.status is not RunStatus.NOT_STARTED else RunStatus.STARTED
    end = log[-1].timestamp if handle.done and log else None
    return {
        "run_id": handle.run_id,
        "pipeline_name": handle.pipeline.name,
        "status": status.value,
        "run_config": handle.run_config,
        "tags": handle.tags,
        "start_time": log[0].timestamp if log else None,
        "end_time": end,
        "parent_run_id": handle.parent_run_id,
        "pid": None,
        "hostname": None,
        "failure_reason": None,
        "root_run_id": handle.root_run_id,
    }


class LiveRuns:
    """The runs this server launched, kept as tasks of one task group, plus the run history.

    Enter :meth:`running` for as long as the server serves (the app's lifespan
    does); leaving it cancels the runs still going and waits until each one is
    recorded as CANCELED.
    """

    def __init__(self, storage: RunStorage, *, output_store: OutputStore | None = None) -> None:
        self.storage = storage
        #: Where runs launched here store their outputs (None: they keep none).
        self.output_store = output_store
        self._handles: dict[str, RunHandle] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._changed: anyio.Event | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LiveRuns]:
        self._changed = anyio.Event()
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            try:
                yield self
            finally:
                self._task_group = None
                for handle in list(self._handles.values()):
                    handle.cancel()

    @property
    def is_running(self) -> bool:
        return self._task_group is not None

    def handle(self, run_id: str) -> RunHandle | None:
        return self._handles.get(run_id)

    # --- launching -------------------------------------------------------------------------

    async def launch(
        self,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any] | None,
        *,
        tags: Mapping[str, str] | None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        reexecute_from: str | None = None,
        from_failure: bool = False,
        step_selection: list[str] | None = None,
    ) -> RunHandle:
        """Start a run in the server's task group; config errors raise here, before anything runs.

        ``run_id`` is given by the scheduler (derived from the tick); else a new one is made.
        ``reexecute_from`` with ``from_failure`` or ``step_selection`` re-executes a recorded run
        (its config and tags unless given), reusing its stored outputs.
        """
        tg = self._task_group
        if tg is None:
            raise UINotRunningError(
                "the asyncdag UI app's lifespan is not running, so it cannot keep runs; "
                "when mounting it, enter it from the host app's lifespan: "
                "`async with ui_app.router.lifespan_context(ui_app): ...`"
            )
        options = RunOptions(
            tags=tags,
            storage=self.storage,
            parent_run_id=parent_run_id if reexecute_from is None else None,
            run_id=run_id,
            output_store=self.output_store,
            reexecute_from=reexecute_from,
            from_failure=from_failure,
            step_selection=step_selection,
        )
        handle: RunHandle = await tg.start(self._run, pipeline, run_config, options)
        return handle

    async def _run(
        self,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any] | None,
        options: RunOptions,
        *,
        task_status: anyio.abc.TaskStatus[RunHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        run_id = None
        try:
            async with run_with_options(pipeline, run_config, options) as handle:
                # The first event comes once the run is recorded: a history that cannot
                # record it fails the launch (a 503) instead of a run that vanishes.
                async with contextlib.aclosing(handle.events()) as stream:
                    await anext(stream, None)
                run_id = handle.run_id
                self._handles[run_id] = handle
                self._notify()
                task_status.started(handle)
            # open_run has exited: the recorder flushed every event and the final status.
        except Exception as exc:
            error = find_error(exc, StorageError)
            if run_id is None:
                # Before started(): the launching request gets it (a ConfigError...).
                raise error or exc from None
            # After started() nobody awaits this task: log, and keep the server's other runs going.
            if error is not None:
                _log.error("run %s: %s", run_id, error)
            else:
                _log.exception("run %s ended with an error outside its steps", run_id)
        finally:
            if run_id is not None:
                self._handles.pop(run_id, None)
                self._notify()

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = anyio.Event()
            changed.set()

    # --- reading ---------------------------------------------------------------------------

    async def _recover_dead(self, records: Iterable[RunRecord]) -> bool:
        """Mark FAILED the stored runs of this host whose process died, as the CLI does.

        True when one of ``records`` was such a run (then read them again).  A run
        of this server is never one: its process is this one.
        """
        if not any(
            record.status is RunStatus.STARTED
            and record.run_id not in self._handles
            and orphan_reason(record) is not None
            for record in records
        ):
            return False
        try:
            recovered = await self.storage.recover_orphaned_runs()
        except StorageUnavailableError:  # locked by another process: at the next look
            return False
        if recovered:
            _log.warning("runs whose process died marked FAILED: %s", ", ".join(recovered))
            self._notify()
        return True

    async def _stored_run(self, run_id: str) -> RunRecord | None:
        stored = await self.storage.get_run(run_id)
        if stored is not None and await self._recover_dead([stored]):
            stored = await self.storage.get_run(run_id)
        return stored

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        handle = self._handles.get(run_id)
        if handle is not None:
            record = _live_record(handle)
            record["live"] = True
            return record
        stored = await self._stored_run(run_id)
        if stored is None:
            return None
        return {**stored.to_dict(), "live": False}

    async def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: list[RunStatus] | None = None,
        limit: int | None = None,
        offset: int = 0,
        root_run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        records = await self.storage.list_runs(
            pipeline_name=pipeline_name,
            status=status,
            limit=limit,
            offset=offset,
            root_run_id=root_run_id,
        )
        if await self._recover_dead(records):
            records = await self.storage.list_runs(
                pipeline_name=pipeline_name, status=status, limit=limit, offset=offset
            )
        out = [{**r.to_dict(), "live": r.run_id in self._handles} for r in records]
        if offset == 0:
            # A run launched a moment ago may not be in storage yet: show it anyway.
            stored = {r["run_id"] for r in out}
            for handle in self._handles.values():
                record = _live_record(handle)
                if handle.run_id in stored or (
                    pipeline_name and pipeline_name != record["pipeline_name"]
                ):
                    continue
                if status and RunStatus(record["status"]) not in status:
                    continue
                if root_run_id and root_run_id not in (record["root_run_id"], record["run_id"]):
                    continue
                out.insert(0, {**record, "live": True})
            if limit is not None:
                del out[limit:]
        return out

    async def get_events(
        self, run_id: str, *, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of events after seq ``after``, and whether the run has ended."""
        handle = self._handles.get(run_id)
        if handle is not None:
            log = handle.event_log
            done = handle.done
            page = log[after + 1 : after + 1 + limit]
            return [e.to_dict() for e in page], done
        record = await self._stored_run(run_id)
        finished = record is not None and record.is_finished
        events = await self.storage.get_events(run_id, after_seq=after, limit=limit)
        return [e.to_dict() for e in events], finished

    async def event_feed(self, run_id: str, *, after: int) -> AsyncIterator[str]:
        """SSE messages: batches of events after ``after`` (ids are seqs), then one ``end``
        (or one ``error`` when the run history fails meanwhile)."""
        try:
            handle = self._handles.get(run_id)
            if handle is not None:
                async for message in self._handle_feed(handle, after):
                    yield message
            else:
                async for message in self._storage_feed(run_id, after):
                    yield message
            record = await self.get_run(run_id)
        except StorageError as exc:
            yield sse("error", {"error": str(exc)})
            return
        yield sse("end", {"run": record})

    async def _handle_feed(self, handle: RunHandle, after: int) -> AsyncIterator[str]:
        log = handle.event_log
        cursor = after
        while True:
            if len(log) - 1 > cursor:
                batch = log[cursor + 1 : cursor + 1 + BATCH_SIZE]
                cursor = batch[-1].seq
                yield sse("events", [e.to_dict() for e in batch], id=cursor)
                await anyio.sleep(_THROTTLE)
                continue
            if handle.done:
                return
            with anyio.move_on_after(_KEEPALIVE) as scope:
                # Wakes as soon as the next event is emitted, or the run ends.
                async with contextlib.aclosing(handle.events(after=cursor)) as stream:
                    await anext(stream, None)
            if scope.cancelled_caught:
                yield ": keep-alive\n\n"

    async def _storage_feed(self, run_id: str, after: int) -> AsyncIterator[str]:
        # Between reads, wait_for_events: storage that is told of writes (PostgreSQL's
        # LISTEN/NOTIFY) wakes this as soon as another host commits; other storage polls.
        cursor = after
        quiet = 0.0
        while True:
            record = await self._stored_run(run_id)
            finished = record is None or record.is_finished
            events = await self.storage.get_events(run_id, after_seq=cursor, limit=BATCH_SIZE)
            if events:
                cursor = events[-1].seq
                quiet = 0.0
                yield sse("events", [e.to_dict() for e in events], id=cursor)
                continue
            if finished:
                return  # a finished run's events were all stored before its final status
            if run_id in self._handles:  # launched here after all: follow the handle
                async for message in self._handle_feed(self._handles[run_id], cursor):
                    yield message
                return
            waited_from = anyio.current_time()
            await self.storage.wait_for_events(
                run_id, after_seq=cursor, timeout=min(_STORAGE_POLL_MAX, _KEEPALIVE - quiet)
            )
            quiet += anyio.current_time() - waited_from
            if quiet >= _KEEPALIVE:
                quiet = 0.0
                yield ": keep-alive\n\n"

    async def runs_feed(
        self,
        *,
        pipeline_name: str | None,
        status: list[RunStatus] | None,
        limit: int,
    ) -> AsyncIterator[str]:
        """SSE: the run list whenever it changes (runs here at once; other processes' within 2s)."""
        last = None
        while True:
            changed = self._changed
            try:
                runs = await self.list_runs(pipeline_name=pipeline_name, status=status, limit=limit)
            except StorageError as exc:
                yield sse("error", {"error": str(exc)})
                return
            payload = json_text({"runs": runs})
            if payload != last:
                last = payload
                yield f"event: runs\ndata: {payload}\n\n"
            with anyio.move_on_after(_RUNS_RECHECK):
                if changed is not None:
                    await changed.wait()
                else:
                    await anyio.sleep_forever()
