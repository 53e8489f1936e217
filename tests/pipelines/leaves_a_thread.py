"""A solid that returns while a (non-daemon) thread it started waits forever.

Python waits for such a thread at exit, as it does for a sync solid that a
timeout or a cancel abandoned in its worker thread.
"""

import threading

from asyncdag import pipeline, solid


@solid
def start_a_thread(context):
    never = threading.Event()
    threading.Thread(target=never.wait, name="waits-forever", daemon=False).start()
    context.log.info("started a thread that never ends")


@pipeline
def leaves_a_thread():
    start_a_thread()
