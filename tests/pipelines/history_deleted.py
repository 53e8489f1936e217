"""Deletes its own run from the run history mid-run, as `asyncdag run delete --force` in
another terminal would: every later write of the run's events fails."""

import anyio

from asyncdag import pipeline, solid
from asyncdag.storage import SqliteStorage, default_storage_path


@solid
def delete_my_run(context):
    # A sync solid runs in a worker thread with no event loop of its own: anyio.run is fine.
    with SqliteStorage(default_storage_path()) as storage:
        anyio.run(storage.delete_run, context.run_id)
    context.log.info("deleted my own run from the history")


@pipeline
def history_deleted():
    delete_my_run()
