"""5,000 dynamic items through map and collect, against raw anyio doing the same.

asyncdag: an async generator solid yields 5,000 ``DynamicOutput`` items; each
is mapped to a no-op async solid as it is yielded; a fan-in step sums the
collected values.  Raw anyio: the same generator feeds a memory object stream
read by a fixed set of worker tasks (the concurrency bound), results gathered
by key and summed in key order.  Both bounded at 50.  Prints medians and the
ratio per backend.

    python benchmarks/bench_dynamic.py [--items 5000] [--repeats 5]

The suite reports the same comparison as its W8 row (`python benchmarks/run.py --only W8`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import quiet_asyncdag_logging, use_working_tree

use_working_tree()

from workloads import build_dynamic_pipeline, run_dynamic_raw  # noqa: E402

from asyncdag import execute_pipeline_async  # noqa: E402

BOUND = 50


async def measure(n: int, repeats: int) -> tuple[float, float]:
    p = build_dynamic_pipeline(n)
    expected = sum(range(1, n + 1))
    dag_times, raw_times = [], []
    for _ in range(repeats):  # alternate, so load drift hits both alike
        start = time.perf_counter()
        result = await execute_pipeline_async(p, max_concurrency=BOUND, tracing=False)
        dag_times.append(time.perf_counter() - start)
        assert result.output_for_solid("total") == expected
        start = time.perf_counter()
        assert await run_dynamic_raw(n, limit=BOUND) == expected
        raw_times.append(time.perf_counter() - start)
    return statistics.median(raw_times), statistics.median(dag_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    quiet_asyncdag_logging()
    print(f"dynamic fan-out: {args.items} items, map + collect, bound {BOUND}")
    for backend in ("asyncio", "trio"):
        raw_s, dag_s = anyio.run(measure, args.items, args.repeats, backend=backend)
        print(
            f"  {backend:8} raw {raw_s * 1000:8.1f} ms   asyncdag {dag_s * 1000:8.1f} ms   "
            f"ratio {dag_s / raw_s:5.2f}x   ({dag_s / args.items * 1e6:.1f} µs/item)"
        )


if __name__ == "__main__":
    main()
