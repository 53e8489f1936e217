"""``asyncdag pipeline list`` and ``asyncdag pipeline show``: what a file defines, as text."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from asyncdag._workspace import add_source_arguments, loaded_pipelines, selected_pipeline

from ._common import make_console

if TYPE_CHECKING:
    from asyncdag._definitions import PipelineDefinition

__all__ = ["register"]


def register(subparsers: Any) -> None:
    listing = subparsers.add_parser(
        "list", help="list the pipelines a file or module defines", description=_list.__doc__
    )
    add_source_arguments(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)

    show = subparsers.add_parser(
        "show",
        help="show a pipeline's graph, policies and config schema",
        description=_show.__doc__,
    )
    add_source_arguments(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=_show)


def _list(args: argparse.Namespace) -> int:
    """List the pipelines defined by -f FILE / -m MODULE, with their solid counts."""
    pipelines = loaded_pipelines(args)
    if args.json:
        rows = [
            {"name": p.name, "solids": len(p.nodes), "description": p.description}
            for p in pipelines.values()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=None, box=None, pad_edge=False)
    table.add_column("pipeline", style="bold")
    table.add_column("solids", justify="right")
    table.add_column("description")
    for p in pipelines.values():
        table.add_row(p.name, str(len(p.nodes)), _first_line(p.description))
    make_console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    """Show one pipeline: its steps with inputs, edges, pools, retry policies, timeouts,
    resources, and the JSON Schema of its run config."""
    pipeline = selected_pipeline(args)
    description = describe(pipeline)
    if args.json:
        print(json.dumps(description, indent=2, default=str))
        return 0
    console = make_console()
    console.print(_render(description), markup=False, highlight=False)
    return 0


def describe(pipeline: PipelineDefinition) -> dict[str, Any]:
    """The pipeline as JSON-ready data: what ``show`` prints, and ``show --json`` emits."""
    from asyncdag._workspace import describe_node
    from asyncdag.config import run_config_json_schema

    steps = [_step(describe_node(node)) for node in pipeline.nodes.values()]
    edges = [
        {"from": upstream, "to": node.name}
        for node in pipeline.nodes.values()
        for upstream in node.upstream
    ]
    resources = {
        key: {
            "description": getattr(definition, "description", None),
            "has_config": getattr(definition, "config_schema", None) is not None,
        }
        for key, definition in pipeline.resource_defs.items()
    }
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "tags": dict(pipeline.tags),
        "steps": steps,
        "edges": edges,
        "resources": resources,
        "config_schema": run_config_json_schema(pipeline),
    }


def _step(node: dict[str, Any]) -> dict[str, Any]:
    """The shared node description, in the shape ``show --json`` has always had."""
    from asyncdag._workspace import source_text

    mapped = node["mapped_over"]
    return {
        "name": node["name"],
        "solid": node["solid"],
        "kind": "async" if node["is_async"] else "sync",
        "mapped_over": f"{mapped['node']}.{mapped['output']}" if mapped else None,
        "after": node["after"],
        "description": node["description"],
        "inputs": {
            i["name"]: {"type": i["type"], "from": source_text(i["source"])} for i in node["inputs"]
        },
        "upstream": node["upstream"],
        "pool": node["pool"],
        "priority": node["priority"],
        "timeout": node["timeout"],
        "retry_policy": node["retry_policy"],
        "required_resources": node["required_resources"],
        "has_config": node["config_schema"] is not None,
        "tags": node["tags"],
    }


def _render(d: dict[str, Any]) -> str:
    lines = [f"pipeline {d['name']}"]
    if d["description"]:
        lines.append(f"  {_first_line(d['description'])}")
    if d["tags"]:
        lines.append(f"  tags: {_kv(d['tags'])}")
    lines.append("")
    lines.append(f"steps ({len(d['steps'])}):")
    for step in d["steps"]:
        name = (
            step["name"] if step["name"] == step["solid"] else f"{step['name']} ({step['solid']})"
        )
        lines.append(f"  {name}  [{step['kind']}]")
        for input_name, info in step["inputs"].items():
            lines.append(f"    input {input_name}: {info['type']} <- {info['from']}")
        details = []
        if step["mapped_over"]:
            details.append(f"mapped over each item of {step['mapped_over']}")
        if step["after"]:
            details.append(f"after={','.join(step['after'])}")
        if step["pool"]:
            details.append(f"pool={step['pool']}")
        if step["priority"]:
            details.append(f"priority={step['priority']}")
        if step["timeout"] is not None:
            details.append(f"timeout={step['timeout']:g}s")
        if step["required_resources"]:
            details.append(f"resources={','.join(step['required_resources'])}")
        if step["has_config"]:
            details.append("config")
        if details:
            lines.append(f"    {' '.join(details)}")
        policy = step["retry_policy"]
        if policy:
            parts = [f"max_retries={policy['max_retries']}"]
            for key in ("delay", "backoff", "jitter"):
                if policy[key] is not None:
                    parts.append(f"{key}={policy[key]}")
            parts.append(f"retry_on={','.join(policy['retry_on'])}")
            lines.append(f"    retry: {' '.join(parts)}")
    lines.append("")
    lines.append(f"edges ({len(d['edges'])}):")
    lines.extend(f"  {edge['from']} -> {edge['to']}" for edge in d["edges"])
    if not d["edges"]:
        lines.append("  (none)")
    pools = sorted({s["pool"] for s in d["steps"] if s["pool"]})
    if pools:
        lines.append("")
        lines.append("pools: " + ", ".join(pools))
    if d["resources"]:
        lines.append("")
        lines.append("resources:")
        for key, info in d["resources"].items():
            extra = " (configurable)" if info["has_config"] else ""
            lines.append(
                f"  {key}{extra}" + (f": {info['description']}" if info["description"] else "")
            )
    lines.append("")
    lines.append("run config schema (JSON Schema):")
    lines.append(json.dumps(d["config_schema"], indent=2))
    return "\n".join(lines)


def _kv(mapping: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in mapping.items())


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
