"""HBM use per GPU of a deployment: weights, latent and index caches, activations and a runtime reserve.

Weights follow DeepSeek's serving layout. Attention, the dense FFN layers, the shared expert, the router,
the embedding and the LM head are replicated on every GPU (data-parallel attention), and the routed expert
slots are spread evenly over the EP group. Under attention tensor parallelism the head-sharded attention
matrices (``wq_b``, ``wkv_b``, ``wo``) are split over ``attention_tp_gpus``. The down-projections and the
indexer stay replicated, as ``ops`` models them.

Matrix weights are FP8 e4m3 with one FP32 scale per 128x128 block. The router, the indexer's head
weights, the norms, the embedding and the LM head are BF16.

The cache a GPU holds:

- decode: ``batch_per_gpu`` requests, each with ``context_tokens`` tokens of latent cache (and of index
  keys for DSA) in every attention layer, the MTP layer included when MTP is on;
- prefill: the prompts in flight. A step of ``tokens_per_gpu`` tokens touches
  ``ceil(tokens_per_gpu / context_tokens)`` prompts, and each needs its whole prompt cached by the
  time its last chunk runs. A DSA prefill also needs one layer's FP32 indexer logits for one
  micro-batch, its queries times the context.

Capacity is the device's reported HBM (``hbm_capacity_bytes``), in GiB as the device reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsasim.costmodel.deployment import Deployment
from dsasim.costmodel.dtypes import (
    DTYPE_BYTES,
    fp8_bytes_with_scales,
    fp8_weight_bytes,
    index_cache_bytes_per_token,
    latent_cache_bytes_per_token,
)
from dsasim.costmodel.ops import attention_layers
from dsasim.costmodel.search import last_true
from dsasim.costmodel.specs import ModelSpec
from dsasim.errors import DeploymentError
from dsasim.hardware_profiles.loader import BYTES_PER_GIB
from dsasim.hardware_profiles.profile import HardwareProfile

# Memory held outside weights, caches and the modelled activations: the CUDA context, cuBLAS and DeepGEMM
# workspaces, DeepEP's communication buffers and allocator fragmentation.
# NOTE: an assumed round figure, not measured; DeepEP's buffers alone grow with EP size and tokens per rank.
RUNTIME_RESERVE_BYTES = 4 * BYTES_PER_GIB

# BF16 hidden vectors a token in flight keeps per step outside the MoE buffers: the residual stream, the
# normed layer input, the attention output and the layer output.
# NOTE: an estimate of live activations with one layer in flight, not a profiled peak.
ACTIVATION_HIDDEN_VECTORS_PER_TOKEN = 4

DENSE_FP8_WHAT_IF_NOTE = (
    "FP8 latent cache for a dense-MLA model is a what-if: no production dense MLA decode kernel reads an FP8 "
    "latent cache (FlashMLA's dense decode is BF16-only)"
)


@dataclass(frozen=True)
class MemoryUse:
    """HBM bytes one GPU of a deployment uses, by component, against the device capacity."""

    attention_weight_bytes: float  # MLA projections, the indexer for DSA, and the layers' norms
    dense_ffn_weight_bytes: float
    shared_expert_weight_bytes: float  # shared expert and router of every MoE layer
    routed_expert_weight_bytes: float  # this GPU's routed expert slots in every MoE layer
    embedding_weight_bytes: float  # token embedding, final norm and LM head
    mtp_weight_bytes: float  # the MTP module's own weights (it shares the embedding and head); 0 without MTP
    kv_cache_bytes: float  # latent cache, plus the indexer key cache for DSA
    indexer_logits_bytes: float  # prefill DSA: one layer's FP32 logits of one micro-batch
    activation_bytes: float
    runtime_reserve_bytes: float
    capacity_bytes: float
    warnings: tuple[str, ...] = ()

    @property
    def weight_bytes(self) -> float:
        return (self.attention_weight_bytes + self.dense_ffn_weight_bytes + self.shared_expert_weight_bytes
                + self.routed_expert_weight_bytes + self.embedding_weight_bytes + self.mtp_weight_bytes)

    @property
    def total_bytes(self) -> float:
        return (self.weight_bytes + self.kv_cache_bytes + self.indexer_logits_bytes + self.activation_bytes
                + self.runtime_reserve_bytes)

    @property
    def free_bytes(self) -> float:
        """Capacity left after everything else; negative when the deployment does not fit."""
        return self.capacity_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.free_bytes >= 0

    def to_dict(self) -> dict[str, float | bool | list[str]]:
        """JSON-ready fields and totals, in bytes."""
        return {
            "attention_weight_bytes": self.attention_weight_bytes,
            "dense_ffn_weight_bytes": self.dense_ffn_weight_bytes,
            "shared_expert_weight_bytes": self.shared_expert_weight_bytes,
            "routed_expert_weight_bytes": self.routed_expert_weight_bytes,
            "embedding_weight_bytes": self.embedding_weight_bytes,
            "mtp_weight_bytes": self.mtp_weight_bytes,
            "weight_bytes": self.weight_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "indexer_logits_bytes": self.indexer_logits_bytes,
            "activation_bytes": self.activation_bytes,
            "runtime_reserve_bytes": self.runtime_reserve_bytes,
            "total_bytes": self.total_bytes,
            "capacity_bytes": self.capacity_bytes,
            "free_bytes": self.free_bytes,
            "fits": self.fits,
            "warnings": list(self.warnings),
        }


def _bf16_bytes(values: int) -> float:
    return values * DTYPE_BYTES["bf16"]


def attention_layer_weight_bytes(spec: ModelSpec, attention_tp_gpus: int = 1) -> float:
    """Count the weight bytes of one layer's attention on one GPU: MLA projections, indexer (DSA) and the layer's norms."""
    heads = spec.num_attention_heads // attention_tp_gpus
    hidden = spec.hidden_size
    mla = (
        fp8_weight_bytes(hidden, spec.q_lora_rank)  # wq_a
        + fp8_weight_bytes(spec.q_lora_rank, heads * spec.qk_head_dim)  # wq_b, split by heads
        + fp8_weight_bytes(hidden, spec.kv_lora_rank + spec.qk_rope_head_dim)  # wkv_a
        + fp8_weight_bytes(spec.kv_lora_rank, heads * (spec.qk_nope_head_dim + spec.v_head_dim))  # wkv_b, split
        + fp8_weight_bytes(heads * spec.v_head_dim, hidden)  # wo, split by heads
    )
    norms = _bf16_bytes(
        2 * hidden  # the layer's input and post-attention RMSNorms
        + spec.q_lora_rank  # query latent norm
        + spec.kv_lora_rank  # key/value latent norm
    )
    indexer = 0.0
    if spec.uses_dsa:
        indexer = (
            fp8_weight_bytes(spec.q_lora_rank, spec.index_n_heads * spec.index_head_dim)  # indexer wq_b
            + fp8_weight_bytes(hidden, spec.index_head_dim)  # indexer wk, one key head
            + _bf16_bytes(hidden * spec.index_n_heads)  # weights_proj
            + _bf16_bytes(2 * spec.index_head_dim)  # key LayerNorm weight and bias
        )
    return mla + norms + indexer


def expert_weight_bytes(spec: ModelSpec, intermediate_size: int) -> float:
    """Count the bytes of one SwiGLU FFN (gate, up and down projections) of width `intermediate_size`, in FP8."""
    gate_and_up = 2 * fp8_weight_bytes(spec.hidden_size, intermediate_size)
    down = fp8_weight_bytes(intermediate_size, spec.hidden_size)
    return gate_and_up + down


def router_weight_bytes(spec: ModelSpec) -> float:
    """Count the bytes of one MoE layer's router: BF16 gate weights and the FP32 per-expert bias of the balancing scheme."""
    return _bf16_bytes(spec.n_routed_experts * spec.hidden_size) + spec.n_routed_experts * DTYPE_BYTES["fp32"]


