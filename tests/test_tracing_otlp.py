"""A run's spans reach a real OTLP/HTTP endpoint, configured only by OTEL_* variables.

The pipeline runs in a fresh interpreter, because the global tracer provider can be set once
per process and the environment must be exactly the one under test.  The child calls
``asyncdag.telemetry.configure_from_env()`` and ``execute_pipeline``, and never flushes by
hand: spans must leave at exit.  The receiver decodes the protobuf on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import otlp_receiver as _receiver_module
from otlp_receiver import OtlpReceiver

otlp_receiver = _receiver_module.otlp_receiver

SRC = Path(__file__).resolve().parent.parent / "src"
# A hang guard for the child interpreter, not a timing assertion.
CHILD_TIMEOUT = 120

CHILD = """
    import json, sys
    from opentelemetry import trace
    from asyncdag import RetryPolicy, execute_pipeline, pipeline, solid, telemetry

    assert telemetry.configure_from_env() is not None
    calls = []

    @solid
    def fetch(context):
        context.log.info("fetching")
        with trace.get_tracer("user.code").start_as_current_span("GET /data"):
            return 2

    @solid(retry_policy=RetryPolicy(max_retries=1), pool="cpu")
    async def flaky(context, x):
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("first try")
        return x * 2

    @solid
    def explode(x):
        raise ValueError(f"bad {x}")

    @solid
    def never(x):
        return x

    @pipeline(name="otlp_demo")
    def otlp_demo():
        value = flaky(fetch())
        never(explode(value))

    result = execute_pipeline(otlp_demo, raise_on_error=False, backend=sys.argv[1])
    print(json.dumps({"run_id": result.run_id, "trace_id": result.trace_id}))
"""


def run_child(backend: str, **env: str) -> dict[str, Any]:
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    child_env.update(env)
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), backend],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, f"child failed:\n{completed.stdout}\n{completed.stderr}"
    last_line = completed.stdout.strip().splitlines()[-1]
    return json.loads(last_line)  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_and_step_spans_arrive_over_otlp_http_as_one_tree(
    otlp_receiver: OtlpReceiver, backend: str
) -> None:
    run = run_child(
        backend,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
        OTEL_SERVICE_NAME="pipelines",
    )
    # run, fetch, GET /data, flaky x2, explode, never
    spans = otlp_receiver.wait_for_spans(7)
    assert otlp_receiver.errors == []
    assert len(spans) == 7

    (run_span,) = [s for s in spans if s["kind"] == "SERVER"]
    assert run_span["name"] == "run otlp_demo"
    assert run_span["parent_span_id"] is None
    assert run_span["trace_id"] == run["trace_id"]
    assert run_span["attributes"]["cicd.pipeline.name"] == "otlp_demo"
    assert run_span["attributes"]["cicd.pipeline.run.id"] == run["run_id"]
    assert run_span["attributes"]["cicd.pipeline.result"] == "failure"
    assert run_span["status_code"] == "ERROR"
    for span in spans:
        assert span["transport"] == "http"
        assert span["trace_id"] == run["trace_id"]
        assert span["resource"]["service.name"] == "pipelines"

    steps = [s for s in spans if s["scope"] == "asyncdag" and s["kind"] == "INTERNAL"]
    assert {s["parent_span_id"] for s in steps} == {run_span["span_id"]}
    results = sorted(
        (s["name"], s["attributes"]["asyncdag.attempt"], s["attributes"][RESULT]) for s in steps
    )
    assert results == [
        ("explode", 1, "failure"),
        ("fetch", 1, "success"),
        ("flaky", 1, "failure"),
        ("flaky", 2, "success"),
        ("never", 0, "skip"),
    ]

    by_name = {s["name"]: s for s in steps}
    (user_span,) = [s for s in spans if s["scope"] == "user.code"]
    assert user_span["name"] == "GET /data"
    assert user_span["parent_span_id"] == by_name["fetch"]["span_id"]
    assert [(e["name"], e["attributes"]["log.message"]) for e in by_name["fetch"]["events"]] == [
        ("log", "fetching")
    ]

    explode = by_name["explode"]
    assert explode["status_code"] == "ERROR"
    assert explode["attributes"]["error.type"] == "ValueError"
    (event,) = explode["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.message"] == "bad 4"

    flaky_attempts = [s for s in steps if s["name"] == "flaky"]
    for span in flaky_attempts:
        assert span["attributes"]["asyncdag.pool"] == "cpu"
        assert span["attributes"]["asyncdag.retry_policy.max_retries"] == 1
        assert span["attributes"]["asyncdag.inputs"] == ["x"]


RESULT = "cicd.pipeline.task.run.result"
