"""FLOPs and bytes of every op of one serving step, per layer call, vectorised over token positions.

Two kinds of op:

- step ops are shared by every token of a step on one GPU: projections, experts, norms, the LM head.
  Their weights are read once per step (per micro-batch call), so their cost per token falls with batch.
- token ops belong to one request: core attention and the indexer's logits and top-k, whose work grows
  with the request's position. A decode request runs its ``query_tokens_per_request`` queries together
  and reads its caches once for all of them.

Position p means the token has p earlier tokens in context. Dense attention attends p keys; DSA attends
min(p, index_topk). What a kernel *executes* can differ from what the token attends: the sparse MLA
kernels run all index_topk slots whatever p is (empty slots are masked, not skipped), and a causal
FlashAttention kernel skips the masked half of a prefill block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dsasim.costmodel import work
from dsasim.costmodel.deployment import Deployment
from dsasim.costmodel.dtypes import (
    DTYPE_BYTES,
    fp8_bytes_with_scales,
    fp8_weight_bytes,
    index_cache_bytes_per_token,
    latent_cache_bytes_per_token,
)
from dsasim.costmodel.specs import ModelSpec

Scope = Literal["step", "token"]

# Queries that share one HBM read of a key/value tile in a prefill attention kernel: a CTA keeps 128
# queries, and CTAs working on neighbouring query tiles of the same head read the same tiles from L2.
# NOTE: an estimate (8 tiles of 128); it only matters where prefill attention nears the memory roof.
PREFILL_KEY_REUSE_QUERIES = 1024
SLOT_BLOCK = 0
# Small kernels of one layer call besides its GEMMs and attention, as DeepSeek's H800 decode profile runs
# them. Each is one launch, so each is charged the elementwise class's overhead_us.
ATTENTION_SMALL_KERNELS = (
    "input RMSNorm with residual add",
    "query and key latent RMSNorms",
    "RoPE of the query and key",
    "FP8 quantisation of the query latent",
    "FP8 quantisation of the attention output",
)
MOE_SMALL_KERNELS = (
    "post-attention RMSNorm with residual add",
    "expert top-k routing",
    "FP8 quantisation of the FFN input",
    "shared expert SwiGLU",
    "routed experts SwiGLU",
)
DENSE_FFN_SMALL_KERNELS = (
    "post-attention RMSNorm with residual add",
    "FP8 quantisation of the FFN input",
    "SwiGLU",
)
INDEXER_SMALL_KERNELS = (
    "index key LayerNorm",
    "RoPE of the index queries and key",
    "Hadamard rotation of the index queries and key",
    "FP8 quantisation of the index queries and key",
)
# Hidden-state reads and writes per layer by those kernels (norms, residual adds, SwiGLU, quantisation),
# each a read or write of one hidden vector, split between the attention and the FFN half of the layer.
# NOTE: an estimate of fused-kernel traffic, not a measured count.
ATTENTION_HIDDEN_PASSES = 4
FFN_HIDDEN_PASSES = 6
# Index-query reads and writes by the indexer's rotation and quantisation kernels. NOTE: an estimate.
INDEX_QUERY_PASSES = 4


@dataclass(frozen=True)
class Op:
    """One op of a step: its kernel class, and its work per call.

    For a step op a call is one layer's kernel on one micro-batch; for a token op it is one request's
    share of one layer's kernel (`requests_per_call` requests share the kernel's fixed overhead).
    """

    name: str
    group: str
    kernel: str
    dtype: str
    scope: Scope
    calls_per_step: float  # step ops: calls per step per GPU; token ops: calls per request-step (layers)
    flops_per_call: np.ndarray
    bytes_per_call: np.ndarray
    requests_per_call: float = 1.0
    kernels_per_call: int = 1  # kernel launches the op represents, each charged its class's fixed overhead
    mode: str = ""  # attention mode for mode-dependent ops ("mha", "sparse_mqa", ...), else ""
    description: str = field(default="", compare=False)


def _array(value: float | np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=float), positions.shape)


def gemm_op(name: str, group: str, tokens: float, in_features: int, out_features: int, weight_dtype: str,
          calls: float, positions: np.ndarray, description: str = "", mode: str = "") -> Op:
    """Build the op of a GEMM: `tokens` activations against an [in_features, out_features] weight read once per call."""
    kernel = "gemm_fp8" if weight_dtype == "fp8" else "gemm_bf16"
    if weight_dtype == "fp8":
        weight_bytes = fp8_weight_bytes(in_features, out_features)
        input_bytes = tokens * fp8_bytes_with_scales(in_features)
    else:
        weight_bytes = in_features * out_features * DTYPE_BYTES[weight_dtype]
        input_bytes = tokens * in_features * DTYPE_BYTES["bf16"]
    output_bytes = tokens * out_features * DTYPE_BYTES["bf16"]
    flops = work.gemm_flops(tokens, in_features, out_features)
    return Op(name, group, kernel, weight_dtype, "step", calls, _array(flops, positions),
              _array(weight_bytes + input_bytes + output_bytes, positions), description=description, mode=mode)


def attention_layers(spec: ModelSpec, deployment: Deployment) -> int:
    """Count the layers that run attention per step: the model's, plus the MTP module's when the service uses MTP.

    NOTE: a service that proposes more tokens than the model has MTP layers runs the module once more per
    extra proposal. Those passes are not charged, and the serving layer warns about it.
    """
    return spec.num_hidden_layers + (spec.num_nextn_predict_layers if deployment.mtp_tokens > 0 else 0)


def moe_layers(spec: ModelSpec, deployment: Deployment) -> int:
    """Layers with a routed MoE per step (the MTP module's layer is an MoE layer)."""
    return spec.moe_layers + (spec.num_nextn_predict_layers if deployment.mtp_tokens > 0 else 0)


def routed_tokens_per_slot(spec: ModelSpec, deployment: Deployment) -> float:
    """Tokens each expert slot receives per micro-batch under perfectly balanced routing."""
    micro_batch_tokens = deployment.query_tokens_per_gpu / deployment.micro_batches
    routed_copies = micro_batch_tokens * deployment.ep_gpus * spec.num_experts_per_tok
    return routed_copies / deployment.expert_slots(spec)


def step_ops(spec: ModelSpec, deployment: Deployment, positions: np.ndarray) -> list[Op]:
    """Ops shared by all tokens of one step on one GPU (weights read once per micro-batch call)."""
    micro_batches = deployment.micro_batches
    tokens = deployment.query_tokens_per_gpu / micro_batches  # tokens per micro-batch call
    # Under attention tensor parallelism each GPU runs attention for the whole TP group's tokens with
    # 1/tp of the heads; the MoE then takes this GPU's own tokens again.
    attention_tokens = tokens * deployment.attention_tp_gpus
    tp = deployment.attention_tp_gpus
    attn_calls = attention_layers(spec, deployment) * micro_batches
    moe_calls = moe_layers(spec, deployment) * micro_batches
    dense_calls = spec.dense_ffn_layers * micro_batches
    heads = spec.num_attention_heads // tp
    hidden = spec.hidden_size

    ops = [
        gemm_op("wq_a", "attention_projection", attention_tokens, hidden, spec.q_lora_rank, "fp8", attn_calls, positions,
              "query down-projection"),
        gemm_op("wq_b", "attention_projection", attention_tokens, spec.q_lora_rank, heads * spec.qk_head_dim, "fp8",
              attn_calls, positions, "query up-projection to every head"),
        gemm_op("wkv_a", "attention_projection", attention_tokens, hidden, spec.kv_lora_rank + spec.qk_rope_head_dim, "fp8",
              attn_calls, positions, "key/value down-projection to the cached latent"),
        gemm_op("wkv_b", "attention_projection", attention_tokens, spec.kv_lora_rank, heads * (spec.qk_nope_head_dim + spec.v_head_dim),
              "fp8", attn_calls, positions, "MHA mode: decompress each new token's latent into keys and values", mode="mha"),
        *_absorption(spec, attention_tokens, heads, attn_calls, positions),
        gemm_op("wo", "attention_projection", attention_tokens, heads * spec.v_head_dim, hidden, "fp8", attn_calls, positions,
              "attention output projection"),
    ]
    if spec.uses_dsa:
        ops += [
            gemm_op("indexer_wq_b", "indexer", attention_tokens, spec.q_lora_rank, spec.index_n_heads * spec.index_head_dim, "fp8",
                  attn_calls, positions, "indexer queries from the MLA query latent"),
            gemm_op("indexer_wk", "indexer", attention_tokens, hidden, spec.index_head_dim, "fp8", attn_calls, positions,
                  "the indexer's one shared key head"),
            gemm_op("indexer_weights_proj", "indexer", attention_tokens, hidden, spec.index_n_heads, "bf16", attn_calls, positions,
                  "per-head weights of the indexer score"),
        ]
    ops.append(_cache_write(spec, deployment, attention_tokens, attn_calls, positions))
    ops.append(_small_kernels("attention_small_kernels", "attention_projection", ATTENTION_SMALL_KERNELS,
                              attention_tokens * spec.hidden_size * DTYPE_BYTES["bf16"] * ATTENTION_HIDDEN_PASSES,
                              attn_calls, positions))
    if spec.uses_dsa:
        ops.append(_small_kernels("indexer_small_kernels", "indexer", INDEXER_SMALL_KERNELS,
                                  attention_tokens * spec.index_n_heads * spec.index_head_dim * DTYPE_BYTES["bf16"]
                                  * INDEX_QUERY_PASSES, attn_calls, positions))

    slots_per_gpu = deployment.experts_per_gpu(spec)
    slot_tokens = routed_tokens_per_slot(spec, deployment)
    expert_width = spec.moe_intermediate_size
    ops += [
        gemm_op("router", "moe", tokens, hidden, spec.n_routed_experts, "bf16", moe_calls, positions, "expert gate scores"),
        gemm_op("shared_expert_gate_up", "moe", tokens, hidden, 2 * expert_width * spec.n_shared_experts, "fp8",
              moe_calls, positions, "shared expert, gate and up projections"),
        gemm_op("shared_expert_down", "moe", tokens, expert_width * spec.n_shared_experts, hidden, "fp8", moe_calls,
              positions, "shared expert, down projection"),
        _grouped_gemm_op("routed_experts_gate_up", slot_tokens, hidden, 2 * expert_width, slots_per_gpu, moe_calls, positions,
                      "this GPU's routed expert slots, gate and up (one grouped GEMM)"),
        _grouped_gemm_op("routed_experts_down", slot_tokens, expert_width, hidden, slots_per_gpu, moe_calls, positions,
                      "this GPU's routed expert slots, down (one grouped GEMM)"),
        gemm_op("dense_ffn_gate_up", "dense_ffn", tokens, hidden, 2 * spec.intermediate_size, "fp8", dense_calls, positions,
              "dense FFN layers, gate and up projections"),
        gemm_op("dense_ffn_down", "dense_ffn", tokens, spec.intermediate_size, hidden, "fp8", dense_calls, positions,
              "dense FFN layers, down projection"),
    ]
    ffn_bytes = tokens * hidden * DTYPE_BYTES["bf16"] * FFN_HIDDEN_PASSES
    ops.append(_small_kernels("moe_small_kernels", "moe", MOE_SMALL_KERNELS, ffn_bytes, moe_calls, positions))
    ops.append(_small_kernels("dense_ffn_small_kernels", "dense_ffn", DENSE_FFN_SMALL_KERNELS, ffn_bytes, dense_calls,
                              positions))
    ops.append(_embedding(spec, tokens, micro_batches, positions))
    if deployment.phase == "decode":
        # Every query token gets logits to verify proposals, and the MTP module proposes its tokens.
        lm_head_tokens = tokens + deployment.batch_per_gpu / micro_batches * deployment.mtp_tokens
        ops.append(gemm_op("lm_head", "lm_head", lm_head_tokens, hidden, spec.vocab_size, "bf16", micro_batches, positions,
                         "output logits of every query token and of the MTP proposals"))
    # NOTE: prefill needs logits only for each prompt's last token; that one-per-prompt LM head call is left out.
    return ops


def _absorption(spec: ModelSpec, tokens: float, heads: int, calls: float, positions: np.ndarray) -> list[Op]:
    """Build the two MQA-mode BF16 batched matmuls: W_UK folded into each query, W_UV into each output.

    Each reads its [heads, head_dim, kv_lora_rank] weight once per call.
    """
    query_side = Op("absorb_uk", "attention_projection", "gemm_bf16", "bf16", "step", calls,
                    _array(work.absorption_flops(tokens, heads, spec.qk_nope_head_dim, 0, spec.kv_lora_rank), positions),
                    _array(_absorption_bytes(spec, tokens, heads, spec.qk_nope_head_dim), positions), mode="mqa",
                    description="MQA mode: W_UK folded into the queries")
    output_side = Op("absorb_uv", "attention_projection", "gemm_bf16", "bf16", "step", calls,
                     _array(work.absorption_flops(tokens, heads, 0, spec.v_head_dim, spec.kv_lora_rank), positions),
                     _array(_absorption_bytes(spec, tokens, heads, spec.v_head_dim), positions), mode="mqa",
                     description="MQA mode: W_UV applied to the latent attention outputs")
    return [query_side, output_side]


def _absorption_bytes(spec: ModelSpec, tokens: float, heads: int, head_dim: int) -> float:
    """Count the bytes of one absorption matmul: its BF16 [heads, head_dim, kv_lora_rank] weight, input and output."""
    weight_bytes = heads * head_dim * spec.kv_lora_rank * DTYPE_BYTES["bf16"]
    activation_bytes = tokens * heads * (head_dim + spec.kv_lora_rank) * DTYPE_BYTES["bf16"]
    return weight_bytes + activation_bytes


def _grouped_gemm_op(name: str, slot_tokens: float, in_features: int, out_features: int, slots: int, calls: float,
                  positions: np.ndarray, description: str) -> Op:
    weight_bytes = slots * fp8_weight_bytes(in_features, out_features)
    activation_bytes = slots * slot_tokens * (fp8_bytes_with_scales(in_features) + out_features * DTYPE_BYTES["bf16"])
    flops = slots * work.gemm_flops(slot_tokens, in_features, out_features)
    return Op(name, "moe", "gemm_fp8", "fp8", "step", calls, _array(flops, positions),
              _array(weight_bytes + activation_bytes, positions), description=description)


def _cache_write(spec: ModelSpec, deployment: Deployment, tokens: float, calls: float, positions: np.ndarray) -> Op:
    per_token = latent_cache_bytes_per_token(spec.kv_lora_rank, spec.qk_rope_head_dim, deployment.latent_cache_format)
    if spec.uses_dsa:
        per_token += index_cache_bytes_per_token(spec.index_head_dim)
    return Op("cache_write", "elementwise", "elementwise", "bf16", "step", calls, _array(0.0, positions),
              _array(tokens * per_token, positions), description="append new tokens to the latent (and index key) caches")


def _small_kernels(name: str, group: str, kernels: tuple[str, ...], bytes_per_call: float, calls: float,
                   positions: np.ndarray) -> Op:
    """Build one op for the memory-bound small kernels of a layer call: their traffic and one launch per kernel."""
    return Op(name, group, "elementwise", "bf16", "step", calls, _array(0.0, positions), _array(bytes_per_call, positions),
              kernels_per_call=len(kernels), description="; ".join(kernels))


def _embedding(spec: ModelSpec, tokens: float, calls: float, positions: np.ndarray) -> Op:
    return Op("embedding", "embedding", "elementwise", "bf16", "step", calls, _array(0.0, positions),
              _array(tokens * spec.hidden_size * DTYPE_BYTES["bf16"] * 2, positions), description="token embedding lookup")


def attended_keys(spec: ModelSpec, positions: np.ndarray) -> np.ndarray:
    """Keys a token at each position attends: all p earlier ones (dense), at most index_topk of them (DSA).

    This is the useful work; what a kernel executes can be more (see ``sparse_mqa_op``).
    """
    positions = np.asarray(positions, dtype=float)
    if spec.uses_dsa:
        return np.minimum(positions, spec.index_topk)
    return positions


def token_ops(spec: ModelSpec, deployment: Deployment, positions: np.ndarray) -> list[Op]:
    """Ops of one request's own attention at each position, per layer, per step.

    Prefill ops are per prompt token (one query); decode ops are per request-step (all its query tokens).
    A DSA prefill has both an MHA-mode and a sparse-MQA-mode op; the phase keeps the cheaper per position.
    """
    # A GPU runs its share of heads for all requests of its attention TP group: tp times its own requests.
    tp = deployment.attention_tp_gpus
    layers = attention_layers(spec, deployment) * tp
    positions = np.asarray(positions, dtype=float)
    queries = deployment.query_tokens_per_request
    # A decode request's q query tokens sit at positions p .. p+q-1, so they see p + (q-1)/2 keys on average.
    keys = positions + (queries - 1) / 2
    if deployment.phase == "decode":
        requests_per_call = deployment.batch_per_gpu * tp / deployment.micro_batches
    else:
        requests_per_call = deployment.tokens_per_gpu * tp / deployment.micro_batches
    heads = spec.num_attention_heads // deployment.attention_tp_gpus
    latent_bytes = latent_cache_bytes_per_token(spec.kv_lora_rank, spec.qk_rope_head_dim, deployment.latent_cache_format)
    ops: list[Op] = []

    if deployment.phase == "prefill":
        ops.append(mha_attention_op(spec, heads, 1, keys, layers, requests_per_call))
        if spec.uses_dsa:
            ops.append(sparse_mqa_op(spec, "sparse_mqa_prefill", heads, 1, latent_bytes, layers, requests_per_call, positions, SLOT_BLOCK))
    elif spec.uses_dsa:
        ops.append(sparse_mqa_op(spec, "sparse_mqa_decode", heads, queries, latent_bytes, layers, requests_per_call, positions, SLOT_BLOCK))
    else:
        ops.append(dense_mqa_op(spec, heads, queries, keys, latent_bytes, layers, requests_per_call))

    if spec.uses_dsa:
        logits_kernel = "indexer_logits_decode" if deployment.phase == "decode" else "indexer_logits_prefill"
        ops.append(indexer_logits_op(spec, logits_kernel, queries, keys, deployment.phase == "prefill", layers, requests_per_call))
        topk_kernel = "topk_decode" if deployment.phase == "decode" else "topk_prefill"
        ops.append(topk_op(spec, topk_kernel, queries, keys, layers, requests_per_call))
    return ops


def mha_attention_op(spec: ModelSpec, heads: int, queries: float, keys: np.ndarray, calls: float,
                     requests_per_call: float, score_passes: int = 0, element_dtype: str = "bf16") -> Op:
    """Causal MHA over decompressed keys: `queries` queries, each executed against `keys` keys on average.

    A fused (FlashAttention) kernel keeps its scores on chip; a kernel that writes them to memory passes
    `score_passes`, the FP32 reads and writes of the [heads, queries, keys] score matrix it makes.
    """
    keys = np.asarray(keys, dtype=float)
    flops = np.asarray(work.mha_attention_flops(queries * np.ones_like(keys), keys, heads, spec.qk_head_dim, spec.v_head_dim))
    kv_values_per_key = heads * (spec.qk_head_dim + spec.v_head_dim)
    bytes_moved = queries * keys * kv_values_per_key * DTYPE_BYTES[element_dtype] / PREFILL_KEY_REUSE_QUERIES
    bytes_moved = bytes_moved + queries * keys * heads * DTYPE_BYTES["fp32"] * score_passes
    return Op("core_attention_mha", "core_attention", "mha_prefill", element_dtype, "token", calls, flops, bytes_moved,
              requests_per_call, mode="mha", description="causal MHA over decompressed keys and values")


def dense_mqa_op(spec: ModelSpec, heads: int, queries: float, keys: np.ndarray, latent_bytes: float, calls: float,
                 requests_per_call: float) -> Op:
    """Dense absorbed MLA of one request: its queries share one read of its `keys` cached latents."""
    keys = np.asarray(keys, dtype=float)
    flops = np.asarray(work.mqa_attention_flops(queries * np.ones_like(keys), keys, heads, spec.kv_lora_rank, spec.qk_rope_head_dim))
    cache_bytes = keys * latent_bytes
    return Op("core_attention_mqa", "core_attention", "mqa_decode", "bf16", "token", calls, flops, cache_bytes,
              requests_per_call, mode="mqa", description="dense absorbed MLA over the whole latent cache")


def sparse_mqa_op(spec: ModelSpec, kernel: str, heads: int, queries: float, latent_bytes: float, calls: float,
                  requests_per_call: float, positions: np.ndarray, slot_block: int = 0) -> Op:
    """Sparse absorbed MLA: every query gathers and attends its index slots.

    With ``slot_block`` 0 the kernel executes all index_topk slots, empty ones included. With a block size,
    it stops after the last block that holds a valid index, so a query with p < index_topk earlier tokens
    executes p rounded up to the block.
    """
    if slot_block > 0:
        executed_slots = np.minimum(spec.index_topk, np.ceil(np.asarray(positions, dtype=float) / slot_block) * slot_block)
    else:
        executed_slots = spec.index_topk
    flops = work.mqa_attention_flops(queries, executed_slots, heads, spec.kv_lora_rank, spec.qk_rope_head_dim)
    bytes_moved = queries * executed_slots * latent_bytes
    return Op("core_attention_sparse_mqa", "core_attention", kernel, "bf16", "token", calls, _array(flops, positions),
              _array(bytes_moved, positions), requests_per_call, mode="sparse_mqa",
              description="absorbed MLA over the gathered top-k latent entries")


def indexer_logits_op(spec: ModelSpec, kernel: str, queries: float, keys: np.ndarray, keys_shared_across_queries: bool,
                      calls: float, requests_per_call: float, key_format: str = "fp8") -> Op:
    """Indexer logits of `queries` queries over `keys` earlier keys each (O(p) per token), written as FP32.

    A decode request's queries share one read of its index keys; in prefill a block of queries shares each
    key read like a FlashAttention tile (`keys_shared_across_queries`).
    """
    keys = np.asarray(keys, dtype=float)
    flops = np.asarray(work.indexer_logits_flops(queries * np.ones_like(keys), keys, spec.index_n_heads, spec.index_head_dim))
    key_bytes = keys * index_cache_bytes_per_token(spec.index_head_dim, key_format)
    if keys_shared_across_queries:
        key_bytes = queries * key_bytes / PREFILL_KEY_REUSE_QUERIES
    logits_bytes = queries * keys * DTYPE_BYTES["fp32"]  # written in full before top-k reads them
    return Op("indexer_logits", "indexer", kernel, key_format, "token", calls, flops, key_bytes + logits_bytes,
              requests_per_call, description="FP8 ReLU-weighted scores of every earlier token")


def topk_op(spec: ModelSpec, kernel: str, queries: float, keys: np.ndarray, calls: float, requests_per_call: float) -> Op:
    """Top-k selection: reads every query's FP32 logits, writes index_topk int32 indices per query."""
    keys = np.asarray(keys, dtype=float)
    logits_bytes = queries * keys * DTYPE_BYTES["fp32"]
    selected_bytes = queries * spec.index_topk * DTYPE_BYTES["int32"]
    return Op("indexer_topk", "indexer", kernel, "fp32", "token", calls, np.zeros(keys.shape), logits_bytes + selected_bytes,
              requests_per_call, description="top-k selection over the FP32 logits")
