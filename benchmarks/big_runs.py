"""Big runs as a user meets them: a 100,000-step pipeline from Python, through the CLI, shown.

    python benchmarks/big_runs.py                 # 100,000 steps, 1 round (~1-2 min on 2 cores)
    python benchmarks/big_runs.py --steps 20000 --rounds 3
    python benchmarks/big_runs.py --json /tmp/big.json

Three commands, each a fresh process with its output redirected to a file (as
a script or CI job would), alternated round by round:

* ``python wide.py``: ``execute_pipeline`` of N no-op async steps and one
  fan-in, with the library's default console, no storage: the baseline.
* ``asyncdag pipeline execute -f wide.py``: the same run through the CLI,
  recorded in a fresh SQLite history (every event on disk before it exits).
* ``asyncdag run show RUN_ID``: that run read back (summary, failures, the
  first events).

The goal (issue #20) is each CLI figure within 2x the Python run.  Wall time
and CPU time (user + system of the child) are both reported, medians over the
rounds: on a shared machine CPU time is the steadier of the two.  Exit status 1
when a command fails, never for a missed goal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL = 2.0

PIPELINE = textwrap.dedent(
    """
    import os
    from asyncdag import execute_pipeline, pipeline, solid

    N = int(os.environ["BIG_RUN_STEPS"])

    @solid
    async def one():
        return 1

    @solid
    def total(values):
        return sum(values)

    @pipeline(name=f"wide_{N}")
    def wide():
        total([one.alias(f"s{i}")() for i in range(N)])

    if __name__ == "__main__":
        assert execute_pipeline(wide).output_for_solid("total") == N
    """
)


def _asyncdag_script() -> str:
    beside = Path(sys.executable).parent / "asyncdag"
    return str(beside) if beside.exists() else "asyncdag"


def _timed(argv: list[str], env: dict[str, str], out: Path) -> tuple[float, float]:
    """Run ``argv`` with its output in ``out``; return (wall, cpu) seconds, raising on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with out.open("w") as stream:
        done = subprocess.run(argv, env=env, stdout=stream, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        tail = out.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return wall, cpu


def measure(steps: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[tuple[float, float]]] = {"python": [], "execute": [], "show": []}
    with tempfile.TemporaryDirectory(prefix="asyncdag-big-") as tmp:
        work = Path(tmp)
        script = work / "wide.py"
        script.write_text(PIPELINE)
        env = {**os.environ, "BIG_RUN_STEPS": str(steps), "PYTHONPATH": str(ROOT / "src")}
        env.pop("ASYNCDAG_LOG_LEVEL", None)
        cli = _asyncdag_script()
        for n in range(rounds):
            home = work / f"home{n}"
            env["ASYNCDAG_HOME"] = str(home)
            samples["python"].append(_timed([sys.executable, str(script)], env, work / "py.out"))
            samples["execute"].append(
                _timed([cli, "pipeline", "execute", "-f", str(script)], env, work / "cli.out")
            )
            listed = subprocess.run(
                [cli, "run", "list", "--json", "--limit", "1"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            run_id = json.loads(listed.stdout)[0]["run_id"]
            samples["show"].append(_timed([cli, "run", "show", run_id], env, work / "show.out"))
            print(f"round {n + 1}/{rounds}: " + _line(samples, n), flush=True)
    return _summary(steps, samples)


def _line(samples: dict[str, list[tuple[float, float]]], n: int) -> str:
    return ", ".join(
        f"{name} {wall:.1f} s wall / {cpu:.1f} s cpu"
        for name, (wall, cpu) in ((k, v[n]) for k, v in samples.items())
    )


def _summary(steps: int, samples: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    medians = {
        name: {
            "wall_s": statistics.median(w for w, _ in values),
            "cpu_s": statistics.median(c for _, c in values),
        }
        for name, values in samples.items()
    }
    base = medians["python"]
    ratios = {
        name: {
            "wall": medians[name]["wall_s"] / base["wall_s"],
            "cpu": medians[name]["cpu_s"] / base["cpu_s"],
        }
        for name in ("execute", "show")
    }
    return {
        "steps": steps,
        "rounds": len(samples["python"]),
        "medians": medians,
        "ratios_vs_python": ratios,
        "goal": f"each <= {GOAL}x the Python run",
        "goal_met": all(r["wall"] <= GOAL and r["cpu"] <= GOAL for r in ratios.values()),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps in the pipeline")
    parser.add_argument("--rounds", type=int, default=1, help="alternated rounds (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    try:
        result = measure(args.steps, args.rounds)
    except RuntimeError as exc:
        print(f"big_runs: {exc}", file=sys.stderr)
        return 1
    base = result["medians"]["python"]
    print(f"\n{args.steps:,} steps, median of {result['rounds']} round(s):")
    print(
        f"  python wide.py                    {base['wall_s']:6.1f} s wall  {base['cpu_s']:6.1f} s cpu"
    )
    for name, label in (("execute", "asyncdag pipeline execute"), ("show", "asyncdag run show")):
        m, r = result["medians"][name], result["ratios_vs_python"][name]
        print(
            f"  {label:<33} {m['wall_s']:6.1f} s wall  {m['cpu_s']:6.1f} s cpu"
            f"   ({r['wall']:.2f}x / {r['cpu']:.2f}x the Python run; goal <= {GOAL}x)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
