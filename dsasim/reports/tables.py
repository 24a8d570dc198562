"""Plain-text tables for the terminal, with the unit in every column header."""

from __future__ import annotations

import pandas as pd

GIGA = 1e9
MEGA = 1e6
MICROSECONDS_PER_SECOND = 1e6
PERCENT = 100.0


def breakdown_table(table: pd.DataFrame) -> str:
    """The per-op breakdown in engineer-friendly units, with a total line."""
    shown = pd.DataFrame({
        "op": table["op"],
        "kernel": table["kernel"],
        "dtype": table["dtype"],
        "bound": table["bound"],
        "GFLOP/token": table["flops_per_token"] / GIGA,
        "MB/token": table["bytes_per_token"] / MEGA,
        "time (us/token)": table["seconds_per_token"] * MICROSECONDS_PER_SECOND,
        "share (%)": table["share_fraction"] * PERCENT,
        "USD/M tokens": table["usd_per_million_tokens"],
    })
    total = {"op": "total", "kernel": "", "dtype": "", "bound": "",
             "GFLOP/token": shown["GFLOP/token"].sum(), "MB/token": shown["MB/token"].sum(),
             "time (us/token)": shown["time (us/token)"].sum(), "share (%)": shown["share (%)"].sum(),
             "USD/M tokens": shown["USD/M tokens"].sum()}
    shown = pd.concat([shown, pd.DataFrame([total])], ignore_index=True)
    return shown.to_string(index=False, float_format=lambda value: f"{value:,.4g}")


def curve_summary_table(curves: pd.DataFrame, positions: tuple[int, ...]) -> str:
    """Cost per million tokens of every model and phase at a few positions."""
    chosen = curves[curves["position"].isin(positions)]
    pivot = chosen.pivot_table(index=["hardware", "model", "phase"], columns="position", values="usd_per_million_tokens")
    pivot.columns = [f"USD/M at {int(position):,}" for position in pivot.columns]
    return pivot.reset_index().to_string(index=False, float_format=lambda value: f"{value:.4f}")


def features_table(features: pd.DataFrame) -> str:
    if features.empty:
        return "no knee or crossover in range"
    shown = features.assign(position=features["position"].round(0).astype(int))
    shown = shown.rename(columns={"position": "position (tokens)", "usd_per_million_tokens": "USD/M tokens"})
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def summary_table(summary: pd.DataFrame) -> str:
    """Validation error summary with errors as percentages."""
    shown = summary.copy()
    for column in [c for c in shown.columns if c.endswith("_error_fraction")]:
        shown[column.replace("_error_fraction", " error (%)")] = shown.pop(column) * PERCENT
    return shown.to_string(index=False, float_format=lambda value: f"{value:.1f}")
