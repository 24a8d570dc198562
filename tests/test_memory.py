"""Memory per GPU: hand-computed bytes on the tiny configs, batch limits, and the over-capacity message."""

from __future__ import annotations

import dataclasses

import pytest

from dsasim.costmodel.deployment import Deployment, default_deployment
from dsasim.costmodel.memory import (
    RUNTIME_RESERVE_BYTES,
    check_fits,
    fp8_weight_bytes,
    kv_cache_bytes_per_request,
    max_batch_per_gpu,
    memory_per_gpu,
)
from dsasim.costmodel.specs import ModelSpec, load_spec
from dsasim.errors import DeploymentError
from dsasim.hardware_profiles import load_profile
from dsasim.hardware_profiles.profile import HardwareProfile

# Hand counts for the tiny config (hidden 64, 4 layers, 1 dense, 8 experts, 2 per token, MTP 1). Every
# FP8 matrix there fits one 128x128 block, so it carries one 4-byte FP32 scale.
TINY_ATTENTION_LAYER_BYTES = (
    (64 * 48 + 4)  # wq_a
    + (48 * 4 * 24 + 4)  # wq_b: 4 heads of qk_head_dim 24
    + (64 * 40 + 4)  # wkv_a: latent 32 + RoPE 8
    + (32 * 4 * 32 + 4)  # wkv_b: 4 heads of nope 16 + v 16
    + (4 * 16 * 64 + 4)  # wo
    + (2 * 64 + 48 + 32) * 2  # BF16 norms: two per layer, query latent, key/value latent
)  # 18,868
TINY_INDEXER_BYTES = (
    (48 * 2 * 16 + 4)  # indexer wq_b: 2 heads of 16
    + (64 * 16 + 4)  # wk
    + 64 * 2 * 2  # weights_proj, BF16
    + 2 * 16 * 2  # key LayerNorm weight and bias, BF16
)  # 2,888
TINY_EXPERT_BYTES = 2 * (64 * 32 + 4) + (32 * 64 + 4)  # 6,156: gate, up, down at width 32
TINY_DENSE_FFN_BYTES = 2 * (64 * 128 + 4) + (128 * 64 + 4)  # 24,588 at width 128
TINY_ROUTER_BYTES = 8 * 64 * 2 + 8 * 4  # BF16 gate and FP32 bias: 1,056
TINY_EMBEDDING_BYTES = 2 * (1000 * 64 * 2) + 64 * 2  # embedding, LM head, final norm: 256,128
TINY_LATENT_BF16_BYTES = (32 + 8) * 2  # per token per layer
TINY_ACTIVATION_BYTES_PER_TOKEN = 4 * 64 * 2 + 2 * ((64 + 4) + 64 * 2 + 2 * 32 * 2)  # 1,160


def tiny_decode(**changes: object) -> Deployment:
    deployment = Deployment(phase="decode", ep_gpus=4, tokens_per_gpu=1, batch_per_gpu=3, micro_batches=1, mtp_tokens=1,
                            mtp_acceptance_fraction=0.9, redundant_experts=0, latent_cache_format="bf16",
                            context_tokens=100)
    return dataclasses.replace(deployment, **changes)


def tiny_prefill(**changes: object) -> Deployment:
    deployment = tiny_decode(phase="prefill", tokens_per_gpu=300, batch_per_gpu=1, mtp_tokens=0)
    return dataclasses.replace(deployment, **changes)


def with_capacity(capacity_bytes: float) -> HardwareProfile:
    return dataclasses.replace(load_profile("h800"), hbm_capacity_bytes=capacity_bytes)


def test_fp8_weight_bytes_block_scales() -> None:
    # 256 x 384 is 2 x 3 blocks of 128 x 128, each with one FP32 scale.
    assert fp8_weight_bytes(256, 384) == 256 * 384 + 6 * 4
    assert fp8_weight_bytes(129, 1) == 129 + 2 * 4