def mtp_module_weight_bytes(spec: ModelSpec, deployment: Deployment) -> float:
    """Count one GPU's share of the MTP modules' weights: the projection of [embedding; hidden], its norms and one MoE layer.

    The modules share the main model's embedding and LM head, so those are not counted again.
    """
    if deployment.mtp_tokens == 0:
        return 0.0
    hidden = spec.hidden_size
    # NOTE: eh_proj taken as BF16: third-party loaders of the released checkpoint find it without block scales.
    projection = _bf16_bytes(2 * hidden * hidden)
    norms = _bf16_bytes(3 * hidden)  # enorm, hnorm and the shared head's norm
    moe_layer = (
        attention_layer_weight_bytes(spec, deployment.attention_tp_gpus)
        + spec.n_shared_experts * expert_weight_bytes(spec, spec.moe_intermediate_size)
        + router_weight_bytes(spec)
        + deployment.experts_per_gpu(spec) * expert_weight_bytes(spec, spec.moe_intermediate_size)
    )
    return spec.num_nextn_predict_layers * (projection + norms + moe_layer)


def kv_cache_bytes_per_token(spec: ModelSpec, deployment: Deployment) -> float:
    """Count the cache bytes one token takes over all attention layers: latent in the deployment's format, plus index key."""
    per_layer = latent_cache_bytes_per_token(spec.kv_lora_rank, spec.qk_rope_head_dim, deployment.latent_cache_format)
    if spec.uses_dsa:
        per_layer += index_cache_bytes_per_token(spec.index_head_dim)
    return per_layer * attention_layers(spec, deployment)


