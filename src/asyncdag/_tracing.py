"""One OpenTelemetry span per run and per step attempt, through opentelemetry-api only.

Tracing costs nothing when nobody configured a tracer provider: the engine
asks :func:`run_tracer` once per run and, on ``None``, never touches OTel
again.  If ``opentelemetry`` was never imported, no provider can have been
set, so we do not even import it (it is not cheap to import).

Attribute names follow OpenTelemetry's CI/CD semantic conventions where they
fit (``cicd.pipeline.*``), and ``asyncdag.*`` for the rest.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._plan import Step

__all__ = ["RunTracer", "run_tracer"]

# cicd.pipeline.task.run.result / cicd.pipeline.result values
SUCCESS = "success"
FAILURE = "failure"
ERROR = "error"
TIMEOUT = "timeout"
CANCELLATION = "cancellation"
SKIP = "skip"


def run_tracer(*, enabled: bool = True) -> RunTracer | None:
    """A tracer for one run, or None when tracing is off or would record nothing."""
    if not enabled or "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    from . import __version__

    return RunTracer(provider.get_tracer("asyncdag", __version__))


class RunTracer:
    """Starts and ends the spans of one run."""

    __slots__ = ("_otel_context", "_run_context", "_run_span", "_status", "_trace", "tracer")

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        self.tracer = tracer
        self._trace = trace
        self._otel_context = otel_context
        self._status = trace.Status
        self._run_span: Any = None
        self._run_context: Any = None

    # --- the run -------------------------------------------------------------------------------

    def start_run(self, *, pipeline_name: str, run_id: str, tags: dict[str, str]) -> Any:
        """Start the run span as a child of whatever span is current (a web request, say)."""
        attributes: dict[str, Any] = {
            "cicd.pipeline.name": pipeline_name,
            "cicd.pipeline.run.id": run_id,
        }
        for key, value in tags.items():
            attributes[f"asyncdag.tag.{key}"] = value
        span = self.tracer.start_span(
            f"run {pipeline_name}", kind=self._trace.SpanKind.SERVER, attributes=attributes
        )
        self._run_span = span
        self._run_context = self._trace.set_span_in_context(span)
        return span

    def attach_run(self) -> object:
        """Make the run span current, so tasks spawned from here inherit it."""
        return self._otel_context.attach(self._run_context)

    def detach(self, token: object) -> None:
        self._otel_context.detach(token)

    def end_run(self, result: str, error: BaseException | None = None) -> None:
        span = self._run_span
        span.set_attribute("cicd.pipeline.result", result)
        if result == SUCCESS:
            span.set_status(self._status(self._trace.StatusCode.OK))
        else:
            span.set_status(self._status(self._trace.StatusCode.ERROR, result))
            if error is not None:
                span.set_attribute("error.type", type(error).__qualname__)
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
        attributes: dict[str, Any] = {
            "cicd.pipeline.task.name": step.solid.name,
            "cicd.pipeline.task.run.id": f"{run_id}:{step.key}:{attempt}",
            "cicd.pipeline.run.id": run_id,
            "asyncdag.step_key": step.key,
            "asyncdag.solid": step.solid.name,
            "asyncdag.attempt": attempt,
            "asyncdag.inputs": list(step.solid.input_names),
        }
        if step.pool is not None:
            attributes["asyncdag.pool"] = step.pool
        if step.timeout is not None:
            attributes["asyncdag.timeout"] = step.timeout
        if step.retry_policy is not None:
            policy = step.retry_policy
            attributes["asyncdag.retry_policy.max_retries"] = policy.max_retries
            if policy.delay is not None:
                attributes["asyncdag.retry_policy.delay"] = policy.delay
            if policy.backoff is not None:
                attributes["asyncdag.retry_policy.backoff"] = policy.backoff.value
        if extra:
            attributes.update(extra)
        return self.tracer.start_span(
            step.key,
            context=self._run_context,
            kind=self._trace.SpanKind.INTERNAL,
            attributes=attributes,
        )

    def use_span(self, span: Any) -> object:
        """Make ``span`` current for the code that runs the solid; returns a token to detach."""
        return self._otel_context.attach(self._trace.set_span_in_context(span))

    def end_step(
        self,
        span: Any,
        result: str,
        error: BaseException | None = None,
        *,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        span.set_attribute("cicd.pipeline.task.run.result", result)
        if attributes:
            span.set_attributes(attributes)
        if result == SUCCESS:
            span.set_status(self._status(self._trace.StatusCode.OK))
        elif result == SKIP:
            pass
        else:
            description = result
            if error is not None:
                span.set_attribute("error.type", type(error).__qualname__)
                if isinstance(error, Exception):
                    span.record_exception(error)
                description = f"{type(error).__name__}: {error}"
            span.set_status(self._status(self._trace.StatusCode.ERROR, description))
        span.end()

    def skip_step(self, step: Step, *, run_id: str, reason: str) -> None:
        span = self.start_step(
            step, run_id=run_id, attempt=0, extra={"asyncdag.skip_reason": reason}
        )
        self.end_step(span, SKIP)
