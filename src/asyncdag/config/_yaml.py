"""Run config from YAML files, merged in order."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from asyncdag._errors import ConfigError, ConfigErrorItem

from ._data import YamlProblem, read_yaml
from ._sections import _deep_merge


def _read_yaml_source(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(name for messages, YAML text).

    A str is a file path when it is one line naming an existing file or directory
    (refused when read), or one line ending in .yaml/.yml/.json that cannot be
    YAML text ({, [ or spaces).
    """
    looks_like_path = "\n" not in source if isinstance(source, str) else True
    if isinstance(source, str) and looks_like_path:
        looks_like_path = (
            os.path.isfile(source)
            or os.path.isdir(source)
            or (source.endswith((".yaml", ".yml", ".json")) and not any(c in source for c in "{[ "))
        )
    if looks_like_path:
        name = os.fspath(source)
        try:
            with open(name, encoding="utf-8") as f:
                return name, f.read()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                [
                    ConfigErrorItem(
                        "",
                        f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "save it as UTF-8",
                    )
                ],
                subject=f"run config file {name}",
            ) from exc
        except OSError as exc:
            raise ConfigError(
                [ConfigErrorItem("", f"cannot read {name}: {exc.strerror or exc}")],
                subject=f"run config file {name}",
            ) from exc
    return "<yaml string>", os.fspath(source)


def load_run_config(*sources: str | os.PathLike[str]) -> dict[str, Any]:
    """Load run config from YAML files (or YAML text), merged in order: later ones win key by key.

    Lets a base config be shared and an environment-specific file override parts
    of it (``-c base.yaml -c prod.yaml``).  Invalid YAML raises ConfigError naming
    the file and line, and so does a document that would cost more than its size
    to read (aliases repeating more than 10,000 values, nesting past 100 levels).
    Timestamps such as ``2024-01-01`` stay the text written.
    """
    merged: dict[str, Any] = {}
    for source in sources:
        name, text = _read_yaml_source(source)
        subject = f"run config file {name}"
        try:
            data, _ = read_yaml(text)
        except YamlProblem as exc:
            raise ConfigError([ConfigErrorItem("", f"{name}: {exc}")], subject=subject) from None
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ConfigError(
                [
                    ConfigErrorItem(
                        "", f"{name}: the top level must be a mapping, got {type(data).__name__}"
                    )
                ],
                subject=subject,
            )
        merged = _deep_merge(merged, data)
    return merged
