"""Predictions of published H800 kernel timings, and the kernel-call counts behind them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from dsasim.costmodel import kernel_calls
from dsasim.costmodel.specs import load_spec
from dsasim.errors import MeasurementError
from dsasim.hardware_profiles import load_profile
from dsasim.validate.published import FORMATS, SHIPPED_H800_DIR, predict_measurements, read_measurements, summarize

MEDIAN_ERROR_TARGET_FRACTION = 0.15


@pytest.fixture(scope="module")
def h800_rows() -> pd.DataFrame:
    return predict_measurements(read_measurements(SHIPPED_H800_DIR), load_profile("h800"), calibrated_on_shipped_rows=True)


def test_every_shipped_format_is_read(h800_rows: pd.DataFrame) -> None:
    assert set(h800_rows["kernel"]) == set(FORMATS)
    assert len(h800_rows) == 89


@pytest.mark.parametrize("kernel", sorted(FORMATS))
def test_h800_median_error_per_family(h800_rows: pd.DataFrame, kernel: str) -> None:
    errors = h800_rows.loc[h800_rows["kernel"] == kernel, "error_fraction"]
    assert errors.median() <= MEDIAN_ERROR_TARGET_FRACTION


def test_split_marks_calibration_rows(h800_rows: pd.DataFrame) -> None:
    decode = h800_rows[h800_rows["kernel"] == "mla_decode_dense"]
    assert set(decode.loc[decode["batch_size"] == 16, "split"]) == {"fit"}
    assert set(decode.loc[decode["batch_size"] == 64, "split"]) == {"test"}


def test_summary_has_both_splits(h800_rows: pd.DataFrame) -> None:
    summary = summarize(h800_rows)
    gemm = summary[summary["kernel"] == "gemm_fp8"].set_index("split")
    assert set(gemm.index) == {"fit", "test"}
    assert gemm.loc["test", "rows"] == 33


def test_subset_folder_ignores_other_files(tmp_path: Path) -> None:
    shutil.copy(SHIPPED_H800_DIR / "gemm_fp8.csv", tmp_path / "gemm_fp8.csv")
    (tmp_path / "notes.txt").write_text("not a measurement")
    rows = read_measurements(tmp_path)
    assert set(rows["kernel"]) == {"gemm_fp8"}


def test_unknown_format_lists_known(tmp_path: Path) -> None:
    (tmp_path / "flash_decoding.csv").write_text("a,latency_us\n1,2\n")
    with pytest.raises(MeasurementError, match="unknown format: the file name names the kernel it contains, so rename it to one of gemm_fp8.csv"):
        read_measurements(tmp_path)


def test_missing_column_named(tmp_path: Path) -> None:
    (tmp_path / "gemm_fp8.csv").write_text("m,k,latency_us\n1,2,3\n")
    with pytest.raises(MeasurementError, match="lacks column n"):
        read_measurements(tmp_path)


def test_bad_value_names_line(tmp_path: Path) -> None:
    (tmp_path / "gemm_fp8.csv").write_text("m,k,n,latency_us\n16,7168,1536,10\n16,-1,1536,10\n")
    with pytest.raises(MeasurementError, match="line 3: k = -1 is invalid"):
        read_measurements(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError, match="no CSV files"):
        read_measurements(tmp_path)


# --- causal and top-k factors, by hand --------------------------------------------------------------------


def test_mha_prefill_call_counts_causal_half() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    op = kernel_calls.mha_prefill_call(spec, 1024)
    # token p executes p earlier keys: 1024 * 1023 / 2 pairs of 81,920 FLOPs
    assert op.flops_per_call[0] == 1024 * 1023 / 2 * 81_920


def test_indexer_prefill_call_counts_causal_block() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    op = kernel_calls.indexer_prefill_call(spec, 2048, 4096)
    # 2048 queries at the end of 4096 keys: 2048 * (4096 - 1024) pairs of 16,384 FLOPs
    assert op.flops_per_call[0] == 2048 * 3072 * 16_384


def test_sparse_decode_call_executes_topk_slots() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    op = kernel_calls.sparse_mqa_decode_call(spec, 64)
    assert op.flops_per_call[0] == 64 * 2048 * 278_528
    # each slot gathers one 656-byte FP8 latent entry
    assert op.bytes_per_call[0] == 64 * 2048 * 656


def test_header_only_csv_rejected(tmp_path: Path) -> None:
    (tmp_path / "gemm_fp8.csv").write_text("m,k,n,latency_us\n")
    with pytest.raises(MeasurementError, match="has no rows"):
        read_measurements(tmp_path)


def test_measurement_path_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gemm_fp8.csv"
    path.write_text("m,k,n,latency_us\n1,2,3,4\n")
    with pytest.raises(MeasurementError, match="is a file: pass the folder"):
        read_measurements(path)
