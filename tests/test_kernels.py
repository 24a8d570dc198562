"""Reference kernels: numerics against plain formulas, executed FLOPs against dsasim.costmodel.work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import pytest

torch = pytest.importorskip("torch")

from torch import Tensor  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from dsasim.costmodel import work  # noqa: E402
from dsasim.validate import kernels  # noqa: E402

# Tiny MLA and indexer dims, with every dim distinct so a swapped argument changes a FLOP count.
N_HEADS = 4
QK_NOPE_HEAD_DIM = 16
QK_ROPE_HEAD_DIM = 8
V_HEAD_DIM = 12
KV_LORA_RANK = 32
INDEX_N_HEADS = 3
INDEX_HEAD_DIM = 20
SHAPES = [(1, 9), (5, 5), (6, 11)]  # (query tokens, keys) for the FLOP-count checks
MHA_SOFTMAX_SCALE = (QK_NOPE_HEAD_DIM + QK_ROPE_HEAD_DIM) ** -0.5


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def mla_inputs(tokens: int, keys: int, seed: int = 0) -> kernels.MLAInputs:
    return kernels.make_mla_inputs(
        tokens,
        keys,
        n_heads=N_HEADS,
        qk_nope_head_dim=QK_NOPE_HEAD_DIM,
        qk_rope_head_dim=QK_ROPE_HEAD_DIM,
        v_head_dim=V_HEAD_DIM,
        kv_lora_rank=KV_LORA_RANK,
        seed=seed,
    )


def indexer_inputs(tokens: int, keys: int, seed: int = 0) -> kernels.IndexerInputs:
    return kernels.make_indexer_inputs(
        tokens, keys, index_n_heads=INDEX_N_HEADS, index_head_dim=INDEX_HEAD_DIM, seed=seed
    )


def absorbed_mqa(inputs: kernels.MLAInputs, causal: bool) -> Tensor:
    q_latent = kernels.absorb_query(inputs.q_nope, inputs.w_uk)
    return kernels.mqa_attention(
        q_latent, inputs.q_pe, inputs.kv_latent, inputs.k_pe, causal=causal, softmax_scale=MHA_SOFTMAX_SCALE
    )


# --- numerics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("extra_slots", [0, 3])
def test_sparse_mqa_all_keys_matches_dense(causal: bool, extra_slots: int) -> None:
    tokens, keys = 5, 9
    inputs = mla_inputs(tokens, keys)
    q_latent = kernels.absorb_query(inputs.q_nope, inputs.w_uk)
    logits = torch.randn(tokens, keys, generator=torch.Generator().manual_seed(1))
    indices = kernels.topk_indices(logits, keys + extra_slots, causal=causal)

    sparse = kernels.sparse_mqa_attention(
        q_latent, inputs.q_pe, inputs.kv_latent, inputs.k_pe, indices, MHA_SOFTMAX_SCALE
    )
    dense = absorbed_mqa(inputs, causal)

    torch.testing.assert_close(sparse, dense)


@pytest.mark.parametrize("causal", [False, True])
def test_absorbed_mqa_matches_decompressed_mha(causal: bool) -> None:
    tokens, keys = 4, 7
    inputs = mla_inputs(tokens, keys)

    # wkv_b: [n_heads, qk_nope_head_dim + v_head_dim, kv_lora_rank], the up-projection of the latent
    wkv_b = torch.cat([inputs.w_uk, inputs.w_uv.transpose(1, 2)], dim=1)
    w_uk, w_uv_t = wkv_b[:, :QK_NOPE_HEAD_DIM], wkv_b[:, QK_NOPE_HEAD_DIM:]
    # k_nope: [keys, n_heads, qk_nope_head_dim]
    # v: [keys, n_heads, v_head_dim]
    k_nope = torch.einsum("sc,hdc->shd", inputs.kv_latent, w_uk)
    v = torch.einsum("sc,hdc->shd", inputs.kv_latent, w_uv_t)
    q = torch.cat([inputs.q_nope, inputs.q_pe], dim=-1)
    k_pe = inputs.k_pe.unsqueeze(1).expand(keys, N_HEADS, -1)
    k = torch.cat([k_nope, k_pe], dim=-1)

    mha = kernels.mha_attention(q, k, v, causal=causal)
    mqa = kernels.absorb_output(absorbed_mqa(inputs, causal), inputs.w_uv)

    torch.testing.assert_close(mqa, mha)


def test_mha_causal_matches_hand_mask() -> None:
    # Two queries at the end of three keys with equal scores: query 0 averages v[0:2], query 1 v[0:3].
    q = torch.zeros(2, 1, 4)
    k = torch.zeros(3, 1, 4)
    v = torch.tensor([[[3.0]], [[6.0]], [[12.0]]])

    out = kernels.mha_attention(q, k, v, causal=True)

    assert out[0, 0, 0].item() == pytest.approx(4.5)
    assert out[1, 0, 0].item() == pytest.approx(7.0)


def test_mha_causal_explicit_offset() -> None:
    q = torch.zeros(1, 1, 4)
    k = torch.zeros(3, 1, 4)
    v = torch.tensor([[[3.0]], [[6.0]], [[12.0]]])

    out = kernels.mha_attention(q, k, v, causal=True, query_offset=0)

    assert out[0, 0, 0].item() == pytest.approx(3.0)


def test_mha_causal_rejects_fewer_keys() -> None:
    q = torch.zeros(3, 1, 4)
    k = torch.zeros(2, 1, 4)

    with pytest.raises(ValueError, match="needs at least 3 keys, got 2"):
        kernels.mha_attention(q, k, k, causal=True)


def indexer_loop(q_index: Tensor, head_weights: Tensor, index_keys: Tensor, key_scales: Tensor) -> Tensor:
    """The indexer formula written out as Python loops over tokens, keys and heads."""
    tokens, index_n_heads, _ = q_index.shape
    keys = index_keys.shape[0]
    logits = torch.zeros(tokens, keys, dtype=torch.float64)
    for t in range(tokens):
        for s in range(keys):
            total = 0.0
            for h in range(index_n_heads):
                dot = float(torch.dot(q_index[t, h].double(), index_keys[s].double()))
                total += float(head_weights[t, h]) * max(dot, 0.0)
            logits[t, s] = float(key_scales[s]) * total
    return logits


def test_indexer_matches_loop() -> None:
    inputs = indexer_inputs(3, 6)
    key_scales = torch.rand(6, generator=torch.Generator().manual_seed(2)) + 0.5

    logits = kernels.indexer_logits(inputs.q_index, inputs.head_weights, inputs.index_keys, key_scales)
    expected = indexer_loop(inputs.q_index, inputs.head_weights, inputs.index_keys, key_scales)

    torch.testing.assert_close(logits.double(), expected, rtol=1e-5, atol=1e-5)


def test_indexer_fp8_matches_loop_on_dequantised() -> None:
    inputs = indexer_inputs(3, 6)
    q_fp8, q_scales = kernels.quantize_fp8_per_vector(inputs.q_index, block=INDEX_HEAD_DIM)
    k_fp8, k_scales = kernels.quantize_fp8_per_vector(inputs.index_keys, block=INDEX_HEAD_DIM)
    q_dequantised = q_fp8.float() * q_scales
    k_dequantised = k_fp8.float() * k_scales

    logits = kernels.indexer_logits(inputs.q_index, inputs.head_weights, inputs.index_keys, fp8=True)
    expected = indexer_loop(q_dequantised, inputs.head_weights, k_dequantised, torch.ones(6))

    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits.double(), expected, rtol=1e-5, atol=1e-5)


def test_indexer_fp8_close_to_exact() -> None:
    inputs = indexer_inputs(4, 32)

    fp8 = kernels.indexer_logits(inputs.q_index, inputs.head_weights, inputs.index_keys, fp8=True)
    exact = kernels.indexer_logits(inputs.q_index, inputs.head_weights, inputs.index_keys)

    # e4m3 rounds normal values to 3 mantissa bits, a relative error of at most 1/16 per value.
    relative_error = (fp8 - exact).abs().max() / exact.abs().max()
    assert 0 < relative_error.item() < 0.05


def test_indexer_fp8_accepts_quantised_keys() -> None:
    inputs = indexer_inputs(3, 6)
    k_fp8, k_scales = kernels.quantize_fp8_per_vector(inputs.index_keys, block=INDEX_HEAD_DIM)

    from_fp8_keys = kernels.indexer_logits(
        inputs.q_index, inputs.head_weights, k_fp8, k_scales.squeeze(-1), fp8=True
    )
    from_float_keys = kernels.indexer_logits(inputs.q_index, inputs.head_weights, inputs.index_keys, fp8=True)

    torch.testing.assert_close(from_fp8_keys, from_float_keys)


def test_indexer_fp8_keys_need_scales() -> None:
    inputs = indexer_inputs(2, 3)
    k_fp8, _ = kernels.quantize_fp8_per_vector(inputs.index_keys, block=INDEX_HEAD_DIM)

    with pytest.raises(ValueError, match=r"key_scales \(their per-key scales\) are required"):
        kernels.indexer_logits(inputs.q_index, inputs.head_weights, k_fp8, fp8=True)
    with pytest.raises(ValueError, match="so fp8=True is required"):
        kernels.indexer_logits(inputs.q_index, inputs.head_weights, k_fp8)


def scaled_mm_runs_on_cpu() -> bool:
    """Return whether this torch build implements torch._scaled_mm on CPU, as torch 2.13 does."""
    ones = torch.ones(16, 16).to(torch.float8_e4m3fn)
    unit_scale = torch.ones(())
    try:
        torch._scaled_mm(ones, ones.t(), scale_a=unit_scale, scale_b=unit_scale, out_dtype=torch.float32)
    except (NotImplementedError, RuntimeError):
        return False
    return True


@pytest.mark.parametrize(("m", "n", "dim"), [(20, 21, 16), (3, 5, 24), (32, 16, 128)])
def test_scaled_mm_helper_matches_float32(m: int, n: int, dim: int) -> None:
    if not scaled_mm_runs_on_cpu():
        pytest.skip("this torch build has no CPU torch._scaled_mm")
    generator = torch.Generator().manual_seed(7)
    q_fp8, _ = kernels.quantize_fp8_per_vector(torch.randn(m, dim, generator=generator), block=dim)
    k_fp8, _ = kernels.quantize_fp8_per_vector(torch.randn(n, dim, generator=generator), block=dim)

    product = kernels._scaled_mm_float32(q_fp8, k_fp8)

    assert product.shape == (m, n)
    torch.testing.assert_close(product, q_fp8.float() @ k_fp8.float().t())


def test_quantize_fp8_round_trip() -> None:
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(3))

    quantised, scales = kernels.quantize_fp8_per_vector(x)
    dequantised = (quantised.float().unflatten(-1, (2, 128)) * scales.unsqueeze(-1)).flatten(-2)
    block_max = x.abs().unflatten(-1, (2, 128)).amax(dim=-1)

    assert quantised.dtype == torch.float8_e4m3fn
    assert scales.shape == (3, 2)
    torch.testing.assert_close(scales, block_max / kernels.FP8_E4M3_MAX)
    # Normal e4m3 values round to 3 mantissa bits (relative error <= 1/16) and subnormals to steps of
    # 2**-9 (absolute error <= 2**-10), both in units of the block's scale.
    error_bound = x.abs() / 16 + (scales * 2**-10).repeat_interleave(128, dim=-1)
    assert ((dequantised - x).abs() <= error_bound).all()


def test_quantize_fp8_zero_block() -> None:
    quantised, scales = kernels.quantize_fp8_per_vector(torch.zeros(2, 8), block=8)

    assert scales.tolist() == [[1.0], [1.0]]
    assert quantised.float().abs().sum().item() == 0


def test_quantize_fp8_rejects_partial_block() -> None:
    with pytest.raises(ValueError, match=r"last dim \(100\) must be a positive multiple of block"):
        kernels.quantize_fp8_per_vector(torch.ones(2, 100))


def topk_reference(logits: Tensor, index_topk: int, causal: bool, query_offset: int) -> list[list[int]]:
    """Top-k by sorting each row's visible keys in Python, padded with -1."""
    tokens, keys = logits.shape
    rows = []
    for t in range(tokens):
        visible = min(query_offset + t + 1, keys) if causal else keys
        ranked = sorted(range(visible), key=lambda s: -float(logits[t, s]))[:index_topk]
        rows.append(ranked + [-1] * (index_topk - len(ranked)))
    return rows


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("index_topk", [1, 3, 8, 12])
def test_topk_indices_match_sorted_reference(causal: bool, index_topk: int) -> None:
    tokens, keys = 6, 10
    logits = torch.randn(tokens, keys, generator=torch.Generator().manual_seed(4))

    indices = kernels.topk_indices(logits, index_topk, causal=causal)

    assert indices.dtype == torch.int64
    assert indices.tolist() == topk_reference(logits, index_topk, causal, query_offset=keys - tokens)


