"""Run config sent to the API: YAML text or a JSON object, checked with every error's path and line.

YAML is read by :func:`asyncdag.config._data.read_yaml`, the reader the CLI's
``-c`` uses, so a hostile document ("billion laughs", thousands of levels deep,
a 5,000-digit integer) is one error with its line here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from asyncdag._definitions import PipelineDefinition
from asyncdag._errors import AsyncdagError, ConfigError
from asyncdag.config._data import YamlProblem, read_yaml

from ._http import ApiError

__all__ = ["check_config", "scaffold_yaml"]

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


def _parse_config(
    body: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], Any]:
    """The run config a request carries, as ``yaml`` text or a ``config`` object, or its errors.

    Also returns the YAML's root node (None for JSON), to find the line of an error's path.
    """
    if "config" in body and body["config"] is not None:
        config = body["config"]
        if not isinstance(config, dict):
            raise ApiError(400, "`config` must be a JSON object (or send YAML text as `yaml`)")
        return config, [], None
    text = body.get("yaml", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ApiError(400, "`yaml` must be a string of YAML text")
    try:
        data, root = read_yaml(text)
    except YamlProblem as exc:
        return None, [{"path": "", "message": str(exc), "line": exc.line}], None
    if data is None:
        return {}, [], root
    if not isinstance(data, dict):
        return (
            None,
            [
                {
                    "path": "",
                    "message": f"the run config must be a mapping, got {type(data).__name__}",
                    "line": 1,
                }
            ],
            root,
        )
    return data, [], root


def check_config(
    pipeline: PipelineDefinition, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Parse and resolve a request's run config: (config, []) or (None, every error with its path).

    Blocking (YAML parsing, a walk of the config): the endpoints run it in a worker
    thread, so a large or hostile config never stalls the event loop.
    """
    from asyncdag.config import resolve_run_config

    config, errors, root = _parse_config(body)
    if config is None:
        return None, errors
    try:
        resolve_run_config(pipeline, config)
    except ConfigError as exc:
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
