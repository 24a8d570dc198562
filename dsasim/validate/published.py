"""Validation against published kernel timings (CSV files in the H800 kernel-table formats).

Each known file stem is one kernel; every row is one layer's kernel call with its shapes and a measured
``latency_us``. The prediction for a row goes through ``dsasim.costmodel.kernel_calls`` on a hardware
profile, so the same formulas cost a measured row and a serving step. Nothing is measured here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dsasim.costmodel import kernel_calls
from dsasim.costmodel.ops import Op
from dsasim.costmodel.specs import ModelSpec, load_spec
from dsasim.errors import MeasurementError
from dsasim.hardware_profiles.profile import HardwareProfile

MICROSECONDS_PER_SECOND = 1e6
SHIPPED_H800_DIR = Path(__file__).parent / "data" / "h800"
# The model whose dimensions the published kernels were run at (128 heads, latent 512 + 64, top-k 2048).
PUBLISHED_KERNEL_MODEL = "deepseek-v3.2-exp"


@dataclass(frozen=True)
class KernelFormat:
    """One published CSV format: its kernel, phase, shape columns and how to build the call."""

    phase: str
    shape_columns: tuple[str, ...]
    build: Callable[[ModelSpec, pd.Series], Op]


def _int(row: pd.Series, column: str) -> int:
    return int(row[column])


def _cache_format(row: pd.Series, default: str) -> str:
    """Return the latent cache format in a row's kv_dtype column, else the kernel's usual one."""
    value = row.get("kv_dtype")
    return str(value) if isinstance(value, str) and value in ("bf16", "fp8") else default


FORMATS: dict[str, KernelFormat] = {
    "gemm_fp8": KernelFormat("any", ("m", "k", "n"),
                             lambda spec, r: kernel_calls.gemm_call(_int(r, "m"), _int(r, "k"), _int(r, "n"))),
    "mla_decode_dense": KernelFormat("decode", ("batch_size", "kv_len"),
                                     lambda spec, r: kernel_calls.dense_mqa_decode_call(spec, _int(r, "batch_size"), _int(r, "kv_len"),
                                                                                                        latent_format=_cache_format(r, "bf16"))),
    "mla_prefill_dense": KernelFormat("prefill", ("seq_len",),
                                      lambda spec, r: kernel_calls.mha_prefill_call(spec, _int(r, "seq_len"))),
    "dsa_decode_sparse_attention": KernelFormat("decode", ("batch_size", "kv_len"),
                                                lambda spec, r: kernel_calls.sparse_mqa_decode_call(spec, _int(r, "batch_size"),
                                                                                                                    latent_format=_cache_format(r, "fp8"))),
    "dsa_prefill_sparse_attention": KernelFormat("prefill", ("s_q", "s_kv"),
                                                 lambda spec, r: kernel_calls.sparse_mqa_prefill_call(spec, _int(r, "s_q"))),
    "dsa_decode_indexer_logits": KernelFormat("decode", ("batchsize", "next_n", "s_kv"),
                                              lambda spec, r: kernel_calls.indexer_decode_call(spec, _int(r, "batchsize"), _int(r, "next_n"), _int(r, "s_kv"))),
    "dsa_prefill_indexer_logits": KernelFormat("prefill", ("s_q", "s_kv"),
                                               lambda spec, r: kernel_calls.indexer_prefill_call(spec, _int(r, "s_q"), _int(r, "s_kv"))),
}


def read_measurements(directory: Path) -> pd.DataFrame:
    """Read every CSV in `directory`; raise MeasurementError for an unknown format or a bad row."""
    directory = Path(directory)
    if directory.is_file():
        raise MeasurementError(f"'{directory}' is a file: pass the folder that contains the kernel CSV files")
    if not directory.is_dir():
        raise MeasurementError(f"measurement folder '{directory}' not found: pass a folder of kernel CSV files")
    frames = []
    for path in sorted(directory.glob("*.csv")):
        frames.append(_read_one(path))
    if not frames:
        raise MeasurementError(f"no CSV files in '{directory}': expected some of {', '.join(f'{stem}.csv' for stem in FORMATS)}")
    return pd.concat(frames, ignore_index=True)


def _read_one(path: Path) -> pd.DataFrame:
    kernel_format = FORMATS.get(path.stem)
    if kernel_format is None:
        raise MeasurementError(f"'{path}' is in an unknown format: the file name names the kernel it contains, so rename it to "
                               f"one of {', '.join(f'{stem}.csv' for stem in FORMATS)} or move it out of the folder")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise MeasurementError(f"'{path}' could not be read as CSV: {error}") from error
    if frame.empty:
        raise MeasurementError(f"'{path}' has no rows: each row should be one kernel call with its latency_us")
    required = (*kernel_format.shape_columns, "latency_us")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise MeasurementError(f"'{path}' lacks column {', '.join(missing)}: a {path.stem} file needs {', '.join(required)}")
    for column in required:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values <= 0)
        if bad.any():
            first_bad = int(bad.to_numpy().argmax())
            line = first_bad + 2  # the header is line 1
            raise MeasurementError(f"'{path}' line {line}: {column} = {frame[column].astype(str).iloc[first_bad]} is invalid: expected a positive number")
        frame[column] = values
    frame.insert(0, "kernel", path.stem)
    frame.insert(1, "phase", kernel_format.phase)
    return frame


def _split_labels(frame: pd.DataFrame) -> pd.Series:
    """'fit' where the shipped H800 profile was calibrated on the row's shapes, else 'test'."""
    labels = pd.Series("test", index=frame.index)
    for stem, group in frame.groupby("kernel"):
        shipped_path = SHIPPED_H800_DIR / f"{stem}.csv"
        if not shipped_path.is_file():
            continue
        shipped = pd.read_csv(shipped_path)
        columns = list(FORMATS[str(stem)].shape_columns)
        fit_rows = shipped.loc[shipped["split"] == "fit", columns].to_numpy(dtype=int)
        fit_keys = {tuple(key) for key in fit_rows.tolist()}
        for index, key in zip(group.index, group[columns].to_numpy(dtype=int).tolist(), strict=True):
            if tuple(key) in fit_keys:
                labels[index] = "fit"
    return labels


def predict_measurements(frame: pd.DataFrame, hardware: HardwareProfile, calibrated_on_shipped_rows: bool) -> pd.DataFrame:
    """Add predicted_s, measured_s, error and split columns to measurement rows."""
    spec = load_spec(PUBLISHED_KERNEL_MODEL)
    predicted = []
    for _, row in frame.iterrows():
        op = FORMATS[str(row["kernel"])].build(spec, row)
        predicted.append(kernel_calls.predict_call_s(op, hardware))
    result = frame.copy()
    result["predicted_s"] = predicted
    result["measured_s"] = result["latency_us"] / MICROSECONDS_PER_SECOND
    result["error_fraction"] = (result["predicted_s"] / result["measured_s"] - 1.0).abs()
    result["split"] = _split_labels(result) if calibrated_on_shipped_rows else "test"
    return result


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Median and 90th-percentile error per kernel and split."""
    grouped = rows.groupby(["kernel", "split"])["error_fraction"]
    summary = grouped.agg(rows="count", median_error_fraction="median",
                          p90_error_fraction=lambda errors: errors.quantile(0.9)).reset_index()
    return summary
