"""The plan layer: a pipeline resolved into steps for one run, validated before anything runs."""

from ._execution_plan import DynamicGroup, ExecutionPlan, Step
from ._inputs import (
    CollectInput,
    ConstantInput,
    FanInInput,
    StepInput,
    StepOutputInput,
    consumed_missing,
    input_values,
    resolve_inputs,
)

__all__ = [
    "CollectInput",
    "ConstantInput",
    "DynamicGroup",
    "ExecutionPlan",
    "FanInInput",
    "Step",
    "StepInput",
    "StepOutputInput",
    "consumed_missing",
    "input_values",
    "resolve_inputs",
]
