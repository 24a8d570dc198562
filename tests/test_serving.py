"""Throughput of a deployment, the plan search, its Pareto front and plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsasim.costmodel.deployment import Deployment, default_deployment
from dsasim.costmodel.memory import max_batch_per_gpu
from dsasim.costmodel.phases import batch_positions, phase_cost
from dsasim.costmodel.serving import batch_grid, pareto_front, plan, throughput
from dsasim.costmodel.specs import ModelSpec, load_spec
from dsasim.errors import DeploymentError
from dsasim.hardware_profiles import load_profile
from dsasim.reports.pareto_plot import write_pareto_png

MODELS = ("deepseek-v3.1-terminus", "deepseek-v3.2-exp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def profiled_prefill(spec: ModelSpec) -> Deployment:
    """DeepSeek's V3 prefill profile: EP32, 4K prompts, 16K tokens per GPU, two micro-batches."""
    return default_deployment(spec, "prefill").replace(ep_gpus=32, tokens_per_gpu=16384, context_tokens=4096)


def profiled_decode(spec: ModelSpec) -> Deployment:
    """DeepSeek's V3 decode profile: EP128, 4K context, 128 requests per GPU, no MTP."""
    return default_deployment(spec, "decode").replace(ep_gpus=128, batch_per_gpu=128, context_tokens=4096, mtp_tokens=0)


def tiny_decode(**changes: object) -> Deployment:
    deployment = Deployment(phase="decode", ep_gpus=4, tokens_per_gpu=1, batch_per_gpu=8, micro_batches=2, mtp_tokens=1,
                            mtp_acceptance_fraction=0.8, redundant_experts=0, latent_cache_format="bf16",
                            context_tokens=100)
    return dataclasses.replace(deployment, **changes)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("profile", [profiled_prefill, profiled_decode])
def test_profiling_conditions_run(model: str, profile) -> None:
    spec = load_spec(model)
    result = throughput(spec, load_profile("h800"), profile(spec), 2.0)

    assert result.tokens_per_s_per_gpu > 0
    assert result.memory.fits
    assert result.usd_per_million_tokens is not None


# DeepSeek's published V3 profiles on H800 (deepseek-ai/profile-data) in tokens per second per GPU, as
# alibaba/InferSim's README reads them. Nothing in the model is fitted to them, and the accepted error is 15 %.
DEEPSEEK_PROFILE_TOKENS_PER_S_PER_GPU = {"prefill": 7839.0, "decode": 2324.0}


@pytest.mark.parametrize("profile", [profiled_prefill, profiled_decode])
def test_deepseek_profiles_within_fifteen_percent(profile) -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    deployment = profile(spec)
    result = throughput(spec, load_profile("h800"), deployment, None)
    measured = DEEPSEEK_PROFILE_TOKENS_PER_S_PER_GPU[deployment.phase]

    assert abs(result.tokens_per_s_per_gpu / measured - 1) <= 0.15


@pytest.mark.parametrize("model", MODELS)
def test_result_dict_is_json(model: str) -> None:
    spec = load_spec(model)
    result = throughput(spec, load_profile("h800"), profiled_decode(spec), 2.0)
    decoded = json.loads(json.dumps(result.to_dict()))

    assert decoded["tokens_per_s_per_gpu"] == pytest.approx(result.tokens_per_s_per_gpu)
    assert decoded["phase"] == "decode"
    assert decoded["memory"]["capacity_bytes"] == pytest.approx(79.6 * 2**30)
    assert decoded["deployment"]["ep_gpus"] == 128


