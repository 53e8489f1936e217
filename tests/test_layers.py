"""The layering of ``src/asyncdag``, checked by reading every module's imports (an ``ast`` walk).

Each layer may import only the layers listed for it; data flows one way,
definitions → plan → engine → api → shells.  Imports under ``if TYPE_CHECKING:``
create no run-time dependency and are allowed for annotations.  The table is the
design: changing it is a decision made in review, not a way to make this pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "asyncdag"

_BASE = {"_errors", "_version", "_public"}
_DEFINITIONS = _BASE | {"_events", "_definitions"}
_CONFIG = _DEFINITIONS | {"config"}
_PLAN = _CONFIG | {"_plan"}
_ENGINE = _PLAN | {"_engine"}
# Launchers beside the engine (Dask): they use the engine's contract and helpers.
_DASK = _ENGINE | {"dask"}
_STORAGE = _BASE | {"_events", "storage"}
_OUTPUTS = _BASE | {"outputs"}
_API = _DASK | _STORAGE | _OUTPUTS | {"_api"}
_AUTOMATION = _API | {"automation"}
_BELOW_SHELLS = _AUTOMATION | {"telemetry", "bench", "_workspace", "__init__"}

#: layer -> the layers its modules may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "_errors": {"_errors"},
    "_version": {"_version"},
    "_public": {"_public"},
    "_events": _BASE | {"_events"},
    "_definitions": _DEFINITIONS,
    "config": _CONFIG,
    "_plan": _PLAN,
    "storage": _STORAGE,
    "outputs": _OUTPUTS,
    "_engine": _ENGINE,
    "dask": _DASK,
    "_api": _API,
    "automation": _AUTOMATION,
    "telemetry": _BASE | {"telemetry"},
    "bench": _BASE | {"_events", "_plan", "bench"},
    "_workspace": _AUTOMATION | {"_workspace", "telemetry", "bench"},
    "__init__": _AUTOMATION | {"__init__"},
    "cli": _BELOW_SHELLS | {"cli"},
    "ui": _BELOW_SHELLS | {"ui"},
}

#: Third-party packages a layer must never import (the light core stays light).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "_events": {"anyio", "trio", "opentelemetry"},
    "_definitions": {"anyio", "trio", "opentelemetry"},
    "_plan": {"anyio", "trio", "opentelemetry"},
    "_engine": {"asyncio", "trio", "opentelemetry.sdk", "sqlite3"},
    # Dask's client is asyncio's; trio runs it from a thread, never imported here.
    "dask": {"trio", "opentelemetry.sdk", "sqlite3"},
    "_api": {"asyncio", "trio", "opentelemetry.sdk"},
    "automation": {"asyncio", "trio", "opentelemetry.sdk", "starlette", "uvicorn"},
    "outputs": {"asyncio", "trio", "anyio", "opentelemetry", "sqlite3", "starlette"},
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("asyncdag", *parts)).removesuffix(".__init__")
        yield name, path


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of statements inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def imports_of(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, outside TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if (
                target == "asyncdag" or node.module is None
            ):  # ``from x import y``: y may be a module
                for alias in node.names:
                    yield node.lineno, _submodule_or_package(target, alias.name)
            else:
                yield node.lineno, target


def _submodule_or_package(package: str, name: str) -> str:
    """``package.name`` when that is a module of ours, else ``package`` (a name it exports)."""
    folder = PACKAGE.joinpath(*package.split(".")[1:])
    if (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists():
        return f"{package}.{name}"
    return package


def violations(source: dict[str, Path] | None = None) -> list[str]:
    found = []
    modules = dict(_modules()) if source is None else source
    for module, path in modules.items():
        layer = _layer(module)
        assert layer in ALLOWED, f"{module}: layer {layer!r} is not in the table; add it"
        for line, target in imports_of(module, path):
            where = f"{module}:{line}"
            if target == "asyncdag" or target.startswith("asyncdag."):
                target_layer = _layer(target)
                if target_layer not in ALLOWED[layer]:
                    found.append(f"{where}: {layer} imports {target} ({target_layer})")
            else:
                for banned in FORBIDDEN_THIRD_PARTY.get(layer, ()):
                    if target == banned or target.startswith(banned + "."):
                        found.append(f"{where}: {layer} imports {target}")
    return found


def test_every_module_imports_only_the_layers_below_it() -> None:
    assert violations() == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    # The engine reaching up into storage is exactly what the table forbids.
    engine_module = tmp_path / "_sneaky.py"
    engine_module.write_text("from ..storage import SqliteStorage\n")
    found = violations({"asyncdag._engine._sneaky": engine_module})
    assert len(found) == 1
    assert "_engine imports asyncdag.storage" in found[0]


def test_a_type_checking_import_is_not_a_dependency(tmp_path: Path) -> None:
    module = tmp_path / "_typed.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..storage import X\n"
    )
    assert violations({"asyncdag._engine._typed": module}) == []


def test_the_output_store_stays_beside_the_engine_and_the_shells() -> None:
    # The engine reaches the output store only through the API layer's adapter.
    assert "outputs" not in ALLOWED["_engine"]
    assert ALLOWED["outputs"].isdisjoint({"_engine", "_api", "cli", "ui", "storage"})


def test_the_dask_launcher_never_reaches_storage_or_the_shells() -> None:
    assert not {"storage", "_api", "cli", "ui"} & ALLOWED["dask"]


@pytest.mark.parametrize("shell,other", [("cli", "ui"), ("ui", "cli")])
def test_the_cli_and_the_ui_never_import_each_other(shell: str, other: str) -> None:
    assert other not in ALLOWED[shell]


def _readme_layout() -> str:
    readme = (PACKAGE.parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Layout\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def test_the_readme_layout_names_every_module_group_in_the_tree() -> None:
    layout = _readme_layout()
    groups = sorted(
        f"`{path.name}/`" if path.is_dir() else f"`{path.name}`"
        for path in PACKAGE.iterdir()
        if not path.name.startswith("__")
        and (path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()))
    )
    assert groups, "no modules found"
    assert [group for group in groups if group not in layout] == []


def test_the_readme_layout_links_nothing_outside_the_repository() -> None:
    assert "../" not in _readme_layout()
