"""Measure a device's hardware profile with torch microbenchmarks and write it as profile YAML.

What is measured, on the device and with the thread count of the run:

- GEMM peaks: square torch matmuls per dtype; the peak is the best median rate over the sizes tried.
  BF16 is kept only where it is meaningfully faster than FP32 (on a CPU, with AMX or AVX-512 BF16).
- streaming bandwidth: ``dst.copy_(src)`` of FP32 buffers, read plus write bytes; the median rate of
  the largest buffers, which stream from DRAM (HBM on a GPU) rather than from cache.
- per-call overhead: a one-element in-place add, the fixed cost of dispatching any torch op.
- roofline blend exponent: GEMMs that stream a large weight at a few token counts around the ridge
  point, predicted through the cost model with the exponent as the one free parameter.

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
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsasim.costmodel.dtypes import DTYPE_BYTES
from dsasim.costmodel.kernel_calls import gemm_call, predict_call_s
from dsasim.errors import MeasurementError
from dsasim.hardware_profiles import KERNEL_CLASSES, HardwareProfile, load_profile, write_profile_yaml
from dsasim.hardware_profiles.loader import BYTES_PER_GIB, BYTES_PER_TB, FLOP_PER_TFLOP, MICROSECONDS_PER_SECOND
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

SUPPORTED_DEVICES = ("cpu", "cuda")
BYTES_PER_MIB = 2**20
BYTES_PER_GB = 1e9
# BF16 enters the profile only when its GEMM rate beats FP32 by this factor; a CPU without BF16 units
# converts to FP32 and gains nothing, and a peak that is no faster would only add noise.
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

    gemm_sizes: tuple[int, ...]  # square GEMM sizes; the peak is the best median rate among them
    stream_buffers_mib: tuple[int, ...]  # copy buffer sizes; the two largest give the bandwidth
    blend_features: int  # in = out features of the streaming GEMMs that fit the blend exponent
    blend_tokens: tuple[int, ...]  # their token counts, around the ridge point
    warmup: int
    repeats: int
    min_time_s: float  # timed calls continue until their times add up to this
    overhead_repeats: int


CPU_QUICK = CalibrationSettings(
    gemm_sizes=(1024, 1536),
    stream_buffers_mib=(16, 32, 64, 128, 256),
    blend_features=8192,
    blend_tokens=(8, 16, 32, 64, 128, 256),
    warmup=1,
    repeats=5,
    min_time_s=0.05,
    overhead_repeats=200,
)
CPU_FULL = CalibrationSettings(
    gemm_sizes=(1024, 1536, 2048, 3072),
    stream_buffers_mib=(16, 32, 64, 128, 256, 512, 1024),
    blend_features=8192,
    blend_tokens=(8, 16, 32, 64, 128, 256, 512),
    warmup=2,
    repeats=9,
    min_time_s=0.2,
    overhead_repeats=1000,
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
)
CUDA_FULL = dataclasses.replace(CUDA_QUICK, gemm_sizes=(4096, 8192, 16384), stream_buffers_mib=(256, 1024, 2048, 4096),
                                repeats=20, min_time_s=0.2, overhead_repeats=1000)


@dataclass(frozen=True)
class StreamRate:
    """Copy rate of one buffer size: read plus write bytes per second."""

    buffer_bytes: int
    bytes_per_s: float


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
    an unknown or unavailable device and ProfileError when the file cannot be written.
    """
    torch_device = resolve_device(device)
    out_path = Path(out_path)
    with fixed_threads(measurement_threads()), reuse_freed_host_memory(torch_device):
        data = measure_profile_data(torch_device, quick, progress)
    write_profile_yaml(data, out_path)
    return data


