"""One OpenTelemetry span per run and per step attempt, through opentelemetry-api only.

Tracing costs next to nothing when nobody configured a tracer provider: the
engine asks :func:`run_tracer` once per run and, on ``None``, never touches
OTel again.  If ``opentelemetry.trace`` was never imported, no provider can
have been set, so we do not even import it (it is not cheap to import).

Attribute names follow OpenTelemetry's CI/CD semantic conventions where they
fit (``cicd.pipeline.*``), and ``asyncdag.*`` for the rest.  The result
values (``cicd.pipeline.result`` / ``cicd.pipeline.task.run.result``) are the
convention's: a solid that raised is a ``failure``; a step that could not
start because its resources failed is an ``error``.

A failed attempt's span carries ``error.type`` and an ``exception`` event whose
``exception.type`` is the same name, the one stored in the run's events
(:class:`~asyncdag.ErrorInfo`): ``module.QualName``, builtins bare, public
classes under their public module (``asyncdag.StepTimeoutError``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import StepTimeoutError

if TYPE_CHECKING:
    from .._plan import Step

__all__ = ["RunTracer", "run_tracer"]

# cicd.pipeline.task.run.result / cicd.pipeline.result values
SUCCESS = "success"
FAILURE = "failure"
ERROR = "error"
TIMEOUT = "timeout"
CANCELLATION = "cancellation"
SKIP = "skip"

INSTRUMENTATION_NAME = "asyncdag"


def run_tracer(
    *, enabled: bool = True, tracer_provider: Any = None, cancel_is_error: bool = True
) -> RunTracer | None:
    """A tracer for one run, or None when tracing is off or would record nothing.

    ``tracer_provider`` overrides the global provider for this run (a test, or
    an application that keeps several providers).  A no-op provider, the
    still-unset global proxy, and an SDK provider switched off with
    ``OTEL_SDK_DISABLED`` all give None, so such runs pay nothing per step.
    ``cancel_is_error``: see :class:`RunTracer`.
    """
    if not enabled:
        return None
    if tracer_provider is None and "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        # Explicitly passing the proxy means "whatever the global one is".
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            return None
    if isinstance(provider, trace.NoOpTracerProvider):
        return None
    from .._version import __version__

    tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    if isinstance(tracer, trace.NoOpTracer):
        return None
    return RunTracer(tracer, cancel_is_error=cancel_is_error)


class RunTracer:
    """Starts and ends the spans of one run.

    The run span is started in the run's task as a child of whatever span is
    current there (a web request, say); step spans name it as their parent
    explicitly, so they nest correctly whichever task runs them.

    ``cancel_is_error=False`` is for services where cancelling a run is an
    ordinary outcome (a client went away, a user pressed Cancel): cancelled
    runs and steps then end with status UNSET instead of ERROR, so they do not
    count as errors in Jaeger or in error-rate alerts.  Their
    ``cicd.pipeline.result`` / ``cicd.pipeline.task.run.result`` still say
    ``cancellation``; a failure that led to a cancellation (``fail_fast``)
    stays an ERROR on its own step and on the run.
    """

    __slots__ = (
        "_cancel_is_error",
        "_kind_internal",
        "_otel_context",
        "_run_context",
        "_run_span",
        "_static",
        "_status",
        "_status_code",
        "_trace",
        "tracer",
    )

    def __init__(self, tracer: Any, *, cancel_is_error: bool = True) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        self.tracer = tracer
        self._cancel_is_error = cancel_is_error
        self._trace = trace
        self._otel_context = otel_context
        self._status = trace.Status
        self._status_code = trace.StatusCode
        self._kind_internal = trace.SpanKind.INTERNAL
        self._run_span: Any = None
        self._run_context: Any = None
        # Per-step attributes that do not change between attempts, built once per step.
        self._static: dict[int, dict[str, Any]] = {}

    # --- the run -------------------------------------------------------------------------------

    def start_run(self, *, pipeline_name: str, run_id: str, tags: Mapping[str, str]) -> Any:
        """Start the run span as a child of whatever span is current (a web request, say).

        Its kind is SERVER when the run is where this process's part of the trace
        begins (no parent, or a parent propagated from another process), and
        INTERNAL when it runs inside a span of this process, such as the request
        handler that awaits it: that span is the SERVER one.
        """
        attributes: dict[str, Any] = {
            "cicd.pipeline.name": pipeline_name,
            "cicd.pipeline.run.id": run_id,
        }
        for key, value in tags.items():
            attributes[f"asyncdag.tag.{key}"] = value
        parent = self._trace.get_current_span().get_span_context()
        local_parent = parent.is_valid and not parent.is_remote
        kind = self._kind_internal if local_parent else self._trace.SpanKind.SERVER
        span = self.tracer.start_span(f"run {pipeline_name}", kind=kind, attributes=attributes)
        self._run_span = span
        self._run_context = self._trace.set_span_in_context(span)
        return span

    def attach_run(self) -> Any:
        """Make the run span current, so tasks spawned from here inherit it."""
        return self._otel_context.attach(self._run_context)

    def detach(self, token: Any) -> None:
        self._otel_context.detach(token)

    def end_run(self, result: str, error: BaseException | None = None) -> None:
        span = self._run_span
        span.set_attribute("cicd.pipeline.result", result)
        if result == SUCCESS:
            span.set_status(self._status(self._status_code.OK))
        elif result == CANCELLATION and not self._cancel_is_error:
            pass  # status stays UNSET: a cancelled run is not an error here
        else:
            span.set_status(self._status(self._status_code.ERROR, result))
            if error is not None:
                span.set_attribute("error.type", _error_type(error))
        span.end()

    @property
    def trace_id(self) -> str | None:
        if self._run_span is None:
            return None
        return format(self._run_span.get_span_context().trace_id, "032x")

    # --- steps ---------------------------------------------------------------------------------

    def start_step(
        self, step: Step, *, run_id: str, attempt: int, extra: dict[str, Any] | None = None
    ) -> Any:
        """Start the span of one attempt (``attempt`` counts from 1; 0: the step never ran)."""
        static = self._static.get(step.index)
        if static is None:
            static = self._static[step.index] = _step_attributes(step, run_id)
        attributes = dict(static)
        attributes["cicd.pipeline.task.run.id"] = f"{run_id}:{step.key}:{attempt}"
        attributes["asyncdag.attempt"] = attempt
        if extra:
            attributes.update(extra)
        return self.tracer.start_span(
            step.key, context=self._run_context, kind=self._kind_internal, attributes=attributes
        )

    def use_span(self, span: Any) -> Any:
        """Make ``span`` current for the code that runs the solid; returns a token to detach.

        Worker threads of sync solids inherit it: anyio copies the context into them.
        """
        return self._otel_context.attach(self._trace.set_span_in_context(span))

    def carrier(self, span: Any) -> dict[str, str]:
        """``span`` in W3C trace-context form (``traceparent``...), for compute in another
        process to continue the trace (the global propagator's fields)."""
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def end_step(
        self,
        span: Any,
        result: str,
        error: BaseException | None = None,
        *,
        retry_delay: float | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """End an attempt's span with its result; a failed attempt carries its exception.

        ``retry_delay`` marks a failed attempt that will be tried again after that many
        seconds: the gap to the next attempt's span is that wait.
        """
        if result == FAILURE and isinstance(error, StepTimeoutError):
            result = TIMEOUT  # a retried timeout is still a timeout
        span.set_attribute("cicd.pipeline.task.run.result", result)
        if retry_delay is not None:
            span.set_attribute("asyncdag.retry.delay", retry_delay)
            span.set_attribute("asyncdag.retry.will_retry", True)
        if attributes:
            span.set_attributes(attributes)
        if result == SUCCESS:
            span.set_status(self._status(self._status_code.OK))
        elif result == SKIP or (result == CANCELLATION and not self._cancel_is_error):
            pass
        else:
            description = result
            if error is not None:
                error_type = _error_type(error)
                span.set_attribute("error.type", error_type)
                if isinstance(error, Exception):
                    # Given explicitly: older SDKs wrote the bare class name here.
                    span.record_exception(
                        error,
                        attributes={"exception.type": error_type},
                        escaped=retry_delay is None,
                    )
                description = f"{type(error).__name__}: {error}"
            elif result == CANCELLATION:
                description = "the step was cancelled"
            span.set_status(self._status(self._status_code.ERROR, description))
        span.end()

    def skip_step(self, step: Step, *, run_id: str, reason: str) -> None:
        """A zero-length span for a step that never ran, so the trace shows every step."""
        span = self.start_step(
            step, run_id=run_id, attempt=0, extra={"asyncdag.skip_reason": reason}
        )
        self.end_step(span, SKIP)

    def unstarted_step(
        self, step: Step, *, run_id: str, result: str, error: BaseException | None = None
    ) -> None:
        """A zero-length span for a step that could not start (``error``) or was cancelled first."""
        span = self.start_step(step, run_id=run_id, attempt=0)
        self.end_step(span, result, error)


def _step_attributes(step: Step, run_id: str) -> dict[str, Any]:
    solid = step.solid
    attributes: dict[str, Any] = {
        "cicd.pipeline.task.name": step.key,
        "cicd.pipeline.run.id": run_id,
        "asyncdag.step_key": step.key,
        "asyncdag.solid": solid.name,
        "asyncdag.inputs": list(solid.input_names),
    }
    if step.pool is not None:
        attributes["asyncdag.pool"] = step.pool
    if step.priority:
        attributes["asyncdag.priority"] = step.priority
    if step.timeout is not None:
        attributes["asyncdag.timeout"] = step.timeout
    policy = step.retry_policy
    if policy is not None:
        attributes["asyncdag.retry_policy.max_retries"] = policy.max_retries
        if policy.delay is not None:
            attributes["asyncdag.retry_policy.delay"] = policy.delay
        if policy.backoff is not None:
            attributes["asyncdag.retry_policy.backoff"] = policy.backoff.value
        if policy.jitter is not None:
            attributes["asyncdag.retry_policy.jitter"] = policy.jitter.value
        attributes["asyncdag.retry_policy.retry_on"] = [t.__qualname__ for t in policy.retry_on]
    return attributes


def _error_type(error: BaseException) -> str:
    """``error.type`` as the semantic conventions want it: the fully qualified class name.

    The same name OpenTelemetry's ``record_exception`` writes as ``exception.type``
    and :class:`~asyncdag.ErrorInfo` stores: ``module.QualName``, builtins bare.
    asyncdag's public classes report their public module (``asyncdag``) already.
    """
    cls = type(error)
    module = cls.__module__
    if not module or module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"
