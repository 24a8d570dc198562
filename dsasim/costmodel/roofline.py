"""Roofline time of one kernel call from its FLOPs and bytes and the profile's efficiencies.

A kernel's compute time is FLOPs / (peak of its dtype x compute fraction) and its memory time is bytes /
(HBM bandwidth x memory fraction). A pure roofline takes the larger of the two; real kernels near the
ridge point overlap the two imperfectly, so the model combines them as a p-norm,
``(compute**n + memory**n) ** (1/n)``, with the profile's ``roofline_blend_exponent`` n: far from the ridge
this is the larger time, at the ridge it is 2**(1/n) times it. The kernel's fixed overhead per call is added.
The p-norm is homogeneous, so the time of a batched call is the sum of its requests' shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dsasim.hardware_profiles.profile import HardwareProfile, KernelEfficiency

Bound = Literal["compute", "memory"]


@dataclass(frozen=True)
class KernelRates:
    """Achievable FLOP/s and bytes/s of one kernel class on one device, and where they came from."""

    flops_per_s: float
    bytes_per_s: float
    overhead_s: float
    blend_exponent: float | None  # None: pure roofline
    compute_dtype: str  # the dtype whose peak was used (FP8 work on a chip without FP8 runs at BF16)


def kernel_rates(hardware: HardwareProfile, kernel: str, dtype: str) -> KernelRates:
    """Achievable rates of `kernel` computing in `dtype` on `hardware`."""
    efficiency: KernelEfficiency = hardware.efficiencies[kernel]
    peak_flops_per_s, used_dtype = hardware.peak_for(dtype)
    memory_fraction = efficiency.memory_fraction if efficiency.memory_fraction is not None else hardware.hbm_stream_fraction
    return KernelRates(
        flops_per_s=peak_flops_per_s * efficiency.compute_fraction,
        bytes_per_s=hardware.hbm_bandwidth_bytes_per_s * memory_fraction,
        overhead_s=efficiency.overhead_s,
        blend_exponent=hardware.roofline_blend_exponent,
        compute_dtype=used_dtype,
    )


def roofline_time_s(flops: np.ndarray | float, bytes_moved: np.ndarray | float, rates: KernelRates) -> np.ndarray:
    """Seconds of the kernel's work, without its per-call overhead (vectorised)."""
    compute_s = np.asarray(flops, dtype=float) / rates.flops_per_s
    memory_s = np.asarray(bytes_moved, dtype=float) / rates.bytes_per_s
    exponent = rates.blend_exponent
    if exponent is None:
        return np.maximum(compute_s, memory_s)
    larger = np.maximum(compute_s, memory_s)
    smaller = np.minimum(compute_s, memory_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(larger > 0, smaller / larger, 0.0)
    return larger * (1.0 + ratio**exponent) ** (1.0 / exponent)


def bound_of(flops: np.ndarray | float, bytes_moved: np.ndarray | float, rates: KernelRates) -> np.ndarray:
    """'compute' or 'memory' per element: which side of the roofline takes longer."""
    compute_s = np.asarray(flops, dtype=float) / rates.flops_per_s
    memory_s = np.asarray(bytes_moved, dtype=float) / rates.bytes_per_s
    return np.where(compute_s >= memory_s, "compute", "memory")
