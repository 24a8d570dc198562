"""Wall-clock timing of a callable, recorded with the conditions it ran under.

Warm-up calls are run first and not timed. On CUDA, every timed call is bracketed by
``torch.cuda.synchronize`` and timed by CUDA events recorded just before and after it. On CPU, where torch
ops return when they finish, ``time.perf_counter`` is read before and after the call. The record reports
the median and spread of the per-call times in seconds.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

_SECONDS_PER_MILLISECOND = 1e-3  # CUDA events report milliseconds
_CPUINFO_PATH = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class TimingRecord:
    """Per-call times of one timed callable, in seconds, with the conditions they were measured under."""

    median_s: float
    min_s: float
    max_s: float
    iqr_s: float  # interquartile range: 75th minus 25th percentile, linear interpolation
    repeats: int  # timed calls, warm-up calls excluded
    warmup: int
    device: str  # torch device string, e.g. "cpu" or "cuda:0"
    device_name: str  # CPU model or GPU name
    threads: int  # torch intra-op threads while timing
    torch_version: str
    dtype: str | None = None
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    samples_s: tuple[float, ...] = ()  # every timed call, in call order

    def to_dict(self) -> dict[str, object]:
        """Return the record as plain JSON-serialisable values (shapes and samples as lists)."""
        return {
            "median_s": self.median_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "iqr_s": self.iqr_s,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "torch_version": self.torch_version,
            "dtype": self.dtype,
            "shapes": {name: list(shape) for name, shape in self.shapes.items()},
            "samples_s": list(self.samples_s),
        }


def time_callable(
    fn: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    device: torch.device | str,
    min_time_s: float | None = None,
    dtype: torch.dtype | str | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> TimingRecord:
    """Time ``fn()`` on ``device``: ``warmup`` untimed calls, then at least ``repeats`` timed calls.

    With ``min_time_s``, timed calls continue past ``repeats`` until their times add up to at least
    ``min_time_s`` seconds. ``dtype`` and ``shapes`` are not used for timing but stored in the
    record to describe what was timed. Raises ValueError for a negative ``warmup``, ``repeats`` < 1 or a
    device type other than cpu and cuda.
    """
    device = torch.device(device)
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if device.type == "cuda":
        time_call = _cuda_call_timer(device)
    elif device.type == "cpu":
        time_call = _time_cpu_call
    else:
        raise ValueError(f"unsupported device type {device.type!r} (supported: cpu, cuda)")

    for _ in range(warmup):
        fn()

    samples_s: list[float] = []
    while len(samples_s) < repeats or (min_time_s is not None and sum(samples_s) < min_time_s):
        samples_s.append(time_call(fn))

    q25, median, q75 = np.percentile(samples_s, [25, 50, 75])
    return TimingRecord(
        median_s=float(median),
        min_s=min(samples_s),
        max_s=max(samples_s),
        iqr_s=float(q75 - q25),
        repeats=len(samples_s),
        warmup=warmup,
        device=str(device),
        device_name=device_name(device),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        dtype=None if dtype is None else str(dtype).removeprefix("torch."),
        shapes={name: tuple(int(size) for size in shape) for name, shape in (shapes or {}).items()},
        samples_s=tuple(samples_s),
    )


def _time_cpu_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cuda_call_timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Return a timer of one call on ``device``'s current stream, by CUDA events."""

    def time_call(fn: Callable[[], object]) -> float:
        stream = torch.cuda.current_stream(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record(stream)
        fn()
        end.record(stream)
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) * _SECONDS_PER_MILLISECOND

    return time_call


def device_name(device: torch.device | str) -> str:
    """Return the GPU name for a CUDA device, otherwise the CPU model name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model_name()


def _cpu_model_name() -> str:
    """Return the "model name" line of /proc/cpuinfo, else what the platform module reports."""
    try:
        for line in _CPUINFO_PATH.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass  # not Linux, or /proc unreadable: fall back to the platform module
    return platform.processor() or platform.machine() or "unknown CPU"


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op thread count for the block and restore the previous count on exit."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def achieved(flops: float, bytes_moved: float, time_s: float) -> tuple[float, float]:
    """Return the achieved (FLOP/s, bytes/s) of work that took ``time_s`` seconds."""
    if time_s <= 0:
        raise ValueError(f"time_s must be > 0, got {time_s}")
    return flops / time_s, bytes_moved / time_s
