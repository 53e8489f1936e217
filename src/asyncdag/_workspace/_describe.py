"""A pipeline described as JSON-ready data: what ``pipeline show`` prints and the UI's graph draws.

One description serves both shells, so the CLI and the web UI can never
disagree about what a pipeline is: its nodes (solid, inputs and where each
comes from, outputs, pool, retry policy, config schema...) and its edges.
"""

from __future__ import annotations

import inspect
from typing import Any

from asyncdag._definitions import (
    Collect,
    Constant,
    DynamicOut,
    FanIn,
    FromOutput,
    Node,
    PipelineDefinition,
    annotation_name,
)

__all__ = ["describe_node", "describe_pipeline", "pipeline_summary", "source_text"]


def _output_type(solid: Any) -> str:
    try:
        return annotation_name(inspect.signature(solid.fn).return_annotation)
    except (TypeError, ValueError):
        return "Any"


def _source(source: Any) -> dict[str, Any]:
    if isinstance(source, FromOutput):
        return {"kind": "output", "node": source.node, "output": source.output}
    if isinstance(source, FanIn):
        return {"kind": "fan_in", "sources": [_source(s) for s in source.sources]}
    if isinstance(source, Constant):
        return {"kind": "constant", "value": repr(source.value)[:200]}
    if isinstance(source, Collect):
        return {
            "kind": "collect",
            "node": source.node,
            "output": source.output,
            "producer": source.producer,
            "producer_output": source.producer_output,
        }
    return {"kind": "unknown"}


def source_text(source: dict[str, Any]) -> str:
    """One line for where an input comes from, from :func:`describe_node`'s ``source``."""
    kind = source["kind"]
    if kind == "config":
        return "run config"
    if kind == "output":
        return f"{source['node']}.{source['output']}"
    if kind == "constant":
        return f"constant {source['value']}"[:60]
    if kind == "fan_in":
        return "[" + ", ".join(source_text(s) for s in source["sources"]) + "]"
    if kind == "collect":
        return (
            f"collect {source['node']}.{source['output']} over each item of "
            f"{source['producer']}.{source['producer_output']}"
        )
    return "?"


def _outputs(solid: Any) -> list[dict[str, Any]]:
    if not solid.outs:
        return [{"name": "result", "type": _output_type(solid), "required": True, "dynamic": False}]
    return [
        {
            "name": name,
            "type": "Any",
            "required": getattr(out, "is_required", True),
            "dynamic": isinstance(out, DynamicOut),
        }
        for name, out in solid.outs.items()
    ]


def describe_node(node: Node) -> dict[str, Any]:
    """One node: its solid's details and where each input comes from."""
    from asyncdag.config import config_json_schema

    solid = node.solid
    inputs = []
    for input_def in solid.input_defs:
        source = node.inputs.get(input_def.name)
        inputs.append(
            {
                "name": input_def.name,
                "type": input_def.type_name,
                "has_default": input_def.has_default,
                "source": _source(source) if source is not None else {"kind": "config"},
            }
        )
    policy = node.retry_policy  # the call's, the solid's or the pipeline's
    return {
        "name": node.name,
        "solid": solid.name,
        "description": solid.description,
        "is_async": solid.is_async,
        "inputs": inputs,
        "outputs": _outputs(solid),
        "mapped_over": (
            {"node": node.dynamic[0], "output": node.dynamic[1]} if node.dynamic else None
        ),
        "after": list(node.after),
        "config_schema": (
            config_json_schema(solid.config_schema) if solid.config_schema is not None else None
        ),
        "pool": solid.pool,
        "priority": solid.priority,
        "retry_policy": policy.describe() if policy is not None else None,
        "timeout": solid.timeout,
        "tags": dict(node.tags),
        "required_resources": sorted(solid.required_resources),
        "upstream": list(node.upstream),
    }


def _edges(pipeline: PipelineDefinition) -> list[dict[str, Any]]:
    edges: list[dict[str, Any]] = []
    for node in pipeline.nodes.values():
        for input_name, source in node.inputs.items():
            items = source.sources if isinstance(source, FanIn) else (source,)
            for item in items:
                if isinstance(item, FromOutput | Collect):
                    edges.append(
                        {
                            "from": item.node,
                            "output": item.output,
                            "to": node.name,
                            "input": input_name,
                        }
                    )
        for before in node.after:
            edges.append({"from": before, "output": None, "to": node.name, "input": None})
    return edges


def pipeline_summary(pipeline: PipelineDefinition) -> dict[str, Any]:
    """A pipeline in one line's worth of data: name, description, size, tags, resources."""
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "step_count": len(pipeline.nodes),
        "tags": dict(pipeline.tags),
        "resources": sorted(pipeline.resource_defs),
    }


def describe_pipeline(pipeline: PipelineDefinition) -> dict[str, Any]:
    """The whole pipeline: its summary, every node (:func:`describe_node`) and every edge."""
    return {
        **pipeline_summary(pipeline),
        "nodes": [describe_node(node) for node in pipeline.nodes.values()],
        "edges": _edges(pipeline),
    }