def kv_cache_bytes_per_request(spec: ModelSpec, deployment: Deployment, context_tokens: int) -> float:
    """Count the cache bytes of one request with `context_tokens` tokens, in every attention layer (MTP's when on)."""
    return context_tokens * kv_cache_bytes_per_token(spec, deployment)


def cached_tokens_per_gpu(deployment: Deployment, context_tokens: int) -> int:
    """Count the tokens of cache on one GPU: every decode request's context, or the prefill prompts in flight.

    Under attention tensor parallelism every GPU of the group keeps the whole group's latent cache, since
    all heads read the same latent.
    """
    tp = deployment.attention_tp_gpus
    if deployment.phase == "decode":
        return deployment.batch_per_gpu * tp * context_tokens
    prompts_in_flight = math.ceil(deployment.tokens_per_gpu * tp / context_tokens)
    return prompts_in_flight * context_tokens


def indexer_logits_bytes(spec: ModelSpec, deployment: Deployment, context_tokens: int) -> float:
    """Count one layer's FP32 indexer logits of one micro-batch, which a DSA prefill writes before top-k reads them."""
    if deployment.phase != "prefill" or not spec.uses_dsa:
        return 0.0
    queries = deployment.tokens_per_gpu / deployment.micro_batches
    return queries * context_tokens * DTYPE_BYTES["fp32"]


def activation_bytes(spec: ModelSpec, deployment: Deployment) -> float:
    """Estimate the live activations of one step: hidden vectors and the MoE buffers of every token in flight.

    Each token sends num_experts_per_tok copies out in FP8 (dispatch) and gets them back in BF16
    (combine), and each copy runs through a gate-and-up projection of width 2 x moe_intermediate_size.
    Both micro-batches are in flight at once.
    """
    tokens = deployment.query_tokens_per_gpu
    hidden_vectors = ACTIVATION_HIDDEN_VECTORS_PER_TOKEN * _bf16_bytes(spec.hidden_size)
    per_routed_copy = (
        fp8_bytes_with_scales(spec.hidden_size)  # dispatch receive buffer
        + _bf16_bytes(spec.hidden_size)  # combine buffer
        + _bf16_bytes(2 * spec.moe_intermediate_size)  # gate and up output
    )
    return tokens * (hidden_vectors + spec.num_experts_per_tok * per_routed_copy)


def latent_format_warnings(spec: ModelSpec, deployment: Deployment) -> tuple[str, ...]:
    """List warnings about the latent cache format: an FP8 cache for a dense model is a what-if."""
    if deployment.latent_cache_format == "fp8" and not spec.uses_dsa:
        return (DENSE_FP8_WHAT_IF_NOTE,)
    return ()