def test_throughput_matches_phase_cost(tiny_dsa: ModelSpec) -> None:
    hardware = load_profile("h800")
    deployment = tiny_decode()
    cost = phase_cost(tiny_dsa, hardware, deployment, batch_positions(deployment))
    result = throughput(tiny_dsa, hardware, deployment, None)

    assert result.tokens_per_s_per_gpu == pytest.approx(1 / float(np.mean(cost.seconds_per_token)))


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_step_split_adds_up(phase: str) -> None:
    spec = load_spec("deepseek-v3.2-exp")
    deployment = profiled_prefill(spec) if phase == "prefill" else profiled_decode(spec)
    result = throughput(spec, load_profile("h800"), deployment, None)
    step = result.step

    assert step.total_s == pytest.approx(deployment.credited_tokens_per_gpu / result.tokens_per_s_per_gpu)
    assert step.communication_hidden_s + step.communication_visible_s == pytest.approx(step.communication_total_s)
    assert step.compute_bound_s > 0
    assert step.memory_bound_s > 0
    assert step.kernel_overhead_s > 0


def test_decode_latency_by_hand(tiny_dense: ModelSpec) -> None:
    result = throughput(tiny_dense, load_profile("h800"), tiny_decode(), None)
    accepted = 1 + 0.8  # one proposed token, accepted 80 % of the time

    assert result.tpot_s == pytest.approx(result.step_time_s / accepted)
    assert result.tokens_per_s_per_user == pytest.approx(accepted / result.step_time_s)
    assert result.ttft_s is None
    # 8 requests gain 1.8 tokens per step.
    assert result.tokens_per_s_per_gpu == pytest.approx(8 * accepted / result.step_time_s)


