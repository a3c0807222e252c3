"""``python -m benchmarks._child STEP JSON``: run one step of :mod:`benchmarks._steps` in this fresh process
and print ``BENCH_RESULT {"wall_s", "peak_rss_mb", "result"}`` (the peak resident memory of this process
alone)."""

from __future__ import annotations

import json
import resource
import sys
import time


def main(argv: list[str]) -> int:
    from benchmarks import _steps

    step, kwargs = argv[0], json.loads(argv[1])
    t = time.perf_counter()
    result = getattr(_steps, step)(**kwargs)
    print("BENCH_RESULT " + json.dumps({"wall_s": time.perf_counter() - t,
                                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                        "result": result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
