"""Cost model: hand-computed counts on tiny configs, properties of the curves, Figure 3 endpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dsasim.costmodel import work
from dsasim.costmodel.api import cost_curves, curve_features, curve_positions, deployment_for
from dsasim.costmodel.cost import resolve_price, usd_per_million_tokens
from dsasim.costmodel.deployment import Deployment, default_deployment
from dsasim.costmodel.dtypes import index_cache_bytes_per_token, latent_cache_bytes_per_token
from dsasim.costmodel.ops import attended_keys, step_ops, token_ops
from dsasim.costmodel.phases import phase_cost
from dsasim.costmodel.roofline import KernelRates, roofline_time_s
from dsasim.costmodel.specs import ModelSpec, load_spec, spec_from_config
from dsasim.errors import DeploymentError, InputError, SpecError
from dsasim.hardware_profiles import load_profile

FIGURE3_ENDPOINTS = {
    # (model, phase): (USD per million tokens at position 0, at position 131072), read from Figure 3
    ("deepseek-v3.1-terminus", "prefill"): (0.053, 0.666),
    ("deepseek-v3.2-exp", "prefill"): (0.061, 0.187),
    ("deepseek-v3.1-terminus", "decode"): (0.071, 2.154),
    ("deepseek-v3.2-exp", "decode"): (0.095, 0.249),
}
MODELS = ("deepseek-v3.1-terminus", "deepseek-v3.2-exp")


# --- FLOP formulas ---------------------------------------------------------------------------------


def test_gemm_flops_hand_count() -> None:
    assert work.gemm_flops(3, 4, 5) == 2 * 3 * 4 * 5


def test_mha_flops_per_pair_matches_deepseek() -> None:
    # 128 heads, QK 192, V 128: 2 * 128 * (192 + 128) = 81,920 FLOPs per (query, key) pair.
    assert work.mha_attention_flops(1, 1, 128, 192, 128) == 81_920


def test_mqa_flops_per_pair_matches_deepseek() -> None:
    # Absorbed: QK 576 (512 + 64), V 512: 2 * 128 * 1088 = 278,528.
    assert work.mqa_attention_flops(1, 1, 128, 512, 64) == 278_528


def test_indexer_flops_per_pair() -> None:
    assert work.indexer_logits_flops(1, 1, 64, 128) == 16_384


def test_absorption_flops_per_token() -> None:
    # 2 * 128 heads * (128 * 512 + 512 * 128) = 33.55 MFLOP per token per layer.
    assert work.absorption_flops(1, 128, 128, 128, 512) == 33_554_432


def test_causal_keys_per_query_block() -> None:
    # 4 queries at the end of 10 keys see 7, 8, 9, 10 keys: mean 8.5.
    assert work.causal_keys_per_query(4, 10) == 8.5


# --- caches -----------------------------------------------------------------------------------------


def test_latent_cache_bf16_bytes() -> None:
    assert latent_cache_bytes_per_token(512, 64, "bf16") == 1152


def test_latent_cache_fp8_bytes() -> None:
    # 512 FP8 + 4 FP32 scales + 64 BF16 RoPE values.
    assert latent_cache_bytes_per_token(512, 64, "fp8") == 656


def test_index_cache_bytes() -> None:
    assert index_cache_bytes_per_token(128) == 132


def test_latent_cache_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown latent cache format 'int4'"):
        latent_cache_bytes_per_token(512, 64, "int4")


# --- specs ------------------------------------------------------------------------------------------


def test_load_spec_shipped_models() -> None:
    dense = load_spec("deepseek-v3.1-terminus")
    sparse = load_spec("deepseek-v3.2-exp")
    assert not dense.uses_dsa
    assert sparse.uses_dsa
    assert sparse.index_topk == 2048


def test_load_spec_from_config_path(tmp_path: Path) -> None:
    config = json.loads((Path(__file__).parents[1] / "dsasim/costmodel/models/deepseek-v3.2-exp.json").read_text())
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    spec = load_spec(str(folder / "config.json"))
    assert spec.name == "my-model"
    assert spec.index_n_heads == 64


def test_load_spec_unknown_name() -> None:
    with pytest.raises(SpecError, match="unknown model 'gpt-5' \\(known: deepseek-v3.1-terminus, deepseek-v3.2-exp\\)"):
        load_spec("gpt-5")


def test_load_spec_missing_path() -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec("/nonexistent/config.json")


def test_load_spec_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_spec(str(path))


def test_spec_missing_key(tiny_dense: ModelSpec) -> None:
    from tests.conftest import TINY_CONFIG

    config = dict(TINY_CONFIG)
    del config["kv_lora_rank"]
    with pytest.raises(SpecError, match="missing key 'kv_lora_rank'"):
        spec_from_config(config, "broken")


def test_spec_non_integer_value() -> None:
    from tests.conftest import TINY_CONFIG

    with pytest.raises(SpecError, match="key 'hidden_size' is '64': an integer is expected"):
        spec_from_config(dict(TINY_CONFIG, hidden_size="64"), "broken")


def test_spec_incomplete_indexer_keys() -> None:
    from tests.conftest import TINY_CONFIG

    with pytest.raises(SpecError, match="indexer keys incomplete, missing index_head_dim, index_topk"):
        spec_from_config(dict(TINY_CONFIG, index_n_heads=2), "broken")


# --- ops on a tiny config, counted by hand ------------------------------------------------------------


def _tiny_decode(spec: ModelSpec, **changes: object) -> Deployment:
    base = Deployment(phase="decode", ep_gpus=4, tokens_per_gpu=1, batch_per_gpu=8, micro_batches=1, mtp_tokens=0,
                      mtp_acceptance_fraction=0.0, redundant_experts=0, latent_cache_format="bf16", gpus_per_node=4)
    return base.replace(**changes)


def test_step_ops_wq_a_flops_and_bytes(tiny_dense: ModelSpec) -> None:
    ops = {op.name: op for op in step_ops(tiny_dense, _tiny_decode(tiny_dense), np.zeros(1))}
    wq_a = ops["wq_a"]
    # 8 tokens x 64 -> 48: 2 * 8 * 64 * 48 FLOPs per layer call; 4 layers, 1 micro-batch.
    assert wq_a.flops_per_call[0] == 2 * 8 * 64 * 48
    assert wq_a.calls_per_step == 4
    # FP8 weight 64 * 48 with one FP32 scale for its single 128 x 128 block; FP8 input 8 * (64 + one
    # FP32 scale); BF16 output 8 * 48 * 2.
    assert wq_a.bytes_per_call[0] == 64 * 48 + 4 + 8 * (64 + 4) + 8 * 48 * 2


def test_routed_experts_flops_balanced(tiny_dense: ModelSpec) -> None:
    ops = {op.name: op for op in step_ops(tiny_dense, _tiny_decode(tiny_dense), np.zeros(1))}
    # 8 tokens x 2 experts each, 64 -> 2 * 32 (gate and up): total over the EP group divided by 4 GPUs,
    # and each GPU has 8 / 4 = 2 slots receiving 8 * 4 * 2 / 8 = 8 tokens each.
    assert ops["routed_experts_gate_up"].flops_per_call[0] == 2 * 8 * 2 * 64 * 64
    assert ops["routed_experts_gate_up"].calls_per_step == 3  # 4 layers - 1 dense layer


def test_absorption_halves_add_up_to_work(tiny_dense: ModelSpec) -> None:
    ops = {op.name: op for op in step_ops(tiny_dense, _tiny_decode(tiny_dense), np.zeros(1))}
    total = ops["absorb_uk"].flops_per_call[0] + ops["absorb_uv"].flops_per_call[0]

    assert total == work.absorption_flops(8, tiny_dense.num_attention_heads, tiny_dense.qk_nope_head_dim,
                                          tiny_dense.v_head_dim, tiny_dense.kv_lora_rank)
    assert ops["absorb_uk"].kernel == ops["absorb_uv"].kernel == "gemm_bf16"


def test_small_kernels_pay_one_overhead_per_launch(tiny_dsa: ModelSpec) -> None:
    hardware = load_profile("h800")
    deployment = _tiny_decode(tiny_dsa)
    cost = phase_cost(tiny_dsa, hardware, deployment, np.zeros(1))
    timings = {timing.op.name: timing for timing in cost.timings}
    launch_s = hardware.efficiencies["elementwise"].overhead_s

    # 5 attention small kernels per layer call, 4 layers, 1 micro-batch, shared by 8 tokens.
    assert timings["attention_small_kernels"].op.kernels_per_call == 5
    assert timings["attention_small_kernels"].overhead_seconds_per_token[0] == pytest.approx(5 * launch_s * 4 / 8)
    # The indexer adds its own: LayerNorm, RoPE, Hadamard rotation, quantisation.
    assert timings["indexer_small_kernels"].overhead_seconds_per_token[0] == pytest.approx(4 * launch_s * 4 / 8)
    # 3 MoE layers with 5 each, 1 dense FFN layer with 3.
    assert timings["moe_small_kernels"].overhead_seconds_per_token[0] == pytest.approx(5 * launch_s * 3 / 8)
    assert timings["dense_ffn_small_kernels"].overhead_seconds_per_token[0] == pytest.approx(3 * launch_s * 1 / 8)


def test_dense_decode_attention_counts(tiny_dense: ModelSpec) -> None:
    positions = np.array([0.0, 10.0])
    (attention,) = token_ops(tiny_dense, _tiny_decode(tiny_dense), positions)
    # 4 heads x (2 * 32 + 8) dims x 2 FLOPs per pair, 10 keys; cache (32 + 8) BF16 values per key.
    assert attention.flops_per_call.tolist() == [0.0, 2 * 4 * (32 + 8 + 32) * 10]
    assert attention.bytes_per_call.tolist() == [0.0, 10 * 40 * 2]


def test_sparse_decode_executes_all_slots(tiny_dsa: ModelSpec) -> None:
    positions = np.array([0.0, 3.0, 100.0])
    ops = {op.name: op for op in token_ops(tiny_dsa, _tiny_decode(tiny_dsa, latent_cache_format="fp8"), positions)}
    sparse = ops["core_attention_sparse_mqa"]
    per_slot = 2 * 4 * (2 * 32 + 8)
    assert sparse.flops_per_call.tolist() == [8 * per_slot] * 3


def test_indexer_logits_grow_with_position(tiny_dsa: ModelSpec) -> None:
    positions = np.array([0.0, 100.0])
    ops = {op.name: op for op in token_ops(tiny_dsa, _tiny_decode(tiny_dsa), positions)}
    logits = ops["indexer_logits"]
    assert logits.flops_per_call.tolist() == [0.0, 2 * 2 * 16 * 100]
    # keys read once (16 FP8 + 1 FP32 scale) plus FP32 logits written, per key
    assert logits.bytes_per_call.tolist() == [0.0, 100 * (16 + 4) + 100 * 4]


@pytest.mark.parametrize("positions", [np.arange(0, 9, dtype=float), np.array([0.0, 1.0, 2047.0, 2048.0])])
def test_sparse_attends_dense_keys_below_topk(positions: np.ndarray) -> None:
    dense = load_spec("deepseek-v3.1-terminus")
    sparse = load_spec("deepseek-v3.2-exp")
    assert np.array_equal(attended_keys(sparse, positions), attended_keys(dense, positions))


def test_sparse_attends_topk_beyond() -> None:
    sparse = load_spec("deepseek-v3.2-exp")
    assert attended_keys(sparse, np.array([131072.0])).tolist() == [2048.0]


# --- roofline -----------------------------------------------------------------------------------------


def test_roofline_pure_max() -> None:
    rates = KernelRates(flops_per_s=1e12, bytes_per_s=1e9, overhead_s=0.0, blend_exponent=None, compute_dtype="bf16")
    assert roofline_time_s(2e12, 1e9, rates).item() == pytest.approx(2.0)


def test_roofline_blend_at_ridge() -> None:
    rates = KernelRates(flops_per_s=1e12, bytes_per_s=1e9, overhead_s=0.0, blend_exponent=2.0, compute_dtype="bf16")
    assert roofline_time_s(1e12, 1e9, rates).item() == pytest.approx(math.sqrt(2.0))


def test_roofline_blend_far_from_ridge() -> None:
    rates = KernelRates(flops_per_s=1e12, bytes_per_s=1e9, overhead_s=0.0, blend_exponent=2.5, compute_dtype="bf16")
    assert roofline_time_s(1e14, 1e9, rates).item() == pytest.approx(100.0, rel=1e-4)


# --- deployment ---------------------------------------------------------------------------------------


def test_deployment_ep_must_divide_slots() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    with pytest.raises(DeploymentError, match="EP size 48 does not divide the 256 expert slots"):
        deployment_for(spec, "decode", {"ep_gpus": 48})


def test_deployment_unknown_override() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    with pytest.raises(DeploymentError, match="unknown deployment setting batch"):
        deployment_for(spec, "decode", {"batch": 3})


def test_deployment_mtp_acceptance_range() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    with pytest.raises(DeploymentError, match="MTP acceptance \\(--mtp-acceptance\\) 1.5 is invalid"):
        deployment_for(spec, "decode", {"mtp_acceptance_fraction": 1.5})


def test_default_deployments_follow_deepseek() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    prefill = default_deployment(spec, "prefill")
    decode = default_deployment(spec, "decode")
    assert prefill.experts_per_gpu(spec) == 9
    assert decode.experts_per_gpu(spec) == 2
    assert decode.accepted_tokens_per_request == pytest.approx(1.9)
    assert decode.latent_cache_format == "fp8"


# --- cost ---------------------------------------------------------------------------------------------


def test_usd_per_million_tokens_formula() -> None:
    # 1.8 GPU-ms per token at 2 USD per GPU-hour is 1 USD per million tokens.
    assert usd_per_million_tokens(1.8e-3, 2.0).item() == pytest.approx(1.0)


def test_resolve_price_missing() -> None:
    with pytest.raises(InputError, match="hardware 'h20' has no price in its profile: pass --usd-per-gpu-hour"):
        resolve_price(load_profile("h20"), None)


def test_curve_positions_include_maximum() -> None:
    positions = curve_positions(1000, 300)
    assert positions.tolist() == [0.0, 300.0, 600.0, 900.0, 1000.0]


def test_curve_positions_step_limit() -> None:
    with pytest.raises(InputError, match="--step 513 is invalid"):
        curve_positions(1000, 513)


# --- properties of the curves ------------------------------------------------------------------------------


@pytest.mark.parametrize("hardware", ["h800", "h200", "b200", "a100-sxm"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_cost_never_falls_with_position(hardware: str, model: str, phase: str) -> None:
    spec = load_spec(model)
    positions = np.arange(0, 131073, 128, dtype=float)
    seconds = phase_cost(spec, load_profile(hardware), default_deployment(spec, phase), positions).seconds_per_token
    assert np.all(np.diff(seconds) >= -1e-15)


def test_dense_decode_cost_linear_in_position() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    positions = np.arange(0, 131073, 4096, dtype=float)
    seconds = phase_cost(spec, load_profile("h800"), default_deployment(spec, "decode"), positions).seconds_per_token
    second_difference = np.diff(seconds, n=2)
    assert np.max(np.abs(second_difference)) < 1e-9 * seconds[-1]


def test_dsa_prefill_switches_to_sparse_mode() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    positions = np.array([0.0, 1024.0, 65536.0])
    modes = phase_cost(spec, load_profile("h800"), default_deployment(spec, "prefill"), positions).attention_mode
    assert modes.tolist() == ["mha", "mha", "sparse_mqa"]


def test_curve_features_find_crossovers() -> None:
    features = curve_features(cost_curves(MODELS, "h800", 131072, 256))
    crossovers = features[features["kind"] == "crossover"]
    assert set(crossovers["phase"]) == {"prefill", "decode"}


def test_cost_curves_one_row_per_key() -> None:
    curves = cost_curves(MODELS, "h800", 4096, 512)
    keys = curves[["model", "hardware", "phase", "position"]]
    assert not keys.duplicated().any()
    assert len(curves) == 2 * 2 * 9


@pytest.mark.parametrize(("model", "phase"), list(FIGURE3_ENDPOINTS))
def test_figure3_endpoints_within_five_percent(model: str, phase: str) -> None:
    curves = cost_curves([model], "h800", 131072, 512)
    rows = curves[curves["phase"] == phase].set_index("position")["usd_per_million_tokens"]
    at_zero, at_128k = FIGURE3_ENDPOINTS[(model, phase)]
    assert rows[0] == pytest.approx(at_zero, rel=0.05)
    assert rows[131072] == pytest.approx(at_128k, rel=0.05)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_cost_independent_of_other_positions(model: str, phase: str) -> None:
    spec = load_spec(model)
    deployment = default_deployment(spec, phase)
    hardware = load_profile("h800")
    alone = phase_cost(spec, hardware, deployment, np.array([131072.0])).seconds_per_token
    together = phase_cost(spec, hardware, deployment, np.array([0.0, 1024.0, 131072.0])).seconds_per_token
    assert together[-1] == pytest.approx(alone[0], rel=1e-12)


def test_mtp_acceptance_chains_proposals() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    deployment = default_deployment(spec, "decode").replace(mtp_tokens=2, mtp_acceptance_fraction=0.5)
    # the second proposal counts only when the first was accepted: 1 + 0.5 + 0.25
    assert deployment.accepted_tokens_per_request == pytest.approx(1.75)
