"""Device calibration: the profile it writes, device checks, blend fit and the speed guard."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from dsasim.costmodel.kernel_calls import gemm_call, predict_call_s  # noqa: E402
from dsasim.errors import MeasurementError, ProfileError  # noqa: E402
from dsasim.hardware_profiles import KERNEL_CLASSES, load_profile  # noqa: E402
from dsasim.validate import calibrate  # noqa: E402

TINY = calibrate.CalibrationSettings(
    gemm_sizes=(32, 64),
    stream_buffers_mib=(1, 2),
    blend_features=128,
    blend_tokens=(2, 4, 8),
    warmup=0,
    repeats=2,
    min_time_s=0.0,
    overhead_repeats=5,
    wait_budget_s=0.0,
)
TINY_GUARD = functools.partial(calibrate.SpeedGuard, gemm_size=16, copy_mib=1, pause_s=0.0)


@pytest.fixture
def tiny_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink every microbenchmark and the speed guard's probes so calibration takes well under a second."""
    monkeypatch.setattr(calibrate, "CPU_QUICK", TINY)
    monkeypatch.setattr(calibrate, "CPU_FULL", TINY)
    monkeypatch.setattr(calibrate, "SpeedGuard", TINY_GUARD)


@pytest.fixture
def cpu_profile(tmp_path: Path, tiny_calibration: None) -> tuple[dict, Path]:
    path = tmp_path / "cpu.yaml"
    data = calibrate.calibrate_device("cpu", path, quick=True)
    return data, path


def test_calibrate_writes_loadable_profile(cpu_profile: tuple[dict, Path]) -> None:
    data, path = cpu_profile

    profile = load_profile(str(path))

    assert profile.name == data["name"]
    assert profile.device_kind == "cpu"
    assert profile.peak_flops_per_s["fp32"] > 0
    assert profile.hbm_bandwidth_bytes_per_s > 0
    assert profile.kernel_launch_s > 0


def test_calibrate_file_matches_returned_data(cpu_profile: tuple[dict, Path]) -> None:
    data, path = cpu_profile

    assert yaml.safe_load(path.read_text(encoding="utf-8")) == data


def test_calibrate_cpu_leaves_out_gpu_fields(cpu_profile: tuple[dict, Path]) -> None:
    data, path = cpu_profile
    profile = load_profile(str(path))

    for key in ("sm_count", "scale_up", "scale_out", "price"):
        assert key not in data
    assert profile.sm_count is None
    assert profile.scale_up is None
    assert profile.scale_out is None
    assert profile.price is None


def test_calibrate_covers_every_kernel_class(cpu_profile: tuple[dict, Path]) -> None:
    data, _ = cpu_profile

    assert set(data["efficiencies"]) == set(KERNEL_CLASSES)
    assert data["efficiencies"]["gemm_bf16"]["provenance"] == "measured"
    assert data["efficiencies"]["gemm_bf16"]["compute_fraction"] == 1.0
    assert data["efficiencies"]["mqa_decode"]["provenance"] == "assumed"


def test_calibrate_capacity_is_host_memory(cpu_profile: tuple[dict, Path]) -> None:
    data, _ = cpu_profile
    expected_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30

    assert data["hbm_capacity_gib"] == pytest.approx(expected_gib, rel=1e-3)


def test_calibrate_stream_fraction_is_one(cpu_profile: tuple[dict, Path]) -> None:
    data, _ = cpu_profile

    assert data["hbm_stream_fraction"] == 1.0
    assert "copy" in data["hbm_source"]


def test_calibrate_unknown_device_rejected(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError, match=r"unknown device 'tpu' \(known: cpu, cuda\)"):
        calibrate.calibrate_device("tpu", tmp_path / "x.yaml")

    assert not (tmp_path / "x.yaml").exists()


def test_calibrate_cuda_unavailable_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(MeasurementError, match=r"torch.cuda.is_available\(\) is False: use --device cpu"):
        calibrate.calibrate_device("cuda", tmp_path / "x.yaml")

    assert not (tmp_path / "x.yaml").exists()


def test_calibrate_bad_out_path_rejected_before_measuring(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="ending in .yaml"):
        calibrate.calibrate_device("cpu", tmp_path / "profile.txt")
    with pytest.raises(ProfileError, match="not found"):
        calibrate.calibrate_device("cpu", tmp_path / "missing" / "profile.yaml")


def test_profile_name_is_a_valid_slug() -> None:
    name = calibrate.profile_name(torch.device("cpu"), 2)

    assert name.startswith("cpu-")
    assert name.endswith("-2t")
    assert all(character.isalnum() or character in "-._" for character in name)