def test_topk_indices_pads_short_rows() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])

    indices = kernels.topk_indices(logits, 2, causal=True)

    assert indices.tolist() == [[0, -1], [1, 0], [1, 2]]


def test_topk_indices_batched_offset() -> None:
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(5))

    indices = kernels.topk_indices(logits, 4, causal=True, query_offset=1)

    for b in range(2):
        assert indices[b].tolist() == topk_reference(logits[b], 4, True, query_offset=1)


def test_topk_indices_rejects_zero_topk() -> None:
    with pytest.raises(ValueError, match="index_topk must be >= 1, got 0"):
        kernels.topk_indices(torch.zeros(1, 4), 0, causal=False)


def test_gemm_matches_matmul() -> None:
    x = torch.tensor([[1.0, 2.0]])
    weight = torch.tensor([[3.0, 0.0, 1.0], [4.0, 1.0, 0.0]])

    assert kernels.gemm(x, weight).tolist() == [[11.0, 2.0, 1.0]]


def test_gemm_rejects_mixed_dtypes() -> None:
    with pytest.raises(ValueError, match="must share a dtype"):
        kernels.gemm(torch.ones(1, 2), torch.ones(2, 2, dtype=torch.float64))


def test_kernels_run_in_bfloat16() -> None:
    inputs = mla_inputs(3, 5)
    bfloat16 = kernels.MLAInputs(*(getattr(inputs, f.name).bfloat16() for f in fields(inputs)))

    out = absorbed_mqa(bfloat16, causal=True)

    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()


