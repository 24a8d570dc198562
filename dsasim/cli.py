"""The `dsasim` command line: parse, call one library function, render.

Heavy libraries (numpy, pandas, matplotlib, torch) are imported inside the commands that need them, so
``dsasim --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dsasim.errors import DsasimError

app = typer.Typer(
    name="dsasim",
    help="Cost per token of dense MLA and DeepSeek Sparse Attention serving, from a FLOP/byte model of every op.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a "<bool>" placeholder, and no rich import
)
hardware_app = typer.Typer(help="List the hardware profiles, or show one.", no_args_is_help=False, rich_markup_mode=None)
app.add_typer(hardware_app, name="hardware")

Result = TypeVar("Result")

# Deployment options shared by curves, breakdown and throughput. None keeps the model's default deployment.
EpOption = Annotated[int | None, typer.Option("--ep", help="GPUs of one instance; routed experts are spread over them. Default: the phase's deployment (prefill 32, decode 128).")]
TokensOption = Annotated[int | None, typer.Option("--tokens-per-gpu", help="Prefill: prompt tokens per GPU per step, all micro-batches. Default: the model's deployment.")]
BatchOption = Annotated[int | None, typer.Option("--batch-per-gpu", help="Decode: requests per GPU per step, all micro-batches. Default: the model's deployment.")]
ContextOption = Annotated[int | None, typer.Option("--context", help="Context in tokens: prompt length in prefill, each request's context in decode. Default: prefill 4096, decode 65536.")]
MicroBatchesOption = Annotated[int | None, typer.Option("--micro-batches", help="1, or 2 to overlap all-to-all with compute.")]
MtpTokensOption = Annotated[int | None, typer.Option("--mtp-tokens", help="Extra tokens proposed per decode step by multi-token prediction.")]
MtpAcceptanceOption = Annotated[float | None, typer.Option("--mtp-acceptance", help="Probability (0-1) that a proposed token is accepted.")]
RedundantOption = Annotated[int | None, typer.Option("--redundant-experts", help="Expert replicas beyond the routed experts.")]
CacheOption = Annotated[str | None, typer.Option("--latent-cache", help="Latent cache format: bf16 (1152 B per token-layer) or fp8 (656 B).")]
PriceOption = Annotated[float | None, typer.Option("--usd-per-gpu-hour", help="Price of one GPU-hour in USD; default: the profile's price.")]


def _overrides(ep: int | None = None, tokens_per_gpu: int | None = None, batch_per_gpu: int | None = None,
               context: int | None = None, micro_batches: int | None = None, mtp_tokens: int | None = None,
               mtp_acceptance: float | None = None, redundant_experts: int | None = None,
               latent_cache: str | None = None) -> dict[str, Any]:
    """Deployment field overrides from the CLI options that were given."""
    values = {
        "ep_gpus": ep, "tokens_per_gpu": tokens_per_gpu, "batch_per_gpu": batch_per_gpu, "context_tokens": context,
        "micro_batches": micro_batches, "mtp_tokens": mtp_tokens, "mtp_acceptance_fraction": mtp_acceptance,
        "redundant_experts": redundant_experts, "latent_cache_format": latent_cache,
    }
    return {key: value for key, value in values.items() if value is not None}


def _options_text(overrides: dict[str, Any]) -> str:
    """Format the deployment options that were given as command-line text, for a plot title."""
    from dsasim.costmodel.deployment import OPTION_NAMES

    return " ".join(f"{OPTION_NAMES[field]} {value}" for field, value in overrides.items())


def _parse_output_path(value: str) -> Path:
    """Parse an --out value. An empty one (an unset shell variable, say) is rejected instead of read as '.'."""
    if not value.strip():
        raise typer.BadParameter("is empty: pass a folder or file path")
    return Path(value)


def _run(action: Callable[[], Result]) -> Result:
    """Run a library call; print a DsasimError as one red line on stderr and exit 1."""
    try:
        return action()
    except DsasimError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


def _show_version(value: bool) -> None:
    if value:
        from dsasim import __version__

        typer.echo(f"dsasim {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Cost per token of dense MLA and DeepSeek Sparse Attention serving, from a FLOP/byte model of every op."""


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def _ignored_flags(phase: str, tokens_per_gpu: int | None, batch_per_gpu: int | None, mtp_tokens: int | None,
                   mtp_acceptance: float | None) -> list[str]:
    """List warnings for options that the chosen phase does not use."""
    warnings = []
    if phase == "prefill" and batch_per_gpu is not None:
        warnings.append("--batch-per-gpu sets decode requests and is ignored in prefill: set --tokens-per-gpu")
    if phase == "decode" and tokens_per_gpu is not None:
        warnings.append("--tokens-per-gpu sets prefill tokens and is ignored in decode: set --batch-per-gpu")
    if phase == "prefill" and mtp_tokens is not None and mtp_tokens > 1:
        warnings.append(f"--mtp-tokens {mtp_tokens} in prefill only means the MTP layer is prefilled, as with 1")
    if phase == "prefill" and mtp_acceptance is not None:
        warnings.append("--mtp-acceptance applies to decode and is ignored in prefill")
    return warnings


