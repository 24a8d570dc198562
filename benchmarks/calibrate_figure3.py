"""Re-derive the deployment quantities and top-k efficiencies that Figure 3's endpoints set.

Run from the repository root after changing the op model: it prints the values to copy into
`dsasim/costmodel/deployment.py` (batch and tokens per GPU) and `h800.yaml` (top-k memory
fractions), and the endpoint errors with them. Each value is solved by bisection on one endpoint:

- decode batch per GPU of each model: its decode cost at position 0;
- prefill tokens per GPU of DeepSeek-V3.2-Exp: its prefill cost at position 0;
- top-k memory fraction (no H800 top-k measurement exists): DeepSeek-V3.2-Exp cost at position 131072.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from dsasim.costmodel.cost import usd_per_million_tokens
from dsasim.costmodel.deployment import Deployment, default_deployment
from dsasim.costmodel.phases import phase_cost
from dsasim.costmodel.specs import load_spec
from dsasim.hardware_profiles import load_profile
from dsasim.hardware_profiles.profile import HardwareProfile

DENSE = "deepseek-v3.1-terminus"
SPARSE = "deepseek-v3.2-exp"
LAST_POSITION = 131072
# USD per million tokens read from Figure 3 of the DeepSeek-V3.2-Exp paper (H800, 2 USD per GPU-hour).
ENDPOINTS = {
    (DENSE, "prefill"): (0.053, 0.666),
    (SPARSE, "prefill"): (0.061, 0.187),
    (DENSE, "decode"): (0.071, 2.154),
    (SPARSE, "decode"): (0.095, 0.249),
}


def cost(model: str, phase: str, position: int, hardware: HardwareProfile, **changes: object) -> float:
    spec = load_spec(model)
    deployment: Deployment = default_deployment(spec, phase).replace(**changes)
    seconds = phase_cost(spec, hardware, deployment, np.array([float(position)])).seconds_per_token
    assert hardware.price is not None
    return float(usd_per_million_tokens(seconds, hardware.price.usd_per_gpu_hour)[0])


def bisect(function: Callable[[float], float], low: float, high: float, target: float, steps: int = 50) -> float:
    """Find the x in [low, high] where the monotonic `function` reaches `target`."""
    increasing = function(high) > function(low)
    for _ in range(steps):
        middle = (low + high) / 2
        if (function(middle) < target) == increasing:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def with_memory_fraction(hardware: HardwareProfile, kernel: str, fraction: float) -> HardwareProfile:
    efficiencies = dict(hardware.efficiencies)
    efficiencies[kernel] = dataclasses.replace(efficiencies[kernel], memory_fraction=fraction)
    return dataclasses.replace(hardware, efficiencies=efficiencies)


def solve_decode_batch(model: str, hardware: HardwareProfile) -> int:
    """Return the decode batch per GPU at which `model` meets its position-0 decode endpoint."""
    batch = bisect(lambda b: cost(model, "decode", 0, hardware, batch_per_gpu=max(1, round(b))), 16, 8192,
                   ENDPOINTS[(model, "decode")][0])
    return round(batch)


def solve_topk_fraction(kernel: str, phase: str, hardware: HardwareProfile, **changes: object) -> float:
    """Return the top-k memory fraction at which DeepSeek-V3.2-Exp meets its 131072-token endpoint of `phase`."""
    return bisect(lambda f: cost(SPARSE, phase, LAST_POSITION, with_memory_fraction(hardware, kernel, f), **changes),
                  0.02, 1.0, ENDPOINTS[(SPARSE, phase)][1])


def main() -> None:
    h800 = load_profile("h800")
    print(f"decode batch_per_gpu {DENSE}: {solve_decode_batch(DENSE, h800)}")

    # V3.2's decode batch and its top-k fraction each move the other's endpoint a little, so solve them
    # in turn until neither changes.
    hardware = h800
    batch = solve_decode_batch(SPARSE, hardware)
    for _ in range(10):
        fraction = solve_topk_fraction("topk_decode", "decode", hardware, batch_per_gpu=batch)
        hardware = with_memory_fraction(h800, "topk_decode", fraction)
        new_batch = solve_decode_batch(SPARSE, hardware)
        if new_batch == batch:
            break
        batch = new_batch
    print(f"decode batch_per_gpu {SPARSE}: {batch}")
    print(f"topk_decode memory_fraction: {fraction:.3f}")

    tokens = bisect(lambda t: cost(SPARSE, "prefill", 0, h800, tokens_per_gpu=max(1, round(t))), 128, 16384,
                    ENDPOINTS[(SPARSE, "prefill")][0])
    print(f"prefill tokens_per_gpu {SPARSE}: {round(tokens)} (the shipped value is a power of two near it)")
    print(f"topk_prefill memory_fraction: {solve_topk_fraction('topk_prefill', 'prefill', h800):.3f} "
          "(with the shipped prefill tokens per GPU)")

    print("endpoint errors with the shipped settings (predicted / figure - 1):")
    for (model, phase), (at_zero, at_last) in ENDPOINTS.items():
        errors = (cost(model, phase, 0, h800) / at_zero - 1, cost(model, phase, LAST_POSITION, h800) / at_last - 1)
        print(f"  {model:24s} {phase:8s} position 0: {errors[0]:+.3f}  position {LAST_POSITION}: {errors[1]:+.3f}")


if __name__ == "__main__":
    main()
