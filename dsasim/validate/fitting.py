"""Fit at most two model parameters to measured times, in log space, with numpy only.

Predicted times come from the cost model (roofline maximum or p-norm, plus a fixed overhead), which is
not linear in an efficiency fraction, so the fit searches instead of solving: a grid over each
parameter's range, then finer grids around the best point. It minimises the mean of
|log(predicted / measured)|, which weighs a 2x overestimate like a 2x underestimate, whatever the
row's absolute time. One or two parameters keep a full grid cheap and the fit easy to audit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAX_FIT_PARAMETERS = 2
# Each refinement keeps this many grid steps on either side of the best point.
_REFINE_HALF_WIDTH_STEPS = 2


@dataclass(frozen=True)
class FitParameter:
    """One fitted parameter and its search range, with a log-spaced grid for quantities spanning decades."""

    name: str
    lower: float
    upper: float
    log_scale: bool = False

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"parameter {self.name!r}: lower ({self.lower}) must be below upper ({self.upper})")
        if self.log_scale and self.lower <= 0:
            raise ValueError(f"parameter {self.name!r}: a log-scale range needs lower > 0, got {self.lower}")


@dataclass(frozen=True)
class FitResult:
    """Best parameter values, their mean |log(predicted / measured)| and the number of model evaluations."""

    values: dict[str, float]
    mean_abs_log_error: float
    evaluations: int


def relative_errors(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return |predicted / measured - 1| per row, the error measure of validation reports."""
    predicted_array = np.asarray(predicted, dtype=float)
    measured_array = np.asarray(measured, dtype=float)
    return np.abs(predicted_array / measured_array - 1.0)


def abs_log_errors(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return |log(predicted / measured)| per row; a non-positive or non-finite prediction gives inf."""
    predicted_array = np.asarray(predicted, dtype=float)
    measured_array = np.asarray(measured, dtype=float)
    valid = np.isfinite(predicted_array) & (predicted_array > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.abs(np.log(predicted_array / measured_array))
    return np.where(valid, errors, np.inf)


def fit_log_space(
    predict: Callable[[Mapping[str, float]], np.ndarray],
    measured: Sequence[float] | np.ndarray,
    parameters: Sequence[FitParameter],
    grid_points: int = 33,
    refinements: int = 4,
) -> FitResult:
    """Find the parameter values that minimise the mean |log(predict(values) / measured)|.

    ``predict`` maps {name: value} to one predicted time per measured row. The first grid spans each
    parameter's whole range with ``grid_points`` values; each of the ``refinements`` that follow spans
    two grid steps either side of the best point so far, clipped to the range. Raises ValueError for more
    than two parameters, no parameters, or measured times that are not all positive and finite.
    """
    if not parameters:
        raise ValueError("at least one parameter is needed")
    if len(parameters) > MAX_FIT_PARAMETERS:
        names = ", ".join(parameter.name for parameter in parameters)
        raise ValueError(f"at most {MAX_FIT_PARAMETERS} parameters may be fitted, got {len(parameters)}: {names}")
    measured_array = np.asarray(measured, dtype=float)
    if measured_array.size == 0 or not np.all(np.isfinite(measured_array) & (measured_array > 0)):
        raise ValueError("measured times must be a non-empty set of positive, finite numbers")
    if grid_points < 3:
        raise ValueError(f"grid_points must be at least 3, got {grid_points}")

    def objective(values: Mapping[str, float]) -> float:
        predicted = np.asarray(predict(values), dtype=float)
        if predicted.shape != measured_array.shape:
            raise ValueError(f"predict returned shape {predicted.shape}, expected {measured_array.shape}")
        return float(np.mean(abs_log_errors(predicted, measured_array)))

    bounds = [(parameter.lower, parameter.upper) for parameter in parameters]
    best_values: dict[str, float] = {}
    best_error = np.inf
    evaluations = 0

    for _ in range(refinements + 1):
        axes = [_grid(parameter, lower, upper, grid_points) for parameter, (lower, upper) in zip(parameters, bounds, strict=True)]
        for point in itertools.product(*axes):
            values = {parameter.name: float(value) for parameter, value in zip(parameters, point, strict=True)}
            error = objective(values)
            evaluations += 1
            if error < best_error:
                best_error, best_values = error, values
        if not best_values:
            raise ValueError("every grid point gave a non-finite prediction; check the parameter ranges")
        bounds = [
            _narrowed(parameter, best_values[parameter.name], lower, upper, grid_points)
            for parameter, (lower, upper) in zip(parameters, bounds, strict=True)
        ]

    return FitResult(values=best_values, mean_abs_log_error=best_error, evaluations=evaluations)


def _grid(parameter: FitParameter, lower: float, upper: float, points: int) -> np.ndarray:
    if parameter.log_scale:
        return np.geomspace(lower, upper, points)
    return np.linspace(lower, upper, points)


def _narrowed(parameter: FitParameter, best: float, lower: float, upper: float, points: int) -> tuple[float, float]:
    """Return a range of a few grid steps around `best`, clipped to the parameter's full range."""
    half_width = _REFINE_HALF_WIDTH_STEPS
    if parameter.log_scale:
        step = (upper / lower) ** (1.0 / (points - 1))
        new_lower, new_upper = best / step**half_width, best * step**half_width
    else:
        step = (upper - lower) / (points - 1)
        new_lower, new_upper = best - half_width * step, best + half_width * step
    return max(new_lower, parameter.lower), min(new_upper, parameter.upper)
