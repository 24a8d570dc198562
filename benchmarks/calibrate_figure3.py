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


def main() -> None:
    h800 = load_profile("h800")
    for model in (DENSE, SPARSE):
        batch = bisect(lambda b, m=model: cost(m, "decode", 0, h800, batch_per_gpu=max(1, round(b))), 16, 4096,
                       ENDPOINTS[(model, "decode")][0])
        print(f"decode batch_per_gpu {model}: {round(batch)}")
    tokens = bisect(lambda t: cost(SPARSE, "prefill", 0, h800, tokens_per_gpu=max(1, round(t))), 128, 16384,
                    ENDPOINTS[(SPARSE, "prefill")][0])
    print(f"prefill tokens_per_gpu {SPARSE}: {round(tokens)}")
    for kernel, phase in (("topk_prefill", "prefill"), ("topk_decode", "decode")):
        fraction = bisect(lambda f, k=kernel, p=phase: cost(SPARSE, p, LAST_POSITION, with_memory_fraction(h800, k, f)),
                          0.02, 1.0, ENDPOINTS[(SPARSE, phase)][1])
        print(f"{kernel} memory_fraction: {fraction:.3f}")
    print("endpoint errors with the shipped settings (predicted / figure - 1):")
    for (model, phase), (at_zero, at_last) in ENDPOINTS.items():
        errors = (cost(model, phase, 0, h800) / at_zero - 1, cost(model, phase, LAST_POSITION, h800) / at_last - 1)
        print(f"  {model:24s} {phase:8s} position 0: {errors[0]:+.3f}  position {LAST_POSITION}: {errors[1]:+.3f}")


if __name__ == "__main__":
    main()