def test_memory_dense_weights_by_hand(tiny_dense: ModelSpec) -> None:
    use = memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode())

    assert use.attention_weight_bytes == 4 * TINY_ATTENTION_LAYER_BYTES
    assert use.dense_ffn_weight_bytes == TINY_DENSE_FFN_BYTES
    assert use.shared_expert_weight_bytes == 3 * (TINY_EXPERT_BYTES + TINY_ROUTER_BYTES)
    # EP4 over 8 routed experts: 2 slots per GPU in each of the 3 MoE layers.
    assert use.routed_expert_weight_bytes == 3 * 2 * TINY_EXPERT_BYTES
    assert use.embedding_weight_bytes == TINY_EMBEDDING_BYTES
    mtp_layer = TINY_ATTENTION_LAYER_BYTES + TINY_EXPERT_BYTES + TINY_ROUTER_BYTES + 2 * TINY_EXPERT_BYTES
    mtp_projection_and_norms = 2 * 64 * 64 * 2 + 3 * 64 * 2
    assert use.mtp_weight_bytes == mtp_layer + mtp_projection_and_norms


def test_memory_dense_cache_and_activations_by_hand(tiny_dense: ModelSpec) -> None:
    use = memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode())

    # 3 requests x 100 tokens x 5 attention layers (4 + MTP) x 80 B.
    assert use.kv_cache_bytes == 3 * 100 * 5 * TINY_LATENT_BF16_BYTES
    # 3 requests x 2 query tokens (MTP proposes one).
    assert use.activation_bytes == 6 * TINY_ACTIVATION_BYTES_PER_TOKEN
    assert use.indexer_logits_bytes == 0
    assert use.runtime_reserve_bytes == RUNTIME_RESERVE_BYTES


def test_memory_totals_add_up(tiny_dense: ModelSpec) -> None:
    use = memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode())
    parts = (use.weight_bytes + use.kv_cache_bytes + use.indexer_logits_bytes + use.activation_bytes
             + use.runtime_reserve_bytes)

    assert use.total_bytes == parts
    assert use.free_bytes == use.capacity_bytes - parts
    assert use.fits


def test_memory_dsa_adds_indexer_by_hand(tiny_dense: ModelSpec, tiny_dsa: ModelSpec) -> None:
    hardware = load_profile("h800")
    dense = memory_per_gpu(tiny_dense, hardware, tiny_decode())
    sparse = memory_per_gpu(tiny_dsa, hardware, tiny_decode())

    assert sparse.attention_weight_bytes - dense.attention_weight_bytes == 4 * TINY_INDEXER_BYTES
    assert sparse.mtp_weight_bytes - dense.mtp_weight_bytes == TINY_INDEXER_BYTES
    # The index key: 16 FP8 values and one FP32 scale, per token per layer.
    assert sparse.kv_cache_bytes - dense.kv_cache_bytes == 3 * 100 * 5 * (16 + 4)


def test_kv_cache_per_request_formats(tiny_dense: ModelSpec, tiny_dsa: ModelSpec) -> None:
    fp8_latent = 32 + 4 + 8 * 2  # FP8 latent, one FP32 scale, BF16 RoPE key

    assert kv_cache_bytes_per_request(tiny_dense, tiny_decode(), 100) == 100 * 5 * TINY_LATENT_BF16_BYTES
    assert kv_cache_bytes_per_request(tiny_dense, tiny_decode(latent_cache_format="fp8"), 100) == 100 * 5 * fp8_latent
    assert kv_cache_bytes_per_request(tiny_dsa, tiny_decode(latent_cache_format="fp8"), 100) == 100 * 5 * (fp8_latent + 20)
    # Without MTP the MTP layer keeps no cache.
    assert kv_cache_bytes_per_request(tiny_dense, tiny_decode(mtp_tokens=0), 100) == 100 * 4 * TINY_LATENT_BF16_BYTES


