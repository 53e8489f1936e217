"""The run config's sections: which keys each takes, and merging and copying them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from asyncdag._errors import ConfigErrorItem

from ._types import (
    Field,
    field_spec,
    unknown_key_item,
)

_TOP_KEYS = ("solids", "resources", "execution")
_SOLID_KEYS = ("config", "inputs")
_RESOURCE_KEYS = ("config",)
_EXECUTION_SPEC = field_spec(
    {
        "max_concurrency": Field(
            int | None,
            default=None,
            description="Most steps running at once in this run; null for no bound.",
        ),
        "concurrency_limits": Field(
            dict[str, int],
            default={},
            description="Most steps running at once per concurrency key (e.g. a resource key).",
        ),
    },
    where="execution config",
)
# execution.dask.cluster takes exactly one of these, in Dagster's shape.
_DASK_CLUSTERS = {
    "existing": field_spec(
        {"address": Field(str, description="The scheduler's address, e.g. tcp://scheduler:8786.")},
        where="execution.dask.cluster.existing",
    ),
    "local": field_spec(
        {
            "n_workers": Field(int | None, default=None, description="Worker processes."),
            "threads_per_worker": Field(int | None, default=None, description="Threads each."),
            "processes": Field(bool, default=True, description="False: workers are threads."),
            "memory_limit": Field(str | None, default=None, description="Per worker, e.g. 4GiB."),
            "resources": Field(
                dict[str, float],
                default={},
                description="Abstract resources each worker offers, e.g. {GPU: 1}.",
            ),
        },
        where="execution.dask.cluster.local",
    ),
}


def _copy(value: Any) -> Any:
    """Copy config data; plain dicts, lists and scalars fast, anything else by deepcopy."""
    if isinstance(value, str | int | float | bool | None):
        return value
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return copy.deepcopy(value)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay ``override`` on ``base`` key by key; non-dict values (lists too) replace."""
    out = {k: _copy(v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _copy(value)
    return out


def _section(
    parent: Mapping[str, Any], key: str, path: str, errors: list[ConfigErrorItem]
) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(value).__name__}"))
        return {}
    return value


def _check_keys(
    given: Mapping[str, Any],
    valid: Mapping[str, Any] | tuple[str, ...],
    path: str,
    errors: list[ConfigErrorItem],
    *,
    noun: str = "key",
) -> None:
    for key in given:
        if key not in valid:
            errors.append(unknown_key_item(path, key, list(valid), noun=noun))
