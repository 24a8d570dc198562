"""MoE all-to-all (dispatch and combine) and attention all-reduce, per step on one GPU.

Dispatch sends each token's hidden state in FP8 with its per-128 scales to every routed expert that lives on
another GPU; combine returns the expert outputs in BF16. Under balanced routing a token's
``num_experts_per_tok`` copies land on each GPU of the EP group with equal probability: 1/ep stay on this
GPU, (gpus_per_node - 1)/ep cross NVLink, the rest cross the scale-out network. Both tiers run at once, so
a transfer takes the longer of the two, plus the tier's latency.

NOTE: every copy is counted, including two experts of one token on the same remote GPU or node; DeepEP's
normal kernels send one copy per node over InfiniBand and forward it over NVLink, which this ignores.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsasim.costmodel.deployment import Deployment
from dsasim.costmodel.dtypes import DTYPE_BYTES, fp8_bytes_with_scales
from dsasim.costmodel.ops import attention_layers, moe_layers
from dsasim.costmodel.specs import ModelSpec
from dsasim.errors import DeploymentError
from dsasim.hardware_profiles.profile import HardwareProfile, Link


@dataclass(frozen=True)
class CommunicationCost:
    """Seconds per step on one GPU spent in collective communication, before any overlap."""

    dispatch_s: float
    combine_s: float
    allreduce_s: float
    dispatch_bytes_per_token: float  # bytes one token sends to other GPUs per MoE layer
    combine_bytes_per_token: float

    @property
    def total_s(self) -> float:
        return self.dispatch_s + self.combine_s + self.allreduce_s


def remote_copies_per_token(spec: ModelSpec, deployment: Deployment) -> tuple[float, float]:
    """Expected routed copies of one token that go to another GPU (same node, other nodes)."""
    ep = deployment.ep_gpus
    gpus_in_node = min(ep, deployment.gpus_per_node)
    same_node_fraction = (gpus_in_node - 1) / ep
    other_node_fraction = (ep - gpus_in_node) / ep
    copies = spec.num_experts_per_tok
    return copies * same_node_fraction, copies * other_node_fraction


def _transfer_s(bytes_same_node: float, bytes_other_nodes: float, hardware: HardwareProfile) -> float:
    times = []
    if bytes_same_node > 0:
        times.append(_link_s(bytes_same_node, hardware.scale_up, "scale_up", hardware))
    if bytes_other_nodes > 0:
        times.append(_link_s(bytes_other_nodes, hardware.scale_out, "scale_out", hardware))
    return max(times, default=0.0)


def _link_s(bytes_moved: float, link: Link | None, tier: str, hardware: HardwareProfile) -> float:
    if link is None:
        raise DeploymentError(f"hardware '{hardware.name}' has no {tier} interconnect in its profile, but the deployment needs one: use one GPU (--ep 1) or a profile with '{tier}'")
    return link.latency_s + bytes_moved / (link.bandwidth_bytes_per_s * link.achievable_fraction)


def communication_cost(spec: ModelSpec, deployment: Deployment, hardware: HardwareProfile) -> CommunicationCost:
    """All-to-all and all-reduce seconds of one step on one GPU."""
    micro_batch_tokens = deployment.query_tokens_per_gpu / deployment.micro_batches
    calls = moe_layers(spec, deployment) * deployment.micro_batches
    same_node, other_nodes = remote_copies_per_token(spec, deployment)
    dispatch_bytes_per_copy = fp8_bytes_with_scales(spec.hidden_size)
    combine_bytes_per_copy = spec.hidden_size * DTYPE_BYTES["bf16"]

    dispatch_s = combine_s = 0.0
    if deployment.ep_gpus > 1:
        dispatch_s = calls * _transfer_s(micro_batch_tokens * same_node * dispatch_bytes_per_copy,
                                         micro_batch_tokens * other_nodes * dispatch_bytes_per_copy, hardware)
        combine_s = calls * _transfer_s(micro_batch_tokens * same_node * combine_bytes_per_copy,
                                        micro_batch_tokens * other_nodes * combine_bytes_per_copy, hardware)

    allreduce_s = 0.0
    tp = deployment.attention_tp_gpus
    if tp > 1:
        # Ring all-reduce of the attention output: each GPU sends and receives 2 (tp - 1) / tp of it.
        payload = micro_batch_tokens * spec.hidden_size * DTYPE_BYTES["bf16"] * 2 * (tp - 1) / tp
        per_call = _link_s(payload, hardware.scale_up, "scale_up", hardware)
        allreduce_s = attention_layers(spec, deployment) * deployment.micro_batches * per_call

    return CommunicationCost(
        dispatch_s=dispatch_s,
        combine_s=combine_s,
        allreduce_s=allreduce_s,
        dispatch_bytes_per_token=(same_node + other_nodes) * dispatch_bytes_per_copy,
        combine_bytes_per_token=(same_node + other_nodes) * combine_bytes_per_copy,
    )
