"""Measure a device's hardware profile with torch microbenchmarks and write it as profile YAML.

What is measured, on the device and with the thread count of the run:

- GEMM peaks: square torch matmuls per dtype; the peak is the best median rate over the sizes tried.
  BF16 is kept only where it is meaningfully faster than FP32 (on a CPU, with AMX or AVX-512 BF16).
- streaming bandwidth: ``dst.copy_(src)`` of FP32 buffers, counting read plus write bytes. The
  bandwidth is the median rate of the two largest buffers, which stream from DRAM (HBM on a GPU).
- per-call overhead: a one-element in-place add, the fixed cost of dispatching any torch op.
- roofline blend exponent: GEMMs that stream a large weight at a few token counts around the ridge
  point, predicted through the cost model with the exponent as the one free parameter.

Every measurement goes through a ``SpeedGuard``, which retries it when probes show that other load
slowed the machine, and on a CPU runs under ``reuse_freed_host_memory``, which keeps page faults of
large temporaries out of the timings.

Fields that do not apply are left out rather than invented: a CPU profile has no ``sm_count``,
interconnect or price. Per-kernel efficiencies start at the roofline (fraction 1, labelled ``measured``
where the peak itself is the measurement and ``assumed`` elsewhere); ``dsasim validate`` fits the
classes it measures.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from dsasim.costmodel.dtypes import DTYPE_BYTES
from dsasim.costmodel.kernel_calls import gemm_call, predict_call_s
from dsasim.errors import MeasurementError, ProfileError
from dsasim.hardware_profiles import KERNEL_CLASSES, HardwareProfile, load_profile, write_profile_yaml
from dsasim.hardware_profiles.loader import (
    BYTES_PER_GB,
    BYTES_PER_GIB,
    BYTES_PER_TB,
    FLOP_PER_TFLOP,
    MICROSECONDS_PER_SECOND,
    PROFILE_SUFFIXES,
)
from dsasim.validate.fitting import FitParameter, abs_log_errors, fit_log_space

try:
    import torch
except ImportError as error:  # torch is an optional dependency (the "validate" extra)
    raise MeasurementError(
        "dsasim calibrate and validate need torch, which is not installed: pip install 'dsasim[validate]'"
    ) from error

from dsasim.validate.timing import TimingRecord, device_name, fixed_threads, time_callable

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
T = TypeVar("T")

SUPPORTED_DEVICES = ("cpu", "cuda")
BYTES_PER_MIB = 2**20
# BF16 enters the profile only when its GEMM rate beats FP32 by this factor. A CPU without BF16 units
# converts to FP32 and gains nothing, so its BF16 peak would only add noise.
BF16_SPEEDUP_TO_KEEP = 1.25
# Blend exponents searched; a best fit at the upper end means a pure roofline (max) fits as well.
BLEND_EXPONENT_RANGE = (0.5, 16.0)
# glibc mallopt parameters (malloc.h) and their defaults, restored afterwards.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GLIBC_DEFAULT_MMAP_MAX = 65536
_GLIBC_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_NO_TRIM_THRESHOLD = 2**30
_SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class CalibrationSettings:
    """Sizes and repeat counts of the microbenchmarks."""

    gemm_sizes: tuple[int, ...]  # square GEMM sizes, whose best median rate is the peak
    stream_buffers_mib: tuple[int, ...]  # copy buffer sizes, of which the two largest give the bandwidth
    blend_features: int  # in = out features of the streaming GEMMs that fit the blend exponent
    blend_tokens: tuple[int, ...]  # their token counts, around the ridge point
    warmup: int
    repeats: int
    min_time_s: float  # timed calls continue until their times add up to this
    overhead_repeats: int
    wait_budget_s: float  # total time to wait for a slow machine to recover


CPU_QUICK = CalibrationSettings(
    gemm_sizes=(1024, 1536),
    stream_buffers_mib=(16, 32, 64, 128, 256),
    blend_features=4096,
    blend_tokens=(8, 16, 32, 64, 128, 256),
    warmup=1,
    repeats=5,
    min_time_s=0.05,
    overhead_repeats=200,
    wait_budget_s=20.0,
)
CPU_FULL = CalibrationSettings(
    gemm_sizes=(1024, 1536, 2048, 3072),
    stream_buffers_mib=(16, 32, 64, 128, 256, 512, 1024),
    blend_features=4096,
    blend_tokens=(8, 16, 32, 64, 128, 256, 512),
    warmup=2,
    repeats=9,
    min_time_s=0.2,
    overhead_repeats=1000,
    wait_budget_s=120.0,
)
# NOTE: the CUDA sizes are estimates for a data-centre GPU and have not been run on one yet.
CUDA_QUICK = CalibrationSettings(
    gemm_sizes=(4096, 8192),
    stream_buffers_mib=(256, 1024, 2048),
    blend_features=16384,
    blend_tokens=(8, 16, 32, 64, 128, 256, 512),
    warmup=3,
    repeats=10,
    min_time_s=0.05,
    overhead_repeats=200,
    wait_budget_s=20.0,
)
CUDA_FULL = dataclasses.replace(CUDA_QUICK, gemm_sizes=(4096, 8192, 16384), stream_buffers_mib=(256, 1024, 2048, 4096),
                                repeats=20, min_time_s=0.2, overhead_repeats=1000, wait_budget_s=120.0)


@dataclass(frozen=True)
class Guarded(Generic[T]):
    """A measurement and the probe times around it: the slower of the probes before and after."""

    value: T
    probe_gemm_s: float
    probe_copy_s: float


class SpeedGuard:
    """Retry measurements taken while a shared machine runs slower than its steady speed.

    On a shared host, other tenants can take the cores for seconds at a time. On the 2-core VM this was
    written on, GEMM and copy rates fell to a third for stretches of 5 to 60 s. Each measurement is
    bracketed by two probes, a small GEMM and a copy, and the machine's speed is the lower of the
    fastest probe times seen so far divided by the probe times around the measurement. A measurement
    counts when that speed reaches ``steady_fraction``, and is otherwise retried after a pause. Retries
    stop after ``max_wait_s`` per measurement or ``wait_budget_s`` in all, and the last try is kept.
    Because the fastest probe can come later, ``is_steady`` judges a kept measurement again with the
    probes seen since.
    """

    def __init__(self, device: torch.device, steady_fraction: float = 0.8, max_wait_s: float = 15.0,
                 wait_budget_s: float = 60.0, pause_s: float = 1.0, gemm_size: int | None = None,
                 copy_mib: int | None = None) -> None:
        self.device = device
        self.steady_fraction = steady_fraction
        self.max_wait_s = max_wait_s
        self.wait_budget_s = wait_budget_s
        self.pause_s = pause_s
        on_gpu = device.type == "cuda"
        gemm_size = gemm_size or (4096 if on_gpu else 1024)
        copy_elements = (copy_mib or (1024 if on_gpu else 64)) * BYTES_PER_MIB // DTYPE_BYTES["fp32"]
        self._matrix = torch.ones(gemm_size, gemm_size, device=device)
        self._source = torch.ones(copy_elements, device=device)
        self._target = torch.empty_like(self._source)
        self._best_gemm_s = float("inf")
        self._best_copy_s = float("inf")
        self.waited_s = 0.0
        self.unsteady_measurements = 0

    @property
    def can_wait(self) -> bool:
        """True while the total wait budget is not used up."""
        return self.waited_s < self.wait_budget_s

    def probe(self) -> tuple[float, float]:
        """Time the GEMM and copy probes, remember the fastest, and return (gemm seconds, copy seconds)."""
        gemm_s = time_callable(lambda: self._matrix @ self._matrix, warmup=1, repeats=2, device=self.device).min_s
        copy_s = time_callable(lambda: self._target.copy_(self._source), warmup=1, repeats=2, device=self.device).min_s
        self._best_gemm_s = min(self._best_gemm_s, gemm_s)
        self._best_copy_s = min(self._best_copy_s, copy_s)
        return gemm_s, copy_s

    def warm_up(self, probes: int = 5) -> None:
        """Probe a few times to learn the machine's steady speed."""
        for _ in range(probes):
            self.probe()

    def speed_fraction(self, measurement: Guarded[Any]) -> float:
        """Return the machine's speed around ``measurement``, as a fraction of the fastest probes so far."""
        return min(self._best_gemm_s / measurement.probe_gemm_s, self._best_copy_s / measurement.probe_copy_s)

    def is_steady(self, measurement: Guarded[Any]) -> bool:
        return self.speed_fraction(measurement) >= self.steady_fraction

    def measure(self, run: Callable[[], T]) -> Guarded[T]:
        """Call ``run`` until the probes around it show a steady machine, or until waiting time runs out."""
        started = time.monotonic()
        while True:
            may_wait = self.can_wait and time.monotonic() - started < self.max_wait_s
            gemm_before_s, copy_before_s = self.probe()
            slow = min(self._best_gemm_s / gemm_before_s, self._best_copy_s / copy_before_s) < self.steady_fraction
            if slow and may_wait:
                self._pause()
                continue
            value = run()
            gemm_after_s, copy_after_s = self.probe()
            measurement = Guarded(value, max(gemm_before_s, gemm_after_s), max(copy_before_s, copy_after_s))
            if self.is_steady(measurement):
                return measurement
            if not may_wait:
                self.unsteady_measurements += 1
                logger.warning("machine ran at %.0f %% of its steady speed and the wait for it ran out; keeping an "
                               "unsteady measurement", 100 * self.speed_fraction(measurement))
                return measurement
            self._pause()

    def _pause(self) -> None:
        time.sleep(self.pause_s)
        self.waited_s += self.pause_s


