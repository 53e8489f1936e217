"""Deletes its own run from the run history mid-run, as `asyncdag run delete --force` in
another terminal would: every later write of the run's events fails."""

import sqlite3

from asyncdag import pipeline, solid
from asyncdag.storage import default_storage_path


@solid
def delete_my_run(context):
    db = sqlite3.connect(default_storage_path(), timeout=60)
    try:
        with db:
            db.execute("DELETE FROM events WHERE run_id = ?", (context.run_id,))
            db.execute("DELETE FROM runs WHERE run_id = ?", (context.run_id,))
    finally:
        db.close()
    context.log.info("deleted my own run from the history")


@pipeline
def history_deleted():
    delete_my_run()
