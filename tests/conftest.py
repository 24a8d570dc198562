"""Shared fixtures: a tiny DeepSeek-like config whose counts can be worked out by hand."""

from __future__ import annotations

import pytest

from dsasim.costmodel.specs import ModelSpec, spec_from_config

TINY_CONFIG: dict[str, object] = {
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_nextn_predict_layers": 1,
    "first_k_dense_replace": 1,
    "intermediate_size": 128,
    "moe_intermediate_size": 32,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "num_attention_heads": 4,
    "q_lora_rank": 48,
    "kv_lora_rank": 32,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
}


@pytest.fixture
def tiny_dense() -> ModelSpec:
    return spec_from_config(dict(TINY_CONFIG), name="tiny-dense")


@pytest.fixture
def tiny_dsa() -> ModelSpec:
    config = dict(TINY_CONFIG, index_n_heads=2, index_head_dim=16, index_topk=8)
    return spec_from_config(config, name="tiny-dsa")
