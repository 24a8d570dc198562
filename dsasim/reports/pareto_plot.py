"""The plan's picture: throughput per GPU against speed per user, every feasible deployment and the Pareto front."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dsasim.costmodel.serving import pareto_front
from dsasim.files import write_atomically

ALL_POINTS_COLOUR = "#7f7f7f"
FRONT_COLOUR = "#d62728"
MISSES_LATENCY_COLOUR = "#bbbbbb"
AXIS_LABELS = {
    "decode": ("Output tokens per second per user (tokens/s)", "Output tokens per second per GPU (tokens/s)"),
    "prefill": ("Prompt tokens per second per user: context / TTFT (tokens/s)", "Prompt tokens per second per GPU (tokens/s)"),
}


def write_pareto_png(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Draw every row of a plan table faintly and its Pareto front on top; write the PNG atomically.

    `table` is ``serving.plan``'s output. Rows that miss the latency target are drawn lighter still.
    Both axes are logarithmic, because batch sizes span several powers of two. Raises ValueError on an
    empty table.
    """
    if table.empty:
        raise ValueError("the plan table has no rows, so there is no Pareto front to draw")

    phase = "decode" if "batch_per_gpu" in table.columns else "prefill"
    x_label, y_label = AXIS_LABELS[phase]
    meets = table["meets_latency"].astype(bool)
    front = pareto_front(table)

    figure = Figure(figsize=(8, 5.5), constrained_layout=True)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.scatter(table.loc[meets, "tokens_per_s_per_user"], table.loc[meets, "tokens_per_s_per_gpu"], s=10,
                 color=ALL_POINTS_COLOUR, alpha=0.25, linewidths=0, label="feasible, meets the latency target")
    if (~meets).any():
        axis.scatter(table.loc[~meets, "tokens_per_s_per_user"], table.loc[~meets, "tokens_per_s_per_gpu"], s=10,
                     color=MISSES_LATENCY_COLOUR, alpha=0.25, linewidths=0, label="feasible, misses the latency target")
    axis.plot(front["tokens_per_s_per_user"], front["tokens_per_s_per_gpu"], color=FRONT_COLOUR, marker="o",
              markersize=4, linewidth=1.5, label="Pareto front")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="best", fontsize=9)

    return write_atomically(Path(path), lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
