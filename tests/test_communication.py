"""MoE all-to-all and attention all-reduce: payloads per token and seconds per step, by hand."""

from __future__ import annotations

import dataclasses

import pytest

from dsasim.costmodel.communication import communication_cost, remote_copies_per_token
from dsasim.costmodel.deployment import Deployment, default_deployment
from dsasim.costmodel.specs import ModelSpec, load_spec
from dsasim.errors import DeploymentError
from dsasim.hardware_profiles import load_profile
from dsasim.hardware_profiles.profile import HardwareProfile, Link

# Tiny config: hidden 64, 2 routed experts per token, 3 MoE layers. An FP8 copy of a hidden state is
# 64 bytes plus one FP32 scale for its one block of 128 values. A BF16 copy is 128 bytes.
TINY_DISPATCH_BYTES_PER_COPY = 64 * 1 + 4
TINY_COMBINE_BYTES_PER_COPY = 64 * 2


def tiny_decode(**changes: object) -> Deployment:
    deployment = Deployment(phase="decode", ep_gpus=4, tokens_per_gpu=1, batch_per_gpu=10, micro_batches=1, mtp_tokens=0,
                            mtp_acceptance_fraction=0.9, redundant_experts=0, latent_cache_format="bf16",
                            context_tokens=100)
    return dataclasses.replace(deployment, **changes)


def simple_links() -> HardwareProfile:
    """H800 with round-number links: NVLink 100 GB/s at half efficiency, 1 us; network 10 GB/s, 2 us."""
    return dataclasses.replace(
        load_profile("h800"),
        scale_up=Link(bandwidth_bytes_per_s=100e9, latency_s=1e-6, achievable_fraction=0.5, domain_gpus=8, provenance="test"),
        scale_out=Link(bandwidth_bytes_per_s=10e9, latency_s=2e-6, achievable_fraction=1.0, domain_gpus=None, provenance="test"),
    )


def test_dispatch_payload_one_node(tiny_dense: ModelSpec) -> None:
    cost = communication_cost(tiny_dense, tiny_decode(), load_profile("h800"))

    # EP4: each of the 2 copies lands on another GPU with probability 3/4.
    assert cost.dispatch_bytes_per_token == pytest.approx(2 * 3 / 4 * TINY_DISPATCH_BYTES_PER_COPY)
    assert cost.combine_bytes_per_token == pytest.approx(2 * 3 / 4 * TINY_COMBINE_BYTES_PER_COPY)


