"""The api layer: running a pipeline from Python and what a run hands back."""

from ._execute import execute_pipeline, execute_pipeline_async
from ._result import PipelineRunResult, StepResult
from ._run import RunHandle, open_run

__all__ = [
    "PipelineRunResult",
    "RunHandle",
    "StepResult",
    "execute_pipeline",
    "execute_pipeline_async",
    "open_run",
]