# --- decode steps ------------------------------------------------------------------------------


def decode_inputs(
    batch: int, context_tokens: int, index_head_dim: int = INDEX_HEAD_DIM
) -> kernels.DecodeInputs:
    return kernels.make_decode_inputs(
        batch,
        context_tokens,
        n_heads=N_HEADS,
        qk_rope_head_dim=QK_ROPE_HEAD_DIM,
        kv_lora_rank=KV_LORA_RANK,
        index_n_heads=INDEX_N_HEADS,
        index_head_dim=index_head_dim,
        seed=6,
    )


def run_dsa_decode(inputs: kernels.DecodeInputs, index_topk: int, fp8: bool = False) -> Tensor:
    return kernels.dsa_decode_step(
        inputs.q_latent,
        inputs.q_pe,
        inputs.kv_latent,
        inputs.k_pe,
        inputs.q_index,
        inputs.head_weights,
        inputs.index_keys,
        index_topk,
        MHA_SOFTMAX_SCALE,
        fp8=fp8,
    )


def run_dense_decode(inputs: kernels.DecodeInputs) -> Tensor:
    return kernels.dense_mqa_decode_step(
        inputs.q_latent, inputs.q_pe, inputs.kv_latent, inputs.k_pe, MHA_SOFTMAX_SCALE
    )


