"""A deployment: how an instance of GPUs serves one phase of one model.

Attention runs data-parallel (each GPU serves its own requests, optionally split by tensor parallelism),
the MoE runs expert-parallel over ``ep_gpus`` GPUs. Batch and token counts per GPU are totals over the
micro-batches of one step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dsasim.costmodel.dtypes import LATENT_CACHE_FORMATS
from dsasim.costmodel.specs import ModelSpec
from dsasim.errors import DeploymentError

Phase = Literal["prefill", "decode"]
PHASES: tuple[str, ...] = ("prefill", "decode")


@dataclass(frozen=True)
class Deployment:
    """Serving settings of one phase. See ``default_deployment`` for DeepSeek's H800 service."""

    phase: Phase
    ep_gpus: int  # GPUs of one instance; routed experts are spread over them
    tokens_per_gpu: int  # prefill: prompt tokens per GPU per step (decode: unused)
    batch_per_gpu: int  # decode: requests per GPU per step (prefill: unused)
    micro_batches: int  # 1, or 2 to overlap one micro-batch's all-to-all with the other's compute
    mtp_tokens: int  # extra tokens proposed per step by multi-token prediction (0: none)
    mtp_acceptance_fraction: float  # probability that a proposed token is accepted
    redundant_experts: int  # extra expert replicas beyond n_routed_experts
    latent_cache_format: str  # "bf16" or "fp8"
    # Context of the requests that share a step: every decode request's context, or the prompt length in
    # prefill. It sets how much attention compute the step's all-to-all can hide behind.
    context_tokens: int = 4096
    # Fraction of the step's compute that the all-to-all can hide behind (0: none, 1: all of it).
    overlap_fraction: float = 1.0
    gpus_per_node: int = 8
    attention_tp_gpus: int = 1  # tensor parallelism inside attention (1: pure data parallelism)
    step_overhead_s: float = 0.0  # fixed time per step outside the kernels (scheduling, synchronisation)

    @property
    def query_tokens_per_request(self) -> int:
        """Query tokens one decode request runs per step: the new token plus the proposed ones."""
        return 1 + self.mtp_tokens if self.phase == "decode" else 1

    @property
    def accepted_tokens_per_request(self) -> float:
        """Expected tokens one decode request gains per step: the new token plus the accepted proposals.

        A proposal counts only if every proposal before it was accepted too, each with the same
        probability a, so n proposals add a + a**2 + ... + a**n.
        """
        if self.phase != "decode":
            return 1.0
        acceptance = self.mtp_acceptance_fraction
        return 1.0 + sum(acceptance**index for index in range(1, self.mtp_tokens + 1))

    @property
    def query_tokens_per_gpu(self) -> int:
        """Tokens one GPU pushes through every layer per step."""
        if self.phase == "prefill":
            return self.tokens_per_gpu
        return self.batch_per_gpu * self.query_tokens_per_request

    @property
    def credited_tokens_per_gpu(self) -> float:
        """Tokens one step produces per GPU: prompt tokens in prefill, accepted tokens in decode."""
        if self.phase == "prefill":
            return float(self.tokens_per_gpu)
        return self.batch_per_gpu * self.accepted_tokens_per_request

    @property
    def nodes(self) -> int:
        return -(-self.ep_gpus // self.gpus_per_node)

    def expert_slots(self, spec: ModelSpec) -> int:
        return spec.n_routed_experts + self.redundant_experts

    def experts_per_gpu(self, spec: ModelSpec) -> int:
        return self.expert_slots(spec) // self.ep_gpus

    def replace(self, **changes: object) -> Deployment:
        """Return a copy with `changes` applied, validated."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def validate(self, spec: ModelSpec) -> Deployment:
        """Raise DeploymentError naming the first setting that is invalid for `spec`; return self."""
        if self.phase not in PHASES:
            raise DeploymentError(f"phase (--phase) '{self.phase}' is invalid: expected one of {', '.join(PHASES)}")
        _positive("ep_gpus", self.ep_gpus)
        _positive("context_tokens", self.context_tokens)
        _positive("gpus_per_node", self.gpus_per_node)
        _positive("attention_tp_gpus", self.attention_tp_gpus)
        if self.phase == "prefill":
            _positive("tokens_per_gpu", self.tokens_per_gpu)
        else:
            _positive("batch_per_gpu", self.batch_per_gpu)
        if self.micro_batches not in (1, 2):
            raise DeploymentError(f"micro-batches (--micro-batches) {self.micro_batches} is invalid: expected 1 or 2")
        if self.mtp_tokens < 0:
            raise DeploymentError(f"MTP tokens (--mtp-tokens) {self.mtp_tokens} is invalid: expected 0 or more")
        if self.mtp_tokens > 0 and spec.num_nextn_predict_layers == 0:
            raise DeploymentError(f"MTP tokens (--mtp-tokens) {self.mtp_tokens} needs a multi-token-prediction layer, and model '{spec.name}' has none (num_nextn_predict_layers=0): use --mtp-tokens 0")
        if not 0.0 <= self.mtp_acceptance_fraction <= 1.0:
            raise DeploymentError(f"MTP acceptance (--mtp-acceptance) {self.mtp_acceptance_fraction} is invalid: expected a fraction from 0 to 1")
        if not 0.0 <= self.overlap_fraction <= 1.0:
            raise DeploymentError(f"overlap_fraction {self.overlap_fraction} is invalid: expected a fraction from 0 to 1")
        if self.redundant_experts < 0:
            raise DeploymentError(f"redundant experts (--redundant-experts) {self.redundant_experts} is invalid: expected 0 or more")
        if self.latent_cache_format not in LATENT_CACHE_FORMATS:
            raise DeploymentError(f"latent cache format (--latent-cache) '{self.latent_cache_format}' is invalid: expected one of {', '.join(LATENT_CACHE_FORMATS)}")
        if self.step_overhead_s < 0:
            raise DeploymentError(f"step_overhead_s={self.step_overhead_s} is invalid: expected 0 or more")
        slots = self.expert_slots(spec)
        if slots % self.ep_gpus != 0:
            raise DeploymentError(
                f"EP size {self.ep_gpus} does not divide the {slots} expert slots ({spec.n_routed_experts} routed + "
                f"{self.redundant_experts} redundant): {slots % self.ep_gpus} {'slot' if slots % self.ep_gpus == 1 else 'slots'} left over; pick an EP size that divides {slots} or change --redundant-experts"
            )
        if self.ep_gpus > self.gpus_per_node and self.ep_gpus % self.gpus_per_node != 0:
            raise DeploymentError(f"EP size {self.ep_gpus} is not a whole number of {self.gpus_per_node}-GPU nodes: use a multiple of {self.gpus_per_node}")
        if self.attention_tp_gpus > self.gpus_per_node:
            raise DeploymentError(f"attention tensor parallelism {self.attention_tp_gpus} exceeds the {self.gpus_per_node} GPUs of a node")
        if spec.num_attention_heads % self.attention_tp_gpus != 0:
            raise DeploymentError(f"attention tensor parallelism {self.attention_tp_gpus} does not divide the {spec.num_attention_heads} attention heads")
        return self


# The command-line option that sets each Deployment field, for error messages and plot titles.
OPTION_NAMES = {
    "ep_gpus": "--ep", "tokens_per_gpu": "--tokens-per-gpu", "batch_per_gpu": "--batch-per-gpu",
    "context_tokens": "--context", "micro_batches": "--micro-batches", "mtp_tokens": "--mtp-tokens",
    "mtp_acceptance_fraction": "--mtp-acceptance", "redundant_experts": "--redundant-experts",
    "latent_cache_format": "--latent-cache",
}


def _positive(name: str, value: int) -> None:
    if value < 1:
        option = OPTION_NAMES.get(name)
        label = f"{name} ({option})" if option else name
        raise DeploymentError(f"{label} {value} is invalid: expected a positive integer")


# DeepSeek's H800 service as Figure 3 of the DeepSeek-V3.2-Exp paper prices it. Quantities the paper states
# (EP sizes, redundant experts, micro-batches, MTP, prompt length) come from DeepSeek's published inference
# system; the ones it does not state were set from Figure 3's position-0 endpoints, each named below.
MTP_ACCEPTANCE_FRACTION = 0.9  # the second token is accepted 85-90 % of the time (DeepSeek-V3 report): upper end
PREFILL_EP_GPUS = 32
PREFILL_REDUNDANT_EXPERTS = 32  # 256 + 32 = 288 slots, 9 per GPU
PREFILL_TOKENS_PER_GPU = 16384  # DeepSeek's profiled prefill batch, two micro-batches
PREFILL_CONTEXT_TOKENS = 4096  # DeepSeek's profiled prompt length
# With two micro-batches, one micro-batch's all-to-all runs under the other's compute, half of the step's,
# and DeepEP's prefill kernels occupy SMs while they run, so they cannot also hide under their own.
PREFILL_OVERLAP_FRACTION = 0.5
# A DSA prefill writes FP32 indexer logits for every (query, key) pair of a step before top-k reads them,
# which bounds its step: 1024 tokens per GPU, whose logits against a 131072-token context take 0.5 GiB per
# layer. Figure 3's V3.2-Exp prefill endpoint at position 0 alone would set it near 1200 (see
# benchmarks/calibrate_figure3.py); 1024 meets that endpoint within 3 %.
DSA_PREFILL_TOKENS_PER_GPU = 1024
DECODE_EP_GPUS = 128  # DeepSeek serves at EP144 and profiled at EP128: 2 routed experts per GPU
# Mean context of the requests sharing a decode step: a batch spread evenly over Figure 3's 0-128K range.
DECODE_CONTEXT_TOKENS = 65536
# Decode all-to-all runs over RDMA without occupying SMs, overlapped by the two micro-batches.
# NOTE: DeepSeek's published V3 decode profile (EP128, 128 requests, 4K context, no MTP) ran 55 ms steps;
# with the all-to-all fully hidden this model gives 52 ms there.
DECODE_OVERLAP_FRACTION = 1.0
# Requests per GPU, set from Figure 3's decode endpoints at position 0, one per model.
# NOTE: V3.2's batch is what its endpoint needs when the sparse kernel runs all 2048 slots at position 0,
# and the endpoint sets it loosely: near it the cost falls about 0.4 % per 100 requests. Neither batch
# fits 80 GB at the 65536-token mean context; the curves do not apply memory capacity.
DENSE_DECODE_BATCH_PER_GPU = 196
DSA_DECODE_BATCH_PER_GPU = 1344


def default_deployment(spec: ModelSpec, phase: str) -> Deployment:
    """DeepSeek's H800 service for `phase`, as used for Figure 3; DSA models get DSA's settings."""
    if phase not in PHASES:
        raise DeploymentError(f"phase '{phase}' is invalid: expected one of {', '.join(PHASES)}")
    mtp_tokens = 1 if spec.num_nextn_predict_layers > 0 else 0
    latent_format = "fp8" if spec.uses_dsa else "bf16"
    if phase == "prefill":
        tokens = DSA_PREFILL_TOKENS_PER_GPU if spec.uses_dsa else PREFILL_TOKENS_PER_GPU
        return Deployment(
            phase="prefill", ep_gpus=PREFILL_EP_GPUS, tokens_per_gpu=tokens, batch_per_gpu=1, micro_batches=2,
            mtp_tokens=mtp_tokens, mtp_acceptance_fraction=MTP_ACCEPTANCE_FRACTION,
            redundant_experts=PREFILL_REDUNDANT_EXPERTS, latent_cache_format=latent_format,
            context_tokens=PREFILL_CONTEXT_TOKENS, overlap_fraction=PREFILL_OVERLAP_FRACTION,
        )
    batch = DSA_DECODE_BATCH_PER_GPU if spec.uses_dsa else DENSE_DECODE_BATCH_PER_GPU
    return Deployment(
        phase="decode", ep_gpus=DECODE_EP_GPUS, tokens_per_gpu=1, batch_per_gpu=batch, micro_batches=2,
        mtp_tokens=mtp_tokens, mtp_acceptance_fraction=MTP_ACCEPTANCE_FRACTION, redundant_experts=0,
        latent_cache_format=latent_format, context_tokens=DECODE_CONTEXT_TOKENS,
        overlap_fraction=DECODE_OVERLAP_FRACTION,
    )
