"""Throughput, latency, memory and price of one deployment, and a search over deployments for the cheapest.

Everything is derived from ``phase_cost`` at the deployment's own context, the op model behind the cost
curves. Positions are ``batch_positions``: every decode request at the context, and each prefill prompt's
positions 0 to context - 1.

Latency per request:

- decode: a request gains ``accepted_tokens_per_request`` tokens per step, so its time per output token
  (TPOT) is the step time over that;
- prefill: a prompt's first token comes when the step that ran its last chunk ends. A prompt that fits one
  step waits for the whole step, however many other prompts share it. A longer prompt runs in chunks, one
  step each. The time to first token (TTFT) is therefore the longer of the step time and the prompt's
  context over the GPU's token rate. It leaves out queueing and the hand-over to decode.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsasim.costmodel.cost import usd_per_million_tokens as cost_per_million_tokens
from dsasim.costmodel.deployment import PHASES, Deployment, default_deployment
from dsasim.costmodel.dtypes import LATENT_CACHE_FORMATS
from dsasim.costmodel.memory import MemoryUse, check_fits, max_batch_per_gpu, memory_per_gpu
from dsasim.costmodel.phases import PhaseCost, batch_positions, phase_cost
from dsasim.costmodel.search import last_true
from dsasim.costmodel.specs import ModelSpec
from dsasim.errors import DeploymentError
from dsasim.hardware_profiles.profile import HardwareProfile


@dataclass(frozen=True)
class StepTime:
    """One step on one GPU, split by what bounds it.

    The compute-bound, memory-bound, kernel-overhead, visible communication and step-overhead parts add up
    to the step time.
    """

    compute_bound_s: float  # roofline time of ops whose compute time is at least their memory time
    memory_bound_s: float  # roofline time of the other ops
    kernel_overhead_s: float  # fixed time per kernel call (launch, tail, setup), summed over all calls
    communication_total_s: float  # all-to-all and all-reduce before overlap
    communication_hidden_s: float  # the part the two-micro-batch schedule ran under compute
    communication_visible_s: float
    overhead_s: float  # fixed time per step outside the kernels

    @property
    def total_s(self) -> float:
        return (self.compute_bound_s + self.memory_bound_s + self.kernel_overhead_s + self.communication_visible_s
                + self.overhead_s)


@dataclass(frozen=True)
class ThroughputResult:
    """Throughput per GPU, latency per request, step time, memory and price of one deployment."""

    model: str
    hardware: str
    deployment: Deployment
    tokens_per_s_per_gpu: float  # prefill: prompt tokens processed; decode: accepted output tokens
    tokens_per_s_per_user: float  # decode: output tokens per request; prefill: a prompt's context over its TTFT
    step: StepTime
    tpot_s: float | None  # decode only
    ttft_s: float | None  # prefill only
    memory: MemoryUse
    usd_per_gpu_hour: float | None
    usd_per_million_tokens: float | None  # None without a price
    warnings: tuple[str, ...] = ()

    @property
    def step_time_s(self) -> float:
        return self.step.total_s

    @property
    def tokens_per_s_per_instance(self) -> float:
        """Tokens per second of the whole EP group."""
        return self.tokens_per_s_per_gpu * self.deployment.ep_gpus

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields in SI units (seconds, bytes, tokens per second, USD), keys named with their unit."""
        deployment = dataclasses.asdict(self.deployment)
        return {
            "model": self.model,
            "hardware": self.hardware,
            "phase": self.deployment.phase,
            "deployment": deployment,
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "tokens_per_s_per_instance": self.tokens_per_s_per_instance,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "credited_tokens_per_step_per_gpu": self.deployment.credited_tokens_per_gpu,
            "step_time_s": self.step_time_s,
            "compute_bound_s": self.step.compute_bound_s,
            "memory_bound_s": self.step.memory_bound_s,
            "kernel_overhead_s": self.step.kernel_overhead_s,
            "communication_total_s": self.step.communication_total_s,
            "communication_hidden_s": self.step.communication_hidden_s,
            "communication_visible_s": self.step.communication_visible_s,
            "step_overhead_s": self.step.overhead_s,
            "tpot_s": self.tpot_s,
            "ttft_s": self.ttft_s,
            "memory": self.memory.to_dict(),
            "usd_per_gpu_hour": self.usd_per_gpu_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "warnings": list(self.warnings),
        }