def test_kv_cache_per_request_deepseek_sizes() -> None:
    dense = load_spec("deepseek-v3.1-terminus")
    sparse = load_spec("deepseek-v3.2-exp")
    decode = default_deployment(dense, "decode").replace(mtp_tokens=0)

    assert kv_cache_bytes_per_request(dense, decode.replace(latent_cache_format="bf16"), 1) == 61 * 1152
    assert kv_cache_bytes_per_request(sparse, decode.replace(latent_cache_format="fp8"), 1) == 61 * (656 + 132)


def test_memory_routed_slots_with_redundant_experts(tiny_dense: ModelSpec) -> None:
    use = memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode(redundant_experts=4))

    # 12 slots over 4 GPUs: 3 per GPU in each of the 3 MoE layers.
    assert use.routed_expert_weight_bytes == 3 * 3 * TINY_EXPERT_BYTES


def test_memory_attention_tp_splits_head_matrices(tiny_dense: ModelSpec) -> None:
    hardware = load_profile("h800")
    replicated = memory_per_gpu(tiny_dense, hardware, tiny_decode()).attention_weight_bytes
    split = memory_per_gpu(tiny_dense, hardware, tiny_decode(attention_tp_gpus=2)).attention_weight_bytes

    # wq_b, wkv_b and wo halve (each keeps one block scale); wq_a, wkv_a and the norms do not.
    halved = (48 * 48 + 4) + (32 * 64 + 4) + (2 * 16 * 64 + 4)
    assert replicated - split == 4 * (4612 + 4100 + 4100 - halved)


def test_memory_without_mtp_drops_module(tiny_dense: ModelSpec) -> None:
    use = memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode(mtp_tokens=0))

    assert use.mtp_weight_bytes == 0


def test_memory_prefill_prompts_in_flight(tiny_dense: ModelSpec) -> None:
    hardware = load_profile("h800")
    per_token = 4 * TINY_LATENT_BF16_BYTES

    # 300 tokens of 100-token prompts: three whole prompts.
    assert memory_per_gpu(tiny_dense, hardware, tiny_prefill()).kv_cache_bytes == 300 * per_token
    # 250 tokens touch three prompts, each cached in full by its last chunk.
    assert memory_per_gpu(tiny_dense, hardware, tiny_prefill(tokens_per_gpu=250)).kv_cache_bytes == 300 * per_token
    # A chunk of 50 tokens still needs its whole 100-token prompt cached.
    assert memory_per_gpu(tiny_dense, hardware, tiny_prefill(tokens_per_gpu=50)).kv_cache_bytes == 100 * per_token


def test_memory_prefill_dsa_logits_buffer(tiny_dense: ModelSpec, tiny_dsa: ModelSpec) -> None:
    hardware = load_profile("h800")
    deployment = tiny_prefill(micro_batches=2)

    # One micro-batch of 150 queries against 100 keys, FP32.
    assert memory_per_gpu(tiny_dsa, hardware, deployment).indexer_logits_bytes == 150 * 100 * 4
    assert memory_per_gpu(tiny_dense, hardware, deployment).indexer_logits_bytes == 0


def test_memory_dense_fp8_flagged_what_if(tiny_dense: ModelSpec, tiny_dsa: ModelSpec) -> None:
    hardware = load_profile("h800")
    dense_fp8 = memory_per_gpu(tiny_dense, hardware, tiny_decode(latent_cache_format="fp8"))

    assert len(dense_fp8.warnings) == 1
    assert "what-if" in dense_fp8.warnings[0]
    assert memory_per_gpu(tiny_dsa, hardware, tiny_decode(latent_cache_format="fp8")).warnings == ()
    assert memory_per_gpu(tiny_dense, hardware, tiny_decode()).warnings == ()


def test_memory_context_argument_overrides(tiny_dense: ModelSpec) -> None:
    hardware = load_profile("h800")
    at_200 = memory_per_gpu(tiny_dense, hardware, tiny_decode(), 200)

    assert at_200.kv_cache_bytes == 3 * 200 * 5 * TINY_LATENT_BF16_BYTES


def test_memory_bad_ep_raises(tiny_dense: ModelSpec) -> None:
    with pytest.raises(DeploymentError, match="does not divide"):
        memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode(ep_gpus=3))