@pytest.mark.parametrize("index_topk", [9, 16])
def test_dsa_decode_all_keys_matches_dense(index_topk: int) -> None:
    inputs = decode_inputs(batch=3, context_tokens=9)

    torch.testing.assert_close(run_dsa_decode(inputs, index_topk), run_dense_decode(inputs))


@pytest.mark.parametrize("fp8", [False, True])
def test_dsa_decode_matches_per_sequence(fp8: bool) -> None:
    inputs = decode_inputs(batch=3, context_tokens=12)
    index_topk = 4

    out = run_dsa_decode(inputs, index_topk, fp8=fp8)

    for b in range(3):
        logits = kernels.indexer_logits(
            inputs.q_index[b : b + 1], inputs.head_weights[b : b + 1], inputs.index_keys[b], fp8=fp8
        )
        indices = kernels.topk_indices(logits, index_topk, causal=False)
        expected = kernels.sparse_mqa_attention(
            inputs.q_latent[b : b + 1],
            inputs.q_pe[b : b + 1],
            inputs.kv_latent[b],
            inputs.k_pe[b],
            indices,
            MHA_SOFTMAX_SCALE,
        )
        torch.testing.assert_close(out[b : b + 1], expected)


# --- executed FLOPs against the cost model -----------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("tokens", "keys"), SHAPES)
def test_mha_flops_match_work(tokens: int, keys: int, causal: bool) -> None:
    n_heads, qk_head_dim, v_head_dim = 3, 10, 6
    q = torch.randn(tokens, n_heads, qk_head_dim)
    k = torch.randn(keys, n_heads, qk_head_dim)
    v = torch.randn(keys, n_heads, v_head_dim)

    counted = count_flops(lambda: kernels.mha_attention(q, k, v, causal=causal))

    # Masked dense: the causal kernel executes the full square.
    assert counted == work.mha_attention_flops(tokens, keys, n_heads, qk_head_dim, v_head_dim)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("tokens", "keys"), SHAPES)
