"""Cost of a token at each position in prefill or decode: op times from the roofline, per credited token.

The view is marginal, inside a serving batch that mixes requests of many lengths: step ops (weights,
experts, communication) are shared by the step's tokens, and the token's own attention is added on top.
Memory capacity is not applied here (see ``memory``).

Attention modes per phase:

- dense prefill runs causal MHA over decompressed keys (``wkv_b`` per new token);
- DSA prefill runs, per position, the cheaper of masked MHA (the paper's short-prefill mode, which does the
  full causal work whatever the mask keeps) and sparse absorbed MQA over the index_topk slots. The indexer
  runs in both modes: its keys must be cached for later tokens, and beyond index_topk keys the MHA mask
  itself comes from its top-k;
- decode runs absorbed MQA: over the whole latent cache (dense) or over the gathered top-k slots (DSA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsasim.costmodel.communication import CommunicationCost, communication_cost
from dsasim.costmodel.deployment import Deployment
from dsasim.costmodel.ops import Op, step_ops, token_ops
from dsasim.costmodel.roofline import kernel_rates, roofline_time_s
from dsasim.costmodel.specs import ModelSpec
from dsasim.hardware_profiles.profile import HardwareProfile

MHA_MODE = "mha"
MQA_MODES = ("mqa", "sparse_mqa")


@dataclass(frozen=True)
class OpTiming:
    """An op's work and time per credited token, one value per position."""

    op: Op
    compute_dtype: str
    flops_per_token: np.ndarray
    bytes_per_token: np.ndarray
    seconds_per_token: np.ndarray  # roofline time plus the fixed per-call overhead
    overhead_seconds_per_token: np.ndarray  # the fixed per-call part: launches, tails, setup
    compute_seconds_per_token: np.ndarray
    memory_seconds_per_token: np.ndarray
    active: np.ndarray  # bool: the op runs at this position (mode-dependent ops run in one mode only)


@dataclass(frozen=True)
class PhaseCost:
    """Per-op and total GPU-seconds per credited token at each position of one phase."""

    spec: ModelSpec
    hardware: HardwareProfile
    deployment: Deployment
    positions: np.ndarray
    timings: list[OpTiming]
    communication: CommunicationCost
    step_compute_s: float  # step ops' time of one whole step on one GPU
    batch_attention_s: float  # the step's token ops, all requests at the deployment's context
    visible_communication_s: float  # the part of the step's communication that overlap did not hide
    step_overhead_s: float
    attention_mode: np.ndarray  # "mha" or "mqa"/"sparse_mqa" per position

    @property
    def seconds_per_token(self) -> np.ndarray:
        """GPU-seconds per credited token at each position."""
        total = np.zeros(self.positions.shape)
        for timing in self.timings:
            total = total + np.where(timing.active, timing.seconds_per_token, 0.0)
        shared = (self.visible_communication_s + self.step_overhead_s) / self.deployment.credited_tokens_per_gpu
        return total + shared

    @property
    def communication_seconds_per_token(self) -> float:
        return self.visible_communication_s / self.deployment.credited_tokens_per_gpu


def _time_op(op: Op, hardware: HardwareProfile, deployment: Deployment) -> OpTiming:
    rates = kernel_rates(hardware, op.kernel, op.dtype)
    per_call_s = roofline_time_s(op.flops_per_call, op.bytes_per_call, rates)
    overhead_per_call_s = rates.overhead_s * op.kernels_per_call / op.requests_per_call
    if op.scope == "step":
        tokens_sharing = deployment.credited_tokens_per_gpu
    else:
        tokens_sharing = deployment.accepted_tokens_per_request
    scale = op.calls_per_step / tokens_sharing
    return OpTiming(
        op=op,
        compute_dtype=rates.compute_dtype,
        flops_per_token=op.flops_per_call * scale,
        bytes_per_token=op.bytes_per_call * scale,
        seconds_per_token=(per_call_s + overhead_per_call_s) * scale,
        overhead_seconds_per_token=np.broadcast_to(overhead_per_call_s * scale, per_call_s.shape),
        compute_seconds_per_token=op.flops_per_call / rates.flops_per_s * scale,
        memory_seconds_per_token=op.bytes_per_call / rates.bytes_per_s * scale,
        active=np.ones(op.flops_per_call.shape, dtype=bool),
    )