# --- batch limits ----------------------------------------------------------------------------------


def fixed_bytes(spec: ModelSpec, deployment: Deployment) -> float:
    use = memory_per_gpu(spec, load_profile("h800"), deployment)
    return use.weight_bytes + use.runtime_reserve_bytes


def test_max_batch_exact_limit(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode()
    per_request = 100 * 5 * TINY_LATENT_BF16_BYTES + 2 * TINY_ACTIVATION_BYTES_PER_TOKEN
    capacity = fixed_bytes(tiny_dense, deployment) + 5 * per_request

    assert max_batch_per_gpu(tiny_dense, with_capacity(capacity), deployment) == 5
    assert max_batch_per_gpu(tiny_dense, with_capacity(capacity - 1), deployment) == 4


def test_max_batch_zero_when_nothing_fits(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode()
    capacity = fixed_bytes(tiny_dense, deployment)

    assert max_batch_per_gpu(tiny_dense, with_capacity(capacity), deployment) == 0


def test_max_batch_shrinks_with_context(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode()
    hardware = with_capacity(fixed_bytes(tiny_dense, deployment) + 10**6)

    limits = [max_batch_per_gpu(tiny_dense, hardware, deployment, context) for context in (100, 200, 400, 800)]

    assert limits == sorted(limits, reverse=True)
    assert limits[0] > limits[-1]


def test_max_batch_prefill_counts_tokens(tiny_dense: ModelSpec) -> None:
    deployment = tiny_prefill()
    hardware = with_capacity(fixed_bytes(tiny_dense, deployment) + 10**6)
    limit = max_batch_per_gpu(tiny_dense, hardware, deployment)

    assert memory_per_gpu(tiny_dense, hardware, deployment.replace(tokens_per_gpu=limit)).fits
    assert not memory_per_gpu(tiny_dense, hardware, deployment.replace(tokens_per_gpu=limit + 1)).fits


def test_fp8_latent_fits_more_requests() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    hardware = load_profile("h800")
    decode = default_deployment(spec, "decode")

    bf16 = max_batch_per_gpu(spec, hardware, decode.replace(latent_cache_format="bf16"), 32768)
    fp8 = max_batch_per_gpu(spec, hardware, decode.replace(latent_cache_format="fp8"), 32768)

    assert fp8 > bf16 > 0


def test_check_fits_message_says_how_far_over() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    hardware = load_profile("h800")
    deployment = default_deployment(spec, "decode").replace(batch_per_gpu=300, context_tokens=131072)
    largest = max_batch_per_gpu(spec, hardware, deployment)

    with pytest.raises(DeploymentError) as excinfo:
        check_fits(spec, hardware, deployment)
    message = str(excinfo.value)

    assert message.startswith("batch 300 per GPU needs ")
    assert "at context 131072 on h800 but 79.6 GiB is available" in message
    assert "GiB over" in message
    assert f"the largest batch that fits is {largest}: pass --batch-per-gpu {largest} or less" in message


def test_check_fits_message_when_weights_alone_overflow(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode()
    hardware = with_capacity(fixed_bytes(tiny_dense, deployment) - 1)

    with pytest.raises(DeploymentError, match="over; not even a batch of 1 fits"):
        check_fits(tiny_dense, hardware, deployment)


def test_check_fits_prefill_message(tiny_dense: ModelSpec) -> None:
    deployment = tiny_prefill(tokens_per_gpu=10**6)
    hardware = with_capacity(fixed_bytes(tiny_dense, deployment) + 10**6)

    with pytest.raises(DeploymentError, match=r"prefill of 1000000 tokens per GPU needs .* over; the most tokens per GPU that fit is \d+"):
        check_fits(tiny_dense, hardware, deployment)


def test_check_fits_returns_memory_when_it_fits(tiny_dense: ModelSpec) -> None:
    use = check_fits(tiny_dense, load_profile("h800"), tiny_decode())

    assert use == memory_per_gpu(tiny_dense, load_profile("h800"), tiny_decode())

