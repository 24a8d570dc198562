"""Single kernel calls at explicit shapes, built from the same op builders the phases use.

Validation predicts measured kernel timings through these, so a measured row and a serving step are
costed by one set of formulas. Each function returns an ``Op`` whose ``flops_per_call`` and
``bytes_per_call`` cover the whole call. ``dtype`` is the format the kernel computes and stores in:
the production kernels use BF16 attention over BF16 or FP8 caches and FP8 indexer keys; the float32
reference kernels pass ``"fp32"`` for everything.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dsasim.costmodel.dtypes import latent_cache_bytes_per_token
from dsasim.costmodel.ops import (
    Op,
    dense_mqa_op,
    gemm_op,
    indexer_logits_op,
    mha_attention_op,
    sparse_mqa_op,
    topk_op,
)
from dsasim.costmodel.roofline import kernel_rates, roofline_time_s
from dsasim.costmodel.specs import ModelSpec
from dsasim.hardware_profiles.profile import HardwareProfile

_ONE = np.zeros(1)


def _whole_call(op: Op, requests: float, dtype: str | None = None) -> Op:
    """Scale a per-request op to the whole batched call, optionally computing in `dtype`."""
    return dataclasses.replace(
        op,
        calls_per_step=1.0,
        flops_per_call=op.flops_per_call * requests,
        bytes_per_call=op.bytes_per_call * requests,
        requests_per_call=1.0,
        dtype=dtype or op.dtype,
    )


def gemm_call(m: int, k: int, n: int, weight_dtype: str = "fp8") -> Op:
    """[m, k] x [k, n] GEMM with the weight read once."""
    return gemm_op("gemm", "gemm", m, k, n, weight_dtype, 1.0, _ONE)


# FP32 passes over the score matrix of an unfused attention kernel: write the scores, read them for the
# softmax, write the probabilities, read them for P V. NOTE: masking may add one more, uncounted.
UNFUSED_SCORE_PASSES = 4


def mha_prefill_call(spec: ModelSpec, seq_len: int, dtype: str = "bf16", skips_masked: bool = True) -> Op:
    """Causal MHA prefill of one sequence.

    A kernel that skips masked pairs (FlashAttention) executes p earlier keys for token p, S(S-1)/2 pairs
    in all, and keeps its scores on chip. A masked dense kernel (``skips_masked=False``, the float32
    reference) executes all S x S pairs and writes its scores to memory.
    """
    if skips_masked:
        return mha_attention_op(spec, spec.num_attention_heads, seq_len, np.full(1, (seq_len - 1) / 2), 1.0, 1.0,
                                element_dtype=dtype)
    return mha_attention_op(spec, spec.num_attention_heads, seq_len, np.full(1, float(seq_len)), 1.0, 1.0,
                            score_passes=UNFUSED_SCORE_PASSES, element_dtype=dtype)


def dense_mqa_decode_call(spec: ModelSpec, batch: int, kv_len: int, queries: int = 1, latent_format: str = "bf16",
                          dtype: str = "bf16") -> Op:
    """Dense absorbed-MLA decode of `batch` sequences with `kv_len` cached tokens each."""
    latent_bytes = latent_cache_bytes_per_token(spec.kv_lora_rank, spec.qk_rope_head_dim, latent_format)
    keys = np.full(1, kv_len + (queries - 1) / 2)
    per_request = dense_mqa_op(spec, spec.num_attention_heads, queries, keys, latent_bytes, 1.0, 1.0)
    return _whole_call(per_request, batch, dtype)


def sparse_mqa_decode_call(spec: ModelSpec, batch: int, queries: int = 1, latent_format: str = "fp8",
                           dtype: str = "bf16") -> Op:
    """Sparse decode of `batch` sequences: index_topk slots per query whatever the context length."""
    latent_bytes = latent_cache_bytes_per_token(spec.kv_lora_rank, spec.qk_rope_head_dim, latent_format)
    per_request = sparse_mqa_op(spec, "sparse_mqa_decode", spec.num_attention_heads, queries, latent_bytes, 1.0, 1.0, _ONE)
    return _whole_call(per_request, batch, dtype)


def sparse_mqa_prefill_call(spec: ModelSpec, query_tokens: int, latent_format: str = "fp8", dtype: str = "bf16") -> Op:
    """Sparse prefill of `query_tokens` queries: index_topk slots each."""
    latent_bytes = latent_cache_bytes_per_token(spec.kv_lora_rank, spec.qk_rope_head_dim, latent_format)
    per_query = sparse_mqa_op(spec, "sparse_mqa_prefill", spec.num_attention_heads, 1, latent_bytes, 1.0, 1.0, _ONE)
    return _whole_call(per_query, query_tokens, dtype)


def indexer_decode_call(spec: ModelSpec, batch: int, queries: int, kv_len: int, key_format: str = "fp8") -> Op:
    """Paged indexer logits: `batch` sequences of `queries` query tokens over `kv_len` keys each."""
    keys = np.full(1, float(kv_len))
    per_request = indexer_logits_op(spec, "indexer_logits_decode", queries, keys, False, 1.0, 1.0, key_format)
    return _whole_call(per_request, batch)


def indexer_prefill_call(spec: ModelSpec, query_tokens: int, kv_len: int, key_format: str = "fp8") -> Op:
    """Causal indexer logits of `query_tokens` queries placed at the end of `kv_len` keys."""
    mean_keys = kv_len - query_tokens / 2
    return indexer_logits_op(spec, "indexer_logits_prefill", query_tokens, np.full(1, mean_keys), True, 1.0, 1.0, key_format)


def topk_call(spec: ModelSpec, rows: int, keys: int, kernel: str = "topk_decode") -> Op:
    """Top-k over `rows` rows of `keys` FP32 logits."""
    return _whole_call(topk_op(spec, kernel, 1, np.full(1, float(keys)), 1.0, 1.0), rows)


def predict_call_s(op: Op, hardware: HardwareProfile) -> float:
    """Predicted seconds of one call of `op` on `hardware`: roofline time plus the kernel's overhead."""
    rates = kernel_rates(hardware, op.kernel, op.dtype)
    return float(roofline_time_s(op.flops_per_call, op.bytes_per_call, rates)[0] + rates.overhead_s)