def test_mqa_flops_match_work(tokens: int, keys: int, causal: bool) -> None:
    inputs = mla_inputs(tokens, keys)
    q_latent = kernels.absorb_query(inputs.q_nope, inputs.w_uk)

    counted = count_flops(
        lambda: kernels.mqa_attention(
            q_latent, inputs.q_pe, inputs.kv_latent, inputs.k_pe, causal=causal, softmax_scale=1.0
        )
    )

    expected = work.mqa_attention_flops(tokens, keys, N_HEADS, KV_LORA_RANK, QK_ROPE_HEAD_DIM)
    assert counted == expected


@pytest.mark.parametrize("index_topk", [2, 5, 16])
@pytest.mark.parametrize(("tokens", "keys"), SHAPES)
def test_sparse_mqa_flops_match_work(tokens: int, keys: int, index_topk: int) -> None:
    inputs = mla_inputs(tokens, keys)
    q_latent = kernels.absorb_query(inputs.q_nope, inputs.w_uk)
    indices = kernels.topk_indices(torch.randn(tokens, keys), index_topk, causal=True)

    counted = count_flops(
        lambda: kernels.sparse_mqa_attention(
            q_latent, inputs.q_pe, inputs.kv_latent, inputs.k_pe, indices, 1.0
        )
    )

    # Every slot is executed, empty ones included, whatever the number of keys.
    expected = work.mqa_attention_flops(tokens, index_topk, N_HEADS, KV_LORA_RANK, QK_ROPE_HEAD_DIM)
    assert counted == expected


