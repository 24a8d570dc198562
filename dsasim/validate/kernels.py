"""Small torch reference kernels of dense MLA and DeepSeek Sparse Attention (DSA).

The kernels check two things against the cost model: numerics (absorbed MQA equals decompressed MHA,
sparse attention over every key equals dense attention) and executed FLOPs. Every matrix product is an
explicit ``einsum`` or ``matmul`` so that ``torch.utils.flop_counter.FlopCounterMode`` counts it, and
elementwise work (softmax, ReLU, scaling, masking, the indexer's sum over heads) uses elementwise ops,
which it does not count. What each kernel executes:

- the masked dense kernels (``mha_attention``, ``mqa_attention``) compute every (query, key) pair and
  mask afterwards, so they check numerics but not the cost of a causal kernel that skips masked blocks.
- ``sparse_mqa_attention`` gathers its top-k cache rows and executes all ``index_topk`` slots per query,
  empty slots included.

Argument names follow the cost model (``n_heads``, ``kv_lora_rank``, ``index_topk``, ...). Kernels run on
the device and in the dtype of their inputs, and the input builders default to float32 on CPU. Softmax runs
in float32 and its output is cast back to the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FP8_BLOCK_SIZE = 128  # values per FP32 scale in DeepSeek's FP8 activations and indexer cache
FP8_E4M3_MAX = torch.finfo(torch.float8_e4m3fn).max
_SCALED_MM_ALIGNMENT = 16  # dim multiple that torch._scaled_mm requires on CUDA
_SCALED_MM_MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (sm89) and Hopper (sm90) onwards


# --- masking helpers ---------------------------------------------------------------------------


def _resolve_query_offset(tokens: int, keys: int, query_offset: int | None) -> int:
    """Return the position of the first query among the keys. None places the queries at the end."""
    if query_offset is None:
        query_offset = keys - tokens
        if query_offset < 0:
            raise ValueError(
                f"causal attention with {tokens} queries needs at least {tokens} keys, got {keys}. "
                "Pass query_offset to place the queries explicitly"
            )
    if query_offset < 0:
        raise ValueError(f"query_offset must be >= 0, got {query_offset}")
    return query_offset


def _future_key_mask(tokens: int, keys: int, query_offset: int, device: torch.device) -> Tensor:
    """Return True where key s lies after query t, which sits at position query_offset + t."""
    # query_positions: [tokens, 1]
    query_positions = torch.arange(tokens, device=device).unsqueeze(1) + query_offset
    # key_positions: [1, keys]
    key_positions = torch.arange(keys, device=device).unsqueeze(0)
    # mask: [tokens, keys]
    return key_positions > query_positions


def _softmax(scores: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.softmax(scores.float(), dim=-1).to(dtype)


# --- attention ---------------------------------------------------------------------------------


def mha_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool,
    query_offset: int | None = None,
    softmax_scale: float | None = None,
) -> Tensor:
    """Compute multi-head attention with decompressed MLA keys and values, masked dense.

    q: [tokens, n_heads, qk_head_dim], k: [keys, n_heads, qk_head_dim], v: [keys, n_heads, v_head_dim].
    With ``causal``, query t sees keys 0 .. query_offset + t, and None places the queries at the end of
    the keys (query_offset = keys - tokens). ``softmax_scale`` defaults to 1 / sqrt(qk_head_dim).
    Returns [tokens, n_heads, v_head_dim].
    """
    tokens, keys = q.shape[0], k.shape[0]
    if softmax_scale is None:
        softmax_scale = q.shape[-1] ** -0.5

    # scores: [n_heads, tokens, keys]
    scores = torch.einsum("thd,shd->hts", q, k) * softmax_scale
    if causal:
        offset = _resolve_query_offset(tokens, keys, query_offset)
        scores = scores.masked_fill(_future_key_mask(tokens, keys, offset, q.device), float("-inf"))
    probs = _softmax(scores, v.dtype)

    # out: [tokens, n_heads, v_head_dim]
    return torch.einsum("hts,shd->thd", probs, v)


def absorb_query(q_nope: Tensor, w_uk: Tensor) -> Tensor:
    """Multiply each head's non-RoPE query by W_UK, giving a query in the latent space.

    q_nope: [..., n_heads, qk_nope_head_dim], w_uk: [n_heads, qk_nope_head_dim, kv_lora_rank].
    Returns [..., n_heads, kv_lora_rank].
    """
    # q_latent: [..., n_heads, kv_lora_rank]
    return torch.einsum("...hd,hdc->...hc", q_nope, w_uk)


def absorb_output(o_latent: Tensor, w_uv: Tensor) -> Tensor:
    """Multiply each head's latent attention output by W_UV, giving the output in value space.

    o_latent: [..., n_heads, kv_lora_rank], w_uv: [n_heads, kv_lora_rank, v_head_dim].
    Returns [..., n_heads, v_head_dim].
    """
    # out: [..., n_heads, v_head_dim]
    return torch.einsum("...hc,hcd->...hd", o_latent, w_uv)


def mqa_attention(
    q_latent: Tensor,
    q_pe: Tensor,
    kv_latent: Tensor,
    k_pe: Tensor,
    causal: bool,
    softmax_scale: float,
    query_offset: int | None = None,
) -> Tensor:
    """Compute absorbed MLA attention (MQA mode): all heads share one latent key and value per token.

    q_latent: [..., tokens, n_heads, kv_lora_rank], q_pe: [..., tokens, n_heads, qk_rope_head_dim],
    kv_latent: [..., keys, kv_lora_rank], k_pe: [..., keys, qk_rope_head_dim]. Leading batch dims, if
    any, must match. A score is q_latent . kv_latent + q_pe . k_pe and the values are kv_latent itself.
    To reproduce MHA, ``softmax_scale`` must be 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim), the MHA
    head dim, not the latent one. ``causal`` and ``query_offset`` mask as in ``mha_attention``.
    Returns [..., tokens, n_heads, kv_lora_rank].
    """
    tokens, keys = q_latent.shape[-3], kv_latent.shape[-2]

    # scores: [..., tokens, n_heads, keys]
    scores = torch.einsum("...thc,...sc->...ths", q_latent, kv_latent)
    scores = scores + torch.einsum("...thr,...sr->...ths", q_pe, k_pe)
    scores = scores * softmax_scale
    if causal:
        offset = _resolve_query_offset(tokens, keys, query_offset)
        # future: [tokens, 1, keys], broadcast over heads
        future = _future_key_mask(tokens, keys, offset, q_latent.device).unsqueeze(1)
        scores = scores.masked_fill(future, float("-inf"))
    probs = _softmax(scores, kv_latent.dtype)

    # out: [..., tokens, n_heads, kv_lora_rank]
    return torch.einsum("...ths,...sc->...thc", probs, kv_latent)


def sparse_mqa_attention(
    q_latent: Tensor,
    q_pe: Tensor,
    kv_latent: Tensor,
    k_pe: Tensor,
    indices: Tensor,
    softmax_scale: float,
) -> Tensor:
    """Compute absorbed MLA attention over the cache rows each query selected, gathering only those rows.

    q_latent: [tokens, n_heads, kv_lora_rank], q_pe: [tokens, n_heads, qk_rope_head_dim],
    kv_latent: [keys, kv_lora_rank], k_pe: [keys, qk_rope_head_dim], indices: int64 [tokens, index_topk]
    with -1 for an empty slot. Each query executes all index_topk slots, O(index_topk) work whatever the
    number of keys: an empty slot gathers row 0 and is masked out. A query whose slots are all empty
    attends to nothing and gets NaN. Returns [tokens, n_heads, kv_lora_rank].
    """
    # empty: [tokens, 1, index_topk], broadcast over heads
    empty = (indices < 0).unsqueeze(1)
    rows = indices.clamp(min=0)

    # kv_selected: [tokens, index_topk, kv_lora_rank]
    # pe_selected: [tokens, index_topk, qk_rope_head_dim]
    kv_selected = kv_latent[rows]
    pe_selected = k_pe[rows]

    # scores: [tokens, n_heads, index_topk]
    scores = torch.einsum("thc,tkc->thk", q_latent, kv_selected)
    scores = scores + torch.einsum("thr,tkr->thk", q_pe, pe_selected)
    scores = (scores * softmax_scale).masked_fill(empty, float("-inf"))
    probs = _softmax(scores, kv_latent.dtype)

    # out: [tokens, n_heads, kv_lora_rank]
    return torch.einsum("thk,tkc->thc", probs, kv_selected)


def gemm(x: Tensor, weight: Tensor) -> Tensor:
    """Multiply x [tokens, in_features] by weight [in_features, out_features] in their common dtype."""
    if x.dtype != weight.dtype:
        raise ValueError(f"x and weight must share a dtype, got {x.dtype} and {weight.dtype}")
    # out: [tokens, out_features]
    return x @ weight


# --- lightning indexer ---------------------------------------------------------------------------


def quantize_fp8_per_vector(x: Tensor, block: int = FP8_BLOCK_SIZE) -> tuple[Tensor, Tensor]:
    """Quantise x to float8_e4m3fn with one FP32 scale per ``block`` consecutive values of the last dim.

    A block's scale is its maximum absolute value divided by the e4m3 maximum (448), so
    x ~= quantised.float() * scale. An all-zero block gets scale 1. The last dim must be a multiple of
    ``block``. Returns (quantised with x's shape, scales: float32 [..., last_dim // block]).
    """
    if block < 1 or x.shape[-1] % block != 0:
        raise ValueError(
            f"the last dim ({x.shape[-1]}) must be a positive multiple of block, got block={block}"
        )

    # blocks: [..., n_blocks, block]
    blocks = x.float().unflatten(-1, (-1, block))
    # scales: [..., n_blocks, 1]
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    scales = torch.where(amax > 0, amax / FP8_E4M3_MAX, torch.ones_like(amax))
    # Clamping guards against a quotient that rounds just above the e4m3 maximum.
    quantised = (blocks / scales).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return quantised.flatten(-2), scales.squeeze(-1)


def indexer_logits(
    q_index: Tensor,
    head_weights: Tensor,
    index_keys: Tensor,
    key_scales: Tensor | None = None,
    *,
    fp8: bool = False,
) -> Tensor:
    """Compute the lightning indexer's logits, [..., tokens, keys].

    logits[t, s] = key_scales[s] * sum_h head_weights[t, h] * relu(q_index[t, h] . index_keys[s]), where
    q_index is [..., tokens, index_n_heads, index_head_dim], head_weights [..., tokens, index_n_heads],
    index_keys [..., keys, index_head_dim] and key_scales [..., keys] (None for ones). The dot products
    are one matrix product. The sum over heads is an elementwise multiply and a sum, so only the dot
    products count as FLOPs.

    With ``fp8=False`` the logits are computed in the inputs' dtype. With ``fp8=True`` each query head
    vector and each key vector is quantised to float8_e4m3fn with one FP32 scale over its index_head_dim
    values (128 in DeepSeek-V3.2-Exp, one FP8 block), and the logits are float32. Keys that are
    float8_e4m3fn already are used as they are, and ``key_scales`` must then hold their scales. The FP8
    dot products run on ``torch._scaled_mm`` on CUDA devices of compute capability 8.9 or newer.
    Elsewhere, CPU included, the FP8 values are upcast to float32 and multiplied in float32. Products
    of two e4m3 values are exact in float32, so this matches the tensor-core path up to summation order
    and accumulator precision.
    """
    if fp8:
        return _indexer_logits_fp8(q_index, head_weights, index_keys, key_scales)
    if index_keys.dtype == torch.float8_e4m3fn:
        raise ValueError("index_keys are float8_e4m3fn, so fp8=True is required")

    # dots: [..., tokens, index_n_heads, keys]
    dots = torch.einsum("...thd,...sd->...ths", q_index, index_keys)
    # logits: [..., tokens, keys]
    logits = (torch.relu(dots) * head_weights.unsqueeze(-1)).sum(dim=-2)
    if key_scales is not None:
        logits = logits * key_scales.unsqueeze(-2)
    return logits


def _indexer_logits_fp8(
    q_index: Tensor, head_weights: Tensor, index_keys: Tensor, key_scales: Tensor | None
) -> Tensor:
    """Compute the indexer's logits from FP8 queries and keys, as ``indexer_logits`` describes."""
    index_head_dim = q_index.shape[-1]
    # q_fp8: [..., tokens, index_n_heads, index_head_dim]
    # q_scales: [..., tokens, index_n_heads]
    q_fp8, q_scales = quantize_fp8_per_vector(q_index, block=index_head_dim)
    q_scales = q_scales.squeeze(-1)

    if index_keys.dtype == torch.float8_e4m3fn:
        if key_scales is None:
            raise ValueError(
                "index_keys are float8_e4m3fn, so key_scales (their per-key scales) are required"
            )
        k_fp8, scales = index_keys, key_scales.float()
    else:
        # k_fp8: [..., keys, index_head_dim]
        # scales: [..., keys]
        k_fp8, k_scales = quantize_fp8_per_vector(index_keys, block=index_head_dim)
        scales = k_scales.squeeze(-1)
        if key_scales is not None:
            scales = scales * key_scales.float()

    # dots: [..., tokens, index_n_heads, keys], unscaled
    dots = _fp8_dot_products(q_fp8, k_fp8)
    # ReLU commutes with a positive factor, so each query vector's scale folds into its head weight.
    # weights: [..., tokens, index_n_heads]
    weights = head_weights.float() * q_scales
    # logits: [..., tokens, keys]
    logits = (torch.relu(dots) * weights.unsqueeze(-1)).sum(dim=-2)
    return logits * scales.unsqueeze(-2)


def _supports_scaled_mm(device: torch.device) -> bool:
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability(device) >= _SCALED_MM_MIN_CAPABILITY


def _fp8_dot_products(q_fp8: Tensor, k_fp8: Tensor) -> Tensor:
    """Return the float32 dot products of q_fp8 [..., tokens, heads, dim] and k_fp8 [..., keys, dim].

    The result has shape [..., tokens, heads, keys].
    """
    if not _supports_scaled_mm(q_fp8.device):
        return torch.einsum("...thd,...sd->...ths", q_fp8.float(), k_fp8.float())

    # torch._scaled_mm multiplies two matrices, so batched inputs take one call per leading index.
    # NOTE: a timed batch on this path therefore includes one GEMM launch per sequence.
    tokens, heads, dim = q_fp8.shape[-3:]
    keys = k_fp8.shape[-2]
    batch_shape = q_fp8.shape[:-3]
    q_matrices = q_fp8.reshape(-1, tokens * heads, dim)
    k_matrices = k_fp8.reshape(-1, keys, dim)
    products = [_scaled_mm_float32(q, k) for q, k in zip(q_matrices, k_matrices, strict=True)]
    # dots: [..., tokens, heads, keys]
    return torch.stack(products).reshape(*batch_shape, tokens, heads, keys)


def _zero_pad(x: Tensor, rows: int, cols: int) -> Tensor:
    """Return the 2-D matrix x enlarged to [rows, cols] with zeros, a new row-major tensor."""
    padded = torch.zeros(rows, cols, dtype=x.dtype, device=x.device)
    padded[: x.shape[0], : x.shape[1]] = x
    return padded


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _scaled_mm_float32(q: Tensor, k: Tensor) -> Tensor:
    """Multiply FP8 q [m, dim] by FP8 k [n, dim]^T with ``torch._scaled_mm``, returning float32 [m, n].

    On CUDA, torch._scaled_mm needs the inner dim and both dims of its second operand to be multiples
    of 16 (torch 2.13's shape checks). Zero padding meets that and leaves the products unchanged, but
    FlopCounterMode counts the padded sizes. The caller applies the scales, so _scaled_mm gets unit
    tensor-wide scales.
    """
    # NOTE: only run on CPU so far, where torch 2.13 implements _scaled_mm too. The CUDA stride and
    # alignment rules this helper pads for have not been exercised on a GPU.
    m, n = q.shape[0], k.shape[0]
    dim = _round_up(q.shape[1], _SCALED_MM_ALIGNMENT)
    q_padded = _zero_pad(q, m, dim)
    k_padded = _zero_pad(k, _round_up(n, _SCALED_MM_ALIGNMENT), dim)
    unit_scale = torch.ones((), dtype=torch.float32, device=q.device)

    # product: [m, n_padded]. The second operand must be column-major, which .t() of a row-major
    # matrix is.
    product = torch._scaled_mm(
        q_padded, k_padded.t(), scale_a=unit_scale, scale_b=unit_scale, out_dtype=torch.float32
    )
    return product[:, :n]


def topk_indices(logits: Tensor, index_topk: int, causal: bool, query_offset: int | None = None) -> Tensor:
    """Select the index_topk highest-scoring keys of each query, with -1 in slots no key can fill.

    logits: [..., tokens, keys]. With ``causal``, query t sees keys 0 .. query_offset + t (None places
    the queries at the end of the keys), so future keys are never selected. A query that sees fewer than
    index_topk keys gets all of them followed by -1. Returns int64 [..., tokens, index_topk], highest
    logit first.
    """
    if index_topk < 1:
        raise ValueError(f"index_topk must be >= 1, got {index_topk}")
    tokens, keys = logits.shape[-2:]
    device = logits.device

    if causal:
        offset = _resolve_query_offset(tokens, keys, query_offset)
        logits = logits.masked_fill(_future_key_mask(tokens, keys, offset, device), float("-inf"))
        # visible: [tokens], keys each query may select
        visible = (torch.arange(tokens, device=device) + offset + 1).clamp(max=keys)
    else:
        visible = torch.full((tokens,), keys, device=device)

    selected = min(index_topk, keys)
    # indices: [..., tokens, selected]
    indices = torch.topk(logits, selected, dim=-1).indices
    if selected < index_topk:
        indices = torch.nn.functional.pad(indices, (0, index_topk - selected), value=-1)

    # empty: [tokens, index_topk], True for slots past the keys a query can see
    empty = torch.arange(index_topk, device=device).unsqueeze(0) >= visible.unsqueeze(1)
    return indices.masked_fill(empty, -1)


# --- decode steps --------------------------------------------------------------------------------


def dense_mqa_decode_step(
    q_latent: Tensor, q_pe: Tensor, kv_latent: Tensor, k_pe: Tensor, softmax_scale: float
) -> Tensor:
    """Run dense absorbed-MLA decode: one query token per sequence against every cached token.

    q_latent: [batch, n_heads, kv_lora_rank], q_pe: [batch, n_heads, qk_rope_head_dim],
    kv_latent: [batch, context_tokens, kv_lora_rank], k_pe: [batch, context_tokens, qk_rope_head_dim].
    The cache includes the query's own token, so no mask applies. The W_UK / W_UV absorption is the same
    for dense and DSA decode and is left out. Returns [batch, n_heads, kv_lora_rank].
    """
    # out: [batch, 1, n_heads, kv_lora_rank]
    out = mqa_attention(
        q_latent.unsqueeze(1), q_pe.unsqueeze(1), kv_latent, k_pe, causal=False, softmax_scale=softmax_scale
    )
    return out.squeeze(1)


def dsa_decode_step(
    q_latent: Tensor,
    q_pe: Tensor,
    kv_latent: Tensor,
    k_pe: Tensor,
    q_index: Tensor,
    head_weights: Tensor,
    index_keys: Tensor,
    index_topk: int,
    softmax_scale: float,
    index_key_scales: Tensor | None = None,
    *,
    fp8: bool = False,
) -> Tensor:
    """Run DSA decode: indexer logits over every cached token, top-k, then sparse MQA on the selected rows.

    MLA arguments as in ``dense_mqa_decode_step``. q_index: [batch, index_n_heads, index_head_dim],
    head_weights: [batch, index_n_heads], index_keys: [batch, context_tokens, index_head_dim],
    index_key_scales: [batch, context_tokens] or None. ``index_key_scales`` and ``fp8`` are passed to
    ``indexer_logits`` as key_scales and fp8. Every sequence has the same context length. With
    context_tokens < index_topk the sparse step still executes index_topk slots per query.
    Returns [batch, n_heads, kv_lora_rank].
    """
    batch, context_tokens = kv_latent.shape[:2]

    # logits: [batch, 1, context_tokens]
    logits = indexer_logits(
        q_index.unsqueeze(1), head_weights.unsqueeze(1), index_keys, index_key_scales, fp8=fp8
    )
    # indices: [batch, index_topk], positions within each sequence's cache
    indices = topk_indices(logits, index_topk, causal=False).squeeze(1)

    # Offsetting each sequence's indices into the flattened cache lets one gather serve the whole batch.
    # offsets: [batch, 1]
    offsets = torch.arange(batch, device=indices.device).unsqueeze(1) * context_tokens
    flat_indices = torch.where(indices >= 0, indices + offsets, indices)
    return sparse_mqa_attention(
        q_latent, q_pe, kv_latent.flatten(0, 1), k_pe.flatten(0, 1), flat_indices, softmax_scale
    )


# --- input builders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLAInputs:
    """Random MLA activations and absorption weights: ``tokens`` queries over ``keys`` cached tokens."""

    q_nope: Tensor  # [tokens, n_heads, qk_nope_head_dim]
    q_pe: Tensor  # [tokens, n_heads, qk_rope_head_dim]
    kv_latent: Tensor  # [keys, kv_lora_rank]
    k_pe: Tensor  # [keys, qk_rope_head_dim]
    w_uk: Tensor  # [n_heads, qk_nope_head_dim, kv_lora_rank]
    w_uv: Tensor  # [n_heads, kv_lora_rank, v_head_dim]


@dataclass(frozen=True)
class IndexerInputs:
    """Random lightning-indexer inputs: ``tokens`` queries over ``keys`` cached index keys."""

    q_index: Tensor  # [tokens, index_n_heads, index_head_dim]
    head_weights: Tensor  # [tokens, index_n_heads]
    index_keys: Tensor  # [keys, index_head_dim]


@dataclass(frozen=True)
class DecodeInputs:
    """Random decode inputs: one absorbed query per sequence, each sequence with its own cache."""

    q_latent: Tensor  # [batch, n_heads, kv_lora_rank]
    q_pe: Tensor  # [batch, n_heads, qk_rope_head_dim]
    kv_latent: Tensor  # [batch, context_tokens, kv_lora_rank]
    k_pe: Tensor  # [batch, context_tokens, qk_rope_head_dim]
    q_index: Tensor  # [batch, index_n_heads, index_head_dim]
    head_weights: Tensor  # [batch, index_n_heads]
    index_keys: Tensor  # [batch, context_tokens, index_head_dim]


class _RandomTensors:
    """Seeded normal tensors drawn on the target device, then cast to the target dtype."""

    def __init__(self, seed: int, device: torch.device | str, dtype: torch.dtype) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def normal(self, *shape: int, std: float = 1.0) -> Tensor:
        values = torch.randn(shape, generator=self.generator, device=self.device, dtype=torch.float32)
        return (values * std).to(self.dtype)


def make_mla_inputs(
    tokens: int,
    keys: int,
    *,
    n_heads: int,
    qk_nope_head_dim: int,
    qk_rope_head_dim: int,
    v_head_dim: int,
    kv_lora_rank: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MLAInputs:
    """Build seeded MLA inputs.

    Activations are standard normal. W_UK and W_UV entries have std 1 / sqrt(kv_lora_rank), so
    decompressed keys and values have about unit variance. The same seed gives the same tensors on the
    same device type, but CPU and CUDA draw different values.
    """
    random = _RandomTensors(seed, device, dtype)
    weight_std = kv_lora_rank**-0.5
    return MLAInputs(
        q_nope=random.normal(tokens, n_heads, qk_nope_head_dim),
        q_pe=random.normal(tokens, n_heads, qk_rope_head_dim),
        kv_latent=random.normal(keys, kv_lora_rank),
        k_pe=random.normal(keys, qk_rope_head_dim),
        w_uk=random.normal(n_heads, qk_nope_head_dim, kv_lora_rank, std=weight_std),
        w_uv=random.normal(n_heads, kv_lora_rank, v_head_dim, std=weight_std),
    )


def make_indexer_inputs(
    tokens: int,
    keys: int,
    *,
    index_n_heads: int,
    index_head_dim: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> IndexerInputs:
    """Build seeded indexer inputs.

    Queries and keys are standard normal and head weights have std 1 / sqrt(index_n_heads). Seeds behave
    as in ``make_mla_inputs``.
    """
    random = _RandomTensors(seed, device, dtype)
    return IndexerInputs(
        q_index=random.normal(tokens, index_n_heads, index_head_dim),
        head_weights=random.normal(tokens, index_n_heads, std=index_n_heads**-0.5),
        index_keys=random.normal(keys, index_head_dim),
    )


def make_decode_inputs(
    batch: int,
    context_tokens: int,
    *,
    n_heads: int,
    qk_rope_head_dim: int,
    kv_lora_rank: int,
    index_n_heads: int,
    index_head_dim: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DecodeInputs:
    """Build seeded inputs for ``dense_mqa_decode_step`` and ``dsa_decode_step``.

    The absorbed query parts have std 1 / sqrt(kv_lora_rank) and 1 / sqrt(qk_rope_head_dim), so both
    parts of a score have about unit variance. Every other tensor is drawn as in ``make_mla_inputs``
    and ``make_indexer_inputs``. Tensors are drawn on ``device`` directly, so caches of long contexts
    never pass through host memory.
    """
    random = _RandomTensors(seed, device, dtype)
    return DecodeInputs(
        q_latent=random.normal(batch, n_heads, kv_lora_rank, std=kv_lora_rank**-0.5),
        q_pe=random.normal(batch, n_heads, qk_rope_head_dim, std=qk_rope_head_dim**-0.5),
        kv_latent=random.normal(batch, context_tokens, kv_lora_rank),
        k_pe=random.normal(batch, context_tokens, qk_rope_head_dim),
        q_index=random.normal(batch, index_n_heads, index_head_dim),
        head_weights=random.normal(batch, index_n_heads, std=index_n_heads**-0.5),
        index_keys=random.normal(batch, context_tokens, index_head_dim),
    )