def _warn_beyond_context(models: list[str], tokens: int | None) -> None:
    """Warn when a position or context lies past a model's max_position_embeddings."""
    if tokens is None:
        return
    from dsasim.costmodel.specs import load_spec

    for model in models:
        spec = _run(partial(load_spec, model))
        if tokens > spec.max_position_embeddings:
            _warn(f"{tokens:,} tokens exceeds {spec.name}'s max_position_embeddings ({spec.max_position_embeddings:,}): "
                  "the model was not trained that far, and the cost is extrapolated")


@app.command()
def curves(
    hardware: Annotated[str, typer.Option(help="Hardware profile name (see `dsasim hardware`) or path to a YAML profile.")] = "h800",
    models: Annotated[str, typer.Option(help="Comma-separated model names or paths to config.json files.")] = "deepseek-v3.1-terminus,deepseek-v3.2-exp",
    max_position: Annotated[int, typer.Option(help="Last token position of the curves, in tokens.")] = 131072,
    step: Annotated[int, typer.Option(help="Distance between positions, in tokens (1 to 512).")] = 256,
    out: Annotated[Path, typer.Option(parser=_parse_output_path, metavar="PATH", help="Folder for cost_curves.csv and cost_curves.png (created if needed).")] = Path("dsasim-out"),
    usd_per_gpu_hour: PriceOption = None,
    ep: EpOption = None, tokens_per_gpu: TokensOption = None, batch_per_gpu: BatchOption = None,
    context: ContextOption = None, micro_batches: MicroBatchesOption = None, mtp_tokens: MtpTokensOption = None,
    mtp_acceptance: MtpAcceptanceOption = None, redundant_experts: RedundantOption = None, latent_cache: CacheOption = None,
) -> None:
    """Write cost per million tokens against token position, prefill and decode, as CSV and PNG (Figure 3).

    Deployment options apply to both phases and every model; left out, each model keeps its own deployment.
    """
    from dsasim.costmodel.api import cost_curves, curve_features
    from dsasim.costmodel.cost import resolve_price
    from dsasim.files import prepare_output_folder, write_csv_atomically
    from dsasim.hardware_profiles import load_profile
    from dsasim.reports.curves_plot import write_curves_png
    from dsasim.reports.tables import curve_summary_table, features_table

    model_names = list(dict.fromkeys(name.strip() for name in models.split(",") if name.strip()))
    overrides = _overrides(ep, tokens_per_gpu, batch_per_gpu, context, micro_batches, mtp_tokens, mtp_acceptance,
                           redundant_experts, latent_cache)

    def compute() -> tuple[Any, Any, float]:
        profile = load_profile(hardware)
        price = resolve_price(profile, usd_per_gpu_hour)
        frame = cost_curves(model_names, profile, max_position, step, overrides, price)
        return frame, curve_features(frame), price

    frame, features, price = _run(compute)
    _warn_beyond_context(model_names, max_position)

    def write() -> tuple[Path, Path]:
        prepare_output_folder(out, ("cost_curves.csv", "cost_curves.png"))
        png = write_curves_png(frame, features, out / "cost_curves.png", price, _options_text(overrides))
        return write_csv_atomically(out / "cost_curves.csv", frame), png

    csv_path, png_path = _run(write)
    shown_positions = tuple(sorted({0, max_position // 2, max_position}))
    typer.echo(curve_summary_table(frame, shown_positions))
    typer.echo("")
    typer.echo(features_table(features))
    typer.echo(f"\nwrote {csv_path} and {png_path}")


@app.command()
def breakdown(
    model: Annotated[str, typer.Option(help="Model name or path to a config.json.")] = "deepseek-v3.2-exp",
    hardware: Annotated[str, typer.Option(help="Hardware profile name or path.")] = "h800",
    phase: Annotated[str, typer.Option(help="prefill or decode.")] = "decode",
    position: Annotated[int, typer.Option(help="Token position: earlier tokens in context.")] = 131072,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    usd_per_gpu_hour: PriceOption = None,
    ep: EpOption = None, tokens_per_gpu: TokensOption = None, batch_per_gpu: BatchOption = None,
    context: ContextOption = None, micro_batches: MicroBatchesOption = None, mtp_tokens: MtpTokensOption = None,
    mtp_acceptance: MtpAcceptanceOption = None, redundant_experts: RedundantOption = None, latent_cache: CacheOption = None,
) -> None:
    """Print FLOPs, bytes, time, bound and share of every op of one token's cost."""
    from dsasim.costmodel.api import breakdown as compute_breakdown
    from dsasim.reports.tables import breakdown_table

    overrides = _overrides(ep, tokens_per_gpu, batch_per_gpu, context, micro_batches, mtp_tokens, mtp_acceptance,
                           redundant_experts, latent_cache)
    table = _run(lambda: compute_breakdown(model, hardware, phase, position, overrides, usd_per_gpu_hour))
    _warn_beyond_context([model], position)
    for warning in _ignored_flags(phase, tokens_per_gpu, batch_per_gpu, mtp_tokens, mtp_acceptance):
        _warn(warning)
    if as_json:
        payload = {"model": model, "hardware": hardware, "phase": phase, "position": position,
                   "seconds_per_token": float(table["seconds_per_token"].sum()),
                   "usd_per_million_tokens": float(table["usd_per_million_tokens"].sum()),
                   "ops": table.to_dict(orient="records")}
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"{model} on {hardware}, {phase}, position {position:,}")
    typer.echo(breakdown_table(table))


@hardware_app.callback(invoke_without_command=True)
def hardware_list(context: typer.Context) -> None:
    """List the shipped hardware profiles."""
    if context.invoked_subcommand is not None:
        return
    _print_profiles()


def _print_profiles() -> None:
    from dsasim.hardware_profiles import list_profiles, load_profile

    for name in list_profiles():
        profile = _run(partial(load_profile, name))
        price = f"{profile.price.usd_per_gpu_hour:.2f} USD/GPU-h" if profile.price else "no price"
        peaks = ", ".join(f"{dtype} {value / 1e12:,.0f}" for dtype, value in profile.peak_flops_per_s.items())
        typer.echo(f"{name:10s} {profile.description} | TFLOP/s: {peaks} | HBM {profile.hbm_bandwidth_bytes_per_s / 1e12:.2f} TB/s, "
                   f"{profile.hbm_capacity_bytes / 2**30:.1f} GiB | {price}")


@hardware_app.command("list")
def hardware_list_command() -> None:
    """List the shipped hardware profiles (the same as `dsasim hardware`)."""
    _print_profiles()


@hardware_app.command("show")
def hardware_show(name: Annotated[str, typer.Argument(help="Profile name or path to a YAML profile.")]) -> None:
    """Print one hardware profile as YAML, sources included."""
    from dsasim.hardware_profiles import load_profile

    profile = _run(lambda: load_profile(name))
    typer.echo(Path(profile.source_path).read_text(encoding="utf-8"))


@app.command()
def throughput(
    model: Annotated[str, typer.Option(help="Model name or path to a config.json.")] = "deepseek-v3.2-exp",
    hardware: Annotated[str, typer.Option(help="Hardware profile name or path.")] = "h800",
    phase: Annotated[str, typer.Option(help="prefill or decode.")] = "decode",
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on standard output.")] = False,
    usd_per_gpu_hour: PriceOption = None,
    ep: EpOption = None, tokens_per_gpu: TokensOption = None, batch_per_gpu: BatchOption = None,
    context: ContextOption = None, micro_batches: MicroBatchesOption = None, mtp_tokens: MtpTokensOption = None,
    mtp_acceptance: MtpAcceptanceOption = None, redundant_experts: RedundantOption = None, latent_cache: CacheOption = None,
) -> None:
    """Print tokens per second per GPU, step time, memory per GPU and cost of one deployment."""
    from dsasim.costmodel.api import check_phase, deployment_for
    from dsasim.costmodel.serving import throughput as compute_throughput
    from dsasim.costmodel.specs import load_spec
    from dsasim.hardware_profiles import load_profile
    from dsasim.reports.tables import throughput_text

    overrides = _overrides(ep, tokens_per_gpu, batch_per_gpu, context, micro_batches, mtp_tokens, mtp_acceptance,
                           redundant_experts, latent_cache)

    def compute() -> Any:
        check_phase(phase)
        spec = load_spec(model)
        profile = load_profile(hardware)
        price = _optional_price(profile, usd_per_gpu_hour)
        deployment = deployment_for(spec, phase, overrides)
        warnings = _ignored_flags(phase, tokens_per_gpu, batch_per_gpu, mtp_tokens, mtp_acceptance)
        size_given = batch_per_gpu is not None if phase == "decode" else tokens_per_gpu is not None
        if not size_given:
            deployment, shrunk = _fit_default_size(spec, profile, deployment)
            warnings += shrunk
        result = compute_throughput(spec, profile, deployment, price)
        return dataclasses.replace(result, warnings=tuple(warnings) + result.warnings)

    result = _run(compute)
    _warn_beyond_context([model], result.deployment.context_tokens)
    for warning in result.warnings:
        _warn(warning)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    typer.echo(throughput_text(result))


def _optional_price(profile: Any, usd_per_gpu_hour: float | None) -> float | None:
    """Pick the price given, else the profile's, else None, because throughput and plan work without a price."""
    from dsasim.costmodel.cost import resolve_price

    if usd_per_gpu_hour is not None:
        return resolve_price(profile, usd_per_gpu_hour)  # checks the value
    if profile.price is None:
        return None
    return float(profile.price.usd_per_gpu_hour)


def _fit_default_size(spec: Any, profile: Any, deployment: Any) -> tuple[Any, list[str]]:
    """Shrink a default batch that does not fit memory to the largest that does; return it and the warning."""
    from dsasim.costmodel.memory import max_batch_per_gpu

    largest = max_batch_per_gpu(spec, profile, deployment)
    current = deployment.batch_per_gpu if deployment.phase == "decode" else deployment.tokens_per_gpu
    if largest <= 0 or current <= largest:
        return deployment, []  # it fits, or nothing fits and the memory check raises the reason
    field = "batch_per_gpu" if deployment.phase == "decode" else "tokens_per_gpu"
    flag = "--batch-per-gpu" if deployment.phase == "decode" else "--tokens-per-gpu"
    unit = "requests" if deployment.phase == "decode" else "tokens"
    warning = (f"the default of {current} {unit} per GPU does not fit {profile.name} at context "
               f"{deployment.context_tokens:,}, so the largest that fits, {largest}, is used (set {flag} to choose)")
    return deployment.replace(**{field: largest}), [warning]


@app.command()
def plan(
    model: Annotated[str, typer.Option(help="Model name or path to a config.json.")] = "deepseek-v3.2-exp",
    hardware: Annotated[str, typer.Option(help="Hardware profile name or path.")] = "h800",
    phase: Annotated[str, typer.Option(help="prefill or decode.")] = "decode",
    context: Annotated[int, typer.Option(help="Context in tokens: prompt length in prefill, each request's context in decode.")] = 32768,
    tpot_ms: Annotated[float | None, typer.Option(help="Decode: largest time per output token, in milliseconds.")] = None,
    ttft_s: Annotated[float | None, typer.Option(help="Prefill: largest time to first token, in seconds.")] = None,
    out: Annotated[Path, typer.Option(parser=_parse_output_path, metavar="PATH", help="Folder for plan.csv and pareto.png (created if needed).")] = Path("dsasim-out"),
    usd_per_gpu_hour: PriceOption = None,
    top: Annotated[int, typer.Option(help="Configurations to print.")] = 5,
) -> None:
    """Search EP size, batch, cache format, micro-batches and MTP for the cheapest deployment that fits."""
    from dsasim.costmodel.api import check_phase
    from dsasim.costmodel.serving import plan as search_plan
    from dsasim.costmodel.specs import load_spec
    from dsasim.errors import InputError
    from dsasim.files import prepare_output_folder, write_csv_atomically
    from dsasim.hardware_profiles import load_profile
    from dsasim.reports.pareto_plot import write_pareto_png
    from dsasim.reports.tables import plan_table

    def compute() -> Any:
        check_phase(phase)
        if context < 1:
            raise InputError(f"--context {context} is invalid: expected a positive number of tokens")
        if top < 1:
            raise InputError(f"--top {top} is invalid: expected 1 or more configurations to print")
        for flag, value in (("--tpot-ms", tpot_ms), ("--ttft-s", ttft_s)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise InputError(f"{flag} {value} is invalid: expected a positive, finite time")
        prepare_output_folder(out, ("plan.csv", "pareto.png"), create=False)
        spec = load_spec(model)
        profile = load_profile(hardware)
        price = _optional_price(profile, usd_per_gpu_hour)
        tpot_s = tpot_ms / 1e3 if tpot_ms is not None else None
        return search_plan(spec, profile, phase, context, tpot_s, ttft_s, price), profile

    table, profile = _run(compute)
    _warn_beyond_context([model], context)
    if table.empty:
        typer.secho(f"error: no {phase} deployment of {model} fits {profile.name} at context {context:,}: "
                    "try a GPU with more memory or a shorter --context", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    title = f"{model}, {phase} at {context:,} tokens on {profile.name}"
    csv_path = _run(lambda: write_csv_atomically(out / "plan.csv", table))
    target = None
    if phase == "decode" and tpot_ms is not None:
        target = 1e3 / tpot_ms  # tokens per second per user at the TPOT limit
    elif phase == "prefill" and ttft_s is not None:
        target = context / ttft_s
    png_path = _run(lambda: write_pareto_png(table, out / "pareto.png", title, target))
    meeting = table[table["meets_latency"].astype(bool)]
    if meeting.empty:
        latency = "tpot_s" if phase == "decode" else "ttft_s"
        best = table[latency].min()
        shown = f"{best * 1e3:,.2f} ms" if phase == "decode" else f"{best:,.3f} s"
        flag = "--tpot-ms" if phase == "decode" else "--ttft-s"
        typer.secho(f"error: none of the {len(table)} feasible configurations meets the latency target; the fastest "
                    f"reaches {shown}: relax {flag} (all of them are in {csv_path})", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    if table["usd_per_million_tokens"].isna().all():
        _warn(f"{profile.name} has no price: configurations are ranked by tokens per second per GPU; pass --usd-per-gpu-hour for costs")
    typer.echo(plan_table(table.head(top)))
    if tpot_ms is None and ttft_s is None:
        typer.echo(f"\n{len(table)} feasible configurations (no latency target given); wrote {csv_path} and {png_path}")
    else:
        typer.echo(f"\n{len(meeting)} of {len(table)} feasible configurations meet the target; wrote {csv_path} and {png_path}")


@contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[str, float], None]]:
    """Show a progress bar on stderr, driven by (label, fraction done) callbacks from long library calls."""
    steps = 1000
    with typer.progressbar(length=steps, label=label, file=sys.stderr, show_eta=True) as bar:
        done = [0]

        def advance(step_label: str, fraction: float) -> None:
            target = int(max(0.0, min(1.0, fraction)) * steps)
            if target > done[0]:
                bar.label = f"{label}: {step_label}"
                bar.update(target - done[0])
                done[0] = target

        yield advance


@app.command()
def calibrate(
    device: Annotated[str, typer.Option(help="cpu, or cuda for the first CUDA GPU.")] = "cpu",
    out: Annotated[Path, typer.Option(parser=_parse_output_path, metavar="PATH", help="YAML profile to write (same schema as the shipped profiles).")] = Path("measured_profile.yaml"),
    quick: Annotated[bool, typer.Option(help="Smaller, faster microbenchmarks.")] = False,
) -> None:
    """Measure this device (GEMM peak per dtype, streaming bandwidth, call overhead) and write a profile."""
    from dsasim.validate.calibrate import calibrate_device

    with _progress_bar("calibrating") as progress:
        data = _run(lambda: calibrate_device(device, out, quick=quick, progress=progress))
    peaks = ", ".join(f"{dtype} {value:,.3g} TFLOP/s" for dtype, value in data["peak_tflops"].items())
    typer.echo(f"{data['name']}: {peaks}, memory {data['hbm_bandwidth_tb_per_s'] * 1e3:,.1f} GB/s, "
               f"call overhead {data['kernel_launch_us']:,.1f} us")
    typer.echo(f"wrote {out}")


@app.command()
def validate(
    out: Annotated[Path, typer.Option(parser=_parse_output_path, metavar="PATH", help="Folder for validation.csv, summary.csv and the PNG (created if needed).")] = Path("dsasim-validation"),
    device: Annotated[str | None, typer.Option(help="Measure on cpu (the default), or cuda for the first CUDA GPU.")] = None,
    quick: Annotated[bool, typer.Option(help="A short sweep: under 3 minutes on 2 CPU cores.")] = False,
    profile: Annotated[Path | None, typer.Option(help="Start from this measured profile instead of measuring one.")] = None,
    measurements: Annotated[Path | None, typer.Option(help="Folder of published kernel timings (CSV); predict them instead of measuring.")] = None,
    hardware: Annotated[str | None, typer.Option(help="With --measurements: the profile to predict them on (default h800).")] = None,
) -> None:
    """Compare the cost model with measured kernel times: this machine's, or published ones."""
    from dsasim.errors import InputError

    def check_options() -> None:
        if measurements is not None:
            given = [flag for flag, value in (("--device", device), ("--profile", profile), ("--quick", quick or None))
                     if value is not None]
            if given:
                raise InputError(f"{', '.join(given)}: only for measuring this machine, not with --measurements; drop them")
        elif hardware is not None:
            raise InputError("--hardware applies only with --measurements: drop it, or pass --measurements DIR")

    _run(check_options)
    from dsasim.files import prepare_output_folder, write_csv_atomically
    from dsasim.reports.tables import summary_table
    from dsasim.reports.validation_plot import plot_predicted_vs_measured

    if measurements is not None:
        from dsasim.hardware_profiles import load_profile
        from dsasim.validate.published import predict_measurements, read_measurements, summarize

        def predict() -> Any:
            prepare_output_folder(out, ("validation.csv", "summary.csv", "validation.png"), create=False)
            hardware_profile = load_profile(hardware or "h800")
            rows = predict_measurements(read_measurements(measurements), hardware_profile,
                                        calibrated_on_shipped_rows=hardware_profile.name == "h800")
            return rows, hardware_profile

        rows, hardware_profile = _run(predict)
        summary = summarize(rows)
        title = f"Published kernel timings predicted on {hardware_profile.name}"
        _run(lambda: plot_predicted_vs_measured(rows, out / "validation.png", title))
        _run(lambda: write_csv_atomically(out / "validation.csv", rows))
        _run(lambda: write_csv_atomically(out / "summary.csv", summary))
        typer.echo(summary_table(summary))
        typer.echo(f"\nwrote {out / 'validation.csv'}, {out / 'summary.csv'} and {out / 'validation.png'}")
        return

    from dsasim.validate.sweep import format_crossover, run_validation

    with _progress_bar("validating") as progress:
        result = _run(lambda: run_validation(device or "cpu", out, quick, profile, progress))
    plot_title = f"dsasim validate, {device or 'cpu'}: {result.fitted_profile.name if result.fitted_profile else device}"
    result.files["plot"] = _run(lambda: plot_predicted_vs_measured(result.rows, out / "validation.png", plot_title))
    typer.echo(summary_table(result.summary))
    if result.crossover:
        typer.echo("\n" + format_crossover(result.crossover))
    written = ", ".join(str(path) for path in result.files.values())
    typer.echo(f"\nwrote {written}")


def main() -> None:  # pragma: no cover - console entry point
    app()
