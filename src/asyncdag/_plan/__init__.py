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
from ._selection import NodeGraph, select_nodes
from ._subset import RecordedOutput, RecordedRun, ReusedStep, RunSubset, plan_subset

__all__ = [
    "CollectInput",
    "ConstantInput",
    "DynamicGroup",
    "ExecutionPlan",
    "FanInInput",
    "NodeGraph",
    "RecordedOutput",
    "RecordedRun",
    "ReusedStep",
    "RunSubset",
    "Step",
    "StepInput",
    "StepOutputInput",
    "consumed_missing",
    "input_values",
    "plan_subset",
    "resolve_inputs",
    "select_nodes",
]