def split_step_time(cost: PhaseCost) -> StepTime:
    """Split one step's time by the roofline side that dominates each op, plus communication and overhead.

    Op times are averaged over the cost's positions, as the step's tokens are, and scaled to the step's
    credited tokens.
    """
    credited = cost.deployment.credited_tokens_per_gpu
    compute_bound_s = 0.0
    memory_bound_s = 0.0
    kernel_overhead_s = 0.0
    for timing in cost.timings:
        overhead = np.where(timing.active, timing.overhead_seconds_per_token, 0.0)
        roofline = np.where(timing.active, timing.seconds_per_token, 0.0) - overhead
        compute_bound = timing.compute_seconds_per_token >= timing.memory_seconds_per_token
        compute_bound_s += float(np.where(compute_bound, roofline, 0.0).mean()) * credited
        memory_bound_s += float(np.where(compute_bound, 0.0, roofline).mean()) * credited
        kernel_overhead_s += float(overhead.mean()) * credited

    total_s = cost.communication.total_s
    return StepTime(
        compute_bound_s=compute_bound_s,
        memory_bound_s=memory_bound_s,
        kernel_overhead_s=kernel_overhead_s,
        communication_total_s=total_s,
        communication_hidden_s=total_s - cost.visible_communication_s,
        communication_visible_s=cost.visible_communication_s,
        overhead_s=cost.step_overhead_s,
    )


def _check_micro_batches(deployment: Deployment) -> None:
    batch = deployment.batch_per_gpu if deployment.phase == "decode" else deployment.tokens_per_gpu
    if batch < deployment.micro_batches:
        flag = "--batch-per-gpu" if deployment.phase == "decode" else "--tokens-per-gpu"
        raise DeploymentError(
            f"{flag} {batch} is too small for {deployment.micro_batches} micro-batches, because each micro-batch "
            f"needs at least one {'request' if deployment.phase == 'decode' else 'token'}: use --micro-batches 1 "
            f"or a larger {flag}"
        )


def _evaluate(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment, usd_per_gpu_hour: float | None,
              memory: MemoryUse) -> ThroughputResult:
    cost = phase_cost(spec, hardware, deployment, batch_positions(deployment))
    seconds_per_token = float(np.mean(cost.seconds_per_token))
    tokens_per_s_per_gpu = 1.0 / seconds_per_token
    step = split_step_time(cost)

    tpot_s = ttft_s = None
    if deployment.phase == "decode":
        tpot_s = step.total_s / deployment.accepted_tokens_per_request
        tokens_per_s_per_user = 1.0 / tpot_s
    else:
        ttft_s = max(step.total_s, deployment.context_tokens / tokens_per_s_per_gpu)
        tokens_per_s_per_user = deployment.context_tokens / ttft_s

    usd_per_million_tokens = None
    if usd_per_gpu_hour is not None:
        usd_per_million_tokens = float(cost_per_million_tokens(seconds_per_token, usd_per_gpu_hour))

    return ThroughputResult(
        model=spec.name,
        hardware=hardware.name,
        deployment=deployment,
        tokens_per_s_per_gpu=tokens_per_s_per_gpu,
        tokens_per_s_per_user=tokens_per_s_per_user,
        step=step,
        tpot_s=tpot_s,
        ttft_s=ttft_s,
        memory=memory,
        usd_per_gpu_hour=usd_per_gpu_hour,
        usd_per_million_tokens=usd_per_million_tokens,
        warnings=memory.warnings + _mtp_warnings(spec, deployment),
    )


def _mtp_warnings(spec: ModelSpec, deployment: Deployment) -> tuple[str, ...]:
    """Warn when decode proposes more tokens per step than the model has MTP layers."""
    layers = spec.num_nextn_predict_layers
    if deployment.phase != "decode" or deployment.mtp_tokens <= layers:
        return ()
    return (f"--mtp-tokens {deployment.mtp_tokens} exceeds the {layers} multi-token-prediction "
            f"{'layer' if layers == 1 else 'layers'} of {spec.name}: the model charges one MTP pass per step and "
            "assumes every proposal is accepted with the same probability, so treat the result as an upper bound",)


def throughput(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment, usd_per_gpu_hour: float | None,
               enforce_memory: bool = True) -> ThroughputResult:
    """Compute the throughput per GPU, step time, latency, memory and price of `deployment` at its ``context_tokens``.

    Raises DeploymentError for an invalid deployment, and, with `enforce_memory`, for one that does not fit
    the GPU's memory. Without a price (`usd_per_gpu_hour` None) the cost is None.
    """
    deployment.validate(spec)
    _check_micro_batches(deployment)
    if enforce_memory:
        memory = check_fits(spec, hardware, deployment)
    else:
        memory = memory_per_gpu(spec, hardware, deployment)
    return _evaluate(spec, hardware, deployment, usd_per_gpu_hour, memory)


