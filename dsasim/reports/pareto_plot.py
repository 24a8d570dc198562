"""The plan's picture: throughput per GPU against speed per user, every feasible deployment and the Pareto front."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from dsasim.costmodel.serving import pareto_front
from dsasim.files import write_atomically

MEETS_COLOUR = "#1f77b4"
MISSES_LATENCY_COLOUR = "#9a9a9a"
FRONT_COLOUR = "#d62728"
TARGET_COLOUR = "#2ca02c"
WHAT_IF_COLOUR = "#ff7f0e"
AXIS_LABELS = {
    "decode": ("Output tokens per second per user (tokens/s)", "Output tokens per second per GPU (tokens/s)"),
    "prefill": ("Prompt tokens per second per user: context / TTFT (tokens/s)", "Prompt tokens per second per GPU (tokens/s)"),
}
# Major ticks at 1, 2 and 5 times each power of ten, labelled in plain numbers.
TICK_MULTIPLES = (1.0, 2.0, 5.0)


def write_pareto_png(table: pd.DataFrame, path: Path, title: str, target_tokens_per_s_per_user: float | None = None) -> Path:
    """Draw every row of a plan table, its Pareto front and the chosen row; write the PNG atomically.

    `table` is ``serving.plan``'s output, best row first. Rows that meet the latency target are blue dots,
    rows that miss it grey crosses, and what-if rows hollow orange circles left out of the front. `target_tokens_per_s_per_user` draws the latency target as a vertical
    line (1 / TPOT in decode, context / TTFT in prefill). Both axes are logarithmic, because batch sizes
    span several powers of two. Raises ValueError on an empty table.
    """
    if table.empty:
        raise ValueError("the plan table has no rows, so there is no Pareto front to draw")

    phase = "decode" if "batch_per_gpu" in table.columns else "prefill"
    x_label, y_label = AXIS_LABELS[phase]
    what_if = table["what_if"].astype(bool) if "what_if" in table.columns else pd.Series(False, index=table.index)
    meets = table["meets_latency"].astype(bool) & ~what_if
    misses = ~table["meets_latency"].astype(bool) & ~what_if
    front = pareto_front(table[~what_if])

    figure = Figure(figsize=(8, 5.5), constrained_layout=True)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.scatter(table.loc[meets, "tokens_per_s_per_user"], table.loc[meets, "tokens_per_s_per_gpu"], s=14,
                 color=MEETS_COLOUR, alpha=0.45, linewidths=0, label="fits, meets the latency target")
    if misses.any():
        axis.scatter(table.loc[misses, "tokens_per_s_per_user"], table.loc[misses, "tokens_per_s_per_gpu"], s=14,
                     color=MISSES_LATENCY_COLOUR, alpha=0.6, marker="x", linewidths=0.8,
                     label="fits, misses the latency target")
    if what_if.any():
        axis.scatter(table.loc[what_if, "tokens_per_s_per_user"], table.loc[what_if, "tokens_per_s_per_gpu"], s=16,
                     facecolors="none", edgecolors=WHAT_IF_COLOUR, alpha=0.6, linewidths=0.8,
                     label="what-if (FP8 cache on a dense model), not on the front")
    axis.plot(front["tokens_per_s_per_user"], front["tokens_per_s_per_gpu"], color=FRONT_COLOUR, marker="o",
              markersize=4, linewidth=1.5, label="Pareto front")
    if target_tokens_per_s_per_user is not None:
        axis.axvline(target_tokens_per_s_per_user, color=TARGET_COLOUR, linestyle="--", linewidth=1.2,
                     label="latency target")
    if bool(meets.iloc[0]):
        best = table.iloc[0]
        axis.plot(best["tokens_per_s_per_user"], best["tokens_per_s_per_gpu"], marker="*", markersize=16,
                  color="black", linestyle="none", label="chosen: best row of plan.csv")

    axis.set_xscale("log")
    axis.set_yscale("log")
    # Set after the scale, which installs its own locator and formatter.
    for scale_axis in (axis.xaxis, axis.yaxis):
        scale_axis.set_major_locator(LogLocator(base=10.0, subs=TICK_MULTIPLES))
        scale_axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
        scale_axis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(loc="best", fontsize=9)

    return write_atomically(Path(path), lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
