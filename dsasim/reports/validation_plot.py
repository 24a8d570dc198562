"""Log-log plot of predicted against measured kernel times, one colour per kernel, fit and test rows apart.

Drawn with matplotlib's Agg canvas directly, so importing this module leaves pyplot and the global
backend alone, and written atomically: a reader never sees a half-written PNG.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dsasim.files import write_atomically

REQUIRED_COLUMNS = ("kernel", "split", "predicted_s", "measured_s")
# Relative error bands drawn around the diagonal, the validation targets for test rows.
ERROR_BANDS = (0.15, 0.35)
_SPLIT_MARKERS = {"fit": "o", "test": "^"}
_DPI = 120


def plot_predicted_vs_measured(rows: pd.DataFrame, path: Path, title: str | None = None) -> Path:
    """Draw predicted_s against measured_s per row of ``rows`` and write the PNG to ``path``.

    ``rows`` needs the columns kernel, split, predicted_s and measured_s, with positive times. Fit rows
    are hollow circles and test rows filled triangles. Returns the path written. Raises ValueError for
    missing columns, no rows, or a time that is not positive.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(f"rows lack the columns {', '.join(missing)} (needed: {', '.join(REQUIRED_COLUMNS)})")
    if rows.empty:
        raise ValueError("no rows to plot")
    times = rows[["predicted_s", "measured_s"]].to_numpy(dtype=float)
    if not np.all(np.isfinite(times) & (times > 0)):
        raise ValueError("predicted_s and measured_s must be positive and finite for a log-log plot")

    figure = Figure(figsize=(10, 6.5), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = _kernel_colours(rows["kernel"].unique().tolist())

    low, high = times.min() / 1.5, times.max() * 1.5
    diagonal = np.array([low, high])
    axes.plot(diagonal, diagonal, color="black", linewidth=1, label="predicted = measured")
    for band, style in zip(ERROR_BANDS, (":", "--"), strict=True):
        axes.plot(diagonal, diagonal * (1 + band), color="grey", linestyle=style, linewidth=0.8,
                  label=f"±{band:.0%}")
        axes.plot(diagonal, diagonal * (1 - band), color="grey", linestyle=style, linewidth=0.8)

    for (kernel, split), group in rows.groupby(["kernel", "split"], sort=False):
        marker = _SPLIT_MARKERS.get(str(split), "s")
        colour = colours[str(kernel)]
        hollow = str(split) == "fit"
        axes.scatter(group["measured_s"], group["predicted_s"], marker=marker, s=36,
                     facecolors="none" if hollow else colour, edgecolors=colour, label=f"{kernel} ({split})")

    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    axes.set_xlabel("measured time per call (s)")
    axes.set_ylabel("predicted time per call (s)")
    axes.set_title(textwrap.fill(title or "predicted vs measured kernel time", width=70), fontsize=10)
    axes.grid(True, which="major", linewidth=0.4, alpha=0.5)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    figure.tight_layout()

    return write_atomically(Path(path), lambda temporary: figure.savefig(temporary, format="png"))


def _kernel_colours(kernels: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """Assign each kernel a colour of matplotlib's tab10 palette, in the order the kernels first appear."""
    palette = colormaps["tab10"]
    return {kernel: palette(index % palette.N) for index, kernel in enumerate(kernels)}