def resolve_device(device: str) -> torch.device:
    """Return the torch device for a ``--device`` value, or raise MeasurementError naming the fix."""
    if device not in SUPPORTED_DEVICES:
        raise MeasurementError(f"unknown device {device!r} (known: {', '.join(SUPPORTED_DEVICES)})")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise MeasurementError("CUDA device requested but torch.cuda.is_available() is False: use --device cpu")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def measurement_threads() -> int:
    """Return the CPU cores this process may run on, the intra-op thread count of every measurement."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def settings_for(device: torch.device, quick: bool) -> CalibrationSettings:
    if device.type == "cuda":
        return CUDA_QUICK if quick else CUDA_FULL
    return CPU_QUICK if quick else CPU_FULL


def calibrate_device(device: str, out_path: Path, quick: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Measure ``device`` ("cpu" or "cuda"), write its profile YAML to ``out_path`` and return the data.

    The file is validated against the profile schema and written atomically. Raises MeasurementError for
    an unknown or unavailable device and ProfileError when the file cannot be written; both are checked
    before measuring.
    """
    torch_device = resolve_device(device)
    out_path = Path(out_path).expanduser()
    if out_path.suffix not in PROFILE_SUFFIXES:
        raise ProfileError(f"invalid hardware profile path {out_path}: expected a file name ending in .yaml or .yml")
    if not out_path.parent.is_dir():
        raise ProfileError(f"failed to write hardware profile {out_path}: folder {out_path.parent} not found; create it first")
    with fixed_threads(measurement_threads()), reuse_freed_host_memory(torch_device):
        data = measure_profile_data(torch_device, quick, progress)
    write_profile_yaml(data, out_path)
    return data


