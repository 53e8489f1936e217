"""The public surface: exactly the intended names, each reporting the public module it is used from.

Adding a name to a public module is a decision: it goes into the sets below in the
same change.  Every exported class and function says ``asyncdag`` (or
``asyncdag.storage``...) as its ``__module__``, so reprs, tracebacks, stored error
types and span attributes never carry the private paths that change whenever the
internals move, and errors survive a process boundary (pickling) intact.
"""

from __future__ import annotations

import importlib
import inspect
import pickle

import pytest

import asyncdag

PUBLIC = {
    "asyncdag": {
        "AsyncdagError",
        "Backoff",
        "CollectHandle",
        "ConfigError",
        "ConfigErrorItem",
        "DaskExecutor",
        "DefinitionError",
        "DynamicHandle",
        "DynamicOut",
        "DynamicOutput",
        "ErrorInfo",
        "Event",
        "EventLoopError",
        "EventType",
        "GraphDefinition",
        "HookContext",
        "HookDefinition",
        "InitResourceContext",
        "Jitter",
        "MultiOutputHandle",
        "Out",
        "Output",
        "OutputError",
        "OutputHandle",
        "PipelineDefinition",
        "PipelineRunCanceled",
        "PipelineRunResult",
        "ReexecutionError",
        "ResourceDefinition",
        "ResourceInitError",
        "RetryPolicy",
        "RetryRequested",
        "RunHandle",
        "RunRequest",
        "RunStatus",
        "ScheduleDefinition",
        "ScheduleEvaluationContext",
        "SensorDefinition",
        "SensorEvaluationContext",
        "SkipReason",
        "SolidContext",
        "SolidDefinition",
        "StepLog",
        "StepResult",
        "StepStatus",
        "StepTimeoutError",
        "UnknownResourceError",
        "__version__",
        "build_solid_context",
        "configured",
        "execute_pipeline",
        "execute_pipeline_async",
        "failure_hook",
        "graph",
        "open_run",
        "pipeline",
        "resource",
        "schedule",
        "sensor",
        "solid",
        "success_hook",
    },
    "asyncdag.automation": {
        "RUN_KEY_TAG",
        "SCHEDULED_EXECUTION_TIME_TAG",
        "SCHEDULE_NAME_TAG",
        "SENSOR_NAME_TAG",
        "Catchup",
        "Clock",
        "Launcher",
        "ManualClock",
        "Scheduler",
        "SystemClock",
    },
    "asyncdag.config": {
        "ConfigType",
        "ExecutionConfig",
        "Field",
        "FieldSpec",
        "ResolvedRunConfig",
        "SolidRunConfig",
        "config_json_schema",
        "default_run_config",
        "definition_config",
        "field_spec",
        "load_run_config",
        "normalize_schema",
        "resolve_run_config",
        "run_config_json_schema",
        "validate_config",
    },
    "asyncdag.dask": {
        "DaskUnavailable",
        "NoWorkerForResources",
        "OutputNotPicklable",
        "SchedulerUnreachable",
        "WorkerLost",
    },
    "asyncdag.outputs": {
        "FilesystemOutputStore",
        "JsonSerializer",
        "OutputKey",
        "OutputNotFoundError",
        "OutputStore",
        "OutputStoreError",
        "PickleSerializer",
        "Serializer",
        "StoredOutput",
        "builtin_serializer",
        "default_output_location",
    },
    "asyncdag.storage": {
        "AutomationStorage",
        "InMemoryStorage",
        "InstigatorState",
        "InstigatorStatus",
        "InstigatorType",
        "Lease",
        "PostgresStorage",
        "RunNotFoundError",
        "RunRecord",
        "RunRecorder",
        "RunStorage",
        "SqliteStorage",
        "StorageError",
        "StorageUnavailableError",
        "TickRecord",
        "STORAGE_URL_ENV",
        "TickStatus",
        "default_storage_path",
        "open_storage",
        "orphan_reason",
    },
    "asyncdag.telemetry": {
        "DEFAULT_SERVICE_NAME",
        "EXPORTER_NAMES",
        "OTLP_PROTOCOLS",
        "JaegerJsonExporter",
        "TelemetryConfigError",
        "TelemetryNotInstalledError",
        "configure",
        "configure_from_env",
        "force_flush",
        "shutdown",
        "spans_to_jaeger_json",
        "write_jaeger_json",
    },
    "asyncdag.ui": {"create_app"},
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_exports_exactly_the_intended_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert set(module.__all__) == PUBLIC[module_name]
    for name in module.__all__:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_exported_classes_and_functions_report_the_public_module(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == module_name, f"{module_name}.{name}: {obj.__module__}"


def test_import_asyncdag_stays_light() -> None:
    # A fresh interpreter: schedules are defined with `import asyncdag`, but the cron
    # library, the run storage (sqlite3), the web UI and Dask load only when used.
    import subprocess
    import sys

    code = (
        "import sys, asyncdag; "
        "print(sorted(m for m in ('cronsim', 'sqlite3', 'asyncdag.storage', "
        "'asyncdag.automation._scheduler', 'starlette', 'zoneinfo', 'dask', 'distributed', "
        "'fsspec', 'cloudpickle', 'asyncdag.outputs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_asyncdag_loads_only_the_errors_and_the_version() -> None:
    # The rest of the public API loads on first use of any of its names (see __init__).
    import subprocess
    import sys

    code = (
        "import sys, asyncdag; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncdag', 'anyio', 'attr')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(
        sorted(["asyncdag", "asyncdag._errors", "asyncdag._public", "asyncdag._version"])
    )
    code = "import asyncdag; print(asyncdag.schedule.__module__, asyncdag.DaskExecutor.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["asyncdag", "asyncdag"]


def test_stored_error_types_name_the_public_class() -> None:
    error = asyncdag.ErrorInfo.from_exception(asyncdag.StepTimeoutError("fetch", 1.5))
    assert error.type == "asyncdag.StepTimeoutError"


@pytest.mark.parametrize(
    "error",
    [
        asyncdag.StepTimeoutError("fetch", 1.5),
        asyncdag.ConfigError([asyncdag.ConfigErrorItem("solids.a.config", "bad")]),
        asyncdag.ResourceInitError("db", ValueError("refused")),
        asyncdag.RetryRequested(max_retries=3, seconds_to_wait=0.5),
        asyncdag.DefinitionError("wired wrong"),
        asyncdag.ReexecutionError("no run 'x'"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling_with_their_message_and_attributes(
    error: asyncdag.AsyncdagError,
) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
