"""The plan layer: a pipeline resolved into steps for one run, validated before anything runs."""

from ._execution_plan import (
    INPUT_COLLECT,
    INPUT_CONSTANT,
    INPUT_FAN_IN,
    INPUT_STEP,
    DynamicGroup,
    ExecutionPlan,
    Step,
)

__all__ = [
    "INPUT_COLLECT",
    "INPUT_CONSTANT",
    "INPUT_FAN_IN",
    "INPUT_STEP",
    "DynamicGroup",
    "ExecutionPlan",
    "Step",
]
