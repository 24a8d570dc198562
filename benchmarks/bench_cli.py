"""Wall time of `dsasim --help` and of `dsasim curves` (defaults), median of a few runs each.

Run from the repository root with the package installed. Targets on a 2-core machine: --help under 0.5 s,
curves under 3 s once matplotlib's font cache exists (the first run builds it and is excluded).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time

REPEATS = 5


def time_command(arguments: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(arguments, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    executable = shutil.which("dsasim")
    if executable is None:
        raise SystemExit("dsasim is not on PATH: install the package first (pip install -e .)")
    with tempfile.TemporaryDirectory() as out:
        curves = [executable, "curves", "--out", out]
        time_command(curves)  # builds matplotlib's font cache on a fresh machine
        help_s = statistics.median(time_command([executable, "--help"]) for _ in range(REPEATS))
        curves_s = statistics.median(time_command(curves) for _ in range(REPEATS))
    print(f"help_s={help_s:.3f}")
    print(f"curves_s={curves_s:.3f}")


if __name__ == "__main__":
    main()
