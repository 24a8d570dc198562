"""FLOPs a kernel executes for one call, the single source of FLOP truth for the model and the kernels.

Every function counts multiply-adds of matrix products as 2 FLOPs and leaves out elementwise work
(softmax, ReLU, scaling, masking), as ``torch.utils.flop_counter.FlopCounterMode`` does. The caller passes
the keys each query is *executed* against: a causal FlashAttention kernel skips the masked half, a masked
dense reference kernel does not, and a sparse kernel executes all of its top-k slots even when some are
empty. Which count applies is a property of the modelled kernel (see ``ops``), not of these formulas.

Arguments are plain numbers or numpy arrays (vectorised over token positions).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Number = TypeVar("Number", float, np.ndarray)

MULTIPLY_ADD_FLOPS = 2


def gemm_flops(tokens: Number, in_features: int, out_features: int) -> Number:
    """FLOPs of a [tokens, in_features] x [in_features, out_features] product."""
    return MULTIPLY_ADD_FLOPS * tokens * in_features * out_features


def mha_attention_flops(
    query_tokens: Number, keys_per_query: Number, n_heads: int, qk_head_dim: int, v_head_dim: int
) -> Number:
    """FLOPs of multi-head attention: Q K^T over qk_head_dim, then P V over v_head_dim, per head."""
    per_pair = MULTIPLY_ADD_FLOPS * n_heads * (qk_head_dim + v_head_dim)
    return per_pair * query_tokens * keys_per_query


def mqa_attention_flops(
    query_tokens: Number, keys_per_query: Number, n_heads: int, kv_lora_rank: int, qk_rope_head_dim: int
) -> Number:
    """FLOPs of absorbed MLA (MQA mode): every head scores the shared latent + RoPE key and sums the latent.

    Keys have kv_lora_rank + qk_rope_head_dim dims, values are the kv_lora_rank latent, so a (query, key)
    pair costs 2 * n_heads * (2 * kv_lora_rank + qk_rope_head_dim). The W_UK / W_UV absorption is
    counted separately by ``absorption_flops``.
    """
    qk_dim = kv_lora_rank + qk_rope_head_dim
    v_dim = kv_lora_rank
    return MULTIPLY_ADD_FLOPS * n_heads * (qk_dim + v_dim) * query_tokens * keys_per_query


def absorption_flops(
    query_tokens: Number, n_heads: int, qk_nope_head_dim: int, v_head_dim: int, kv_lora_rank: int
) -> Number:
    """FLOPs of absorbing W_UK into each query and W_UV into each output, per head, in MQA mode."""
    query_side = qk_nope_head_dim * kv_lora_rank  # q_nope [head] x W_UK [head] -> latent query
    output_side = kv_lora_rank * v_head_dim  # latent output x W_UV [head] -> value space
    return MULTIPLY_ADD_FLOPS * query_tokens * n_heads * (query_side + output_side)


def indexer_logits_flops(
    query_tokens: Number, keys_per_query: Number, index_n_heads: int, index_head_dim: int
) -> Number:
    """FLOPs of the lightning indexer's dot products: every index head against the one shared key.

    The ReLU and the weighted sum over heads are elementwise and not counted.
    """
    return MULTIPLY_ADD_FLOPS * index_n_heads * index_head_dim * query_tokens * keys_per_query


def causal_keys_per_query(query_tokens: Number, context_tokens: Number) -> Number:
    """Mean keys per query of a causal block: `query_tokens` queries at the end of `context_tokens` keys.

    Query i (0-based) of the block attends context_tokens - query_tokens + i + 1 keys, itself included.
    """
    return context_tokens - (query_tokens - 1) / 2
