"""The cost model's public entry points, returning pandas DataFrames.

    >>> from dsasim.costmodel.api import cost_curves, breakdown
    >>> curves = cost_curves(["deepseek-v3.1-terminus", "deepseek-v3.2-exp"], "h800")
    >>> table = breakdown("deepseek-v3.2-exp", "h800", "decode", 65536)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dsasim.costmodel.cost import resolve_price, usd_per_million_tokens
from dsasim.costmodel.deployment import PHASES, Deployment, default_deployment
from dsasim.costmodel.ops import moe_layers
from dsasim.costmodel.phases import PhaseCost, phase_cost
from dsasim.costmodel.specs import ModelSpec, load_spec
from dsasim.errors import DeploymentError, InputError
from dsasim.hardware_profiles import load_profile
from dsasim.hardware_profiles.profile import HardwareProfile

DEFAULT_MODELS = ("deepseek-v3.1-terminus", "deepseek-v3.2-exp")
DEFAULT_MAX_POSITION = 131072
DEFAULT_STEP = 256
MAX_STEP = 512
# Positions per curve: far above a useful curve (128K tokens at step 1 is 131,073 positions), low enough
# to bound the memory and time of a mistyped --max-position.
MAX_POSITIONS_PER_CURVE = 1_000_000
# A bend counts as a knee when the curve leaves its chord by more than this fraction of its rise.
KNEE_MIN_DEVIATION_FRACTION = 0.05


def deployment_for(spec: ModelSpec, phase: str, overrides: Mapping[str, object] | None = None) -> Deployment:
    """Build the model's default deployment for `phase` with `overrides` (Deployment field names) applied."""
    deployment = default_deployment(spec, phase)
    if overrides:
        fields = Deployment.__dataclass_fields__
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise DeploymentError(f"unknown deployment setting {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
        for key, value in overrides.items():
            expected = type(getattr(deployment, key))
            numeric_ok = expected is float and isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not numeric_ok and (type(value) is not expected):
                raise DeploymentError(f"deployment setting {key}={value!r} is invalid: expected a value of type {expected.__name__}")
        deployment = deployment.replace(**{key: value for key, value in overrides.items() if value is not None})
    return deployment.validate(spec)


def check_phase(phase: str) -> None:
    """Raise InputError unless `phase` is prefill or decode."""
    if phase not in PHASES:
        raise InputError(f"--phase '{phase}' is invalid: expected one of {', '.join(PHASES)}")


def curve_positions(max_position: int, step: int) -> np.ndarray:
    """Token positions 0, step, 2 step, ... up to and including max_position."""
    if max_position < 0:
        raise InputError(f"--max-position {max_position} is invalid: expected 0 or more tokens")
    if not 1 <= step <= MAX_STEP:
        raise InputError(f"--step {step} is invalid: expected 1 to {MAX_STEP} tokens")
    count = max_position // step + 1
    if count > MAX_POSITIONS_PER_CURVE:
        raise InputError(f"--max-position {max_position} with --step {step} gives {count:,} positions per curve, more "
                         f"than the {MAX_POSITIONS_PER_CURVE:,} allowed: raise --step or lower --max-position")
    positions = np.arange(0, max_position + 1, step, dtype=float)
    if positions[-1] != max_position:
        positions = np.append(positions, float(max_position))
    return positions


def cost_curves(models: Sequence[str] = DEFAULT_MODELS, hardware: str | HardwareProfile = "h800",
                max_position: int = DEFAULT_MAX_POSITION, step: int = DEFAULT_STEP,
                overrides: Mapping[str, object] | None = None, usd_per_gpu_hour: float | None = None) -> pd.DataFrame:
    """Cost per million tokens at every position, one row per model, hardware, phase and position."""
    if isinstance(models, str):
        models = [models]
    models = list(dict.fromkeys(models))  # each model once, in the given order
    if not models:
        raise InputError("no model given: pass at least one model name or config.json path")
    profile = hardware if isinstance(hardware, HardwareProfile) else load_profile(hardware)
    price = resolve_price(profile, usd_per_gpu_hour)
    positions = curve_positions(max_position, step)
    frames = []
    for model in models:
        spec = load_spec(model)
        for phase in PHASES:
            cost = phase_cost(spec, profile, deployment_for(spec, phase, overrides), positions)
            seconds = cost.seconds_per_token
            frames.append(pd.DataFrame({
                "model": spec.name,
                "hardware": profile.name,
                "phase": phase,
                "position": positions.astype(np.int64),
                "usd_per_million_tokens": usd_per_million_tokens(seconds, price),
                "gpu_seconds_per_token": seconds,
                "attention_mode": cost.attention_mode.astype(str),
            }))
    return pd.concat(frames, ignore_index=True)


def breakdown(model: str, hardware: str | HardwareProfile, phase: str, position: int,
              overrides: Mapping[str, object] | None = None, usd_per_gpu_hour: float | None = None) -> pd.DataFrame:
    """Per-op FLOPs, bytes, time, bound and share of one token's cost at `position`."""
    check_phase(phase)
    if position < 0:
        raise InputError(f"--position {position} is invalid: expected 0 or more tokens")
    profile = hardware if isinstance(hardware, HardwareProfile) else load_profile(hardware)
    price = resolve_price(profile, usd_per_gpu_hour)
    spec = load_spec(model)
    cost = phase_cost(spec, profile, deployment_for(spec, phase, overrides), np.array([float(position)]))
    table = breakdown_frame(cost)
    table["usd_per_million_tokens"] = usd_per_million_tokens(table["seconds_per_token"].to_numpy(), price)
    return table


def breakdown_frame(cost: PhaseCost) -> pd.DataFrame:
    """Rows of a one-position PhaseCost: every op that runs, then communication and step overhead."""
    rows = []
    for timing in cost.timings:
        if not bool(timing.active[0]):
            continue
        compute_s = float(timing.compute_seconds_per_token[0])
        memory_s = float(timing.memory_seconds_per_token[0])
        dtype = timing.op.dtype
        if timing.compute_dtype != dtype and float(timing.flops_per_token[0]) > 0:
            dtype = f"{dtype} at {timing.compute_dtype} rate"  # the device has no peak for this dtype
        rows.append({
            "op": timing.op.name,
            "group": timing.op.group,
            "kernel": timing.op.kernel,
            "dtype": dtype,
            "scope": timing.op.scope,
            "flops_per_token": float(timing.flops_per_token[0]),
            "bytes_per_token": float(timing.bytes_per_token[0]),
            "seconds_per_token": float(timing.seconds_per_token[0]),
            "fixed_seconds_per_token": float(timing.overhead_seconds_per_token[0]),
            "bound": "compute" if compute_s >= memory_s else "memory",
        })
    deployment = cost.deployment
    credited = deployment.credited_tokens_per_gpu
    layer_tokens_per_credited = moe_layers(cost.spec, deployment) * deployment.query_tokens_per_gpu / credited
    per_layer_bytes = cost.communication.dispatch_bytes_per_token + cost.communication.combine_bytes_per_token
    rows.append({"op": "moe_all_to_all", "group": "communication", "kernel": "", "dtype": "", "scope": "step",
                 "flops_per_token": 0.0, "bytes_per_token": per_layer_bytes * layer_tokens_per_credited,
                 "seconds_per_token": cost.visible_communication_s / credited, "fixed_seconds_per_token": 0.0,
                 "bound": "network"})
    if cost.step_overhead_s > 0:
        rows.append({"op": "step_overhead", "group": "overhead", "kernel": "", "dtype": "", "scope": "step",
                     "flops_per_token": 0.0, "bytes_per_token": 0.0,
                     "seconds_per_token": cost.step_overhead_s / credited,
                     "fixed_seconds_per_token": cost.step_overhead_s / credited, "bound": "fixed"})
    table = pd.DataFrame(rows)
    total = table["seconds_per_token"].sum()
    table["share_fraction"] = table["seconds_per_token"] / total if total > 0 else 0.0
    return table


def curve_features(curves: pd.DataFrame) -> pd.DataFrame:
    """Knees and crossovers of cost curves, computed from the model's values.

    A knee is where a curve's attention mode switches (DSA prefill going from masked MHA to sparse MQA) or,
    without a switch, the point farthest from the chord when that bend is marked enough to see. A crossover
    is a position where two models' costs on one phase and hardware cross, interpolated linearly.
    """
    rows = []
    for (hardware, phase), group in curves.groupby(["hardware", "phase"], sort=False):
        by_model = {model: frame.sort_values("position") for model, frame in group.groupby("model", sort=False)}
        for model, frame in by_model.items():
            knee = _knee(frame)
            if knee is not None:
                rows.append({"hardware": hardware, "phase": phase, "kind": "knee", "model": model, "other_model": "",
                             "position": knee[0], "usd_per_million_tokens": knee[1]})
        models = list(by_model)
        for i, first in enumerate(models):
            for second in models[i + 1:]:
                for position, usd in _crossings(by_model[first], by_model[second]):
                    rows.append({"hardware": hardware, "phase": phase, "kind": "crossover", "model": first,
                                 "other_model": second, "position": position, "usd_per_million_tokens": usd})
    columns = ["hardware", "phase", "kind", "model", "other_model", "position", "usd_per_million_tokens"]
    return pd.DataFrame(rows, columns=columns)


def _knee(frame: pd.DataFrame) -> tuple[float, float] | None:
    positions = frame["position"].to_numpy(dtype=float)
    usd = frame["usd_per_million_tokens"].to_numpy(dtype=float)
    modes = frame["attention_mode"].to_numpy()
    switches = np.nonzero(modes[1:] != modes[:-1])[0]
    if len(switches) > 0:
        index = int(switches[0]) + 1
        return float(positions[index]), float(usd[index])
    if len(positions) < 3 or usd[-1] == usd[0]:
        return None
    chord = usd[0] + (usd[-1] - usd[0]) * (positions - positions[0]) / (positions[-1] - positions[0])
    deviation = np.abs(usd - chord)
    index = int(np.argmax(deviation))
    if deviation[index] < KNEE_MIN_DEVIATION_FRACTION * abs(usd[-1] - usd[0]):
        return None
    return float(positions[index]), float(usd[index])


def _crossings(first: pd.DataFrame, second: pd.DataFrame) -> list[tuple[float, float]]:
    merged = first.merge(second, on="position", suffixes=("_a", "_b"))
    positions = merged["position"].to_numpy(dtype=float)
    a = merged["usd_per_million_tokens_a"].to_numpy(dtype=float)
    b = merged["usd_per_million_tokens_b"].to_numpy(dtype=float)
    difference = a - b
    crossings = []
    for i in np.nonzero(np.sign(difference[1:]) * np.sign(difference[:-1]) < 0)[0]:
        weight = difference[i] / (difference[i] - difference[i + 1])
        position = positions[i] + weight * (positions[i + 1] - positions[i])
        crossings.append((float(position), float(a[i] + weight * (a[i + 1] - a[i]))))
    return crossings
