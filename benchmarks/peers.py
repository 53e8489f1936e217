"""PEERS: Dagster and Prefect on W2 and W3, beside asyncdag and raw anyio, when they are installed.

They are never dependencies.  Each (peer, workload) pair runs in a process of
its own, started with a timeout and in its own session so that a peer that
hangs (or a server it started) is killed with it and cannot stall the suite.
Inside that process the peer, asyncdag and the suite's raw anyio programs (the
same ``workloads`` cases, hence the same ``raw_anyio`` executors) are
alternated in one asyncio event loop and reported as medians per step and as
ratios against the faster raw baseline.

How each peer is driven, chosen as what its documentation shows:

* Dagster: sync ``@op`` no-ops in a ``@job``, ``job.execute_in_process()``
  (the in-process executor, an ephemeral instance), console logger at WARNING
  so printing is not what is measured.  ``execute_in_process`` is blocking, so
  it runs in a worker thread (``anyio.to_thread``); the hop costs tens of
  microseconds a run, against seconds.  Async ops are not used: Dagster runs
  each one to completion on its own, so they only add an event loop per step.
* Prefect 3: an async ``@flow`` awaiting async ``@task`` no-ops, the fan-out
  through ``asyncio.gather``: tasks run in the benchmark's own event loop,
  like asyncdag's steps.  The ephemeral API server (``PREFECT_API_URL``
  unset) is a uvicorn subprocess Prefect starts itself; it shares the
  machine's cores.  ``.submit()`` on the default ThreadPoolTaskRunner was
  measured too and was slower here (about 90 ms a step on the chain, 40 ms on
  the wide shape at 100 steps), so it is not the one reported.

Every run, of every program, starts with the peer quiet (:class:`Settler`): the
peer's own background threads and every process it started (Prefect's server)
using under 5% of a core for two half-second windows in a row, and Prefect's
SQLite database free to take a write lock.  Prefect's client returns from a
flow long before its server has recorded the task runs (the client streams
state events; the server writes them to SQLite behind it, tens of ms of CPU a
task); without the wait, the next run pays for that backlog, finds the
database locked, and sleeps through the client's 2/4/8/16/32 s retries, and
the figure measures the backlog rather than a step.  The server CPU a run
caused (from its start until the server went quiet again, from
``/proc/<pid>/stat``) is reported per task as a column of its own.  Per-step
figures divide by the steps a run actually executed, counted inside the
peers' task bodies (Prefect's chain has a ``start`` task, so both peers run
the same ``n`` steps as asyncdag).

Every process first runs all three programs at ``PROBE_STEPS`` (the warm-up:
imports, Prefect's server start, first-run code paths).  With PEERS alone the
measured size is 1,000 steps.  Inside the whole suite, which must stay under
10 minutes, peers cost milliseconds a step, so the probe's cost per step (an
overestimate: it carries the fixed costs) picks the size that makes one peer
run last about ``run_target_s``, at least 100 steps.  Figures are per step;
the JSON records each size.

Usage: ``python peers.py '<json request>'`` (run.py does this); the last stdout
line is the JSON answer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from run import Suite

__all__ = ["PEERS", "PeerSettings", "Settler", "run_peers", "settings_for"]

PEERS = ("dagster", "prefect")
WORKLOADS = ("W2", "W3")
PROBE_STEPS = 20
# Environment variable naming another interpreter (a venv with the peers and
# asyncdag installed) so the suite's own venv never needs them.
PYTHON_ENV = "ASYNCDAG_BENCH_PEERS_PYTHON"


@attrs.frozen
class PeerSettings:
    """Sizes, repeats and limits for the peer runs of one kind of suite run."""

    max_steps: int
    run_target_s: float | None  # a measured peer run should take about this long; None: max_steps
    repeats: int
    budget_s: float  # repeats stop past it once there are min_repeats samples
    min_repeats: int
    timeout_s: float  # per (peer, workload) process


_SETTINGS = {
    # PEERS on its own: always 1,000 steps (a Prefect chain run then takes over a minute).
    "alone": PeerSettings(
        max_steps=1_000, run_target_s=None, repeats=3, budget_s=60.0, min_repeats=3, timeout_s=3600
    ),
    # Inside the whole suite (which must stay under 10 minutes): ~2 s peer runs.
    "full": PeerSettings(
        max_steps=1_000, run_target_s=2.0, repeats=3, budget_s=8.0, min_repeats=3, timeout_s=120
    ),
    "quick": PeerSettings(
        max_steps=200, run_target_s=1.0, repeats=3, budget_s=4.0, min_repeats=2, timeout_s=120
    ),
    "smoke": PeerSettings(
        max_steps=10, run_target_s=0.0, repeats=1, budget_s=0.0, min_repeats=1, timeout_s=120
    ),
}


def settings_for(profile: str, *, alone: bool) -> PeerSettings:
    """The full profile runs peers at full size only when PEERS is the only workload selected."""
    if profile == "full" and alone:
        return _SETTINGS["alone"]
    return _SETTINGS[profile]


# --- the suite side: one process per (peer, workload) -----------------------------------------


def run_peers(suite: Suite, *, alone: bool) -> None:
    """Compare each importable peer; a one-line note for each one that is not."""
    settings = settings_for(suite.profile.name, alone=alone)
    python = os.environ.get(PYTHON_ENV) or sys.executable
    for peer in PEERS:
        missing = _not_importable(python, peer)
        if missing:
            suite.notes.append(f"PEERS: {peer} skipped: {missing} (never a dependency)")
            continue
        for workload in WORKLOADS:
            with suite.guard(f"PEERS {peer} {workload}"):
                print(f"   {peer} {workload}", file=sys.stderr, flush=True)
                answer = _run_isolated(
                    python,
                    {"peer": peer, "workload": workload, **attrs.asdict(settings)},
                    timeout=settings.timeout_s,
                )
                row = _row(answer)
                suite.peers.append(row)
                if row["settle_timeouts"]:
                    suite.notes.append(
                        f"PEERS {peer} {workload}: the peer was still busy "
                        f"{row['settle_timeouts']} time(s) after the settle timeout; "
                        "those runs may carry a backlog"
                    )
                print(  # progress, so a run cut short still shows what it measured
                    f"   {peer} {workload}: {row['steps']} steps, µs/step raw "
                    f"{row['raw_us_per_step']:.1f}, asyncdag {row['asyncdag_us_per_step']:.1f}, "
                    f"{peer} {row['peer_us_per_step']:.0f} (+ server CPU "
                    f"{row['peer_server_cpu_us_per_step'] or 0:.0f})",
                    file=sys.stderr,
                    flush=True,
                )


def _not_importable(python: str, peer: str) -> str | None:
    if python == sys.executable:
        return None if importlib.util.find_spec(peer) else f"not installed in {python}"
    probe = subprocess.run(
        [
            python,
            "-c",
            f"import importlib.util as u; raise SystemExit(u.find_spec({peer!r}) is None)",
        ],
        capture_output=True,
        timeout=60,
    )
    return None if probe.returncode == 0 else f"not installed in {python}"


def _peer_environment(home: Path) -> dict[str, str]:
    """Every peer's state in a throwaway directory; no telemetry, no log printing, no remote API."""
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Its first start creates the database; on a busy shared machine that takes over the
        # default 20 s.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)  # unset: Prefect starts its ephemeral local server
    env.pop("PREFECT_PROFILE", None)
    return env