def test_dispatch_payload_two_nodes(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode(ep_gpus=16, redundant_experts=8)
    same_node, other_nodes = remote_copies_per_token(tiny_dense, deployment)

    # EP16 over two 8-GPU nodes: 7 of 16 GPUs are other GPUs of this node, 8 are on the other node.
    assert same_node == pytest.approx(2 * 7 / 16)
    assert other_nodes == pytest.approx(2 * 8 / 16)
    cost = communication_cost(tiny_dense, deployment, load_profile("h800"))
    assert cost.dispatch_bytes_per_token == pytest.approx(2 * 15 / 16 * TINY_DISPATCH_BYTES_PER_COPY)


def test_dispatch_payload_deepseek_decode() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    deployment = default_deployment(spec, "decode").replace(ep_gpus=128)
    cost = communication_cost(spec, deployment, load_profile("h800"))

    # 7168 FP8 values and 56 FP32 scales, sent to the 8 routed experts, 127 of 128 GPUs being remote.
    assert cost.dispatch_bytes_per_token == pytest.approx((7168 + 56 * 4) * 8 * 127 / 128)
    assert cost.combine_bytes_per_token == pytest.approx(7168 * 2 * 8 * 127 / 128)


def test_prefill_sends_once_per_remote_node() -> None:
    spec = load_spec("deepseek-v3.1-terminus")
    deployment = default_deployment(spec, "prefill").replace(ep_gpus=32)
    same_node, other_nodes = remote_copies_per_token(spec, deployment)

    # Four nodes: each of the 3 remote nodes gets the token unless all 8 experts miss its quarter.
    assert other_nodes == pytest.approx(3 * (1 - 0.75**8))
    # NVLink carries the copies for this node's other GPUs and the forwarded copies on remote nodes.
    assert same_node == pytest.approx(8 * 7 / 32 + 8 * 24 / 32)


def test_dispatch_seconds_by_hand(tiny_dense: ModelSpec) -> None:
    deployment = tiny_decode(ep_gpus=16, redundant_experts=8)
    cost = communication_cost(tiny_dense, deployment, simple_links())

    # 10 tokens per micro-batch, 3 MoE layers, one micro-batch; both tiers run at once.
    nvlink_s = 1e-6 + 10 * (2 * 7 / 16) * TINY_DISPATCH_BYTES_PER_COPY / (100e9 * 0.5)
    network_s = 2e-6 + 10 * (2 * 8 / 16) * TINY_DISPATCH_BYTES_PER_COPY / 10e9
    assert cost.dispatch_s == pytest.approx(3 * max(nvlink_s, network_s))
    network_combine_s = 2e-6 + 10 * (2 * 8 / 16) * TINY_COMBINE_BYTES_PER_COPY / 10e9
    assert cost.combine_s == pytest.approx(3 * network_combine_s)


def test_micro_batches_split_calls(tiny_dense: ModelSpec) -> None:
    hardware = simple_links()
    one = communication_cost(tiny_dense, tiny_decode(ep_gpus=16, redundant_experts=8), hardware)
    two = communication_cost(tiny_dense, tiny_decode(ep_gpus=16, redundant_experts=8, micro_batches=2), hardware)

    # Two calls of half the tokens: the bytes are the same, the latency is paid twice.
    assert two.dispatch_s - one.dispatch_s == pytest.approx(3 * 2e-6)


def test_mtp_layer_adds_moe_calls(tiny_dense: ModelSpec) -> None:
    hardware = simple_links()
    deployment = tiny_decode(ep_gpus=16, redundant_experts=8, batch_per_gpu=10)
    without = communication_cost(tiny_dense, deployment, hardware)
    with_mtp = communication_cost(tiny_dense, deployment.replace(mtp_tokens=1), hardware)

    # MTP doubles the query tokens (20 per step) and adds the MTP module's MoE layer (4 calls).
    network_s = 2e-6 + 20 * (2 * 8 / 16) * TINY_DISPATCH_BYTES_PER_COPY / 10e9
    assert with_mtp.dispatch_s == pytest.approx(4 * network_s)
    assert without.dispatch_s < with_mtp.dispatch_s


def test_single_gpu_has_no_all_to_all(tiny_dense: ModelSpec) -> None:
    cost = communication_cost(tiny_dense, tiny_decode(ep_gpus=1), load_profile("h800"))

    assert cost.dispatch_s == 0
    assert cost.combine_s == 0
    assert cost.dispatch_bytes_per_token == 0


def test_attention_tp_allreduce_by_hand(tiny_dense: ModelSpec) -> None:
    cost = communication_cost(tiny_dense, tiny_decode(attention_tp_gpus=2), simple_links())

    # Ring all-reduce over 2 GPUs moves 2 (2 - 1) / 2 of the BF16 output, in each of the 4 attention layers.
    payload = 10 * 64 * 2 * 1.0
    assert cost.allreduce_s == pytest.approx(4 * (1e-6 + payload / (100e9 * 0.5)))


def test_missing_scale_out_raises(tiny_dense: ModelSpec) -> None:
    hardware = dataclasses.replace(load_profile("h800"), scale_out=None)

    with pytest.raises(DeploymentError, match="no scale_out interconnect"):
        communication_cost(tiny_dense, tiny_decode(ep_gpus=16, redundant_experts=8), hardware)