def memory_per_gpu(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment,
                   context_tokens: int | None = None) -> MemoryUse:
    """Compute the HBM use of one GPU of `deployment` with requests at `context_tokens` (default: the deployment's)."""
    deployment.validate(spec)
    context = deployment.context_tokens if context_tokens is None else context_tokens
    if context < 1:
        raise DeploymentError(f"context_tokens={context} is invalid: expected a positive integer")

    moe_expert_bytes = expert_weight_bytes(spec, spec.moe_intermediate_size)
    embedding = (
        _bf16_bytes(spec.vocab_size * spec.hidden_size)  # token embedding
        + _bf16_bytes(spec.hidden_size)  # final norm
        + _bf16_bytes(spec.hidden_size * spec.vocab_size)  # LM head
    )
    return MemoryUse(
        attention_weight_bytes=float(spec.num_hidden_layers * attention_layer_weight_bytes(spec, deployment.attention_tp_gpus)),
        dense_ffn_weight_bytes=float(spec.dense_ffn_layers * expert_weight_bytes(spec, spec.intermediate_size)),
        shared_expert_weight_bytes=float(spec.moe_layers * (spec.n_shared_experts * moe_expert_bytes + router_weight_bytes(spec))),
        routed_expert_weight_bytes=float(spec.moe_layers * deployment.experts_per_gpu(spec) * moe_expert_bytes),
        embedding_weight_bytes=float(embedding),
        mtp_weight_bytes=float(mtp_module_weight_bytes(spec, deployment)),
        kv_cache_bytes=float(cached_tokens_per_gpu(deployment, context) * kv_cache_bytes_per_token(spec, deployment)),
        indexer_logits_bytes=float(indexer_logits_bytes(spec, deployment, context)),
        activation_bytes=float(activation_bytes(spec, deployment)),
        runtime_reserve_bytes=float(RUNTIME_RESERVE_BYTES),
        capacity_bytes=float(hardware.hbm_capacity_bytes),
        warnings=latent_format_warnings(spec, deployment),
    )


def _with_batch(deployment: Deployment, batch: int) -> Deployment:
    if deployment.phase == "decode":
        return deployment.replace(batch_per_gpu=batch)
    return deployment.replace(tokens_per_gpu=batch)


def max_batch_per_gpu(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment,
                      context_tokens: int | None = None) -> int:
    """Find the largest batch that fits one GPU at `context_tokens`: requests in decode, prompt tokens in prefill.

    Every other setting is the deployment's. Returns 0 when even a batch of one does not fit.
    """
    def fits(batch: int) -> bool:
        return memory_per_gpu(spec, hardware, _with_batch(deployment, batch), context_tokens).fits

    if not fits(1):
        return 0
    # Memory grows with the batch, so double to a batch that does not fit, then bisect.
    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
    return last_true(fits, low, high)


def _gib(value_bytes: float) -> str:
    return f"{value_bytes / BYTES_PER_GIB:.1f} GiB"


def check_fits(spec: ModelSpec, hardware: HardwareProfile, deployment: Deployment,
               context_tokens: int | None = None) -> MemoryUse:
    """Return the GPU's memory use, or raise DeploymentError saying by how much the deployment is over."""
    memory = memory_per_gpu(spec, hardware, deployment, context_tokens)
    if memory.fits:
        return memory

    context = deployment.context_tokens if context_tokens is None else context_tokens
    if deployment.phase == "decode":
        request = f"batch {deployment.batch_per_gpu} per GPU"
        largest_text = "the largest batch that fits is {0}: pass --batch-per-gpu {0} or less, or a shorter --context"
        smallest = "a batch of 1"
    else:
        request = f"prefill of {deployment.tokens_per_gpu} tokens per GPU"
        largest_text = "the most tokens per GPU that fit is {0}: pass --tokens-per-gpu {0} or less"
        smallest = "1 token per GPU"
    largest = max_batch_per_gpu(spec, hardware, deployment, context_tokens)
    if largest > 0:
        advice = largest_text.format(largest)
    else:
        fixed = memory.weight_bytes + memory.runtime_reserve_bytes
        advice = (f"not even {smallest} fits, because weights and runtime reserve alone take {_gib(fixed)}: "
                  f"use a larger EP size, the FP8 latent cache, a shorter context or a GPU with more memory")
    raise DeploymentError(
        f"{request} needs {_gib(memory.total_bytes)} at context {context} on {hardware.name} but "
        f"{_gib(memory.capacity_bytes)} is available: {_gib(-memory.free_bytes)} over; {advice}"
    )
