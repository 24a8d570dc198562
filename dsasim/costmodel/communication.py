"""MoE all-to-all (dispatch and combine) and attention all-reduce, per step on one GPU.

Dispatch sends each token's hidden state in FP8 with its per-128 scales to every routed expert that lives on
another GPU; combine returns the expert outputs in BF16. Under balanced routing a token's
``num_experts_per_tok`` copies land on each GPU of the EP group with equal probability.

Two kinds of kernel, as DeepEP has them:

- prefill ("normal" kernels): a token crosses the scale-out network once per remote node that hosts any of
  its experts, and that node forwards it over NVLink to the GPUs that need it;
- decode ("low-latency" kernels): every copy for another node goes straight over RDMA, one per expert.

Both tiers run at once, so a transfer takes the longer of the two, plus the tier's latency.
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
    """Expected copies of one token per MoE layer that cross NVLink and that cross the scale-out network.

    NVLink carries every copy for another GPU of this node, and in prefill also the copies a remote node
    forwards to its own GPUs. The scale-out count is per remote node in prefill and per expert in decode.
    """
    ep = deployment.ep_gpus
    copies = spec.num_experts_per_tok
    gpus_in_node = min(ep, deployment.gpus_per_node)
    same_node = copies * (gpus_in_node - 1) / ep
    other_nodes = copies * (ep - gpus_in_node) / ep
    if deployment.phase == "decode" or deployment.nodes <= 1:
        return same_node, other_nodes

    # Prefill: a remote node receives the token once if it hosts at least one of its experts.
    node_share = gpus_in_node / ep
    remote_nodes = (deployment.nodes - 1) * (1.0 - (1.0 - node_share) ** copies)
    forwarded = other_nodes  # each copy for a remote GPU crosses that node's NVLink after arriving
    return same_node + forwarded, remote_nodes


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
