"""Token positions the vectorised cost model evaluates per second: all ops, one model, one phase, warm, one thread.

Run from the repository root with no arguments; the last line is ``positions_per_s=<number>``.
"""

from __future__ import annotations

import os

# One thread for every numerical library, set before numpy loads.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from dsasim.costmodel.deployment import default_deployment  # noqa: E402
from dsasim.costmodel.phases import phase_cost  # noqa: E402
from dsasim.costmodel.specs import load_spec  # noqa: E402
from dsasim.hardware_profiles import load_profile  # noqa: E402

MODEL = "deepseek-v3.2-exp"
PHASE = "prefill"  # the phase with the most ops (both attention modes and the mode choice)
POSITIONS = 1_000_000
REPEATS = 5


def main() -> None:
    spec = load_spec(MODEL)
    hardware = load_profile("h800")
    deployment = default_deployment(spec, PHASE)
    positions = np.arange(POSITIONS, dtype=float) * (131072 / POSITIONS)

    warm_up = phase_cost(spec, hardware, deployment, positions).seconds_per_token
    assert warm_up.shape == positions.shape
    times_s = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        seconds = phase_cost(spec, hardware, deployment, positions).seconds_per_token
        times_s.append(time.perf_counter() - start)
    assert seconds.shape == positions.shape

    median_s = statistics.median(times_s)
    print(f"model={MODEL} phase={PHASE} positions={POSITIONS} repeats={REPEATS} "
          f"median_s={median_s:.4f} min_s={min(times_s):.4f} max_s={max(times_s):.4f}")
    print(f"positions_per_s={POSITIONS / median_s:.0f}")


if __name__ == "__main__":
    main()