def _choose_modes(spec: ModelSpec, deployment: Deployment, timings: list[OpTiming]) -> tuple[list[OpTiming], np.ndarray]:
    """Mark which mode-dependent ops run at each position; return the timings and the mode per position."""
    shape = timings[0].seconds_per_token.shape

    def mode_seconds(modes: tuple[str, ...]) -> np.ndarray:
        total = np.zeros(shape)
        for timing in timings:
            if timing.op.mode in modes:
                total = total + timing.seconds_per_token
        return total

    if deployment.phase == "decode":
        mode = np.full(shape, "sparse_mqa" if spec.uses_dsa else "mqa", dtype=object)
        use_mha = np.zeros(shape, dtype=bool)
    elif spec.uses_dsa:
        use_mha = mode_seconds((MHA_MODE,)) <= mode_seconds(MQA_MODES)
        mode = np.where(use_mha, MHA_MODE, "sparse_mqa").astype(object)
    else:
        mode = np.full(shape, MHA_MODE, dtype=object)
        use_mha = np.ones(shape, dtype=bool)

    chosen = []
    for timing in timings:
        if timing.op.mode == MHA_MODE:
            active = use_mha
        elif timing.op.mode in MQA_MODES:
            active = ~use_mha
        else:
            active = timing.active
        chosen.append(OpTiming(**{**timing.__dict__, "active": np.asarray(active, dtype=bool)}))
    return chosen, mode


# Positions sampled to average a prefill step's attention over its prompts' positions 0 .. context - 1.
PREFILL_CONTEXT_SAMPLES = 65


def batch_positions(deployment: Deployment) -> np.ndarray:
    """Positions of the tokens that share a step: one context for decode, a prompt's span for prefill."""
    if deployment.phase == "decode":
        return np.array([float(deployment.context_tokens)])
    return np.linspace(0.0, deployment.context_tokens - 1.0, PREFILL_CONTEXT_SAMPLES)


def _batch_compute_s(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment) -> tuple[float, float]:
    """Seconds of one step's step ops and of its requests' own ops, all requests at the deployment's context.

    Mode-dependent step ops (``wkv_b`` for MHA, the absorption for MQA) count for the share of the step's
    tokens that run in their mode, so the result does not depend on the positions a caller asks about.
    """
    positions = batch_positions(deployment)
    ops = step_ops(spec, deployment, positions) + token_ops(spec, deployment, positions)
    timings, _ = _choose_modes(spec, deployment, [_time_op(op, hardware, deployment) for op in ops])
    step_per_token = np.zeros(positions.shape)
    token_per_token = np.zeros(positions.shape)
    for timing in timings:
        seconds = np.where(timing.active, timing.seconds_per_token, 0.0)
        if timing.op.scope == "step":
            step_per_token = step_per_token + seconds
        else:
            token_per_token = token_per_token + seconds
    credited = deployment.credited_tokens_per_gpu
    return float(step_per_token.mean()) * credited, float(token_per_token.mean()) * credited


def phase_cost(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment, positions: np.ndarray) -> PhaseCost:
    """Per-op and total cost of a token at each of `positions` (vectorised: one call per curve)."""
    deployment.validate(spec)
    positions = np.asarray(positions, dtype=float)
    ops = step_ops(spec, deployment, positions) + token_ops(spec, deployment, positions)
    timings = [_time_op(op, hardware, deployment) for op in ops]
    timings, mode = _choose_modes(spec, deployment, timings)

    step_compute_s, batch_attention_s = _batch_compute_s(spec, hardware, deployment)
    communication = communication_cost(spec, deployment, hardware)
    if deployment.micro_batches >= 2:
        # One micro-batch's all-to-all runs while the other computes, attention included; it hides behind
        # overlap_fraction of the step's compute, and what is left over is visible.
        hideable_s = deployment.overlap_fraction * (step_compute_s + batch_attention_s)
        visible_s = max(0.0, communication.total_s - hideable_s)
    else:
        visible_s = communication.total_s

    return PhaseCost(
        spec=spec,
        hardware=hardware,
        deployment=deployment,
        positions=positions,
        timings=timings,
        communication=communication,
        step_compute_s=step_compute_s,
        batch_attention_s=batch_attention_s,
        visible_communication_s=visible_s,
        step_overhead_s=deployment.step_overhead_s,
        attention_mode=mode,
    )
