"""Validation sweep: fitting, the fit/test split, summaries, the crossover search, the plot and a tiny run."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from dsasim.costmodel.kernel_calls import dense_mqa_decode_call, predict_call_s  # noqa: E402
from dsasim.errors import MeasurementError, OutputError  # noqa: E402
from dsasim.hardware_profiles import load_profile  # noqa: E402
from dsasim.reports.validation_plot import plot_predicted_vs_measured  # noqa: E402
from dsasim.validate import calibrate, sweep  # noqa: E402
from dsasim.validate.calibrate import Guarded  # noqa: E402
from dsasim.validate.fitting import FitParameter, fit_log_space, relative_errors  # noqa: E402
from dsasim.validate.timing import TimingRecord  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def timing_record(median_s: float, samples: tuple[float, ...] | None = None) -> TimingRecord:
    samples = samples or (median_s,)
    return TimingRecord(median_s=median_s, min_s=min(samples), max_s=max(samples), iqr_s=0.0, repeats=len(samples),
                        warmup=0, device="cpu", device_name="test CPU", threads=1, torch_version=torch.__version__,
                        dtype="float32", samples_s=samples)


def guarded(median_s: float, samples: tuple[float, ...] | None = None) -> Guarded[TimingRecord]:
    return Guarded(timing_record(median_s, samples), probe_gemm_s=1.0, probe_copy_s=1.0)


@pytest.fixture
def spec():
    return sweep.validation_spec()


@pytest.fixture
def pool(spec) -> sweep.InputPool:
    return sweep.InputPool(torch.device("cpu"), spec)


# --- fitting ----------------------------------------------------------------------------------------


def test_fit_recovers_fraction_and_overhead() -> None:
    contexts = np.array([1024.0, 2048.0, 4096.0])
    measured = 20e-6 + contexts * 1e-6 / 0.3

    fit = fit_log_space(lambda values: values["overhead_us"] * 1e-6 + contexts * 1e-6 / values["fraction"], measured,
                        [FitParameter("fraction", 1e-4, 1.0, log_scale=True), FitParameter("overhead_us", 0.0, 1000.0)])

    assert fit.values["fraction"] == pytest.approx(0.3, rel=1e-6)
    assert fit.values["overhead_us"] == pytest.approx(20.0, rel=1e-4)
    assert fit.mean_abs_log_error < 1e-9


def test_fit_rejects_three_parameters() -> None:
    parameters = [FitParameter(name, 0.1, 1.0) for name in ("a", "b", "c")]

    with pytest.raises(ValueError, match="at most 2 parameters"):
        fit_log_space(lambda values: np.ones(1), [1.0], parameters)


def test_fit_rejects_non_positive_measurement() -> None:
    with pytest.raises(ValueError, match="positive, finite"):
        fit_log_space(lambda values: np.ones(2), [1.0, 0.0], [FitParameter("a", 0.1, 1.0)])


def test_fit_parameter_log_range_needs_positive_lower() -> None:
    with pytest.raises(ValueError, match="lower > 0"):
        FitParameter("fraction", 0.0, 1.0, log_scale=True)


def test_relative_errors_hand_computed() -> None:
    errors = relative_errors([1.1, 0.5, 2.0], [1.0, 1.0, 1.0])

    assert errors == pytest.approx([0.1, 0.5, 1.0])


def test_fit_profile_recovers_known_efficiency(spec, pool) -> None:
    # On an H800, FP32 dense decode is memory-bound, so the family's bound fraction is the memory fraction.
    base = load_profile("h800")
    base_data = {"name": "h800", "description": "H800", "efficiencies": {
        name: {"compute_fraction": efficiency.compute_fraction, "overhead_us": 0.0, "provenance": efficiency.provenance,
               "source": efficiency.source} for name, efficiency in base.efficiencies.items()}}
    truth = sweep.with_efficiency(base, "mqa_decode", {"memory_fraction": 0.25, "overhead_us": 40.0})
    cases = [sweep.dense_decode_case(spec, 64, context, sweep.FIT, pool, "mqa_decode") for context in (1024, 4096)]
    records = [guarded(predict_call_s(case.ops[0], truth)) for case in cases]

    data = sweep.fit_profile(base_data, base, cases, records)

    entry = data["efficiencies"]["mqa_decode"]
    assert entry["memory_fraction"] == pytest.approx(0.25, rel=1e-3)
    assert entry["compute_fraction"] == base.efficiencies["mqa_decode"].compute_fraction
    assert entry["overhead_us"] == pytest.approx(40.0, rel=1e-2)
    assert entry["provenance"] == "fitted"
    assert "2 timed mqa_decode rows" in entry["source"]
    assert data["efficiencies"]["topk_decode"]["provenance"] == base.efficiencies["topk_decode"].provenance
    assert data["name"] == "h800-fitted"


# --- split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [sweep.QUICK, sweep.FULL], ids=["quick", "full"])
def test_split_puts_test_rows_outside_fit_range(settings, spec, pool) -> None:
    cases = sweep.kernel_cases(spec, settings, pool)

    assert sweep.split_violations(cases) == []


@pytest.mark.parametrize("settings", [sweep.QUICK, sweep.FULL], ids=["quick", "full"])
def test_split_every_family_has_fit_and_test_rows(settings, spec, pool) -> None:
    cases = sweep.kernel_cases(spec, settings, pool)

    for family in sweep.FAMILY_PARAMETERS:
        splits = {case.split for case in cases if case.kernel == family}
        assert splits == {sweep.FIT, sweep.TEST}, family
    for path in (sweep.DENSE_PATH, sweep.DSA_PATH):
        assert {case.split for case in cases if case.kernel == path} == {sweep.TEST}


@pytest.mark.parametrize("settings", [sweep.QUICK, sweep.FULL], ids=["quick", "full"])
def test_split_fit_rows_are_shortest(settings, spec, pool) -> None:
    cases = sweep.kernel_cases(spec, settings, pool)

    for family in ("mqa_decode", "indexer_logits_decode", "topk_decode"):
        fit = [case.shape["context_tokens"] for case in cases if case.kernel == family and case.split == sweep.FIT]
        test = [case.shape["context_tokens"] for case in cases if case.kernel == family and case.split == sweep.TEST]
        assert max(fit) < min(test), family


def test_split_violation_reported(spec, pool) -> None:
    cases = [sweep.dense_decode_case(spec, 64, context, sweep.FIT, pool, "mqa_decode") for context in (1024, 4096)]
    cases.append(sweep.dense_decode_case(spec, 64, 2048, sweep.TEST, pool, "mqa_decode"))
    cases.append(sweep.dsa_decode_case(spec, 64, 3000, sweep.TEST, pool))
    cases.append(sweep.dense_decode_case(spec, 64, 3000, sweep.TEST, pool, sweep.DENSE_PATH))

    violations = sweep.split_violations(cases)

    assert len(violations) == 2
    assert "mqa_decode test row" in violations[0]
    assert "dense_decode test row" in violations[1]


def test_path_ops_cover_indexer_topk_sparse(spec) -> None:
    kernels = [op.kernel for op in sweep.dsa_path_ops(spec, 64, 4096)]

    assert kernels == ["indexer_logits_decode", "topk_decode", "sparse_mqa_decode"]
    assert spec.index_topk >= 256
    assert spec.num_attention_heads >= 16


# --- summary ------------------------------------------------------------------------------------------


def test_summary_medians_hand_computed() -> None:
    rows = pd.DataFrame({
        "kernel": ["a", "a", "a", "a", "b", "b"],
        "split": ["fit", "test", "test", "test", "test", "test"],
        "predicted_s": [1.0, 1.1, 1.2, 0.5, 2.0, 1.0],
        "measured_s": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    })

    summary = sweep.summarize(rows).set_index(["kernel", "split"])

    assert summary.loc[("a", "fit"), "median_error_fraction"] == pytest.approx(0.0)
    assert summary.loc[("a", "test"), "rows"] == 3
    assert summary.loc[("a", "test"), "median_error_fraction"] == pytest.approx(0.2)
    assert summary.loc[("a", "test"), "p90_error_fraction"] == pytest.approx(0.44)  # sorted 0.1, 0.2, 0.5: 0.2 + 0.8 * 0.3
    assert summary.loc[("b", "test"), "median_error_fraction"] == pytest.approx(0.5)
    assert summary.loc[("all", "test"), "rows"] == 5
    assert summary.loc[("all", "test"), "median_error_fraction"] == pytest.approx(0.2)


def test_summary_lists_all_last() -> None:
    rows = pd.DataFrame({"kernel": ["b", "a"], "split": ["test", "fit"], "predicted_s": [1.0, 1.0],
                         "measured_s": [1.0, 1.0]})

    summary = sweep.summarize(rows)

    assert summary["kernel"].tolist() == ["a", "b", "all", "all"]
    assert summary["split"].tolist()[-2:] == ["fit", "test"]


def test_format_summary_in_percent() -> None:
    summary = pd.DataFrame({"kernel": ["a"], "split": ["test"], "rows": [3], "median_error_fraction": [0.123],
                            "p90_error_fraction": [0.5]})

    text = sweep.format_summary(summary)

    assert "12.3" in text
    assert "50.0" in text


# --- crossover --------------------------------------------------------------------------------------


def test_measured_crossover_interpolates() -> None:
    contexts = [100, 200, 300, 400]
    dense = [1.0, 2.0, 3.0, 4.0]
    dsa = [2.0, 2.5, 2.5, 2.5]  # margin -1, -0.5, +0.5, +1.5

    assert sweep.measured_crossover_tokens(contexts, dense, dsa) == pytest.approx(250.0)


def test_measured_crossover_takes_last_crossing() -> None:
    contexts = [100, 200, 300, 400]
    dense = [3.0, 1.0, 3.0, 4.0]
    dsa = [2.0, 2.0, 2.0, 2.0]  # faster, slower, faster for good

    assert sweep.measured_crossover_tokens(contexts, dense, dsa) == pytest.approx(150.0 + 100.0)


@pytest.mark.parametrize("dsa", [[3.0, 3.0, 3.0], [0.5, 0.5, 0.5]], ids=["never-faster", "always-faster"])
def test_measured_crossover_outside_grid(dsa) -> None:
    assert sweep.measured_crossover_tokens([1, 2, 3], [1.0, 2.0, 2.5], dsa) is None


def test_predicted_crossover_is_first_faster_context(spec) -> None:
    profile = load_profile("h800")

    crossover = sweep.predicted_crossover_tokens(spec, 64, profile)

    def margin(context: int) -> float:
        dense_s = predict_call_s(dense_mqa_decode_call(spec, 64, context, latent_format="fp32", dtype="fp32"), profile)
        return dense_s - sweep.predicted_path_s(sweep.dsa_path_ops(spec, 64, context), profile)

    assert crossover is not None
    assert margin(crossover) > 0
    assert margin(crossover - 1) <= 0


def test_crossover_grid_spans_around_prediction() -> None:
    grid = sweep.crossover_grid(1000.0, 12, 2.0, sweep.CONTEXT_ALIGNMENT)

    assert grid == sorted(grid)
    assert len(grid) == 12
    assert all(context % sweep.CONTEXT_ALIGNMENT == 0 for context in grid)
    assert grid[0] == pytest.approx(500, abs=sweep.CONTEXT_ALIGNMENT)
    assert grid[-1] == pytest.approx(2000, abs=sweep.CONTEXT_ALIGNMENT)


def test_pooled_record_merges_samples() -> None:
    pooled = sweep._pooled([guarded(2.0, (1.0, 2.0, 3.0)), guarded(5.0, (4.0, 5.0, 6.0))])

    assert pooled.value.repeats == 6
    assert pooled.value.median_s == pytest.approx(3.5)
    assert pooled.value.min_s == 1.0
    assert pooled.value.max_s == 6.0


def test_disturbed_pass_dropped() -> None:
    guard = calibrate.SpeedGuard(torch.device("cpu"), gemm_size=16, copy_mib=1)
    guard.warm_up(probes=1)
    # Probe times far above the guard's make every pass unsteady, so all are judged by their medians.
    passes = [Guarded(timing_record(median_s), probe_gemm_s=1e9, probe_copy_s=1e9) for median_s in (1.0, 1.1, 3.0)]

    remaining = sweep._steady_passes(passes, guard)

    assert [measurement.value.median_s for measurement in remaining] == [1.0, 1.1]


# --- plot -------------------------------------------------------------------------------------------


def test_plot_writes_png(tmp_path: Path) -> None:
    rows = pd.DataFrame({
        "kernel": ["gemm", "gemm", "topk_decode"],
        "split": ["fit", "test", "test"],
        "predicted_s": [1e-3, 2e-3, 5e-4],
        "measured_s": [1.1e-3, 1.9e-3, 6e-4],
    })
    path = tmp_path / "plot.png"

    written = plot_predicted_vs_measured(rows, path, title="test")

    assert written == path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [entry.name for entry in tmp_path.iterdir()] == ["plot.png"]  # no temporary file left behind


def test_plot_rejects_missing_column(tmp_path: Path) -> None:
    rows = pd.DataFrame({"kernel": ["gemm"], "predicted_s": [1.0], "measured_s": [1.0]})

    with pytest.raises(ValueError, match="split"):
        plot_predicted_vs_measured(rows, tmp_path / "plot.png")


def test_plot_rejects_non_positive_time(tmp_path: Path) -> None:
    rows = pd.DataFrame({"kernel": ["gemm"], "split": ["fit"], "predicted_s": [0.0], "measured_s": [1.0]})

    with pytest.raises(ValueError, match="positive"):
        plot_predicted_vs_measured(rows, tmp_path / "plot.png")


# --- run_validation -------------------------------------------------------------------------------------


def test_run_validation_unknown_device(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError, match="unknown device 'gpu'"):
        sweep.run_validation("gpu", tmp_path, quick=True, profile_path=None)


def test_run_validation_cuda_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(MeasurementError, match=r"CUDA device requested but torch.cuda.is_available\(\) is False"):
        sweep.run_validation("cuda", tmp_path / "out", quick=True, profile_path=None)

    assert not (tmp_path / "out").exists()


def test_run_validation_out_is_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")

    with pytest.raises(OutputError, match="is an existing file"):
        sweep.run_validation("cpu", target, quick=True, profile_path=None)


def test_run_validation_profile_of_gpu_rejected(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError, match="describes a gpu"):
        sweep.run_validation("cpu", tmp_path / "out", quick=True, profile_path=Path("h800"))

    assert not (tmp_path / "out").exists()


TINY_SWEEP = dataclasses.replace(
    sweep.QUICK,
    batch=4,
    gemm_features=64,
    gemm_fit_tokens=(8, 16),
    gemm_test_tokens=(32,),
    mha_fit_seq_lens=(16, 24),
    mha_test_seq_lens=(32,),
    mqa_fit_contexts=(64, 96),
    mqa_test_contexts=(128,),
    sparse_context=64,
    sparse_fit_batches=(4, 6),
    sparse_test_batches=(8,),
    indexer_fit_contexts=(64, 96),
    indexer_test_contexts=(128,),
    topk_fit_keys=(64, 96),
    topk_test_keys=(128,),
    path_test_contexts=(256,),
    crossover_points=4,
    crossover_rounds=1,
    rounds=1,
    wait_budget_s=0.0,
    warmup=0,
    repeats=2,
    min_time_s=0.0,
)
TINY_CALIBRATION = calibrate.CalibrationSettings(gemm_sizes=(32,), stream_buffers_mib=(1, 2), blend_features=64,
                                                 blend_tokens=(2, 4), warmup=0, repeats=2, min_time_s=0.0,
                                                 overhead_repeats=5, wait_budget_s=0.0)


VALIDATION_SPEC = sweep.validation_spec()


def tiny_spec():
    return dataclasses.replace(VALIDATION_SPEC, num_attention_heads=16, kv_lora_rank=64, qk_rope_head_dim=16,
                               qk_nope_head_dim=32, v_head_dim=32, index_n_heads=4, index_head_dim=32, index_topk=16)


def test_run_validation_tiny_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "QUICK", TINY_SWEEP)
    monkeypatch.setattr(sweep, "validation_spec", tiny_spec)
    monkeypatch.setattr(calibrate, "CPU_QUICK", TINY_CALIBRATION)
    tiny_guard = functools.partial(calibrate.SpeedGuard, gemm_size=16, copy_mib=1, pause_s=0.0)
    monkeypatch.setattr(sweep, "SpeedGuard", tiny_guard)
    fractions: list[float] = []

    result = sweep.run_validation("cpu", tmp_path / "out", quick=True, profile_path=None,
                                  progress=lambda label, fraction: fractions.append(fraction))

    out = tmp_path / "out"
    for name in ("validation.csv", "summary.csv", "crossover.csv", "measured_profile.yaml",
                 "fitted_profile.yaml"):
        assert (out / name).is_file(), name
    rows = pd.read_csv(out / "validation.csv")
    for column in ("kernel", "phase", "split", "predicted_s", "measured_s", "error_fraction", "batch", "context_tokens",
                   "device", "dtype", "threads", "torch_version", "speed_fraction"):
        assert column in rows.columns, column
    assert set(rows["split"]) == {"fit", "test"}
    assert len(rows) == len(result.rows)
    assert (rows["predicted_s"] > 0).all()
    fitted = load_profile(str(out / "fitted_profile.yaml"))
    assert fitted.efficiencies["mqa_decode"].provenance == "fitted"
    assert fitted.efficiencies["sparse_mqa_prefill"].provenance == "assumed"
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert "speedup_at_longest" in result.crossover