@pytest.mark.parametrize("tokens", [1, 7])
def test_absorption_flops_match_work(tokens: int) -> None:
    inputs = mla_inputs(tokens, 1)
    o_latent = torch.randn(tokens, N_HEADS, KV_LORA_RANK)

    def absorb_both() -> None:
        kernels.absorb_query(inputs.q_nope, inputs.w_uk)
        kernels.absorb_output(o_latent, inputs.w_uv)

    expected = work.absorption_flops(tokens, N_HEADS, QK_NOPE_HEAD_DIM, V_HEAD_DIM, KV_LORA_RANK)
    assert count_flops(absorb_both) == expected


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize(("tokens", "keys"), SHAPES)
def test_indexer_flops_match_work(tokens: int, keys: int, fp8: bool) -> None:
    # On CPU the FP8 path multiplies upcast values with one float32 product, so it counts the same.
    inputs = indexer_inputs(tokens, keys)

    counted = count_flops(
        lambda: kernels.indexer_logits(
            inputs.q_index, inputs.head_weights, inputs.index_keys, torch.ones(keys), fp8=fp8
        )
    )

    expected = work.indexer_logits_flops(tokens, keys, INDEX_N_HEADS, INDEX_HEAD_DIM)
    assert counted == expected


@pytest.mark.parametrize(("tokens", "in_features", "out_features"), [(1, 8, 4), (5, 16, 24)])
def test_gemm_flops_match_work(tokens: int, in_features: int, out_features: int) -> None:
    x = torch.randn(tokens, in_features)
    weight = torch.randn(in_features, out_features)

    counted = count_flops(lambda: kernels.gemm(x, weight))

    assert counted == work.gemm_flops(tokens, in_features, out_features)


@pytest.mark.parametrize("context_tokens", [5, 20])
def test_decode_step_flops_match_work(context_tokens: int) -> None:
    batch, index_topk = 3, 8
    inputs = decode_inputs(batch, context_tokens)

    dense_counted = count_flops(lambda: run_dense_decode(inputs))
    dsa_counted = count_flops(lambda: run_dsa_decode(inputs, index_topk))

    dense_expected = work.mqa_attention_flops(batch, context_tokens, N_HEADS, KV_LORA_RANK, QK_ROPE_HEAD_DIM)
    indexer_expected = work.indexer_logits_flops(batch, context_tokens, INDEX_N_HEADS, INDEX_HEAD_DIM)
    sparse_expected = work.mqa_attention_flops(batch, index_topk, N_HEADS, KV_LORA_RANK, QK_ROPE_HEAD_DIM)
    assert dense_counted == dense_expected
    assert dsa_counted == indexer_expected + sparse_expected


# --- GPU -----------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_indexer_fp8_scaled_mm_matches_cpu() -> None:
    device = torch.device("cuda")
    if torch.cuda.get_device_capability(device) < (8, 9):
        pytest.skip("torch._scaled_mm needs compute capability 8.9 or newer")
    # 5 tokens x 4 heads and 21 keys are not multiples of 16, so the padding path runs too.
    inputs = kernels.make_indexer_inputs(5, 21, index_n_heads=4, index_head_dim=128)
    batched = decode_inputs(3, 21, index_head_dim=128)

    cpu = kernels.indexer_logits(inputs.q_index, inputs.head_weights, inputs.index_keys, fp8=True)
    gpu = kernels.indexer_logits(
        inputs.q_index.to(device), inputs.head_weights.to(device), inputs.index_keys.to(device), fp8=True
    )
    cpu_batched = kernels.indexer_logits(
        batched.q_index.unsqueeze(1), batched.head_weights.unsqueeze(1), batched.index_keys, fp8=True
    )
    gpu_batched = kernels.indexer_logits(
        batched.q_index.unsqueeze(1).to(device),
        batched.head_weights.unsqueeze(1).to(device),
        batched.index_keys.to(device),
        fp8=True,
    )

    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu_batched.cpu(), cpu_batched, rtol=1e-4, atol=1e-4)
