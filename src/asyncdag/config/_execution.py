"""The ``execution`` section: concurrency bounds, pool limits, and where steps run (Dask)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asyncdag._errors import ConfigErrorItem

from ._resolved import ExecutionConfig
from ._schemas import _validate_root
from ._sections import _DASK_CLUSTERS, _EXECUTION_SPEC, _check_keys


def _resolve_execution(section: Any, errors: list[ConfigErrorItem]) -> ExecutionConfig:
    if section is None:  # the commonest case, and all defaults: no schema walk per run
        return ExecutionConfig()
    before = len(errors)
    dask = None
    if isinstance(section, Mapping) and "dask" in section:
        dask = _resolve_dask(section["dask"], errors)
        section = {k: v for k, v in section.items() if k != "dask"}
    value = _validate_root(_EXECUTION_SPEC, section, "execution", errors, owner="execution")
    if len(errors) > before:
        return ExecutionConfig()
    limit = value["max_concurrency"]
    if limit is not None and limit < 1:
        errors.append(
            ConfigErrorItem("execution.max_concurrency", f"must be at least 1, got {limit}")
        )
    for key, bound in value["concurrency_limits"].items():
        if bound < 1:
            errors.append(
                ConfigErrorItem(
                    f"execution.concurrency_limits.{key}", f"must be at least 1, got {bound}"
                )
            )
    return ExecutionConfig(
        max_concurrency=limit, concurrency_limits=value["concurrency_limits"], dask=dask
    )


def _resolve_dask(section: Any, errors: list[ConfigErrorItem]) -> dict[str, Any]:
    """``execution.dask``: ``{cluster: {existing: {address}}}`` or ``{cluster: {local: {...}}}``
    (empty or null: a local cluster sized to the machine)."""
    path = "execution.dask"
    dask = {} if section is None else section
    if not isinstance(dask, Mapping):
        errors.append(ConfigErrorItem(path, f"expected a mapping, got {type(dask).__name__}"))
        return {}
    _check_keys(dask, ("cluster",), path, errors)
    cluster = dask.get("cluster") or {"local": None}
    if not isinstance(cluster, Mapping):
        errors.append(
            ConfigErrorItem(f"{path}.cluster", f"expected a mapping, got {type(cluster).__name__}")
        )
        return {}
    _check_keys(cluster, tuple(_DASK_CLUSTERS), f"{path}.cluster", errors, noun="cluster kind")
    kinds = [kind for kind in _DASK_CLUSTERS if kind in cluster]
    if len(kinds) != 1:
        if not errors or not errors[-1].path.startswith(f"{path}.cluster"):
            errors.append(
                ConfigErrorItem(
                    f"{path}.cluster",
                    "give exactly one of 'existing' ({address: tcp://host:8786}, a running "
                    "scheduler) or 'local' ({n_workers: 2, ...}, a LocalCluster for the run), "
                    f"got {kinds or 'neither'}",
                )
            )
        return {}
    (kind,) = kinds
    where = f"{path}.cluster.{kind}"
    options = _validate_root(
        _DASK_CLUSTERS[kind], cluster[kind], where, errors, owner=f"a Dask {kind} cluster"
    )
    for key in ("n_workers", "threads_per_worker"):
        if kind == "local" and options and options[key] is not None and options[key] < 1:
            errors.append(
                ConfigErrorItem(f"{where}.{key}", f"must be at least 1, got {options[key]}")
            )
    return {"cluster": {kind: options or {}}}
