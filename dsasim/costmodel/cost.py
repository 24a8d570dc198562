"""Cost per million tokens from GPU time per token and the price of a GPU-hour."""

from __future__ import annotations

import numpy as np

from dsasim.errors import InputError
from dsasim.hardware_profiles.profile import HardwareProfile

SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MILLION = 1e6


def usd_per_million_tokens(gpu_seconds_per_token: np.ndarray | float, usd_per_gpu_hour: float) -> np.ndarray:
    """USD per million tokens = price per GPU-hour x GPU-seconds per token / 3600 x 1e6."""
    return np.asarray(gpu_seconds_per_token, dtype=float) * usd_per_gpu_hour / SECONDS_PER_HOUR * TOKENS_PER_MILLION


def resolve_price(hardware: HardwareProfile, usd_per_gpu_hour: float | None) -> float:
    """Pick the price per GPU-hour: the one given, else the profile's. Raise InputError when neither exists."""
    if usd_per_gpu_hour is not None:
        if not np.isfinite(usd_per_gpu_hour) or usd_per_gpu_hour <= 0:
            raise InputError(f"--usd-per-gpu-hour {usd_per_gpu_hour} is invalid: expected a positive number of USD")
        return float(usd_per_gpu_hour)
    if hardware.price is None:
        raise InputError(f"hardware '{hardware.name}' has no price in its profile: pass --usd-per-gpu-hour")
    return hardware.price.usd_per_gpu_hour