def measure_profile_data(device: torch.device, quick: bool, progress: Progress | None = None,
                         guard: SpeedGuard | None = None) -> dict[str, Any]:
    """Run the microbenchmarks on ``device`` and return profile data laid out as in the YAML files.

    The caller fixes the thread count; every rate is measured with torch's current intra-op threads.
    ``guard`` (a new one by default) retries measurements taken while the machine runs slow.
    """
    settings = settings_for(device, quick)
    report = progress or _ignore_progress
    threads = torch.get_num_threads()
    if guard is None:
        guard = SpeedGuard(device, wait_budget_s=settings.wait_budget_s)
        guard.warm_up()

    generator = torch.Generator(device=device).manual_seed(1)
    blend_weight = torch.randn(settings.blend_features, settings.blend_features, generator=generator, device=device)
    steps: list[Step[float]] = []
    for dtype in (torch.float32, torch.bfloat16):
        for size in settings.gemm_sizes:
            steps.append(Step((str(dtype), size), f"calibrate: {_dtype_name(dtype)} GEMM {size}",
                              functools.partial(measure_gemm_flops_per_s, device, dtype, size, settings)))
    for mib in settings.stream_buffers_mib:
        steps.append(Step(("copy", mib), f"calibrate: copy {mib} MiB",
                          functools.partial(measure_stream_rate, device, mib * BYTES_PER_MIB, settings)))
    steps.append(Step(("overhead", 0), "calibrate: per-call overhead", functools.partial(measure_call_overhead_s, device, settings)))
    for tokens in settings.blend_tokens:
        steps.append(Step(("blend", tokens), f"calibrate: streaming GEMM {tokens} tokens",
                          functools.partial(measure_gemm_s, blend_weight, tokens, settings)))
    results = {key: measurement.value for key, measurement in measure_steadily(guard, steps, report).items()}
    del blend_weight

    fp32_rates = {size: results[(str(torch.float32), size)] for size in settings.gemm_sizes}
    bf16_rates = {size: results[(str(torch.bfloat16), size)] for size in settings.gemm_sizes}
    stream_rates = {mib: results[("copy", mib)] for mib in settings.stream_buffers_mib}
    overhead_s = results[("overhead", 0)]
    blend_times_s = [results[("blend", tokens)] for tokens in settings.blend_tokens]

    fp32_peak = max(fp32_rates.values())
    bf16_peak = max(bf16_rates.values())
    keep_bf16 = device.type == "cuda" or bf16_peak >= BF16_SPEEDUP_TO_KEEP * fp32_peak
    largest_mib = sorted(stream_rates)[-2:]
    bandwidth = float(np.median([stream_rates[mib] for mib in largest_mib]))
    name = profile_name(device, threads)
    conditions = f"{device_name(device)}, {threads} threads, torch {torch.__version__}"

    peaks = {"fp32": _round(fp32_peak / FLOP_PER_TFLOP)}
    if keep_bf16:
        peaks["bf16"] = _round(bf16_peak / FLOP_PER_TFLOP)
    data: dict[str, Any] = {
        "name": name,
        "description": f"{device_name(device)}, measured by dsasim calibrate ({threads} threads, torch {torch.__version__})",
        "device_kind": "gpu" if device.type == "cuda" else "cpu",
        "peak_tflops": peaks,
        "peak_source": _peak_source(fp32_rates, bf16_rates, keep_bf16, conditions),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        data["sm_count"] = int(properties.multi_processor_count)
        capacity_bytes = float(properties.total_memory)
        capacity_source = "torch.cuda.get_device_properties total_memory"
    else:
        capacity_bytes = host_memory_bytes()
        capacity_source = "physical pages x page size (os.sysconf)"
    data.update({
        "hbm_bandwidth_tb_per_s": _round(bandwidth / BYTES_PER_TB),
        "hbm_capacity_gib": _round(capacity_bytes / BYTES_PER_GIB),
        "hbm_stream_fraction": 1.0,
        "hbm_source": (
            f"measured: median copy rate, read plus write bytes, of {' and '.join(map(str, largest_mib))} MiB FP32 "
            f"buffers ({conditions}); the stream fraction is 1 because the bandwidth is itself the copy rate; "
            f"capacity from {capacity_source}"
        ),
        "kernel_launch_us": _round(overhead_s * MICROSECONDS_PER_SECOND),
        "kernel_launch_source": f"measured: median time of an in-place add on a one-element tensor ({conditions})",
        "efficiencies": initial_efficiencies(overhead_s, fp32_rates, conditions),
        "notes": _notes(stream_rates, bandwidth),
    })

    exponent, blend_source = fit_blend_exponent(data, settings, blend_times_s)
    if exponent is not None:
        data["roofline_blend_exponent"] = _round(exponent)
        data["roofline_blend_source"] = blend_source
    else:
        data["notes"].append(blend_source)
    report("calibrate: done", 1.0)
    logger.info("calibrated %s: fp32 %.3g TFLOP/s, %.3g GB/s, %.3g us per call", name, fp32_peak / FLOP_PER_TFLOP,
                bandwidth / BYTES_PER_GB, overhead_s * MICROSECONDS_PER_SECOND)
    return data


@dataclass(frozen=True)
class Step(Generic[T]):
    """One measurement of a series: its key, a progress label, and the call that measures it."""

    key: Hashable
    label: str
    run: Callable[[], T]


def measure_steadily(guard: SpeedGuard, steps: Sequence[Step[T]], progress: Progress | None = None) -> dict[Hashable, Guarded[T]]:
    """Measure every step through ``guard``, then once more each step that the final probes judge unsteady.

    The second pass runs only while the guard may still wait for a steady machine. Progress fractions
    run from 0 to 1 over the first pass. Returns each step's measurement by its key.
    """
    report = progress or _ignore_progress
    measurements: dict[Hashable, Guarded[T]] = {}
    for index, step in enumerate(steps):
        report(step.label, index / max(len(steps), 1))
        measurements[step.key] = guard.measure(step.run)
    for step in steps:
        if guard.is_steady(measurements[step.key]) or not guard.can_wait:
            continue
        logger.info("measuring %r again: it ran at %.0f %% of the machine's steady speed", step.key,
                    100 * guard.speed_fraction(measurements[step.key]))
        measurements[step.key] = guard.measure(step.run)
    return measurements


def initial_efficiencies(overhead_s: float, fp32_rates: Mapping[int, float], conditions: str) -> dict[str, dict[str, Any]]:
    """Return an efficiency entry per kernel class before any fit: the roofline plus the per-call overhead."""
    overhead_us = _round(overhead_s * MICROSECONDS_PER_SECOND)
    best_size = max(fp32_rates, key=lambda size: fp32_rates[size])
    by_construction = {
        "compute_fraction": 1.0,
        "overhead_us": overhead_us,
        "provenance": "measured",
        "source": (
            f"the peaks are this device's measured GEMM rates (best at {best_size}x{best_size}, {conditions}), "
            "so a large GEMM reaches fraction 1 by construction"
        ),
    }
    entries: dict[str, dict[str, Any]] = {}
    for kernel_class in KERNEL_CLASSES:
        if kernel_class == "gemm_bf16":
            entries[kernel_class] = dict(by_construction)
        elif kernel_class == "elementwise":
            entries[kernel_class] = {
                "compute_fraction": 1.0,
                "overhead_us": overhead_us,
                "provenance": "measured",
                "source": "streams at the measured copy bandwidth (hbm_stream_fraction 1) after the measured per-call overhead",
            }
        elif kernel_class == "gemm_fp8":
            entries[kernel_class] = {
                "compute_fraction": 1.0,
                "overhead_us": overhead_us,
                "provenance": "assumed",
                "source": "no FP8 GEMM measured on this device: FP8 work runs at the BF16 peak, or FP32 where BF16 is absent",
            }
        else:
            entries[kernel_class] = {
                "compute_fraction": 1.0,
                "overhead_us": overhead_us,
                "provenance": "assumed",
                "source": (
                    "not fitted: the roofline at the measured peaks and bandwidth plus the measured per-call overhead; "
                    "dsasim validate fits the classes it measures"
                ),
            }
    return entries


# --- microbenchmarks ------------------------------------------------------------------------------


def measure_gemm_flops_per_s(device: torch.device, dtype: torch.dtype, size: int, settings: CalibrationSettings) -> float:
    """Return the median FLOP/s of a [size, size] x [size, size] matmul in ``dtype``."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device).to(dtype)
    b = torch.randn(size, size, generator=generator, device=device).to(dtype)
    record = _time(lambda: a @ b, device, settings, dtype, {"a": a.shape, "b": b.shape})
    flops = 2 * size**3  # multiply and add per (row, column, inner) triple
    return flops / record.median_s


def measure_stream_rate(device: torch.device, buffer_bytes: int, settings: CalibrationSettings) -> float:
    """Return the copy rate in bytes/s between two FP32 buffers of ``buffer_bytes``, counting read and write."""
    elements = buffer_bytes // DTYPE_BYTES["fp32"]
    source = torch.ones(elements, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    record = _time(lambda: target.copy_(source), device, settings, torch.float32, {"buffer": source.shape})
    bytes_moved = 2 * elements * DTYPE_BYTES["fp32"]  # read the source, write the target
    return bytes_moved / record.median_s


def measure_call_overhead_s(device: torch.device, settings: CalibrationSettings) -> float:
    """Return the median time of an in-place add on one element: torch's dispatch (and launch) cost."""
    x = torch.zeros(1, device=device)
    record = time_callable(lambda: x.add_(1.0), warmup=10, repeats=settings.overhead_repeats, device=device,
                           dtype=torch.float32, shapes={"x": x.shape})
    return record.median_s


def measure_gemm_s(weight: torch.Tensor, tokens: int, settings: CalibrationSettings) -> float:
    """Return the median seconds of a [tokens, in_features] x ``weight`` matmul in the weight's dtype."""
    generator = torch.Generator(device=weight.device).manual_seed(tokens)
    x = torch.randn(tokens, weight.shape[0], generator=generator, device=weight.device).to(weight.dtype)
    record = _time(lambda: x @ weight, weight.device, settings, weight.dtype, {"x": x.shape, "weight": weight.shape})
    return record.median_s


def fit_blend_exponent(data: Mapping[str, Any], settings: CalibrationSettings, measured_s: Sequence[float]) -> tuple[float | None, str]:
    """Fit the roofline blend exponent to GEMMs that stream a weight larger than the caches.

    ``measured_s`` are the times of [tokens, features] x [features, features] FP32 GEMMs, one per
    ``settings.blend_tokens``. Each is predicted through the cost model on the profile in ``data``, whose
    GEMM fraction is 1, so the exponent is the only free parameter. Returns (exponent, source text), or
    (None, note) when a pure roofline fits as well or better.
    """
    features = settings.blend_features
    profile = profile_from_data(data)
    ops = [gemm_call(tokens, features, features, weight_dtype="fp32") for tokens in settings.blend_tokens]

    def predict(values: Mapping[str, float]) -> np.ndarray:
        blended = dataclasses.replace(profile, roofline_blend_exponent=values["exponent"])
        return np.array([predict_call_s(op, blended) for op in ops])

    parameter = FitParameter("exponent", *BLEND_EXPONENT_RANGE, log_scale=True)
    fit = fit_log_space(predict, measured_s, [parameter])
    pure = np.array([predict_call_s(op, dataclasses.replace(profile, roofline_blend_exponent=None)) for op in ops])
    pure_error = float(np.mean(abs_log_errors(pure, measured_s)))
    exponent = fit.values["exponent"]
    weight_mib = features * features * DTYPE_BYTES["fp32"] // BYTES_PER_MIB
    shapes = f"FP32 GEMMs of {', '.join(map(str, settings.blend_tokens))} tokens against a {weight_mib} MiB weight"
    at_upper_end = exponent >= 0.99 * BLEND_EXPONENT_RANGE[1]
    if pure_error <= fit.mean_abs_log_error or at_upper_end:
        return None, f"pure roofline kept: on {shapes} the max of compute and memory time fits within {pure_error:.1%} (mean |log error|)"
    source = (
        f"fitted on {shapes}, predicted by the cost model at the measured peak and bandwidth: "
        f"mean |log error| {fit.mean_abs_log_error:.1%} against {pure_error:.1%} for a pure roofline"
    )
    return exponent, source


def host_memory_bytes() -> float:
    """Return the machine's physical memory in bytes (page size x physical pages)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError) as error:
        raise MeasurementError(f"failed to read the physical memory size with os.sysconf: {error}") from error


# --- profile helpers -------------------------------------------------------------------------------


def profile_from_data(data: Mapping[str, Any]) -> HardwareProfile:
    """Validate profile data and return it as a HardwareProfile in SI units, through the YAML loader."""
    with tempfile.TemporaryDirectory(prefix="dsasim-profile-") as folder:
        path = write_profile_yaml(data, Path(folder) / "profile.yaml")
        return load_profile(str(path))


def profile_name(device: torch.device, threads: int) -> str:
    """Return a profile name from the device model, e.g. ``cpu-intel-xeon-processor-2t``."""
    model = re.sub(r"\((r|tm)\)", "", device_name(device).lower())
    slug = re.sub(r"[^a-z0-9]+", "-", model).strip("-") or "unknown"
    if device.type == "cuda":
        return f"cuda-{slug}"
    return f"cpu-{slug}-{threads}t"


@contextlib.contextmanager
def reuse_freed_host_memory(device: torch.device) -> Iterator[None]:
    """Keep freed host memory for reuse while measuring on a CPU, as a caching allocator would.

    glibc serves each allocation above its mmap threshold (at most 32 MiB) with fresh pages from the
    kernel and returns them on free, so every large torch temporary pays a page fault per 4 KiB page on
    each call. Measured on a 2-core Xeon VM, that made a 32 MB gather 5x slower. GPU serving uses a
    caching allocator and never pays this, and the cost model has no term for it, so while measuring on a
    CPU this turns mmap off and stops trimming the heap. The glibc defaults are restored on exit and the
    heap is trimmed. Elsewhere (non-glibc C libraries, CUDA devices) it changes nothing.
    """
    libc = _glibc() if device.type == "cpu" else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM_THRESHOLD)
    try:
        yield
    finally:
        # NOTE: setting these disables glibc's dynamic mmap threshold for the rest of the process.
        libc.mallopt(_M_MMAP_MAX, _GLIBC_DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        libc = ctypes.CDLL(path)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") and hasattr(libc, "gnu_get_libc_version")):
        logger.warning("C library %s is not glibc: large temporaries may page-fault on every call", path)
        return None
    return libc


def _time(fn: Callable[[], object], device: torch.device, settings: CalibrationSettings, dtype: torch.dtype,
          shapes: Mapping[str, Sequence[int]]) -> TimingRecord:
    return time_callable(fn, warmup=settings.warmup, repeats=settings.repeats, device=device,
                         min_time_s=settings.min_time_s, dtype=dtype, shapes=shapes)


def _peak_source(fp32_rates: Mapping[int, float], bf16_rates: Mapping[int, float], keep_bf16: bool, conditions: str) -> str:
    def rates_text(rates: Mapping[int, float]) -> str:
        return ", ".join(f"{size}: {rate / FLOP_PER_TFLOP:.3g}" for size, rate in rates.items())

    text = (
        f"measured: best median rate of square torch matmuls, TFLOP/s by size, fp32 {rates_text(fp32_rates)}; "
        f"bf16 {rates_text(bf16_rates)} ({conditions})"
    )
    if not keep_bf16:
        text += f"; bf16 left out because it is not {BF16_SPEEDUP_TO_KEEP}x faster than fp32"
    return text


def _notes(stream_rates: Mapping[int, float], bandwidth: float) -> list[str]:
    rates = ", ".join(f"{mib} MiB: {rate / BYTES_PER_GB:.3g}" for mib, rate in stream_rates.items())
    notes = [f"copy rates in GB/s by buffer size: {rates}"]
    cached = [mib for mib, rate in stream_rates.items() if rate > 1.15 * bandwidth]
    if cached:
        largest = max(cached)
        notes.append(
            f"copies of up to {largest} MiB ran over 15 % faster than the bandwidth above, from cache; "
            "the cost model has one memory level, so kernels whose data fits in cache run faster than it predicts"
        )
    return notes


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _ignore_progress(label: str, fraction: float) -> None:
    return None