def test_prefill_ttft_whole_step_when_prompts_share_it(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode(phase="prefill", tokens_per_gpu=400, mtp_tokens=0)
    result = throughput(tiny_dense, load_profile("h800"), deployment, None)

    # Four 100-token prompts share one step, and each waits for the whole step.
    assert result.ttft_s == pytest.approx(result.step_time_s)
    assert result.tokens_per_s_per_user == pytest.approx(100 / result.step_time_s)


def test_prefill_ttft_chunked_prompt(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode(phase="prefill", tokens_per_gpu=20, mtp_tokens=0)
    result = throughput(tiny_dense, load_profile("h800"), deployment, None)

    # A 100-token prompt in chunks of 20 takes five steps' worth of the GPU's token rate.
    assert result.ttft_s == pytest.approx(100 / result.tokens_per_s_per_gpu)
    assert result.ttft_s > result.step_time_s


def test_price_per_million_tokens_by_hand(tiny_dense: ModelSpec) -> None:
    result = throughput(tiny_dense, load_profile("h800"), tiny_decode(), 2.0)
    seconds_per_token = 1 / result.tokens_per_s_per_gpu

    assert result.usd_per_million_tokens == pytest.approx(2.0 * seconds_per_token / 3600 * 1e6)


def test_no_price_gives_no_cost(tiny_dense: ModelSpec) -> None:
    result = throughput(tiny_dense, load_profile("h800"), tiny_decode(), None)

    assert result.usd_per_million_tokens is None
    assert result.to_dict()["usd_per_million_tokens"] is None


def test_dense_fp8_result_carries_what_if(tiny_dense: ModelSpec) -> None:
    result = throughput(tiny_dense, load_profile("h800"), tiny_decode(latent_cache_format="fp8"), None)

    assert any("what-if" in warning for warning in result.warnings)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_more_batch_never_costs_more(model: str, phase: str) -> None:
    spec = load_spec(model)
    hardware = load_profile("h800")
    deployment = default_deployment(spec, phase).replace(context_tokens=8192)
    limit = max_batch_per_gpu(spec, hardware, deployment)
    batches = batch_grid(deployment.micro_batches, limit)
    seconds_per_token = []
    for batch in batches:
        if phase == "decode":
            candidate = deployment.replace(batch_per_gpu=batch)
        else:
            candidate = deployment.replace(tokens_per_gpu=batch)
        seconds_per_token.append(1 / throughput(spec, hardware, candidate, None).tokens_per_s_per_gpu)

    assert len(batches) > 5
    increases = []
    for i in range(1, len(batches)):
        if seconds_per_token[i] > seconds_per_token[i - 1] * (1 + 1e-12):
            increases.append((batches[i], seconds_per_token[i] / seconds_per_token[i - 1]))
    assert increases == []


def test_batch_past_memory_raises_over() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    deployment = default_deployment(spec, "decode").replace(batch_per_gpu=300, context_tokens=131072)

    with pytest.raises(DeploymentError, match=r"GiB over; the largest batch that fits is \d+"):
        throughput(spec, load_profile("h800"), deployment, 2.0)


def test_unenforced_memory_still_reports_overflow() -> None:
    spec = load_spec("deepseek-v3.2-exp")
    deployment = default_deployment(spec, "decode").replace(batch_per_gpu=300, context_tokens=131072)
    result = throughput(spec, load_profile("h800"), deployment, 2.0, enforce_memory=False)

    assert not result.memory.fits
    assert result.tokens_per_s_per_gpu > 0


def test_bad_ep_raises_divide() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    deployment = profiled_decode(spec).replace(ep_gpus=96)

    with pytest.raises(DeploymentError, match="does not divide the 256 expert slots"):
        throughput(spec, load_profile("h800"), deployment, 2.0)


def test_batch_smaller_than_micro_batches_raises(tiny_dense: ModelSpec) -> None:
    with pytest.raises(DeploymentError, match="too small for 2 micro-batches"):
        throughput(tiny_dense, load_profile("h800"), tiny_decode(batch_per_gpu=1), None)


# --- plan --------------------------------------------------------------------------------------------


def test_batch_grid_steps() -> None:
    assert batch_grid(1, 20) == [1, 2, 3, 4, 6, 8, 12, 16, 20]
    assert batch_grid(2, 5) == [2, 3, 4, 5]
    assert batch_grid(3, 2) == []


@pytest.fixture(scope="module")
def decode_plan() -> pd.DataFrame:
    spec = load_spec("deepseek-v3.2-exp")
    return plan(spec, load_profile("h800"), "decode", 32768, tpot_s=0.05, ttft_s=None, usd_per_gpu_hour=2.0)


def test_plan_rows_fit_memory(decode_plan: pd.DataFrame) -> None:
    assert len(decode_plan) > 0
    assert (decode_plan["memory_used_bytes"] <= decode_plan["memory_capacity_bytes"]).all()
    assert (decode_plan["batch_per_gpu"] <= decode_plan["max_batch_per_gpu"]).all()


def test_plan_rows_are_valid_deployments(decode_plan: pd.DataFrame) -> None:
    slots = 256 + decode_plan["redundant_experts"]

    assert (slots % decode_plan["ep_gpus"] == 0).all()
    assert (decode_plan["ep_gpus"] % 8 == 0).all()
    assert decode_plan["ep_gpus"].between(8, 256).all()
    assert (decode_plan["batch_per_gpu"] >= decode_plan["micro_batches"]).all()


def test_plan_rows_reproduce_with_throughput(decode_plan: pd.DataFrame) -> None:
    spec = load_spec("deepseek-v3.2-exp")
    best = decode_plan.iloc[0]
    deployment = default_deployment(spec, "decode").replace(
        ep_gpus=int(best["ep_gpus"]), redundant_experts=int(best["redundant_experts"]),
        batch_per_gpu=int(best["batch_per_gpu"]), latent_cache_format=best["latent_cache_format"],
        micro_batches=int(best["micro_batches"]), mtp_tokens=int(best["mtp_tokens"]), context_tokens=32768)
    result = throughput(spec, load_profile("h800"), deployment, 2.0)

    assert result.tokens_per_s_per_gpu == pytest.approx(best["tokens_per_s_per_gpu"])


def test_plan_latency_flag_and_order(decode_plan: pd.DataFrame) -> None:
    assert (decode_plan["meets_latency"] == (decode_plan["tpot_s"] <= 0.05)).all()
    meets = decode_plan[decode_plan["meets_latency"]]
    misses = decode_plan[~decode_plan["meets_latency"]]
    assert len(misses) == 0 or meets.index.max() < misses.index.min()
    assert meets["tokens_per_s_per_gpu"].is_monotonic_decreasing


def test_plan_searches_formats_and_mtp(decode_plan: pd.DataFrame) -> None:
    assert set(decode_plan["latent_cache_format"]) == {"bf16", "fp8"}
    assert set(decode_plan["mtp_tokens"]) == {0, 1}
    assert set(decode_plan["micro_batches"]) == {1, 2}
    assert not decode_plan["what_if"].any()


def test_plan_dense_fp8_rows_flagged_last() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    table = plan(spec, load_profile("h800"), "decode", 131072, tpot_s=None, ttft_s=None, usd_per_gpu_hour=None)

    assert (table["what_if"] == (table["latent_cache_format"] == "fp8")).all()
    assert table["what_if"].is_monotonic_increasing
    assert table["usd_per_million_tokens"].isna().all()


def test_plan_prefill_keeps_mtp_and_uses_ttft(tiny_dsa: ModelSpec) -> None:
    base = tiny_decode(phase="prefill", tokens_per_gpu=64, mtp_tokens=1)
    table = plan(tiny_dsa, load_profile("h800"), "prefill", 100, tpot_s=None, ttft_s=1e-3, usd_per_gpu_hour=2.0, base=base)

    assert len(table) > 0
    assert set(table["mtp_tokens"]) == {1}
    assert "tokens_per_gpu" in table.columns
    assert (table["meets_latency"] == (table["ttft_s"] <= 1e-3)).all()


def test_plan_wrong_latency_target_raises() -> None:
    spec = load_spec("deepseek-v3.2-exp")

    with pytest.raises(DeploymentError, match="TTFT target \\(--ttft-s\\) applies to prefill"):
        plan(spec, load_profile("h800"), "decode", 4096, tpot_s=None, ttft_s=1.0, usd_per_gpu_hour=2.0)


def test_plan_empty_when_nothing_fits(tiny_dense: ModelSpec) -> None:
    hardware = dataclasses.replace(load_profile("h800"), hbm_capacity_bytes=1.0)

    assert plan(tiny_dense, hardware, "decode", 100, None, None, 2.0, base=tiny_decode()).empty


# --- Pareto front and plot ----------------------------------------------------------------------------


def points() -> pd.DataFrame:
    return pd.DataFrame({
        "tokens_per_s_per_user": [10.0, 20.0, 15.0, 5.0, 30.0],
        "tokens_per_s_per_gpu": [100.0, 90.0, 80.0, 100.0, 10.0],
        "meets_latency": [True, True, True, False, True],
        "batch_per_gpu": [8, 4, 6, 16, 1],
    })


def test_pareto_front_drops_dominated() -> None:
    front = pareto_front(points())

    assert list(front["tokens_per_s_per_user"]) == [30.0, 20.0, 10.0]
    assert list(front["tokens_per_s_per_gpu"]) == [10.0, 90.0, 100.0]


def test_pareto_front_of_plan_is_not_dominated(decode_plan: pd.DataFrame) -> None:
    front = pareto_front(decode_plan)
    for _, row in front.iterrows():
        better = decode_plan[(decode_plan["tokens_per_s_per_user"] >= row["tokens_per_s_per_user"])
                             & (decode_plan["tokens_per_s_per_gpu"] > row["tokens_per_s_per_gpu"])]
        assert better.empty


def test_write_pareto_png(tmp_path: Path) -> None:
    path = write_pareto_png(points(), tmp_path / "out" / "pareto.png", "test plan")

    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in path.parent.iterdir()) == ["pareto.png"]


def test_write_pareto_png_with_target(tmp_path: Path) -> None:
    path = write_pareto_png(points(), tmp_path / "pareto.png", "test plan", target_tokens_per_s_per_user=20.0)

    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_pareto_plot_front_skips_what_if(tmp_path: Path) -> None:
    table = points().assign(what_if=[False, False, False, False, True])
    path = write_pareto_png(table, tmp_path / "pareto.png", "what-if rows")

    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_write_pareto_png_empty_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        write_pareto_png(points().iloc[0:0], tmp_path / "pareto.png", "empty")
