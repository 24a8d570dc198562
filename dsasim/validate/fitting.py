"""Fit at most two model parameters to measured times, in log space, with numpy only.

Predicted times come from the cost model (roofline maximum or p-norm, plus a fixed overhead), which is
not linear in an efficiency fraction, so the fit searches instead of solving. It minimises the mean of
|log(predicted / measured)|, which weighs a 2x overestimate like a 2x underestimate, whatever the
row's absolute time. The search evaluates a grid over each parameter's whole range, then polishes the
best few grid points with the Nelder-Mead simplex method. A grid alone cannot find the bottom of a long
diagonal valley, such as the one between an efficiency fraction and a fixed overhead that trade off
against each other, but a simplex walks along it. One or two parameters keep the grid cheap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAX_FIT_PARAMETERS = 2
# Grid points polished by Nelder-Mead; the best polished point wins.
_POLISHED_STARTS = 3
_SIMPLEX_MAX_EVALUATIONS = 600
_SIMPLEX_TOLERANCE = 1e-12  # stop when the simplex's objective values differ by less than this


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
    grid_points: int = 41,
) -> FitResult:
    """Find the parameter values that minimise the mean |log(predict(values) / measured)|.

    ``predict`` maps {name: value} to one predicted time per measured row. The grid spans each
    parameter's whole range with ``grid_points`` values (log-spaced where ``log_scale``), and the best
    grid points are polished by Nelder-Mead within the ranges. Raises ValueError for more than two
    parameters, no parameters, or measured times that are not all positive and finite.
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

    # Search in transformed coordinates: log10 of log-scale parameters, the value itself otherwise.
    lows = np.array([_to_search(parameter, parameter.lower) for parameter in parameters])
    highs = np.array([_to_search(parameter, parameter.upper) for parameter in parameters])
    evaluations = 0

    def objective(point: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        predicted = np.asarray(predict(_values(parameters, point)), dtype=float)
        if predicted.shape != measured_array.shape:
            raise ValueError(f"predict returned shape {predicted.shape}, expected {measured_array.shape}")
        return float(np.mean(abs_log_errors(predicted, measured_array)))

    axes = [np.linspace(low, high, grid_points) for low, high in zip(lows, highs, strict=True)]
    grid = [np.array(point) for point in itertools.product(*axes)]
    grid_errors = np.array([objective(point) for point in grid])
    if not np.any(np.isfinite(grid_errors)):
        raise ValueError("every grid point gave a non-finite prediction; check the parameter ranges")

    step = (highs - lows) / (grid_points - 1)
    best_point, best_error = grid[int(np.argmin(grid_errors))], float(np.min(grid_errors))
    for start in np.argsort(grid_errors, kind="stable")[:_POLISHED_STARTS]:
        point, error = _nelder_mead(objective, grid[int(start)], 2 * step, lows, highs)
        if error < best_error:
            best_point, best_error = point, error

    return FitResult(values=_values(parameters, best_point), mean_abs_log_error=best_error, evaluations=evaluations)


def _nelder_mead(objective: Callable[[np.ndarray], float], start: np.ndarray, step: np.ndarray, lows: np.ndarray,
                 highs: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimise ``objective`` from ``start`` with the Nelder-Mead simplex, keeping points inside [lows, highs].

    Standard coefficients: reflection 1, expansion 2, contraction 0.5, shrink 0.5. Points outside the
    box are clipped onto it.
    """
    def clipped(point: np.ndarray) -> np.ndarray:
        return np.clip(point, lows, highs)

    dimensions = len(start)
    simplex = [clipped(start)]
    for axis in range(dimensions):
        vertex = start.copy()
        # Step towards the side with room, so a start on a range end still gets a non-degenerate simplex.
        vertex[axis] += step[axis] if start[axis] + step[axis] <= highs[axis] else -step[axis]
        simplex.append(clipped(vertex))
    values = [objective(point) for point in simplex]
    evaluations = len(values)

    while evaluations < _SIMPLEX_MAX_EVALUATIONS:
        order = np.argsort(values, kind="stable")
        simplex = [simplex[index] for index in order]
        values = [values[index] for index in order]
        if values[-1] - values[0] < _SIMPLEX_TOLERANCE:
            break

        centroid = np.mean(simplex[:-1], axis=0)
        reflected = clipped(centroid + (centroid - simplex[-1]))
        reflected_value = objective(reflected)
        evaluations += 1
        if reflected_value < values[0]:
            expanded = clipped(centroid + 2 * (centroid - simplex[-1]))
            expanded_value = objective(expanded)
            evaluations += 1
            if expanded_value < reflected_value:
                simplex[-1], values[-1] = expanded, expanded_value
            else:
                simplex[-1], values[-1] = reflected, reflected_value
        elif reflected_value < values[-2]:
            simplex[-1], values[-1] = reflected, reflected_value
        else:
            contracted = clipped(centroid + 0.5 * (simplex[-1] - centroid))
            contracted_value = objective(contracted)
            evaluations += 1
            if contracted_value < values[-1]:
                simplex[-1], values[-1] = contracted, contracted_value
            else:
                simplex = [simplex[0]] + [clipped(simplex[0] + 0.5 * (point - simplex[0])) for point in simplex[1:]]
                values = [values[0]] + [objective(point) for point in simplex[1:]]
                evaluations += dimensions

    best = int(np.argmin(values))
    return simplex[best], values[best]


def _values(parameters: Sequence[FitParameter], point: np.ndarray) -> dict[str, float]:
    return {parameter.name: _from_search(parameter, float(coordinate))
            for parameter, coordinate in zip(parameters, point, strict=True)}


def _to_search(parameter: FitParameter, value: float) -> float:
    return float(np.log10(value)) if parameter.log_scale else value


def _from_search(parameter: FitParameter, coordinate: float) -> float:
    value = float(10.0**coordinate) if parameter.log_scale else float(coordinate)
    return min(max(value, parameter.lower), parameter.upper)  # undo rounding past the range ends
