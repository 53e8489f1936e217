"""The README's promises: the hello world runs as a script and through the CLI, and the benchmarks run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "asyncdag"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ASYNCDAG_HOME"] = str(tmp_path / "home")
    env.pop("ASYNCDAG_LOG_LEVEL", None)
    return env


def test_hello_world_script_prints_events_and_the_greeting(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hello_world.py")],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    greeting = [line for line in lines if line.endswith("Hey, Kan!")]
    assert len(greeting) == 1
    # Dagster-style line: time - asyncdag - level - pipeline - run id - step - message
    parts = greeting[0].split(" - ")
    assert parts[1:4] == ["asyncdag", "INFO", "hey_pipeline"]
    assert parts[5] == "hey"
    kinds = [
        k
        for line in lines
        for k in ("RUN_START", "STEP_START", "STEP_SUCCESS", "RUN_SUCCESS")
        if f" - {k} - " in line
    ]
    assert kinds[0] == "RUN_START" and kinds[-1] == "RUN_SUCCESS"
    assert kinds.count("STEP_SUCCESS") == 2


@pytest.mark.slow
def test_hello_world_through_the_cli_is_kept_in_the_run_history(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run = subprocess.run(
        [str(CLI), "pipeline", "execute", "-f", str(ROOT / "examples" / "hello_world.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "Hey, Kan!" in run.stdout + run.stderr
    listed = subprocess.run(
        [str(CLI), "run", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["pipeline_name"], r["status"]) for r in runs] == [("hey_pipeline", "SUCCESS")]


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_runs_through_the_cli_as_it_is(tmp_path: Path, example: str) -> None:
    # What the README promises: no config file, no server started by hand.
    env = _env(tmp_path)
    run = subprocess.run(
        [str(CLI), "pipeline", "execute", "-f", str(ROOT / "examples" / example), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    listed = subprocess.run(
        [str(CLI), "run", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    (record,) = json.loads(listed.stdout)
    assert record["status"] == "SUCCESS"


@pytest.mark.slow
def test_benchmark_suite_runs_every_workload_at_smoke_size() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("doc", ["README.md", "benchmarks/README.md"])
def test_commands_in_the_docs_use_the_repos_own_venv(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert "/work/" not in text  # no path of one particular machine
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if "benchmarks/run.py" in line
    ]
    assert commands
    for line in commands:
        words = [w for w in line.split() if "=" not in w]  # VAR=value prefixes aside
        assert words[0] in (".venv/bin/python", ".peers-venv/bin/python"), line
