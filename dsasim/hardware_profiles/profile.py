"""The loaded hardware profile, in SI units (FLOP/s, bytes, bytes/s, seconds).

The YAML files state their units in their key names (``hbm_bandwidth_tb_per_s``); the loader converts
them once into these frozen objects. Nothing downstream converts units again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DeviceKind = Literal["gpu", "cpu"]
Dtype = Literal["fp8", "bf16", "fp32"]
Provenance = Literal["datasheet", "measured", "fitted", "assumed"]

# Kernel classes that carry an efficiency. The cost model maps each op to one of these.
KERNEL_CLASSES: tuple[str, ...] = (
    "gemm_fp8",  # FP8 GEMM with block scales (DeepGEMM): projections, experts, LM head
    "gemm_bf16",  # BF16 GEMM: indexer head weights, router
    "mha_prefill",  # causal multi-head attention prefill (FlashAttention-3), MLA decompressed
    "mqa_decode",  # dense absorbed-MLA decode over the latent cache (FlashMLA)
    "sparse_mqa_decode",  # gathered top-k absorbed-MLA decode (FlashMLA sparse)
    "sparse_mqa_prefill",  # gathered top-k absorbed-MLA prefill (FlashMLA sparse)
    "indexer_logits_decode",  # lightning-indexer FP8 logits, paged, decode (DeepGEMM fp8_paged_mqa_logits)
    "indexer_logits_prefill",  # lightning-indexer FP8 logits, prefill (DeepGEMM fp8_mqa_logits)
    "topk_decode",  # top-k selection over one decode step's indexer logits
    "topk_prefill",  # top-k selection over a prefill block's indexer logits
    "elementwise",  # memory-bound elementwise work: norms, RoPE, activations, quantisation
)


@dataclass(frozen=True)
class KernelEfficiency:
    """Achieved fraction of the device peaks for one kernel class, with where it came from."""

    compute_fraction: float
    memory_fraction: float | None  # None: use the profile's hbm_stream_fraction
    overhead_s: float  # fixed time per call beyond the roofline (launch, tail), 0 if none
    provenance: Provenance
    source: str


@dataclass(frozen=True)
class Link:
    """One interconnect tier, bandwidth per direction per GPU."""

    bandwidth_bytes_per_s: float
    latency_s: float
    achievable_fraction: float
    domain_gpus: int | None  # GPUs reachable over this tier; None where unbounded (scale-out)
    provenance: str


@dataclass(frozen=True)
class Price:
    usd_per_gpu_hour: float
    date: str  # ISO date the quote was taken
    source: str


@dataclass(frozen=True)
class HardwareProfile:
    """A device in SI units. Optional parts are None where they do not apply (no FP8, no interconnect)."""

    name: str
    description: str
    device_kind: DeviceKind
    peak_flops_per_s: dict[str, float]  # by dtype; a dtype absent here runs at a fallback rate
    hbm_bandwidth_bytes_per_s: float
    hbm_capacity_bytes: float
    hbm_stream_fraction: float  # achievable fraction of HBM bandwidth for streaming kernels
    kernel_launch_s: float
    efficiencies: dict[str, KernelEfficiency]
    # p-norm exponent that joins compute and memory time near the ridge point; None: a pure roofline (max)
    roofline_blend_exponent: float | None = None
    sm_count: int | None = None
    scale_up: Link | None = None
    scale_out: Link | None = None
    price: Price | None = None
    source_path: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def peak_for(self, dtype: str) -> tuple[float, str]:
        """Return the peak FLOP/s used for `dtype` and the dtype whose peak it is.

        A device without FP8 tensor cores (A100) runs FP8 work at its BF16 rate; a CPU without a
        BF16 peak runs BF16 at its FP32 rate. The second value names the dtype actually used.
        """
        fallbacks = {"fp8": ("fp8", "bf16", "fp32"), "bf16": ("bf16", "fp32"), "fp32": ("fp32", "bf16")}
        for candidate in fallbacks.get(dtype, (dtype,)):
            if candidate in self.peak_flops_per_s:
                return self.peak_flops_per_s[candidate], candidate
        raise KeyError(dtype)
