"""asyncdag.telemetry: spans made with the plain OTel API reach OTLP, the console and files.

Anything that installs the global tracer provider runs in a fresh interpreter (OpenTelemetry
allows one per process, and the environment must be exactly the one under test). In-process
tests build separate providers with ``set_global=False``.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otlp_receiver as _receiver_module
from asyncdag import telemetry
from asyncdag._errors import AsyncdagError
from otlp_receiver import OtlpReceiver

otlp_receiver = _receiver_module.otlp_receiver

SRC = Path(__file__).resolve().parent.parent / "src"
# A hang guard for the child interpreter, not a timing assertion.
CHILD_TIMEOUT = 120


def emit_spans(tracer: trace.Tracer) -> None:
    """Three spans, as the engine will make them: a run (SERVER) with two steps, one failing."""
    with tracer.start_as_current_span("run", kind=trace.SpanKind.SERVER) as run:
        run.set_attribute("asyncdag.run_id", "r1")
        with tracer.start_as_current_span("step a") as a:
            a.set_attribute("attempt", 1)
            a.add_event("retry", {"reason": "flaky"})
        with tracer.start_as_current_span("step b") as b:
            b.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))


# The same spans in a child interpreter, on the global provider. No shutdown() follows in
# the children: the atexit hook must flush.
MAKE_SPANS = (
    "from opentelemetry import trace\n"
    + inspect.getsource(emit_spans)
    + 'emit_spans(trace.get_tracer("asyncdag.test", "1.0"))\n'
)


def run_child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with only the OTEL_* variables given here."""
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    child_env.update(env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"child failed:\n{result.stdout}\n{result.stderr}"
    return result


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    named = {span["name"]: span for span in spans}
    assert len(named) == len(spans), f"duplicate span names: {[s['name'] for s in spans]}"
    return named


def assert_run_tree(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The three MAKE_SPANS spans arrived once each, in one trace, steps under the run."""
    named = by_name(spans)
    assert set(named) == {"run", "step a", "step b"}
    assert len({span["trace_id"] for span in spans}) == 1
    assert named["run"]["parent_span_id"] is None
    assert named["step a"]["parent_span_id"] == named["run"]["span_id"]
    assert named["step b"]["parent_span_id"] == named["run"]["span_id"]
    return named


# -- OTLP to a real receiver -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["configure()", "configure_from_env()"])
def test_otlp_http_endpoint_from_env_delivers_the_span_tree(
    otlp_receiver: OtlpReceiver, entry: str
) -> None:
    run_child(
        f"from asyncdag import telemetry\nassert telemetry.{entry} is not None\n" + MAKE_SPANS,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
        OTEL_SERVICE_NAME="svc-http",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
    )
    named = assert_run_tree(otlp_receiver.wait_for_spans(3))
    assert otlp_receiver.errors == []
    for span in named.values():
        assert span["transport"] == "http"
        assert span["resource"]["service.name"] == "svc-http"
        assert span["resource"]["deployment.environment"] == "test"
        assert span["scope"] == "asyncdag.test"
    assert named["run"]["kind"] == "SERVER"
    assert named["run"]["attributes"] == {"asyncdag.run_id": "r1"}
    assert named["step a"]["attributes"] == {"attempt": 1}
    assert [(e["name"], e["attributes"]) for e in named["step a"]["events"]] == [
        ("retry", {"reason": "flaky"})
    ]
    assert (named["step b"]["status_code"], named["step b"]["status_message"]) == ("ERROR", "boom")


@pytest.mark.slow
def test_traces_endpoint_is_used_as_given_and_gzip_bodies_are_decoded(
    otlp_receiver: OtlpReceiver,
) -> None:
    run_child(
        "from asyncdag import telemetry\ntelemetry.configure()\n" + MAKE_SPANS,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp_receiver.traces_url,
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
    )
    named = assert_run_tree(otlp_receiver.wait_for_spans(3))
    assert otlp_receiver.errors == []
    assert set(otlp_receiver.content_encodings) == {"gzip"}
    assert named["run"]["resource"]["service.name"] == telemetry.DEFAULT_SERVICE_NAME


@pytest.mark.slow
def test_arguments_win_over_the_environment(otlp_receiver: OtlpReceiver) -> None:
    run_child(
        "from asyncdag import telemetry\n"
        "telemetry.configure(service_name='from-arg', "
        f"otlp_endpoint={otlp_receiver.http_endpoint!r})\n" + MAKE_SPANS,
        OTEL_SERVICE_NAME="from-env",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",  # nothing listens there
    )
    named = assert_run_tree(otlp_receiver.wait_for_spans(3))
    assert {span["resource"]["service.name"] for span in named.values()} == {"from-arg"}


@pytest.mark.slow
@pytest.mark.parametrize("via", ["env", "arguments"])
def test_grpc_protocol_delivers_over_grpc(otlp_receiver: OtlpReceiver, via: str) -> None:
    if via == "env":
        setup = "telemetry.configure()"
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.grpc_endpoint,
        }
    else:
        # No scheme: configure() must still pick a plaintext channel for a local Jaeger.
        hostport = otlp_receiver.grpc_endpoint.removeprefix("http://")
        setup = f"telemetry.configure(otlp_protocol='grpc', otlp_endpoint={hostport!r})"
        env = {}
    run_child(f"from asyncdag import telemetry\n{setup}\n" + MAKE_SPANS, **env)
    named = assert_run_tree(otlp_receiver.wait_for_spans(3))
    assert {span["transport"] for span in named.values()} == {"grpc"}
    assert named["run"]["resource"]["service.name"] == "asyncdag"


@pytest.mark.slow
def test_otel_traces_exporter_none_exports_nothing(otlp_receiver: OtlpReceiver) -> None:
    run_child(
        "from asyncdag import telemetry\n"
        "assert telemetry.configure_from_env() is None\n"
        "provider = telemetry.configure()\n" + MAKE_SPANS + "telemetry.shutdown()\n",
        OTEL_TRACES_EXPORTER="none",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
    )
    assert otlp_receiver.request_count == 0


# -- staying light and out of the way ----------------------------------------------------


@pytest.mark.slow
def test_configure_from_env_without_exporter_variables_does_not_load_the_sdk() -> None:
    run_child(
        """
        import sys
        import asyncdag.telemetry as telemetry
        assert "opentelemetry.sdk" not in sys.modules, "importing telemetry loaded the SDK"
        assert telemetry.configure_from_env() is None
        assert "opentelemetry.sdk" not in sys.modules, "configure_from_env loaded the SDK"
        """,
        OTEL_SERVICE_NAME="not-an-exporter-variable",
    )


@pytest.mark.slow
def test_missing_sdk_names_the_extra_to_install() -> None:
    run_child(
        """
        import sys
        sys.modules["opentelemetry.sdk"] = None  # as if asyncdag[otel] were not installed
        from asyncdag import telemetry
        from asyncdag._errors import AsyncdagError
        for attempt in (lambda: telemetry.configure(console=True),
                        lambda: telemetry.JaegerJsonExporter):
            try:
                attempt()
            except telemetry.TelemetryNotInstalledError as error:
                assert isinstance(error, AsyncdagError)
                assert "pip install 'asyncdag[otel]'" in str(error), str(error)
            else:
                raise AssertionError("no TelemetryNotInstalledError")
        """
    )


@pytest.mark.slow
def test_configuring_twice_reuses_or_refuses_but_never_stacks(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    run_child(
        f"""
        from opentelemetry import trace
        from asyncdag import telemetry
        first = telemetry.configure(trace_file={str(spans_file)!r})
        assert telemetry.configure(trace_file={str(spans_file)!r}) is first
        try:
            telemetry.configure(trace_file={str(spans_file)!r}, service_name="other")
        except telemetry.TelemetryConfigError as error:
            assert "already configured" in str(error), str(error)
        else:
            raise AssertionError("a clashing configure() was accepted")
        with trace.get_tracer("t").start_as_current_span("only"):
            pass
        telemetry.shutdown()
        try:
            telemetry.configure(trace_file={str(spans_file)!r})
        except telemetry.TelemetryConfigError as error:
            assert "shut down" in str(error), str(error)
        else:
            raise AssertionError("configure() after shutdown() was accepted")
        """
    )
    lines = spans_file.read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["only"]


@pytest.mark.slow
def test_shutdown_with_a_timeout_reports_what_an_unreachable_collector_did_not_take() -> None:
    result = run_child(
        """
        import socket
        from opentelemetry import trace
        from asyncdag import telemetry
        refusing = socket.socket()  # bound, never listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        endpoint = "http://127.0.0.1:%d" % refusing.getsockname()[1]
        telemetry.configure(otlp_endpoint=endpoint)
        with trace.get_tracer("t").start_as_current_span("lost"):
            pass
        problems = telemetry.shutdown(timeout=0.5)
        assert len(problems) == 1, problems
        assert endpoint in problems[0], problems
        assert telemetry.shutdown(timeout=0.5) == []  # said once
        print("reported")
        """
    )
    assert result.stdout.strip() == "reported"


@pytest.mark.slow
def test_a_provider_installed_by_someone_else_is_kept() -> None:
    run_child(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from asyncdag import telemetry
        theirs = TracerProvider()
        trace.set_tracer_provider(theirs)
        try:
            telemetry.configure(exporter="console")
        except telemetry.TelemetryConfigError as error:
            assert "TracerProvider" in str(error) and "set_global=False" in str(error)
        else:
            raise AssertionError("configure() replaced a foreign provider silently")
        assert telemetry.configure_from_env() is theirs
        """,
        OTEL_TRACES_EXPORTER="console",
    )


# -- console and files -------------------------------------------------------------------


def decode_concatenated_json(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while (index := _skip_space(text, index)) < len(text):
        obj, index = decoder.raw_decode(text, index)
        objects.append(obj)
    return objects


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


@pytest.mark.slow
def test_console_exporter_from_env_prints_each_span_on_exit() -> None:
    result = run_child(
        "from asyncdag import telemetry\ntelemetry.configure_from_env()\n" + MAKE_SPANS,
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="svc-console",
    )
    printed = {span["name"]: span for span in decode_concatenated_json(result.stdout)}
    assert set(printed) == {"run", "step a", "step b"}
    run_span_id = printed["run"]["context"]["span_id"]
    assert printed["step a"]["parent_id"] == run_span_id
    assert printed["step b"]["status"]["status_code"] == "ERROR"
    assert printed["run"]["resource"]["attributes"]["service.name"] == "svc-console"


def make_spans(provider: TracerProvider) -> None:
    emit_spans(provider.get_tracer("asyncdag.test", "1.0"))


def test_console_accepts_a_stream() -> None:
    stream = io.StringIO()
    provider = telemetry.configure(exporter="none", console=stream, batch=False, set_global=False)
    make_spans(provider)
    provider.shutdown()
    assert sorted(span["name"] for span in decode_concatenated_json(stream.getvalue())) == [
        "run",
        "step a",
        "step b",
    ]


def test_trace_file_holds_one_json_span_per_line_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "spans.jsonl"
    for service in ("first", "second"):
        provider = telemetry.configure(trace_file=path, service_name=service, set_global=False)
        make_spans(provider)
        assert provider.force_flush()
        provider.shutdown()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [record["resource"]["service.name"] for record in records] == ["first"] * 3 + [
        "second"
    ] * 3
    for batch in (records[:3], records[3:]):
        named = assert_run_tree(batch)
        assert all(len(r["trace_id"]) == 32 and len(r["span_id"]) == 16 for r in batch)
        assert named["run"]["kind"] == "SERVER"
        assert named["step a"]["events"][0]["name"] == "retry"
        assert named["step b"]["status"] == {"code": "ERROR", "description": "boom"}
        assert all(r["end_time_unix_nano"] >= r["start_time_unix_nano"] for r in batch)


def exporter_types(provider: TracerProvider) -> list[str]:
    processors = provider._active_span_processor._span_processors  # type: ignore[attr-defined]
    return [type(processor.span_exporter).__name__ for processor in processors]


def test_trace_file_alone_does_not_add_an_otlp_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no endpoint anywhere, OTLP would only log export failures to localhost:4318.
    for key in [key for key in os.environ if key.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    provider = telemetry.configure(trace_file=tmp_path / "s.jsonl", set_global=False)
    provider.shutdown()
    assert exporter_types(provider) == ["_JsonLinesExporter"]


@pytest.mark.slow
def test_an_endpoint_variable_adds_otlp_next_to_a_trace_file(
    otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "spans.jsonl"
    run_child(
        f"from asyncdag import telemetry\ntelemetry.configure(trace_file={str(path)!r})\n"
        + MAKE_SPANS,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
    )
    over_the_wire = assert_run_tree(otlp_receiver.wait_for_spans(3))
    in_the_file = assert_run_tree([json.loads(line) for line in path.read_text().splitlines()])
    assert {n: s["span_id"] for n, s in over_the_wire.items()} == {
        n: s["span_id"] for n, s in in_the_file.items()
    }


@pytest.mark.slow
def test_files_are_written_at_exit_without_an_explicit_shutdown(tmp_path: Path) -> None:
    jsonl, jaeger = tmp_path / "spans.jsonl", tmp_path / "trace.json"
    run_child(
        "from asyncdag import telemetry\n"
        f"telemetry.configure(trace_file={str(jsonl)!r}, jaeger_json={str(jaeger)!r})\n"
        + MAKE_SPANS
    )
    assert_run_tree([json.loads(line) for line in jsonl.read_text().splitlines()])
    (trace_doc,) = json.loads(jaeger.read_text())["data"]
    assert sorted(span["operationName"] for span in trace_doc["spans"]) == [
        "run",
        "step a",
        "step b",
    ]


# -- Jaeger JSON -------------------------------------------------------------------------

T0 = 1_700_000_000_000_000_000  # ns


def make_timed_spans(provider: TracerProvider) -> dict[str, trace.Span]:
    """Spans with explicit times, so durations in µs can be asserted exactly."""
    tracer = provider.get_tracer("asyncdag.test", "1.0")
    run = tracer.start_span("run", kind=trace.SpanKind.SERVER, start_time=T0)
    run.set_attribute("asyncdag.run_id", "r1")
    ctx = trace.set_span_in_context(run)
    step_a = tracer.start_span("step a", context=ctx, start_time=T0 + 1_000_000)
    step_a.set_attributes({"attempt": 2, "ratio": 0.5, "ok": True, "tags": ("x", "y")})
    step_a.add_event("retry", {"reason": "flaky"}, timestamp=T0 + 1_500_000)
    step_a.end(end_time=T0 + 3_000_999)
    step_b = tracer.start_span(
        "step b",
        context=ctx,
        start_time=T0 + 3_000_000,
        links=[trace.Link(step_a.get_span_context())],
    )
    step_b.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
    step_b.end(end_time=T0 + 4_000_000)
    run.end(end_time=T0 + 5_000_000)
    other = tracer.start_span("other run", start_time=T0 + 10_000_000)
    other.end(end_time=T0 + 11_000_000)
    return {"run": run, "step a": step_a, "step b": step_b, "other run": other}


def tags(span: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {tag["key"]: (tag["type"], tag["value"]) for tag in span["tags"]}


def test_jaeger_json_has_jaegers_trace_shape(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    provider = telemetry.configure(jaeger_json=path, service_name="svc-j", set_global=False)
    made = make_timed_spans(provider)
    assert provider.force_flush()
    document = json.loads(path.read_text())
    provider.shutdown()

    assert list(document) == ["data"]
    first, second = document["data"]
    run_ctx = made["run"].get_span_context()
    assert first["traceID"] == f"{run_ctx.trace_id:032x}"
    assert [s["operationName"] for s in second["spans"]] == ["other run"]
    assert first["warnings"] is None
    assert first["processes"]["p1"]["serviceName"] == "svc-j"
    assert "service.name" not in {tag["key"] for tag in first["processes"]["p1"]["tags"]}

    spans = {span["operationName"]: span for span in first["spans"]}
    assert [s["operationName"] for s in first["spans"]] == ["run", "step a", "step b"]
    for name, span in spans.items():
        ctx = made[name].get_span_context()
        assert span["traceID"] == first["traceID"]
        assert span["spanID"] == f"{ctx.span_id:016x}" and len(span["spanID"]) == 16
        assert span["processID"] == "p1"
        assert span["warnings"] is None
        assert span["flags"] == 1
    run_id = f"{run_ctx.span_id:016x}"
    assert spans["run"]["references"] == []
    assert spans["step a"]["references"] == [
        {"refType": "CHILD_OF", "traceID": first["traceID"], "spanID": run_id}
    ]
    assert spans["step b"]["references"] == [
        {"refType": "CHILD_OF", "traceID": first["traceID"], "spanID": run_id},
        {
            "refType": "FOLLOWS_FROM",
            "traceID": first["traceID"],
            "spanID": spans["step a"]["spanID"],
        },
    ]
    assert (spans["run"]["startTime"], spans["run"]["duration"]) == (T0 // 1000, 5000)
    assert (spans["step a"]["startTime"], spans["step a"]["duration"]) == (T0 // 1000 + 1000, 2000)

    assert tags(spans["run"])["span.kind"] == ("string", "server")
    assert tags(spans["run"])["asyncdag.run_id"] == ("string", "r1")
    a_tags = tags(spans["step a"])
    assert a_tags["span.kind"] == ("string", "internal")
    assert a_tags["attempt"] == ("int64", 2)
    assert a_tags["ratio"] == ("float64", 0.5)
    assert a_tags["ok"] == ("bool", True)
    assert a_tags["tags"] == ("string", '["x", "y"]')
    assert a_tags["otel.scope.name"] == ("string", "asyncdag.test")
    assert "error" not in a_tags and "otel.status_code" not in a_tags
    b_tags = tags(spans["step b"])
    assert b_tags["otel.status_code"] == ("string", "ERROR")
    assert b_tags["error"] == ("bool", True)
    assert b_tags["otel.status_description"] == ("string", "boom")

    assert spans["step a"]["logs"] == [
        {
            "timestamp": (T0 + 1_500_000) // 1000,
            "fields": [
                {"key": "event", "type": "string", "value": "retry"},
                {"key": "reason", "type": "string", "value": "flaky"},
            ],
        }
    ]


def test_jaeger_json_exporter_writes_on_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "out" / "trace.json"
    exporter = telemetry.JaegerJsonExporter(path)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    make_spans(provider)
    assert not path.exists()
    provider.shutdown()
    (trace_doc,) = json.loads(path.read_text())["data"]
    assert len(trace_doc["spans"]) == 3


def test_jaeger_json_names_the_library_the_way_jaeger_ui_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    provider = telemetry.configure(jaeger_json=path, set_global=False)
    make_spans(provider)
    provider.shutdown()
    (trace_doc,) = json.loads(path.read_text())["data"]
    for span in trace_doc["spans"]:
        span_tags = tags(span)
        assert span_tags["otel.library.name"] == span_tags["otel.scope.name"]
        assert span_tags["otel.library.name"] == ("string", "asyncdag.test")
        assert span_tags["otel.library.version"] == span_tags["otel.scope.version"]
        assert span_tags["otel.library.version"] == ("string", "1.0")


def write_one_session(path: Path) -> None:
    """What one CLI run does: a provider writing ``path``, its spans, its shutdown."""
    provider = telemetry.configure(jaeger_json=path, set_global=False)
    make_spans(provider)
    provider.shutdown()


def test_jaeger_json_adds_each_sessions_trace_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    write_one_session(path)
    write_one_session(path)
    write_one_session(path)
    traces = json.loads(path.read_text())["data"]
    assert len(traces) == 3
    assert len({t["traceID"] for t in traces}) == 3
    assert [len(t["spans"]) for t in traces] == [3, 3, 3]


def test_jaeger_json_flushed_twice_holds_each_span_once(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    provider = telemetry.configure(jaeger_json=path, set_global=False)
    make_spans(provider)
    assert provider.force_flush()
    make_spans(provider)
    provider.shutdown()
    traces = json.loads(path.read_text())["data"]
    assert [len(t["spans"]) for t in traces] == [3, 3]


def test_merge_traces_joins_one_trace_span_by_span_and_renumbers_processes() -> None:
    from asyncdag.telemetry._jaeger_json import merge_traces

    def span(span_id: str, start: int, process: str) -> dict[str, Any]:
        return {"spanID": span_id, "startTime": start, "processID": process}

    svc_a = {"serviceName": "a", "tags": []}
    svc_b = {"serviceName": "b", "tags": []}
    old = [{"traceID": "t1", "spans": [span("s1", 1, "p1")], "processes": {"p1": svc_a}}]
    new = [
        {
            "traceID": "t1",
            "spans": [span("s2", 0, "p1"), span("s3", 2, "p2")],
            "processes": {"p1": svc_b, "p2": svc_a},
        },
        {"traceID": "t2", "spans": [span("s9", 5, "p1")], "processes": {"p1": svc_b}},
    ]
    first, second = merge_traces(old, new)
    assert [s["spanID"] for s in first["spans"]] == ["s2", "s1", "s3"]
    processes = first["processes"]
    assert {s["spanID"]: processes[s["processID"]] for s in first["spans"]} == {
        "s1": svc_a,
        "s2": svc_b,
        "s3": svc_a,
    }
    assert second == new[1]


def test_jaeger_json_refuses_a_file_that_is_not_a_jaeger_document(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text('{"todo": ["keep me"]}\n')
    with pytest.raises(telemetry.TelemetryConfigError, match="not a Jaeger JSON trace file"):
        telemetry.configure(jaeger_json=path, set_global=False)
    assert path.read_text() == '{"todo": ["keep me"]}\n'


def test_jaeger_json_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    old_umask = os.umask(0o022)
    try:
        write_one_session(path)
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o640)  # a mode the user chose is kept when traces are added
        write_one_session(path)
        assert path.stat().st_mode & 0o777 == 0o640
        os.umask(0o077)
        other = tmp_path / "private.json"
        write_one_session(other)
        assert other.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# A random forest of spans: parents[i] is the index of span i's parent (or None for a root).
forests = st.integers(min_value=1, max_value=25).flatmap(
    lambda n: st.tuples(
        *[st.one_of(st.none(), st.integers(0, i - 1)) if i else st.none() for i in range(n)]
    )
)


@settings(max_examples=40, deadline=None)
@given(parents=forests, durations=st.lists(st.integers(0, 10**12), min_size=25, max_size=25))
def test_jaeger_json_references_mirror_the_span_tree(
    parents: tuple[int | None, ...], durations: list[int]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("prop")
    made: list[trace.Span] = []
    for index, parent in enumerate(parents):
        context = trace.set_span_in_context(made[parent]) if parent is not None else None
        span = tracer.start_span(f"s{index}", context=context, start_time=T0 + index)
        made.append(span)
    for index, span in enumerate(made):
        span.end(end_time=T0 + index + durations[index])
    finished: tuple[ReadableSpan, ...] = exporter.get_finished_spans()

    document = telemetry.spans_to_jaeger_json(finished)
    jaeger_spans = [span for entry in document["data"] for span in entry["spans"]]
    assert len(jaeger_spans) == len(parents)
    assert len(document["data"]) == sum(parent is None for parent in parents)
    by_id = {span["spanID"]: span for span in jaeger_spans}
    for index, parent in enumerate(parents):
        span = by_id[f"{made[index].get_span_context().span_id:016x}"]
        assert span["operationName"] == f"s{index}"
        assert span["duration"] == durations[index] // 1000
        refs = [(r["refType"], r["spanID"]) for r in span["references"]]
        if parent is None:
            assert refs == []
        else:
            parent_id = f"{made[parent].get_span_context().span_id:016x}"
            assert refs == [("CHILD_OF", parent_id)]
            assert by_id[parent_id]["traceID"] == span["traceID"]
    provider.shutdown()


# -- clear errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "env", "expected"),
    [
        ({"exporter": "zipkin"}, {}, ["'zipkin'", "otlp, otlp_proto_http, otlp_proto_grpc"]),
        ({"exporter": ["console", "jaeger"]}, {}, ["'jaeger'", "use 'otlp'", "4318"]),
        ({}, {"OTEL_TRACES_EXPORTER": "console,bogus"}, ["'bogus'", "OTEL_TRACES_EXPORTER"]),
        ({"otlp_protocol": "http/json"}, {}, ["'http/json'", "http/protobuf, grpc"]),
        ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, ["OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"]),
    ],
)
def test_bad_names_raise_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    env: dict[str, str],
    expected: list[str],
) -> None:
    for key in [key for key in os.environ if key.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(telemetry.TelemetryConfigError) as caught:
        telemetry.configure(set_global=False, **kwargs)
    assert isinstance(caught.value, AsyncdagError)
    for fragment in expected:
        assert fragment in str(caught.value)
