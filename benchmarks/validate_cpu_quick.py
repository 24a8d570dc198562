"""Run ``dsasim validate --device cpu --quick`` through the library and print its wall time and results.

Usage: python benchmarks/validate_cpu_quick.py [OUT_DIR]

OUT_DIR defaults to a new temporary folder. The script prints progress to stderr, then the summary, the
crossover, whether the quick-mode targets were met, and the wall time, which includes calibration. The
targets: held-out (test) median error at most 15 %, 90th percentile at most 35 %, and a measured
crossover within 25 % of the predicted one. It exits 1 when a target is missed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from dsasim.validate.sweep import format_crossover, format_summary, run_validation

TEST_MEDIAN_TARGET = 0.15
TEST_P90_TARGET = 0.35


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="dsasim-validate-"))
    last_label = [""]

    def progress(label: str, fraction: float) -> None:
        if label != last_label[0]:
            print(f"\r{100 * fraction:5.1f} % {label[:70]:<70}", end="", file=sys.stderr, flush=True)
            last_label[0] = label

    started = time.perf_counter()
    result = run_validation("cpu", out_dir, quick=True, profile_path=None, progress=progress)
    wall_s = time.perf_counter() - started
    print(file=sys.stderr)

    print(format_summary(result.summary))
    print(format_crossover(result.crossover))
    overall = result.summary.set_index(["kernel", "split"]).loc[("all", "test")]
    targets = {
        f"test median error <= {TEST_MEDIAN_TARGET:.0%}": overall["median_error_fraction"] <= TEST_MEDIAN_TARGET,
        f"test p90 error <= {TEST_P90_TARGET:.0%}": overall["p90_error_fraction"] <= TEST_P90_TARGET,
        "measured crossover within 25 % of predicted": bool(result.crossover["within_target"]),
        "DSA measurably faster at the longest context": bool(result.crossover.get("separated_at_longest", False)),
    }
    for name, met in targets.items():
        print(f"{'met   ' if met else 'MISSED'} {name}")
    print(f"results in {out_dir}")
    print(f"wall time: {wall_s:.1f} s")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
