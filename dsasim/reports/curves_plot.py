"""The Figure-3-style picture: cost per million tokens against token position, prefill and decode."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dsasim.files import write_atomically  # noqa: E402

TOKENS_PER_K = 1024
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
PANEL_TITLES = {"prefill": "Prefilling", "decode": "Decoding"}


def write_curves_png(curves: pd.DataFrame, features: pd.DataFrame, path: Path, usd_per_gpu_hour: float,
                     deployment_options: str = "") -> Path:
    """Draw one panel per phase, one line per model and hardware, with knees and crossovers marked.

    `deployment_options` names the options that changed the default deployments; the title shows them.
    """
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    series = list(curves.groupby(["model", "hardware"], sort=False).groups)
    colours = {key: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, key in enumerate(series)}
    several_hardware = curves["hardware"].nunique() > 1

    for axis, phase in zip(axes, ("prefill", "decode"), strict=True):
        phase_rows = curves[curves["phase"] == phase]
        for (model, hardware), frame in phase_rows.groupby(["model", "hardware"], sort=False):
            label = f"{model} ({hardware})" if several_hardware else model
            axis.plot(frame["position"] / TOKENS_PER_K, frame["usd_per_million_tokens"], color=colours[(model, hardware)],
                      linewidth=2, label=label)
        _mark_features(axis, features[features["phase"] == phase])
        axis.set_title(PANEL_TITLES[phase])
        axis.set_xlabel("Token position (K tokens, K = 1024)")
        axis.set_ylabel("Cost (USD per million tokens)")
        axis.set_xlim(left=0)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper left", fontsize=9)

    hardware_names = ", ".join(curves["hardware"].unique())
    title = f"Cost per million tokens on {hardware_names} at {usd_per_gpu_hour:g} USD per GPU-hour"
    if deployment_options:
        title += f"\ndeployment: each model's default, with {deployment_options}"
    figure.suptitle(title)
    return write_atomically(Path(path), lambda temporary: _save(figure, temporary))


def _mark_features(axis: plt.Axes, features: pd.DataFrame) -> None:
    for row in features.to_dict(orient="records"):
        x = float(row["position"]) / TOKENS_PER_K
        y = float(row["usd_per_million_tokens"])
        if row["kind"] == "knee":
            axis.plot(x, y, marker="o", markersize=8, markerfacecolor="none", markeredgecolor="black")
            text = f"knee {x:.1f}K"
            offset = (10, -14)
        else:
            axis.plot(x, y, marker="X", markersize=9, color="black")
            text = f"crossover {x:.1f}K"
            offset = (10, 8)
        axis.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=8)


def _save(figure: plt.Figure, path: Path) -> None:
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)
