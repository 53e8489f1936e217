"""Config schemas and run config: validate everything up front, report every problem at once.

Solids and resources declare ``config_schema`` the way Dagster users do::

    @solid(config_schema={"greeting": str, "times": Field(int, default=1)})

and a run's config (a dict, or YAML files merged in order) has Dagster's shape::

    solids: {hey: {config: {greeting: Hello}, inputs: {name: Kan}}}
    resources: {http: {config: {timeout: 5}}}
    execution: {max_concurrency: 20, concurrency_limits: {http: 10}}
    execution: {dask: {cluster: {existing: {address: "tcp://scheduler:8786"}}}}

A ``@graph``'s solids nest under its name (``solids: {g: {solids: {...}}}``), or the
graph takes a config of its own that its ``config_fn`` maps onto them
(``solids: {g: {config: ...}}``); inputs a graph's caller left unwired are given
as ``solids: {g: {inputs: ...}}``.  A ``configured()`` copy's config goes through
its mapping (or is fixed in code) and is checked against the original's schema.

:func:`resolve_run_config` checks a run's config against a pipeline before
anything runs and raises one :class:`~asyncdag._errors.ConfigError` listing every
problem with its dotted path; :func:`run_config_json_schema` and
:func:`default_run_config` give the CLI and the web UI a schema and a scaffold.
"""

from __future__ import annotations

from ._resolve import resolve_run_config
from ._resolved import ExecutionConfig, ResolvedRunConfig, SolidRunConfig
from ._scaffold import default_run_config, run_config_json_schema
from ._schemas import config_json_schema, definition_config, validate_config
from ._types import ConfigType, Field, FieldSpec, field_spec, normalize_schema
from ._yaml import load_run_config

__all__ = [
    "ConfigType",
    "ExecutionConfig",
    "Field",
    "FieldSpec",
    "ResolvedRunConfig",
    "SolidRunConfig",
    "config_json_schema",
    "default_run_config",
    "definition_config",
    "field_spec",
    "load_run_config",
    "normalize_schema",
    "resolve_run_config",
    "run_config_json_schema",
    "validate_config",
]

from asyncdag._public import publish as _publish

_publish(__name__, globals(), __all__)
