"""What ``import twinklr.core.pipeline`` costs beyond ``import trio``, in fresh
interpreters: trio first, then the package, each timed in the same process; the ratio
is the package's time over trio's (best of ``--repeat``).

    python benchmarks/bench_import.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CODE = """
import time
start = time.perf_counter()
import trio
between = time.perf_counter()
import twinklr.core.pipeline
print(between - start, time.perf_counter() - between)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    trio_s, package_s = float("inf"), float("inf")
    for _ in range(args.repeat):
        done = subprocess.run(  # noqa: S603 (our interpreter, fixed code)
            [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
        )
        first, second = map(float, done.stdout.split())
        trio_s, package_s = min(trio_s, first), min(package_s, second)
    print(
        f"import trio {trio_s * 1000:.0f} ms; then import twinklr.core.pipeline "
        f"{package_s * 1000:.0f} ms ({package_s / trio_s:.2f}x trio's)"
    )


if __name__ == "__main__":
    main()
