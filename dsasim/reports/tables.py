"""Plain-text tables for the terminal, with the unit in every column header."""

from __future__ import annotations

import pandas as pd

GIGA = 1e9
MEGA = 1e6
MICROSECONDS_PER_SECOND = 1e6
PERCENT = 100.0


def breakdown_table(table: pd.DataFrame) -> str:
    """Format the per-op breakdown in engineer-friendly units, with a total line."""
    shown = pd.DataFrame({
        "op": table["op"],
        "kernel": table["kernel"],
        "dtype": table["dtype"],
        "bound": table["bound"],
        "GFLOP/token": table["flops_per_token"] / GIGA,
        "MB/token": table["bytes_per_token"] / MEGA,
        "time (us/token)": table["seconds_per_token"] * MICROSECONDS_PER_SECOND,
        "of which fixed (us/token)": table["fixed_seconds_per_token"] * MICROSECONDS_PER_SECOND,
        "share (%)": table["share_fraction"] * PERCENT,
        "USD/M tokens": table["usd_per_million_tokens"],
    })
    total = {"op": "total", "kernel": "", "dtype": "", "bound": "",
             "GFLOP/token": shown["GFLOP/token"].sum(), "MB/token": shown["MB/token"].sum(),
             "time (us/token)": shown["time (us/token)"].sum(),
             "of which fixed (us/token)": shown["of which fixed (us/token)"].sum(), "share (%)": shown["share (%)"].sum(),
             "USD/M tokens": shown["USD/M tokens"].sum()}
    shown = pd.concat([shown, pd.DataFrame([total])], ignore_index=True)
    return shown.to_string(index=False, float_format=lambda value: f"{value:,.4g}")


def curve_summary_table(curves: pd.DataFrame, positions: tuple[int, ...]) -> str:
    """Cost per million tokens of every model and phase at a few positions."""
    chosen = curves[curves["position"].isin(positions)]
    pivot = chosen.pivot_table(index=["hardware", "model", "phase"], columns="position", values="usd_per_million_tokens")
    pivot.columns = [f"USD/M at {int(position):,}" for position in pivot.columns]
    return pivot.reset_index().to_string(index=False, float_format=lambda value: f"{value:.4f}")


def features_table(features: pd.DataFrame) -> str:
    if features.empty:
        return "no knee or crossover in range"
    shown = features.assign(position=features["position"].round(0).astype(int))
    shown = shown.rename(columns={"position": "position (tokens)", "usd_per_million_tokens": "USD/M tokens"})
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def summary_table(summary: pd.DataFrame) -> str:
    """Validation error summary with errors as percentages."""
    shown = summary.copy()
    for column in [c for c in shown.columns if c.endswith("_error_fraction")]:
        shown[column.replace("_error_fraction", " error (%)")] = shown.pop(column) * PERCENT
    return shown.to_string(index=False, float_format=lambda value: f"{value:.1f}")


def throughput_text(result: object) -> str:
    """Format a ``serving.ThroughputResult`` as readable lines."""
    data = result.to_dict()  # type: ignore[attr-defined]
    deployment = data["deployment"]
    memory = data["memory"]
    gib = 2**30
    milliseconds = 1e3
    lines = [
        f"{data['model']} on {data['hardware']}, {data['phase']}: EP{deployment['ep_gpus']}, "
        + (f"{deployment['batch_per_gpu']} requests per GPU" if data["phase"] == "decode" else f"{deployment['tokens_per_gpu']} tokens per GPU")
        + f", context {deployment['context_tokens']:,}, {deployment['micro_batches']} micro-batches, "
        + (f"MTP {deployment['mtp_tokens']} proposed per step" if data["phase"] == "decode"
           else ("MTP layer prefilled" if deployment["mtp_tokens"] > 0 else "no MTP layer")),
        f"  tokens per second per GPU   {data['tokens_per_s_per_gpu']:,.0f}",
        f"  tokens per second per user  {data['tokens_per_s_per_user']:,.{1 if data['phase'] == 'decode' else 0}f}",
        f"  step time                   {data['step_time_s'] * milliseconds:,.2f} ms",
        f"    compute-bound ops         {data['compute_bound_s'] * milliseconds:,.2f} ms",
        f"    memory-bound ops          {data['memory_bound_s'] * milliseconds:,.2f} ms",
        f"    fixed kernel overheads    {data['kernel_overhead_s'] * milliseconds:,.2f} ms (launch and tail of every kernel call, summed)",
        f"    communication visible     {data['communication_visible_s'] * milliseconds:,.2f} ms "
        f"(of {data['communication_total_s'] * milliseconds:,.2f} ms; overlap hid {data['communication_hidden_s'] * milliseconds:,.2f} ms)",
        f"    step overhead             {data['step_overhead_s'] * milliseconds:,.2f} ms",
    ]
    if data["tpot_s"] is not None:
        lines.append(f"  time per output token       {data['tpot_s'] * milliseconds:,.2f} ms")
    if data["ttft_s"] is not None:
        lines.append(f"  time to first token         {data['ttft_s']:,.3f} s")
    other_bytes = memory["total_bytes"] - memory["weight_bytes"] - memory["kv_cache_bytes"] - memory["runtime_reserve_bytes"]
    lines.append(f"  memory per GPU              {memory['total_bytes'] / gib:,.1f} GiB of {memory['capacity_bytes'] / gib:,.1f} GiB "
                 f"(weights {memory['weight_bytes'] / gib:,.1f}, cache {memory['kv_cache_bytes'] / gib:,.1f}, "
                 f"activations and buffers {other_bytes / gib:,.1f}, runtime reserve {memory['runtime_reserve_bytes'] / gib:,.1f})")
    if data["usd_per_million_tokens"] is not None:
        lines.append(f"  cost                        {data['usd_per_million_tokens']:,.4f} USD per million tokens "
                     f"at {data['usd_per_gpu_hour']:g} USD per GPU-hour")
    else:
        lines.append("  cost                        no price: pass --usd-per-gpu-hour")
    return "\n".join(lines)


def plan_table(table: pd.DataFrame) -> str:
    """Format the best rows of a plan, with units in the headers."""
    batch_column = "batch_per_gpu" if "batch_per_gpu" in table.columns else "tokens_per_gpu"
    if "tpot_s" in table.columns:
        latency_header, latency_values = "TPOT (ms)", table["tpot_s"] * 1e3
    else:
        latency_header, latency_values = "TTFT (s)", table["ttft_s"]
    shown = pd.DataFrame({
        "EP (GPUs)": table["ep_gpus"],
        "redundant experts": table["redundant_experts"],
        batch_column.replace("_per_gpu", " per GPU"): table[batch_column],
        "latent cache": table["latent_cache_format"] + table["what_if"].map({True: " (what-if)", False: ""}),
        "micro-batches": table["micro_batches"],
        "MTP tokens": table["mtp_tokens"],
        "tokens/s/GPU": table["tokens_per_s_per_gpu"],
        "tokens/s/user": table["tokens_per_s_per_user"],
        latency_header: latency_values,
        "USD/M tokens": table["usd_per_million_tokens"].map(lambda value: "no price" if pd.isna(value) else value),
        "memory (GiB)": table["memory_used_bytes"] / 2**30,
        "meets target": table["meets_latency"],
    })
    return shown.to_string(index=False, float_format=lambda value: f"{value:,.4g}")
