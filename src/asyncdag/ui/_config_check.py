"""Run config sent to the API: YAML text or a JSON object, checked with every error's path and line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from asyncdag._definitions import PipelineDefinition
from asyncdag._errors import AsyncdagError, ConfigError

from ._http import ApiError

__all__ = ["check_config", "parse_config", "scaffold_yaml"]

_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def _line_of(root: Any, path: str) -> int | None:
    """The 1-based YAML line of the deepest node along ``path`` (``solids.hey.config[2]``)."""
    import yaml

    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in _PATH_PART.findall(path):
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            key = next(k for k, v in node.value if v is match)
            node, line = match, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = int(part[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_config(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run config a request carries, as ``yaml`` text or a ``config`` object, or its errors."""
    if "config" in body and body["config"] is not None:
        config = body["config"]
        if not isinstance(config, dict):
            raise ApiError(400, "`config` must be a JSON object (or send YAML text as `yaml`)")
        return config, []
    text = body.get("yaml", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ApiError(400, "`yaml` must be a string of YAML text")
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        line = mark.line + 1 if mark else None
        return None, [{"path": "", "message": f"{where}invalid YAML: {problem}", "line": line}]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return None, [
            {
                "path": "",
                "message": f"the run config must be a mapping, got {type(data).__name__}",
                "line": 1,
            }
        ]
    return data, []


def check_config(
    pipeline: PipelineDefinition, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Parse and resolve a request's run config: (config, []) or (None, every error with its path)."""
    from asyncdag.config import resolve_run_config

    config, errors = parse_config(body)
    if config is None:
        return None, errors
    try:
        resolve_run_config(pipeline, config)
    except ConfigError as exc:
        root = None
        text = body.get("yaml")
        if isinstance(text, str) and "config" not in body:
            import yaml

            try:
                root = yaml.compose(text)
            except yaml.YAMLError:
                root = None
        return None, [
            {"path": e.path, "message": e.message, "line": _line_of(root, e.path)}
            for e in exc.errors
        ]
    except AsyncdagError as exc:
        return None, [{"path": "", "message": str(exc), "line": None}]
    return config, []


def scaffold_yaml(config: Mapping[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False))