def measure_profile_data(device: torch.device, quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    """Run the microbenchmarks on ``device`` and return profile data laid out as in the YAML files.

    The caller fixes the thread count; every rate is measured with torch's current intra-op threads.
    """
    settings = settings_for(device, quick)
    report = progress or _ignore_progress
    threads = torch.get_num_threads()

    report("calibrate: fp32 GEMM", 0.0)
    fp32_rates = {size: measure_gemm_flops_per_s(device, torch.float32, size, settings) for size in settings.gemm_sizes}
    report("calibrate: bf16 GEMM", 0.25)
    bf16_rates = {size: measure_gemm_flops_per_s(device, torch.bfloat16, size, settings) for size in settings.gemm_sizes}
    report("calibrate: streaming bandwidth", 0.45)
    stream_rates = [measure_stream_rate(device, mib * BYTES_PER_MIB, settings) for mib in settings.stream_buffers_mib]
    report("calibrate: per-call overhead", 0.7)
    overhead_s = measure_call_overhead_s(device, settings)

    fp32_peak = max(fp32_rates.values())
    bf16_peak = max(bf16_rates.values())
    keep_bf16 = device.type == "cuda" or bf16_peak >= BF16_SPEEDUP_TO_KEEP * fp32_peak
    bandwidth = float(np.median([rate.bytes_per_s for rate in stream_rates[-2:]]))
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
    largest = [rate.buffer_bytes // BYTES_PER_MIB for rate in stream_rates[-2:]]
    data.update({
        "hbm_bandwidth_tb_per_s": _round(bandwidth / BYTES_PER_TB),
        "hbm_capacity_gib": _round(capacity_bytes / BYTES_PER_GIB),
        "hbm_stream_fraction": 1.0,
        "hbm_source": (
            f"measured: median copy rate, read plus write bytes, of {' and '.join(map(str, largest))} MiB FP32 buffers "
            f"({conditions}); the stream fraction is 1 because the bandwidth is itself the copy rate; "
            f"capacity from {capacity_source}"
        ),
        "kernel_launch_us": _round(overhead_s * MICROSECONDS_PER_SECOND),
        "kernel_launch_source": f"measured: median time of an in-place add on a one-element tensor ({conditions})",
        "efficiencies": initial_efficiencies(overhead_s, fp32_rates, conditions),
        "notes": _notes(stream_rates, bandwidth),
    })

    report("calibrate: roofline blend", 0.75)
    exponent, blend_source = fit_blend_exponent(device, data, settings)
    if exponent is not None:
        data["roofline_blend_exponent"] = _round(exponent)
        data["roofline_blend_source"] = blend_source
    else:
        data["notes"].append(blend_source)
    report("calibrate: done", 1.0)
    logger.info("calibrated %s: fp32 %.3g TFLOP/s, %.3g GB/s, %.3g us per call", name, fp32_peak / FLOP_PER_TFLOP,
                bandwidth / BYTES_PER_GB, overhead_s * MICROSECONDS_PER_SECOND)
    return data


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


def measure_stream_rate(device: torch.device, buffer_bytes: int, settings: CalibrationSettings) -> StreamRate:
    """Return the copy rate between two FP32 buffers of ``buffer_bytes``, counting read and write bytes."""
    elements = buffer_bytes // DTYPE_BYTES["fp32"]
    source = torch.ones(elements, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    record = _time(lambda: target.copy_(source), device, settings, torch.float32, {"buffer": source.shape})
    bytes_moved = 2 * elements * DTYPE_BYTES["fp32"]  # read the source, write the target
    return StreamRate(buffer_bytes=buffer_bytes, bytes_per_s=bytes_moved / record.median_s)


def measure_call_overhead_s(device: torch.device, settings: CalibrationSettings) -> float:
    """Return the median time of an in-place add on one element: torch's dispatch (and launch) cost."""
    x = torch.zeros(1, device=device)
    record = time_callable(lambda: x.add_(1.0), warmup=10, repeats=settings.overhead_repeats, device=device,
                           dtype=torch.float32, shapes={"x": x.shape})
    return record.median_s


def fit_blend_exponent(device: torch.device, data: Mapping[str, Any], settings: CalibrationSettings) -> tuple[float | None, str]:
    """Fit the roofline blend exponent on GEMMs that stream a weight larger than the caches.

    Each GEMM [tokens, features] x [features, features] is predicted through the cost model on the
    profile in ``data``, whose GEMM fraction is 1, so the exponent is the only free parameter. Returns
    (exponent, source text), or (None, note) when a pure roofline fits as well or better.
    """
    features = settings.blend_features
    generator = torch.Generator(device=device).manual_seed(1)
    weight = torch.randn(features, features, generator=generator, device=device)
    measured: list[float] = []
    for tokens in settings.blend_tokens:
        x = torch.randn(tokens, features, generator=generator, device=device)
        record = _time(lambda x=x: x @ weight, device, settings, torch.float32, {"x": x.shape, "weight": weight.shape})
        measured.append(record.median_s)
    del weight

    profile = profile_from_data(data)
    ops = [gemm_call(tokens, features, features, weight_dtype="fp32") for tokens in settings.blend_tokens]

    def predict(values: Mapping[str, float]) -> np.ndarray:
        blended = dataclasses.replace(profile, roofline_blend_exponent=values["exponent"])
        return np.array([predict_call_s(op, blended) for op in ops])

    parameter = FitParameter("exponent", *BLEND_EXPONENT_RANGE, log_scale=True)
    fit = fit_log_space(predict, measured, [parameter])
    pure = np.array([predict_call_s(op, dataclasses.replace(profile, roofline_blend_exponent=None)) for op in ops])
    pure_error = float(np.mean(abs_log_errors(pure, measured)))
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


def _notes(stream_rates: Sequence[StreamRate], bandwidth: float) -> list[str]:
    rates = ", ".join(f"{rate.buffer_bytes // BYTES_PER_MIB} MiB: {rate.bytes_per_s / BYTES_PER_GB:.3g}" for rate in stream_rates)
    notes = [f"copy rates in GB/s by buffer size: {rates}"]
    cached = [rate for rate in stream_rates if rate.bytes_per_s > 1.15 * bandwidth]
    if cached:
        largest = max(rate.buffer_bytes for rate in cached) // BYTES_PER_MIB
        notes.append(
            f"copies of up to {largest} MiB ran over 15 % faster than the bandwidth above, from cache; "
            "the cost model has one memory level, so kernels whose data fits in cache run faster than it predicts"
        )
    return notes


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _ignore_progress(label: str, fraction: float) -> None:
    return None