# The plan searches EP sizes from one node up to this many GPUs.
PLAN_MIN_EP_GPUS = 8
PLAN_MAX_EP_GPUS = 256
# Redundant expert counts tried besides the base deployment's: none, and DeepSeek's 32.
PLAN_REDUNDANT_EXPERTS = (0, 32)
# Batch grid: powers of two and 1.5 times each, up to the memory limit, plus the limit itself.
PLAN_BATCH_GRID_FACTORS = (1.0, 1.5)


def batch_grid(smallest: int, largest: int) -> list[int]:
    """List batches from `smallest` to `largest`: 1, 2, 3, 4, 6, 8, 12, ... and `largest` itself."""
    if largest < smallest:
        return []
    grid = {smallest, largest}
    power = 1
    while power <= largest:
        for factor in PLAN_BATCH_GRID_FACTORS:
            batch = int(power * factor)
            if smallest <= batch <= largest:
                grid.add(batch)
        power *= 2
    return sorted(grid)


def _plan_ep_sizes(spec: ModelSpec, base: Deployment) -> list[tuple[int, int]]:
    """List the (EP size, redundant experts) pairs whose expert slots divide evenly into whole nodes."""
    redundant_options = sorted({base.redundant_experts, *PLAN_REDUNDANT_EXPERTS})
    pairs = []
    for redundant in redundant_options:
        slots = spec.n_routed_experts + redundant
        for ep in range(PLAN_MIN_EP_GPUS, PLAN_MAX_EP_GPUS + 1, base.gpus_per_node):
            if slots % ep == 0:
                pairs.append((ep, redundant))
    return pairs


def _plan_row(result: ThroughputResult, batch_limit: int, target_s: float | None) -> dict[str, Any]:
    deployment = result.deployment
    row: dict[str, Any] = {
        "ep_gpus": deployment.ep_gpus,
        "redundant_experts": deployment.redundant_experts,
    }
    if deployment.phase == "decode":
        row["batch_per_gpu"] = deployment.batch_per_gpu
    else:
        row["tokens_per_gpu"] = deployment.tokens_per_gpu
    latency_s = result.tpot_s if deployment.phase == "decode" else result.ttft_s
    assert latency_s is not None  # _evaluate sets the phase's latency
    row.update({
        "latent_cache_format": deployment.latent_cache_format,
        "what_if": bool(result.memory.warnings),  # the memory model flags what-if cache formats
        "micro_batches": deployment.micro_batches,
        "mtp_tokens": deployment.mtp_tokens,
        "tokens_per_s_per_gpu": result.tokens_per_s_per_gpu,
        "tokens_per_s_per_user": result.tokens_per_s_per_user,
        "tokens_per_s_per_instance": result.tokens_per_s_per_instance,
        "step_time_s": result.step_time_s,
        "tpot_s" if deployment.phase == "decode" else "ttft_s": latency_s,
        "usd_per_million_tokens": result.usd_per_million_tokens,
        "memory_used_bytes": result.memory.total_bytes,
        "memory_capacity_bytes": result.memory.capacity_bytes,
        "max_batch_per_gpu": batch_limit,
        "meets_latency": target_s is None or latency_s <= target_s,
    })
    return row