def _run_isolated(python: str, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run one request in its own session; on timeout kill the whole session (servers included)."""
    with tempfile.TemporaryDirectory(prefix="asyncdag-peers-") as tmp:
        proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), json.dumps(request)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_peer_environment(Path(tmp)),
            cwd=tmp,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(
                f"{request['peer']} {request['workload']} took over {timeout:.0f} s and was killed; "
                f"lower max_steps or run_target_s in benchmarks/peers.py"
            ) from None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a server the peer left behind
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(
            f"{request['peer']} {request['workload']} exited {proc.returncode}:\n{err[-3000:]}"
        )
    return json.loads(out.strip().splitlines()[-1])


def _row(answer: dict[str, Any]) -> dict[str, Any]:
    from _harness import median

    samples: dict[str, list[float]] = answer["samples_s"]
    steps = answer["steps"]
    peer = answer["peer"]
    raw_medians = {name: median(samples[name]) for name in answer["raw"]}
    best = min(raw_medians, key=raw_medians.__getitem__)
    raw_s = raw_medians[best]
    dag_s = median(samples["asyncdag"])
    peer_s = median(samples[peer])
    # Each peer run divided by the steps it actually executed (counted in its task bodies).
    ran = answer["peer_steps_run"]
    peer_us = median([s / n * 1e6 for s, n in zip(samples[peer], ran, strict=True) if n])
    cpu = answer["cpu_s"]
    peer_cpu_us = median([c / n * 1e6 for c, n in zip(cpu[peer], ran, strict=True) if n])
    server_cpu = answer["server_cpu_s"].get(peer, [])
    server_us = (
        median([c / n * 1e6 for c, n in zip(server_cpu, ran, strict=True) if n])
        if server_cpu
        else None
    )
    return {
        "workload": answer["workload"],
        "peer": peer,
        "peer_version": answer["peer_version"],
        "how": answer["how"],
        "backend": "asyncio",
        "steps": steps,
        "peer_steps_run": ran,
        "probe_peer_us_per_step": answer["probe_peer_us_per_step"],
        "repeats": min(len(v) for v in samples.values()),
        "raw_baseline": best,
        "raw_s": raw_s,
        "asyncdag_s": dag_s,
        "peer_s": peer_s,
        "raw_us_per_step": raw_s / steps * 1e6,
        "asyncdag_us_per_step": dag_s / steps * 1e6,
        "peer_us_per_step": peer_us,
        "peer_server_cpu_us_per_step": server_us,
        "peer_cpu_us_per_step": peer_cpu_us,
        "asyncdag_cpu_us_per_step": median(cpu["asyncdag"]) / steps * 1e6,
        "raw_cpu_us_per_step": median(cpu[best]) / steps * 1e6,
        "cpu_s": cpu,
        "asyncdag_ratio": dag_s / raw_s,
        "peer_ratio": peer_us / (raw_s / steps * 1e6),
        "peer_over_asyncdag": peer_us / (dag_s / steps * 1e6),
        "peer_build_s": answer["peer_build_s"],
        "samples_s": samples,
        "server_cpu_s": answer["server_cpu_s"],
        "settle_s": answer["settle_s"],
        "settle_timeouts": answer["settle_timeouts"],
    }


# --- the peer process: the three programs in one event loop -----------------------------------

# Steps the peer's task bodies ran, so per-step figures divide by what really ran.
_RAN = [0]


def _ran() -> None:
    _RAN[0] += 1


def _dagster(workload: str, n: int) -> tuple[Callable[[], Any], str]:
    """A blocking callable running a Dagster job of ``n`` no-op ops and returning the answer."""
    from dagster import job, op

    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    if workload == "W2":

        @op
        def start() -> int:
            _ran()
            return 0

        @op
        def inc(x: int) -> int:
            _ran()
            return x + 1

        @job(name=f"w2_chain_{n}")
        def built() -> None:
            value = start.alias("s0")()
            for i in range(1, n):
                value = inc.alias(f"s{i}")(value)

        output = f"s{n - 1}"
    else:

        @op
        def one() -> int:
            _ran()
            return 1

        @op
        def total(xs: list[int]) -> int:
            _ran()
            return sum(xs)

        @job(name=f"w3_wide_{n}")
        def built() -> None:
            total.alias("total")([one.alias(f"s{i}")() for i in range(n)])

        output = "total"

    def run() -> Any:
        result = built.execute_in_process(run_config=run_config)
        if not result.success:
            raise RuntimeError(f"dagster job {built.name} did not succeed")
        return result.output_for_node(output)

    return run, "sync @op no-ops, job.execute_in_process() (in-process executor) in a thread"


def _prefect(workload: str, n: int) -> tuple[Callable[[], Any], str]:
    """An async callable running a Prefect flow of ``n`` awaited async no-op tasks."""
    import asyncio  # Prefect's async API is asyncio's; this is the peer's side, not the engine

    from prefect import flow, task

    if workload == "W2":

        @task(name="start")
        async def start() -> int:
            _ran()
            return 0

        @task(name="inc")
        async def inc(x: int) -> int:
            _ran()
            return x + 1

        @flow(name=f"w2_chain_{n}")
        async def built() -> int:
            value = await start()
            for _ in range(1, n):
                value = await inc(value)
            return value

    else:

        @task(name="one")
        async def one() -> int:
            _ran()
            return 1

        @task(name="total")
        async def total(xs: list[int]) -> int:
            _ran()
            return sum(xs)

        @flow(name=f"w3_wide_{n}")
        async def built() -> int:
            values = await asyncio.gather(*(one() for _ in range(n)))
            return await total(list(values))

    return built, "async @flow awaiting async @task no-ops, fan-out by asyncio.gather"


def _program(peer: str, workload: str, n: int, ran: list[int]) -> tuple[Any, str, float]:
    """The peer's zero-argument coroutine function, how it runs, and its build time.

    Each run appends to ``ran`` the number of steps its task bodies executed.
    """
    import anyio.to_thread

    started = time.perf_counter()
    if peer == "dagster":
        run, how = _dagster(workload, n)
        build_s = time.perf_counter() - started

        async def call() -> Any:
            return await anyio.to_thread.run_sync(run)

    elif peer == "prefect":
        call, how = _prefect(workload, n)
        build_s = time.perf_counter() - started
    else:
        raise SystemExit(f"unknown peer {peer!r}")

    async def program() -> Any:
        before = _RAN[0]
        value = await call()
        ran.append(_RAN[0] - before)
        return value

    return program, how, build_s


def _case(workload: str, steps: int) -> Any:
    import workloads

    case = workloads.chain_case(steps) if workload == "W2" else workloads.wide_case(steps)
    if case.dag is None:
        raise RuntimeError(case.dag_error or "asyncdag pipeline missing")
    return case


def _size(settings: PeerSettings, probe_s: float) -> int:
    """Steps that make one peer run last about ``run_target_s``: a multiple of 50, capped.

    ``probe_s`` is the probe run's time plus the wait for the peer to go quiet after it:
    Prefect's server backlog is paid by the suite's clock too.
    """
    if settings.run_target_s is None or settings.max_steps <= PROBE_STEPS:
        return settings.max_steps
    per_step = probe_s / PROBE_STEPS  # the probe's fixed costs make this an overestimate: safe
    steps = int(settings.run_target_s / per_step) // 50 * 50
    return max(min(100, settings.max_steps), min(settings.max_steps, steps))


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Prefect's server and whatever it started), from /proc."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found.extend(children)
            stack.extend(children)
    return found


_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Settler:
    """Waits, around every run, until the peer is quiet; charges each run the server CPU it caused.

    Quiet means: the processes this one started (Prefect's server) and this process's own
    threads (a client still streaming events) each used under ``quiet_share`` of a core
    for ``windows`` windows of ``window_s`` in a row, and the peer's SQLite database (when
    there is one) takes a write lock at once.  A peer still busy after ``timeout_s`` is
    recorded in ``timeouts`` and the run goes ahead, so a stuck server cannot hang the suite.
    """

    def __init__(
        self,
        *,
        database: Path | None,
        window_s: float = 0.5,
        quiet_share: float = 0.05,
        windows: int = 2,
        timeout_s: float = 600.0,
    ) -> None:
        self.database = database
        self.window_s = window_s
        self.quiet_share = quiet_share
        self.windows = windows
        self.timeout_s = timeout_s
        self.server_cpu_s: dict[str, list[float]] = {}
        self.settle_s: dict[str, list[float]] = {}
        self.timeouts = 0
        self._quiet = False
        self._mark = 0.0
        self._server_cpu_before_gone = 0.0
        self._known: dict[int, float] = {}

    def _server_cpu(self) -> float:
        """CPU of every process ever seen below this one (a finished one keeps its last figure)."""
        for pid in _descendants(os.getpid()):
            cpu = _process_cpu_s(pid)
            if cpu >= self._known.get(pid, 0.0):
                self._known[pid] = cpu
        return sum(self._known.values())

    def _database_locked(self) -> bool:
        if self.database is None or not self.database.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(self.database, timeout=0)) as db:
                db.execute("BEGIN IMMEDIATE")
                db.rollback()
        except sqlite3.OperationalError:
            return True
        return False

    async def _settle(self) -> float:
        import anyio

        started = time.perf_counter()
        quiet = 0
        server, own = self._server_cpu(), _own_cpu_s()
        while quiet < self.windows:
            if time.perf_counter() - started > self.timeout_s:
                self.timeouts += 1
                break
            await anyio.sleep(self.window_s)
            server_now, own_now = self._server_cpu(), _own_cpu_s()
            limit = self.quiet_share * self.window_s
            if (
                server_now - server < limit
                and own_now - own < limit
                and not self._database_locked()
            ):
                quiet += 1
            else:
                quiet = 0
            server, own = server_now, own_now
        return time.perf_counter() - started

    async def before(self, name: str) -> None:
        if not self._quiet:
            await self._settle()
        self._quiet = False
        self._mark = self._server_cpu()

    async def after(self, name: str) -> None:
        waited = await self._settle()
        self._quiet = True
        self.server_cpu_s.setdefault(name, []).append(self._server_cpu() - self._mark)
        self.settle_s.setdefault(name, []).append(waited)


def _with_cpu(programs: dict[str, Any], cpu_s: dict[str, list[float]]) -> dict[str, Any]:
    """Each program also records the CPU this process spent during its run (all threads).

    Wall time on a shared machine depends on how much of a core the run got; a run lasting
    tens of seconds gets only its fair share of a loaded machine, while one lasting
    milliseconds often runs unhindered.  CPU time does not favour the short runs.
    """

    def wrap(name: str, program: Any) -> Any:
        samples = cpu_s.setdefault(name, [])

        async def timed() -> Any:
            before = _own_cpu_s()
            value = await program()
            samples.append(_own_cpu_s() - before)
            return value

        return timed

    return {name: wrap(name, program) for name, program in programs.items()}


def measure(peer: str, workload: str, settings: PeerSettings) -> dict[str, Any]:
    """Probe (the warm-up of all three programs), then alternate them at the chosen size."""
    import anyio
    from _harness import alternate, quiet_asyncdag_logging, use_working_tree

    use_working_tree()
    quiet_asyncdag_logging()
    prefect_home = os.environ.get("PREFECT_HOME")
    database = Path(prefect_home) / "prefect.db" if peer == "prefect" and prefect_home else None

    def programs(steps: int, ran: list[int]) -> tuple[dict[str, Any], Any, list[str], str, float]:
        case = _case(workload, steps)
        peer_program, how, build_s = _program(peer, workload, steps, ran)
        return (
            {peer: peer_program, "asyncdag": case.dag, **case.raw},
            case,
            list(case.raw),
            how,
            build_s,
        )

    async def main() -> dict[str, Any]:
        probe_settler = Settler(database=database)
        probe, probe_case, _, _, _ = programs(PROBE_STEPS, [])
        warm = await alternate(
            probe,
            expected=probe_case.expected,
            repeats=1,
            warmup=0,
            budget_s=0.0,
            around=probe_settler,
        )
        steps = _size(settings, warm[peer][0] + probe_settler.settle_s[peer][0])
        ran: list[int] = []
        settler = Settler(database=database)
        timed, case, raw, how, build_s = programs(steps, ran)
        cpu_s: dict[str, list[float]] = {}
        samples = await alternate(
            _with_cpu(timed, cpu_s),
            expected=case.expected,
            repeats=settings.repeats,
            warmup=0,  # the probe warmed all three up (imports, Prefect's server, code paths)
            budget_s=settings.budget_s,
            min_repeats=settings.min_repeats,
            around=settler,
        )
        return {
            "peer": peer,
            "peer_version": _version(peer),
            "workload": workload,
            "steps": case.steps,
            "size": steps,
            "how": how,
            "peer_build_s": build_s,
            "probe_peer_us_per_step": warm[peer][0] / probe_case.steps * 1e6,
            "raw": raw,
            "samples_s": samples,
            "cpu_s": cpu_s,
            "peer_steps_run": ran,
            "server_cpu_s": settler.server_cpu_s,
            "settle_s": settler.settle_s,
            "settle_timeouts": settler.timeouts,
        }

    return anyio.run(main, backend="asyncio")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    peer, workload = request.pop("peer"), request.pop("workload")
    answer = measure(peer, workload, PeerSettings(**request))
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