def test_blend_exponent_recovered(cpu_profile: tuple[dict, Path]) -> None:
    data, path = cpu_profile
    profile = dataclasses.replace(load_profile(str(path)), roofline_blend_exponent=2.0)
    features = TINY.blend_features
    measured = [predict_call_s(gemm_call(tokens, features, features, weight_dtype="fp32"), profile)
                for tokens in TINY.blend_tokens]

    exponent, source = calibrate.fit_blend_exponent(data, TINY, measured)

    assert exponent == pytest.approx(2.0, rel=1e-3)
    assert "fitted" in source


def test_blend_exponent_pure_roofline_kept(cpu_profile: tuple[dict, Path]) -> None:
    data, path = cpu_profile
    profile = dataclasses.replace(load_profile(str(path)), roofline_blend_exponent=None)
    features = TINY.blend_features
    measured = [predict_call_s(gemm_call(tokens, features, features, weight_dtype="fp32"), profile)
                for tokens in TINY.blend_tokens]

    exponent, source = calibrate.fit_blend_exponent(data, TINY, measured)

    assert exponent is None
    assert "pure roofline" in source


class ScriptedGuard(calibrate.SpeedGuard):
    """A speed guard whose probe times follow a script: (gemm seconds, copy seconds) per probe."""

    def __init__(self, probe_times: list[tuple[float, float]], **kwargs: float) -> None:
        super().__init__(torch.device("cpu"), gemm_size=16, copy_mib=1, pause_s=0.0, **kwargs)
        self.script = list(probe_times)

    def probe(self) -> tuple[float, float]:
        gemm_s, copy_s = self.script.pop(0)
        self._best_gemm_s = min(self._best_gemm_s, gemm_s)
        self._best_copy_s = min(self._best_copy_s, copy_s)
        return gemm_s, copy_s


def test_speed_guard_retries_slow_measurement() -> None:
    # Fast warm-up probe, then a run whose closing probe is 3x slow, then a steady run.
    guard = ScriptedGuard([(1.0, 1.0), (1.0, 1.0), (3.0, 1.0), (1.0, 1.0), (1.0, 1.0)], wait_budget_s=10.0)
    guard.warm_up(probes=1)
    calls = []

    measurement = guard.measure(lambda: calls.append(len(calls)) or len(calls))

    assert calls == [0, 1]
    assert measurement.value == 2
    assert guard.is_steady(measurement)
    assert guard.unsteady_measurements == 0


def test_speed_guard_keeps_measurement_without_budget() -> None:
    guard = ScriptedGuard([(1.0, 1.0), (1.0, 3.0), (1.0, 3.0)], wait_budget_s=0.0)
    guard.warm_up(probes=1)

    measurement = guard.measure(lambda: "value")

    assert measurement.value == "value"
    assert not guard.is_steady(measurement)
    assert guard.speed_fraction(measurement) == pytest.approx(1 / 3)
    assert guard.unsteady_measurements == 1


def test_speed_guard_judges_again_with_later_probes() -> None:
    guard = ScriptedGuard([(2.0, 1.0), (2.0, 1.0), (1.0, 1.0)], wait_budget_s=0.0)
    measurement = guard.measure(lambda: None)
    assert guard.is_steady(measurement)

    guard.probe()  # a faster probe shows the machine was at half speed

    assert not guard.is_steady(measurement)
    assert guard.speed_fraction(measurement) == pytest.approx(0.5)


def test_measure_steadily_measures_unsteady_step_again() -> None:
    # Step a: probes 1, 1. Step b: probes 1, 2 (slow, kept for lack of a per-measurement wait).
    # Second pass, step b again: probes 1, 1.
    guard = ScriptedGuard([(1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (2.0, 1.0), (1.0, 1.0), (1.0, 1.0)],
                          wait_budget_s=10.0, max_wait_s=0.0)
    runs = {"a": 0, "b": 0}

    def counter(key: str) -> int:
        runs[key] += 1
        return runs[key]

    steps = [calibrate.Step("a", "a", lambda: counter("a")), calibrate.Step("b", "b", lambda: counter("b"))]
    measurements = calibrate.measure_steadily(guard, steps)

    assert runs == {"a": 1, "b": 2}
    assert measurements["b"].value == 2
    assert all(guard.is_steady(measurement) for measurement in measurements.values())


def test_reuse_freed_host_memory_restores_allocation() -> None:
    with calibrate.reuse_freed_host_memory(torch.device("cpu")):
        big = torch.empty(40 * 2**20 // 4)
        del big

    after = torch.ones(8)
    assert float(after.sum()) == 8.0


def test_measure_stream_rate_positive() -> None:
    rate = calibrate.measure_stream_rate(torch.device("cpu"), 2**20, TINY)

    assert np.isfinite(rate)
    assert rate > 0