def plan(spec: ModelSpec, hardware: HardwareProfile, phase: str, context_tokens: int, tpot_s: float | None,
         ttft_s: float | None, usd_per_gpu_hour: float | None, base: Deployment | None = None) -> pd.DataFrame:
    """Evaluate every deployment of `phase` at `context_tokens` that fits memory, cheapest first.

    The search covers EP sizes from 8 to 256 GPUs that split the expert slots evenly over whole nodes,
    with the base's redundant experts, none, and 32. For each it tries batches from 1 to the memory limit,
    both latent cache formats, one or two micro-batches and, in decode, MTP off or one proposed token.
    Prefill keeps the base's MTP setting, because a service that decodes with MTP must build the MTP
    layer's cache in prefill, and the search would otherwise always drop it. Other settings come from
    `base`, by default the model's default deployment.

    Rows that meet the latency target (`tpot_s` in decode, `ttft_s` in prefill; None: no target) come
    first. Within that, what-if rows (an FP8 latent cache for a dense model) follow the rest, and each
    group is ordered by throughput per GPU, which at one price is the order of cost.
    """
    if phase not in PHASES:
        raise DeploymentError(f"phase '{phase}' is invalid: expected one of {', '.join(PHASES)}")
    if phase == "decode" and ttft_s is not None:
        raise DeploymentError("a TTFT target (--ttft-s) applies to prefill: give a TPOT target (--tpot-ms) for a decode plan")
    if phase == "prefill" and tpot_s is not None:
        raise DeploymentError("a TPOT target (--tpot-ms) applies to decode: give a TTFT target (--ttft-s) for a prefill plan")
    base = default_deployment(spec, phase) if base is None else base
    if base.phase != phase:
        raise DeploymentError(f"the base deployment is for {base.phase}, but the plan is for {phase}")
    base = base.replace(context_tokens=context_tokens)
    target_s = tpot_s if phase == "decode" else ttft_s

    mtp_options = [base.mtp_tokens]
    if phase == "decode":
        mtp_options = [0, 1] if spec.num_nextn_predict_layers > 0 else [0]

    rows = []
    for ep_gpus, redundant in _plan_ep_sizes(spec, base):
        for latent_format in LATENT_CACHE_FORMATS:
            for mtp_tokens in mtp_options:
                for micro_batches in (1, 2):
                    candidate = base.replace(ep_gpus=ep_gpus, redundant_experts=redundant, latent_cache_format=latent_format,
                                             mtp_tokens=mtp_tokens, micro_batches=micro_batches)
                    rows += _plan_batches(spec, hardware, candidate, usd_per_gpu_hour, target_s)

    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["meets_latency", "what_if", "tokens_per_s_per_gpu"], ascending=[False, True, False],
                              kind="stable")
    return table.reset_index(drop=True)


def _plan_batches(spec: ModelSpec, hardware: HardwareProfile, candidate: Deployment, usd_per_gpu_hour: float | None,
                  target_s: float | None) -> list[dict[str, Any]]:
    """Evaluate every batch on the grid of one candidate, or none when the candidate is invalid or never fits."""
    try:
        candidate.validate(spec)
        limit = max_batch_per_gpu(spec, hardware, candidate)
    except DeploymentError:
        return []

    def evaluate(batch: int) -> dict[str, Any]:
        if candidate.phase == "decode":
            deployment = candidate.replace(batch_per_gpu=batch)
        else:
            deployment = candidate.replace(tokens_per_gpu=batch)
        memory = memory_per_gpu(spec, hardware, deployment)
        return _plan_row(_evaluate(spec, hardware, deployment, usd_per_gpu_hour, memory), limit, target_s)

    rows: list[dict[str, Any]] = []
    try:
        for batch in batch_grid(candidate.micro_batches, limit):
            rows.append(evaluate(batch))
        rows += _largest_batch_meeting_target(rows, evaluate, candidate.phase)
    except DeploymentError:
        return rows  # e.g. the profile lacks the interconnect this EP size needs
    return rows


def _largest_batch_meeting_target(rows: list[dict[str, Any]], evaluate: Any, phase: str) -> list[dict[str, Any]]:
    """Bisect between the last grid batch that meets the latency target and the first that misses it.

    Latency grows with batch, so the largest batch that still meets the target is the cheapest one that
    does. The geometric grid alone would step over it.
    """
    size_column = "batch_per_gpu" if phase == "decode" else "tokens_per_gpu"
    meeting = [row[size_column] for row in rows if row["meets_latency"]]
    missing = [row[size_column] for row in rows if not row["meets_latency"]]
    if not meeting or not missing:
        return []
    low = max(meeting)
    larger_missing = [batch for batch in missing if batch > low]
    if not larger_missing:
        return []
    found: dict[int, dict[str, Any]] = {}

    def meets(batch: int) -> bool:
        found[batch] = evaluate(batch)
        return bool(found[batch]["meets_latency"])

    last_true(meets, low, min(larger_missing))
    return list(found.values())


def pareto_front(table: pd.DataFrame) -> pd.DataFrame:
    """Select the rows that no other row beats on both tokens per second per GPU and tokens per second per user.

    Ordered by tokens per second per user, fastest first. Ties on both keep one row.
    """
    if table.empty:
        return table
    ordered = table.sort_values(["tokens_per_s_per_user", "tokens_per_s_per_gpu"], ascending=[False, False], kind="stable")
    best_per_gpu = -math.inf
    keep = []
    for index, per_gpu in zip(ordered.index, ordered["tokens_per_s_per_gpu"], strict=True):
        if per_gpu > best_per_gpu:
            keep.append(index)
            best_per_gpu = per_gpu
    return ordered.loc[keep]
