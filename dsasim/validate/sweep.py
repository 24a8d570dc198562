"""Validate the cost model on a device: time torch reference kernels, fit, predict, compare.

``run_validation`` does, in order:

1. measure the device's profile (``calibrate``), or load the one given;
2. time every kernel family over a sweep of shapes, each row labelled ``fit`` (the shortest contexts or
   smallest batches of its family) or ``test`` (shapes outside that range), and both decode paths end to
   end at contexts past every fit row;
3. fit at most two efficiency parameters per family on its fit rows, through the cost model, and write
   the fitted profile;
4. predict every row from the fitted profile, through ``kernel_calls`` and ``predict_call_s`` only;
5. time the whole DSA decode path (indexer logits, top-k, gathered attention) against dense MQA decode
   on a grid of contexts around the crossover the model predicts, and find the measured crossover;
6. write ``validation.csv``, ``summary.csv``, ``crossover.csv``, the profiles and a log-log plot.

The model dimensions are DeepSeek-V3.2-Exp's with the head counts and top-k cut by 4 (32 heads, 16 index
heads, top-k 512), which keeps the ratios that decide the crossover and fits a CPU's time budget. The
reference kernels run in float32, so every prediction uses FP32 formats. The cost model has one memory
level, so decode rows use 64 sequences: most calls then move over 100 MB, where the 2-core Xeon VM the
sweep was tuned on streams at its DRAM rate (copies up to 32 MiB ran twice as fast, from cache).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dsasim.errors import MeasurementError

try:
    import torch
except ImportError as error:  # torch is an optional dependency (the "validate" extra)
    raise MeasurementError(
        "dsasim calibrate and validate need torch, which is not installed: pip install 'dsasim[validate]'"
    ) from error

from dsasim.costmodel.kernel_calls import (
    dense_mqa_decode_call,
    gemm_call,
    indexer_decode_call,
    mha_prefill_call,
    predict_call_s,
    sparse_mqa_decode_call,
    topk_call,
)
from dsasim.costmodel.ops import Op
from dsasim.costmodel.roofline import kernel_rates
from dsasim.costmodel.search import last_true
from dsasim.costmodel.specs import ModelSpec, load_spec
from dsasim.files import prepare_output_folder, write_csv_atomically
from dsasim.hardware_profiles import HardwareProfile, load_profile, write_profile_yaml
from dsasim.hardware_profiles.loader import MICROSECONDS_PER_SECOND
from dsasim.validate.calibrate import (
    Guarded,
    Progress,
    SpeedGuard,
    Step,
    measure_profile_data,
    measure_steadily,
    measurement_threads,
    resolve_device,
    reuse_freed_host_memory,
)
from dsasim.validate.fitting import FitParameter, fit_log_space, relative_errors
from dsasim.validate.kernels import (
    dense_mqa_decode_step,
    dsa_decode_step,
    gemm,
    indexer_logits,
    mha_attention,
    sparse_mqa_attention,
    topk_indices,
)
from dsasim.validate.timing import TimingRecord, fixed_threads, time_callable

logger = logging.getLogger(__name__)

VALIDATION_CSV = "validation.csv"
SUMMARY_CSV = "summary.csv"
CROSSOVER_CSV = "crossover.csv"
PLOT_PNG = "validation.png"
MEASURED_PROFILE_YAML = "measured_profile.yaml"
FITTED_PROFILE_YAML = "fitted_profile.yaml"

FIT, TEST = "fit", "test"
DENSE_PATH, DSA_PATH = "dense_decode", "dsa_decode"
TARGET_CROSSOVER_FRACTION = 0.25  # the measured crossover should lie within 25 % of the predicted one
FRACTION_RANGE = (1e-4, 1.0)
MAX_CROSSOVER_CONTEXT = 1 << 20  # upper end of the search for the predicted crossover, in tokens
CONTEXT_ALIGNMENT = 16  # grid contexts are rounded to a multiple of this many tokens
# A pass of one row whose median exceeds the fastest pass's by this factor was slowed by other load.
# On the 2-core VM the sweep was tuned on, passes of one shape agree within about 10 % when the machine
# is quiet, and slow spells cost 2-3x.
DISTURBED_PASS_RATIO = 1.5
DTYPE = "float32"

# Progress shares of the stages of a run.
_CALIBRATE_SHARE, _KERNELS_SHARE, _CROSSOVER_SHARE = 0.15, 0.55, 0.27


@dataclass(frozen=True)
class SweepSettings:
    """Shapes and repeat counts of one validation run. Contexts and sequence lengths are in tokens."""

    batch: int  # decode sequences per call, for the decode families, the paths and the crossover
    gemm_features: int  # in = out features of the GEMM family's weight
    gemm_fit_tokens: tuple[int, ...]
    gemm_test_tokens: tuple[int, ...]
    mha_fit_seq_lens: tuple[int, ...]
    mha_test_seq_lens: tuple[int, ...]
    mqa_fit_contexts: tuple[int, ...]
    mqa_test_contexts: tuple[int, ...]
    sparse_context: int  # cache length each sequence gathers its top-k rows from
    sparse_fit_batches: tuple[int, ...]
    sparse_test_batches: tuple[int, ...]
    indexer_fit_contexts: tuple[int, ...]
    indexer_test_contexts: tuple[int, ...]
    topk_fit_keys: tuple[int, ...]
    topk_test_keys: tuple[int, ...]
    path_test_contexts: tuple[int, ...]  # both decode paths, timed past the crossover and every fit context
    crossover_points: int  # contexts on the crossover grid
    crossover_span: float  # the grid runs from predicted / span to predicted x span
    crossover_rounds: int  # passes over the crossover grid, whose samples are pooled
    rounds: int  # passes over the kernel families' rows, whose steady samples are pooled
    wait_budget_s: float  # total time the run may wait for a slow machine to recover
    warmup: int
    repeats: int  # timed calls per row and pass
    min_time_s: float  # timed calls per row and pass continue until their times add up to this


QUICK = SweepSettings(
    batch=64,
    gemm_features=4096,
    gemm_fit_tokens=(64, 128),
    gemm_test_tokens=(16, 32, 256, 512, 1024),
    mha_fit_seq_lens=(512, 768),
    mha_test_seq_lens=(1024, 1536, 2048),
    mqa_fit_contexts=(1024, 1536),
    mqa_test_contexts=(2560, 3072, 4096),
    sparse_context=2048,
    sparse_fit_batches=(64, 96),
    sparse_test_batches=(32, 128, 192),
    indexer_fit_contexts=(2048, 3072),
    indexer_test_contexts=(4096, 6144, 8192),
    topk_fit_keys=(2048, 3072),
    topk_test_keys=(4096, 6144, 8192, 12288, 16384),
    path_test_contexts=(4096, 6144, 8192),
    crossover_points=12,
    crossover_span=2.0,
    crossover_rounds=3,
    rounds=3,
    wait_budget_s=40.0,
    warmup=1,
    repeats=3,
    min_time_s=0.05,
)
FULL = dataclasses.replace(
    QUICK,
    gemm_test_tokens=(8, 16, 32, 256, 512, 1024, 2048),
    mha_test_seq_lens=(1024, 1536, 2048, 2560, 3072),
    mqa_test_contexts=(2560, 3072, 4096, 6144, 8192),
    sparse_test_batches=(32, 128, 192, 256),
    indexer_test_contexts=(4096, 6144, 8192, 12288, 16384, 24576),
    topk_test_keys=(4096, 6144, 8192, 12288, 16384, 24576, 32768),
    path_test_contexts=(4096, 6144, 8192, 16384),
    crossover_points=16,
    crossover_rounds=5,
    rounds=3,
    wait_budget_s=300.0,
    warmup=2,
    repeats=5,
    min_time_s=0.2,
)

# Parameters each family fits. "bound_fraction" is the compute or the memory fraction, whichever
# roofline side takes longer on the fit rows under the measured profile. The GEMM family keeps the
# measured per-call overhead, because its calls last milliseconds and the overhead microseconds.
FAMILY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "gemm": ("compute_fraction", "memory_fraction"),
    "mha_prefill": ("compute_fraction", "overhead_us"),
    "mqa_decode": ("bound_fraction", "overhead_us"),
    "sparse_mqa_decode": ("bound_fraction", "overhead_us"),
    "indexer_logits_decode": ("bound_fraction", "overhead_us"),
    "topk_decode": ("memory_fraction", "overhead_us"),
}


@dataclass(frozen=True)
class Case:
    """One row of the sweep: what is timed, the cost-model calls that predict it, and its shape."""

    kernel: str  # a family of FAMILY_PARAMETERS, or DENSE_PATH / DSA_PATH
    phase: str  # "prefill", "decode", or "any" for GEMMs, which serve both
    split: str  # FIT or TEST
    ops: tuple[Op, ...]  # the row's prediction is the sum of their predicted times
    shape: Mapping[str, int]
    build: Callable[[], Callable[[], object]]  # allocates the inputs and returns the timed call

    @property
    def kernel_class(self) -> str:
        return "+".join(dict.fromkeys(op.kernel for op in self.ops))


@dataclass
class ValidationResult:
    """Rows, per-kernel error summary and crossover of one validation run, and the files written."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    crossover: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    fitted_profile: HardwareProfile | None = None


def validation_spec() -> ModelSpec:
    """Return DeepSeek-V3.2-Exp with a quarter of its heads, index heads and top-k (32, 16, 512), other dims kept."""
    base = load_spec("deepseek-v3.2-exp")
    return dataclasses.replace(base, name=f"{base.name}-quarter-heads", num_attention_heads=32, index_n_heads=16,
                               index_topk=512)


def run_validation(device: str, out_dir: Path, quick: bool, profile_path: Path | None,
                   progress: Progress | None = None) -> ValidationResult:
    """Validate the cost model on ``device`` ("cpu" or "cuda") and write the results into ``out_dir``.

    Without ``profile_path`` the device's profile is measured first and written to
    ``measured_profile.yaml``. With it, that profile is the starting point. Raises MeasurementError for
    an unknown or unavailable device, a profile of another device kind, or an unusable ``out_dir``, all
    before measuring.
    """
    torch_device = resolve_device(device)
    given_data = None if profile_path is None else _read_profile_data(Path(profile_path), torch_device.type)
    out_dir = prepare_output_folder(Path(out_dir), (MEASURED_PROFILE_YAML, FITTED_PROFILE_YAML, VALIDATION_CSV,
                                                    SUMMARY_CSV, CROSSOVER_CSV))
    settings = QUICK if quick else FULL
    report = progress or _ignore_progress
    spec = validation_spec()
    files: dict[str, Path] = {}

    with fixed_threads(measurement_threads()), reuse_freed_host_memory(torch_device):
        guard = SpeedGuard(torch_device, wait_budget_s=settings.wait_budget_s)
        guard.warm_up()
        if given_data is None:
            base_data = measure_profile_data(torch_device, quick, _stage(report, 0.0, _CALIBRATE_SHARE), guard)
            files["measured_profile"] = write_profile_yaml(base_data, out_dir / MEASURED_PROFILE_YAML)
        else:
            base_data = given_data
        base_profile = load_profile(str(files.get("measured_profile") or profile_path))

        report("validate: drawing random inputs", _CALIBRATE_SHARE)
        pool = InputPool(torch_device, spec)
        pool.reserve(*pool_tokens(settings))
        cases = kernel_cases(spec, settings, pool)
        violations = split_violations(cases)
        if violations:
            raise ValueError(f"sweep settings put test rows inside the fit range: {'; '.join(violations)}")
        records = measure_cases(cases, settings, guard, torch_device,
                                _stage(report, _CALIBRATE_SHARE, _KERNELS_SHARE))

        report("validate: fitting", _CALIBRATE_SHARE + _KERNELS_SHARE)
        fitted_data = fit_profile(base_data, base_profile, cases, records)
        files["fitted_profile"] = write_profile_yaml(fitted_data, out_dir / FITTED_PROFILE_YAML)
        fitted_profile = load_profile(str(files["fitted_profile"]))

        crossover = measure_crossover(spec, settings, pool, fitted_profile, guard, torch_device,
                                      _stage(report, _CALIBRATE_SHARE + _KERNELS_SHARE, _CROSSOVER_SHARE))
        del pool

    crossover.update(longest_path_speedup(cases, records))
    rows = rows_frame(cases, records, fitted_profile, spec, guard)
    summary = summarize(rows)

    report("validate: writing results", 0.98)
    files["validation"] = write_csv_atomically(out_dir / VALIDATION_CSV, rows)
    files["summary"] = write_csv_atomically(out_dir / SUMMARY_CSV, summary)
    files["crossover"] = write_csv_atomically(out_dir / CROSSOVER_CSV, crossover_frame(crossover))
    if guard.unsteady_measurements:
        logger.warning("%d measurements were kept although the machine ran slow around them; see speed_fraction "
                       "in %s", guard.unsteady_measurements, VALIDATION_CSV)
    report("validate: done", 1.0)
    return ValidationResult(rows=rows, summary=summary, crossover=crossover, files=files, fitted_profile=fitted_profile)


# --- inputs and cases ------------------------------------------------------------------------------


class InputPool:
    """Random caches drawn once, viewed as [batch, context, dim] for any batch x context that fits.

    Drawing fresh caches for every shape would take longer than timing them. Each view is a contiguous
    prefix of its pool, so a kernel gets the layout of a freshly allocated input. A pool too small for a
    request is drawn again, larger.
    """

    def __init__(self, device: torch.device, spec: ModelSpec) -> None:
        self.device = device
        self.spec = spec
        self._pools: dict[str, torch.Tensor] = {}
        self._dims = {"latent": spec.kv_lora_rank, "rope": spec.qk_rope_head_dim, "index": spec.index_head_dim}

    def latent_cache(self, batch: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (kv_latent [batch, context, kv_lora_rank], k_pe [batch, context, qk_rope_head_dim])."""
        return self._view("latent", batch, context), self._view("rope", batch, context)

    def index_keys(self, batch: int, context: int) -> torch.Tensor:
        """Return index keys [batch, context, index_head_dim]."""
        return self._view("index", batch, context)

    def reserve(self, latent_tokens: int, index_tokens: int) -> None:
        """Draw the pools for at least this many cached tokens up front."""
        for name, tokens in (("latent", latent_tokens), ("rope", latent_tokens), ("index", index_tokens)):
            self._pool(name, tokens)

    def queries(self, batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
        """Return one decode query per sequence: q_latent, q_pe, q_index and head_weights."""
        spec = self.spec
        generator = torch.Generator(device=self.device).manual_seed(seed)

        def normal(*shape: int, std: float = 1.0) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=self.device) * std

        return {
            "q_latent": normal(batch, spec.num_attention_heads, spec.kv_lora_rank, std=spec.kv_lora_rank**-0.5),
            "q_pe": normal(batch, spec.num_attention_heads, spec.qk_rope_head_dim, std=spec.qk_rope_head_dim**-0.5),
            "q_index": normal(batch, spec.index_n_heads, spec.index_head_dim),
            "head_weights": normal(batch, spec.index_n_heads, std=spec.index_n_heads**-0.5),
        }

    def _view(self, name: str, batch: int, context: int) -> torch.Tensor:
        dim = self._dims[name]
        pool = self._pool(name, batch * context)
        return pool[: batch * context * dim].view(batch, context, dim)

    def _pool(self, name: str, tokens: int) -> torch.Tensor:
        dim = self._dims[name]
        pool = self._pools.get(name)
        if pool is None or pool.numel() < tokens * dim:
            self._pools.pop(name, None)  # free the old pool before drawing the new one
            generator = torch.Generator(device=self.device).manual_seed(len(name))
            pool = torch.randn(tokens * dim, generator=generator, device=self.device)
            self._pools[name] = pool
        return pool


def pool_tokens(settings: SweepSettings) -> tuple[int, int]:
    """Return the cached tokens (latent, index) that the kernel families and the long-context path rows need."""
    latent_contexts = [*settings.mqa_fit_contexts, *settings.mqa_test_contexts, *settings.path_test_contexts]
    sparse_batches = [*settings.sparse_fit_batches, *settings.sparse_test_batches]
    latent = max(settings.batch * max(latent_contexts), max(sparse_batches) * settings.sparse_context)
    index_contexts = [*settings.indexer_fit_contexts, *settings.indexer_test_contexts, *settings.path_test_contexts]
    return latent, settings.batch * max(index_contexts)


def softmax_scale(spec: ModelSpec) -> float:
    """Return 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim), the scale of the MHA scores that MQA mode reproduces."""
    return float(spec.qk_head_dim**-0.5)


def kernel_cases(spec: ModelSpec, settings: SweepSettings, pool: InputPool) -> list[Case]:
    """Return the kernel families' rows, fit rows first within each family."""
    cases: list[Case] = []
    for split, tokens_list in ((FIT, settings.gemm_fit_tokens), (TEST, settings.gemm_test_tokens)):
        cases += [_gemm_case(tokens, settings.gemm_features, split, pool) for tokens in tokens_list]
    for split, seq_lens in ((FIT, settings.mha_fit_seq_lens), (TEST, settings.mha_test_seq_lens)):
        cases += [_mha_case(spec, seq_len, split, pool) for seq_len in seq_lens]
    for split, contexts in ((FIT, settings.mqa_fit_contexts), (TEST, settings.mqa_test_contexts)):
        cases += [dense_decode_case(spec, settings.batch, context, split, pool, "mqa_decode") for context in contexts]
    for split, batches in ((FIT, settings.sparse_fit_batches), (TEST, settings.sparse_test_batches)):
        cases += [_sparse_case(spec, batch, settings.sparse_context, split, pool) for batch in batches]
    for split, contexts in ((FIT, settings.indexer_fit_contexts), (TEST, settings.indexer_test_contexts)):
        cases += [_indexer_case(spec, settings.batch, context, split, pool) for context in contexts]
    for split, keys_list in ((FIT, settings.topk_fit_keys), (TEST, settings.topk_test_keys)):
        cases += [_topk_case(spec, settings.batch, keys, split, pool) for keys in keys_list]
    for context in settings.path_test_contexts:
        cases.append(dense_decode_case(spec, settings.batch, context, TEST, pool, DENSE_PATH))
        cases.append(dsa_decode_case(spec, settings.batch, context, TEST, pool))
    return cases


# The families whose fit rows a path's row is judged against by ``split_violations``.
PATH_FAMILIES = {DENSE_PATH: ("mqa_decode",), DSA_PATH: ("indexer_logits_decode", "topk_decode", "sparse_mqa_decode")}
_SPLIT_DIMENSIONS = ("tokens", "batch", "context_tokens")


def split_violations(cases: Sequence[Case]) -> list[str]:
    """Describe every test row that lies inside the range its family's fit rows cover.

    A test row is outside when its tokens, batch or context lies outside the [min, max] of that value
    over the fit rows, so it is another context or batch size than any fit row. A path row is judged
    against the fit rows of each family on the path. Returns an empty list when the split is sound.
    """
    fit_ranges: dict[str, dict[str, tuple[int, int]]] = {}
    for case in cases:
        if case.split != FIT:
            continue
        ranges = fit_ranges.setdefault(case.kernel, {})
        for name in _SPLIT_DIMENSIONS:
            value = case.shape.get(name)
            if value is not None:
                low, high = ranges.get(name, (value, value))
                ranges[name] = (min(low, value), max(high, value))

    violations = []
    for case in cases:
        if case.split != TEST:
            continue
        for family in PATH_FAMILIES.get(case.kernel, (case.kernel,)):
            ranges = fit_ranges.get(family, {})
            if not ranges:
                continue
            outside = any(not low <= case.shape.get(name, low) <= high for name, (low, high) in ranges.items()
                          if name in case.shape)
            if not outside:
                violations.append(f"{case.kernel} test row {dict(case.shape)} lies inside the fit range of {family}")
    return violations


def _gemm_case(tokens: int, features: int, split: str, pool: InputPool) -> Case:
    def build() -> Callable[[], object]:
        generator = torch.Generator(device=pool.device).manual_seed(tokens)
        x = torch.randn(tokens, features, generator=generator, device=pool.device)
        weight = torch.randn(features, features, generator=generator, device=pool.device)
        return lambda: gemm(x, weight)

    op = gemm_call(tokens, features, features, weight_dtype="fp32")
    shape = {"tokens": tokens, "in_features": features, "out_features": features}
    return Case("gemm", "any", split, (op,), shape, build)


def _mha_case(spec: ModelSpec, seq_len: int, split: str, pool: InputPool) -> Case:
    heads = spec.num_attention_heads

    def build() -> Callable[[], object]:
        generator = torch.Generator(device=pool.device).manual_seed(seq_len)
        q = torch.randn(seq_len, heads, spec.qk_head_dim, generator=generator, device=pool.device)
        k = torch.randn(seq_len, heads, spec.qk_head_dim, generator=generator, device=pool.device)
        v = torch.randn(seq_len, heads, spec.v_head_dim, generator=generator, device=pool.device)
        return lambda: mha_attention(q, k, v, causal=True)

    op = mha_prefill_call(spec, seq_len, dtype="fp32", skips_masked=False)  # mha_attention masks, it does not skip
    shape = {"tokens": seq_len, "context_tokens": seq_len, "n_heads": heads}
    return Case("mha_prefill", "prefill", split, (op,), shape, build)


def dense_decode_case(spec: ModelSpec, batch: int, context: int, split: str, pool: InputPool, kernel: str) -> Case:
    """Build a row of dense absorbed-MLA decode: one query per sequence over ``context`` cached tokens."""

    def build() -> Callable[[], object]:
        kv_latent, k_pe = pool.latent_cache(batch, context)
        queries = pool.queries(batch)
        scale = softmax_scale(spec)
        return lambda: dense_mqa_decode_step(queries["q_latent"], queries["q_pe"], kv_latent, k_pe, scale)

    return Case(kernel, "decode", split, (_dense_op(spec, batch, context),), _decode_shape(spec, batch, context), build)


def dsa_decode_case(spec: ModelSpec, batch: int, context: int, split: str, pool: InputPool) -> Case:
    """Build a row of the whole DSA decode path, timed end to end: indexer logits, top-k, gathered attention."""

    def build() -> Callable[[], object]:
        kv_latent, k_pe = pool.latent_cache(batch, context)
        index_keys = pool.index_keys(batch, context)
        queries = pool.queries(batch)
        scale = softmax_scale(spec)
        return lambda: dsa_decode_step(queries["q_latent"], queries["q_pe"], kv_latent, k_pe, queries["q_index"],
                                       queries["head_weights"], index_keys, spec.index_topk, scale)

    return Case(DSA_PATH, "decode", split, dsa_path_ops(spec, batch, context), _decode_shape(spec, batch, context), build)


def _sparse_case(spec: ModelSpec, batch: int, context: int, split: str, pool: InputPool) -> Case:
    def build() -> Callable[[], object]:
        kv_latent, k_pe = pool.latent_cache(batch, context)
        queries = pool.queries(batch)
        generator = torch.Generator(device=pool.device).manual_seed(batch)
        # Random distinct rows per sequence, offset into the flattened cache as dsa_decode_step does.
        scores = torch.rand(batch, context, generator=generator, device=pool.device)
        offsets = torch.arange(batch, device=pool.device).unsqueeze(1) * context
        indices = scores.topk(spec.index_topk, dim=-1).indices + offsets
        kv_flat, pe_flat = kv_latent.flatten(0, 1), k_pe.flatten(0, 1)
        scale = softmax_scale(spec)
        return lambda: sparse_mqa_attention(queries["q_latent"], queries["q_pe"], kv_flat, pe_flat, indices, scale)

    op = sparse_mqa_decode_call(spec, batch, latent_format="fp32", dtype="fp32")
    return Case("sparse_mqa_decode", "decode", split, (op,), _decode_shape(spec, batch, context), build)


def _indexer_case(spec: ModelSpec, batch: int, context: int, split: str, pool: InputPool) -> Case:
    def build() -> Callable[[], object]:
        index_keys = pool.index_keys(batch, context)
        queries = pool.queries(batch)
        q_index = queries["q_index"].unsqueeze(1)
        head_weights = queries["head_weights"].unsqueeze(1)
        return lambda: indexer_logits(q_index, head_weights, index_keys, fp8=False)

    op = indexer_decode_call(spec, batch, 1, context, key_format="fp32")
    return Case("indexer_logits_decode", "decode", split, (op,), _decode_shape(spec, batch, context), build)


def _topk_case(spec: ModelSpec, rows: int, keys: int, split: str, pool: InputPool) -> Case:
    def build() -> Callable[[], object]:
        generator = torch.Generator(device=pool.device).manual_seed(keys)
        logits = torch.randn(rows, 1, keys, generator=generator, device=pool.device)
        return lambda: topk_indices(logits, spec.index_topk, causal=False)

    op = topk_call(spec, rows, keys)
    shape = {"batch": rows, "context_tokens": keys, "index_topk": spec.index_topk}
    return Case("topk_decode", "decode", split, (op,), shape, build)


def _decode_shape(spec: ModelSpec, batch: int, context: int) -> dict[str, int]:
    return {
        "batch": batch,
        "context_tokens": context,
        "n_heads": spec.num_attention_heads,
        "kv_lora_rank": spec.kv_lora_rank,
        "qk_rope_head_dim": spec.qk_rope_head_dim,
        "index_n_heads": spec.index_n_heads,
        "index_head_dim": spec.index_head_dim,
        "index_topk": spec.index_topk,
    }


# --- measuring --------------------------------------------------------------------------------------


def measure_cases(cases: Sequence[Case], settings: SweepSettings, guard: SpeedGuard, device: torch.device,
                  progress: Progress) -> list[Guarded[TimingRecord]]:
    """Time every case through ``guard`` in ``settings.rounds`` passes; returns one pooled record per case.

    Passes go over all cases in turn, so a burst of load on a shared machine spreads over many rows
    instead of biasing the samples of one.
    """
    steps = []
    for round_index in range(settings.rounds):
        for index, case in enumerate(cases):
            label = f"{_case_label(case)}, round {round_index + 1}"
            steps.append(Step((index, round_index), label, _timer(case, settings, device)))
    measurements = measure_steadily(guard, steps, progress)
    pooled = []
    for index in range(len(cases)):
        passes = [measurements[(index, round_index)] for round_index in range(settings.rounds)]
        pooled.append(_pooled(_steady_passes(passes, guard)))
    return pooled


def _steady_passes(passes: Sequence[Guarded[TimingRecord]], guard: SpeedGuard) -> list[Guarded[TimingRecord]]:
    """Return the passes the guard judges steady (all when none is), less those a slow spell disturbed.

    The probes around a pass miss a spell that starts and ends inside it, so a pass whose median is
    more than DISTURBED_PASS_RATIO times the fastest pass's median is dropped as well.
    """
    steady = [measurement for measurement in passes if guard.is_steady(measurement)] or list(passes)
    fastest_s = min(measurement.value.median_s for measurement in steady)
    return [measurement for measurement in steady if measurement.value.median_s <= DISTURBED_PASS_RATIO * fastest_s]


def _timer(case: Case, settings: SweepSettings, device: torch.device) -> Callable[[], TimingRecord]:
    def run() -> TimingRecord:
        call = case.build()
        return time_callable(call, warmup=settings.warmup, repeats=settings.repeats, device=device,
                             min_time_s=settings.min_time_s, dtype=DTYPE, shapes=_shape_tuples(case))

    return run


def _shape_tuples(case: Case) -> dict[str, tuple[int, ...]]:
    return {name: (value,) for name, value in case.shape.items()}


def _case_label(case: Case) -> str:
    shape = ", ".join(f"{name} {value}" for name, value in case.shape.items() if name in ("tokens", "batch", "context_tokens"))
    return f"validate: {case.kernel} ({shape})"


# --- fitting ----------------------------------------------------------------------------------------


def fit_profile(base_data: Mapping[str, Any], base_profile: HardwareProfile, cases: Sequence[Case],
                records: Sequence[Guarded[TimingRecord]]) -> dict[str, Any]:
    """Fit each family's parameters on its fit rows and return the profile data with the fitted efficiencies.

    Each family's kernel class gets provenance ``fitted`` and a source naming its fit rows. Every other
    value is the base profile's.
    """
    data = _plain_copy(base_data)
    data["name"] = f"{base_data['name']}-fitted"
    data["description"] = f"{base_data['description']}; kernel efficiencies fitted by dsasim validate"
    for family, parameter_names in FAMILY_PARAMETERS.items():
        fit_rows = [(case, record.value) for case, record in zip(cases, records, strict=True)
                    if case.kernel == family and case.split == FIT]
        if not fit_rows:
            continue
        kernel_class = _single_kernel_class([case for case, _ in fit_rows])
        ops = [case.ops[0] for case, _ in fit_rows]
        measured = np.array([record.median_s for _, record in fit_rows])
        names = _resolve_parameters(parameter_names, ops, base_profile)
        parameters = [_fit_parameter(name, measured) for name in names]

        def predict(values: Mapping[str, float], kernel_class: str = kernel_class, ops: list[Op] = ops) -> np.ndarray:
            profile = with_efficiency(base_profile, kernel_class, values)
            return np.array([predict_call_s(op, profile) for op in ops])

        fit = fit_log_space(predict, measured, parameters)
        entry = dict(data["efficiencies"][kernel_class])
        entry.update({name: _round(value) for name, value in fit.values.items()})
        entry["provenance"] = "fitted"
        entry["source"] = _fit_source(family, fit_rows, fit.values, fit.mean_abs_log_error, str(base_data["name"]))
        data["efficiencies"][kernel_class] = entry
        logger.info("fitted %s: %s, mean |log error| %.3f", kernel_class, fit.values, fit.mean_abs_log_error)
    return data


def with_efficiency(profile: HardwareProfile, kernel_class: str, values: Mapping[str, float]) -> HardwareProfile:
    """Return ``profile`` with some of one kernel class's efficiency values replaced (overhead in us)."""
    efficiency = profile.efficiencies[kernel_class]
    overhead_us = values.get("overhead_us")
    efficiency = dataclasses.replace(
        efficiency,
        compute_fraction=values.get("compute_fraction", efficiency.compute_fraction),
        memory_fraction=values.get("memory_fraction", efficiency.memory_fraction),
        overhead_s=efficiency.overhead_s if overhead_us is None else overhead_us / MICROSECONDS_PER_SECOND,
    )
    efficiencies = {**profile.efficiencies, kernel_class: efficiency}
    return dataclasses.replace(profile, efficiencies=efficiencies)


def _resolve_parameters(names: Sequence[str], ops: Sequence[Op], profile: HardwareProfile) -> list[str]:
    """Replace "bound_fraction" by the compute or memory fraction, whichever side takes longer on ``ops``."""
    resolved = []
    for name in names:
        if name == "bound_fraction":
            compute_s = memory_s = 0.0
            for op in ops:
                rates = kernel_rates(profile, op.kernel, op.dtype)
                compute_s += float(np.sum(op.flops_per_call)) / rates.flops_per_s
                memory_s += float(np.sum(op.bytes_per_call)) / rates.bytes_per_s
            name = "compute_fraction" if compute_s >= memory_s else "memory_fraction"
        resolved.append(name)
    return resolved


def _fit_parameter(name: str, measured: np.ndarray) -> FitParameter:
    if name == "overhead_us":
        # A fixed cost per call cannot exceed the shortest call it is fitted on.
        return FitParameter(name, 0.0, float(np.min(measured)) * MICROSECONDS_PER_SECOND)
    if name in ("compute_fraction", "memory_fraction"):
        return FitParameter(name, *FRACTION_RANGE, log_scale=True)
    raise ValueError(f"unknown fit parameter {name!r} (known: compute_fraction, memory_fraction, overhead_us, bound_fraction)")


def _single_kernel_class(cases: Sequence[Case]) -> str:
    classes = {case.kernel_class for case in cases}
    if len(classes) != 1 or any(len(case.ops) != 1 for case in cases):
        raise ValueError(f"a fitted family must time one kernel class with one call per row, got {sorted(classes)}")
    return classes.pop()


def _fit_source(family: str, fit_rows: Sequence[tuple[Case, TimingRecord]], values: Mapping[str, float], error: float,
                base_name: str) -> str:
    varied = [name for name in ("tokens", "batch", "context_tokens")
              if len({case.shape.get(name) for case, _ in fit_rows}) > 1]
    shapes = "; ".join(", ".join(f"{name} {case.shape[name]}" for name in varied) for case, _ in fit_rows)
    fitted = ", ".join(f"{name} {_round(value)}" for name, value in values.items())
    record = fit_rows[0][1]
    return (
        f"fitted by dsasim validate on {len(fit_rows)} timed {family} rows ({shapes}; float32, {record.device_name}, "
        f"{record.threads} threads, torch {record.torch_version}): {fitted}; mean |log error| {error:.1%}; "
        f"other values from profile {base_name}"
    )


# --- crossover ----------------------------------------------------------------------------------------


def dsa_path_ops(spec: ModelSpec, batch: int, context: int) -> tuple[Op, ...]:
    """Return the cost-model calls of one DSA decode step: indexer logits, top-k and sparse MQA, in FP32."""
    return (
        indexer_decode_call(spec, batch, 1, context, key_format="fp32"),
        topk_call(spec, batch, context),
        sparse_mqa_decode_call(spec, batch, latent_format="fp32", dtype="fp32"),
    )


def predicted_path_s(ops: Sequence[Op], profile: HardwareProfile) -> float:
    """Return the sum of the predicted seconds of ``ops`` on ``profile``."""
    return float(sum(predict_call_s(op, profile) for op in ops))


def predicted_crossover_tokens(spec: ModelSpec, batch: int, profile: HardwareProfile,
                               upper: int = MAX_CROSSOVER_CONTEXT) -> int | None:
    """Return the smallest context at which the model's DSA decode path beats dense MQA decode, or None.

    Searched by bisection over [1, upper] tokens: past the crossover, dense decode grows faster with the
    context than the indexer and top-k do, so the difference changes sign once.
    """
    def dsa_faster(context: int) -> bool:
        dsa_s = predicted_path_s(dsa_path_ops(spec, batch, context), profile)
        return dsa_s < predict_call_s(_dense_op(spec, batch, context), profile)

    if not dsa_faster(upper):
        return None
    if dsa_faster(1):
        return 1
    return last_true(lambda context: not dsa_faster(context), 1, upper) + 1


def crossover_grid(predicted_tokens: float, points: int, span: float, minimum: int) -> list[int]:
    """Return a geometric grid from predicted / span to predicted x span, rounded to CONTEXT_ALIGNMENT tokens."""
    raw = np.geomspace(predicted_tokens / span, predicted_tokens * span, points)
    aligned = {max(minimum, int(round(value / CONTEXT_ALIGNMENT)) * CONTEXT_ALIGNMENT) for value in raw}
    return sorted(aligned)


def measured_crossover_tokens(contexts: Sequence[int], dense_s: Sequence[float], dsa_s: Sequence[float]) -> float | None:
    """Return the context past which the measured DSA path stays faster than dense decode, interpolated linearly.

    It lies between the last grid context where DSA is not faster and the next one. Returns None when
    DSA is never faster, or faster at every context (the crossover then lies outside the grid).
    """
    margin = np.asarray(dense_s, dtype=float) - np.asarray(dsa_s, dtype=float)  # > 0 where DSA is faster
    not_faster = np.flatnonzero(margin <= 0)
    if len(not_faster) == 0 or not_faster[-1] == len(contexts) - 1:
        return None
    index = int(not_faster[-1])
    low, high = float(contexts[index]), float(contexts[index + 1])
    share = -margin[index] / (margin[index + 1] - margin[index])
    return low + share * (high - low)


def measure_crossover(spec: ModelSpec, settings: SweepSettings, pool: InputPool, profile: HardwareProfile,
                      guard: SpeedGuard, device: torch.device, progress: Progress) -> dict[str, Any]:
    """Time both decode paths on a grid of contexts around the predicted crossover; find the measured one.

    The grid is timed in ``crossover_rounds`` passes, dense then DSA at each context, so a slow spell of
    the machine spreads over contexts instead of biasing one. Each context's steady samples are pooled.
    When the grid does not bracket the measured crossover, it is extended once by another span on the
    open side. Returns the crossover summary with the grid's predicted and measured times.
    """
    batch = settings.batch
    summary: dict[str, Any] = {
        "batch": batch,
        "n_heads": spec.num_attention_heads,
        "index_n_heads": spec.index_n_heads,
        "index_topk": spec.index_topk,
    }
    predicted = predicted_crossover_tokens(spec, batch, profile)
    if predicted is None:
        logger.warning("the fitted profile predicts that DSA decode never beats dense decode up to %d tokens, so no "
                       "crossover grid is timed; check the fitted efficiencies", MAX_CROSSOVER_CONTEXT)
        empty: list[float] = []
        return {**summary, "predicted_tokens": None, "measured_tokens": None, "ratio": None, "within_target": False,
                "grid_tokens": [], "dense_measured_s": empty, "dsa_measured_s": empty, "dense_iqr_s": empty,
                "dsa_iqr_s": empty, "dense_predicted_s": empty, "dsa_predicted_s": empty}
    grid = crossover_grid(predicted, settings.crossover_points, settings.crossover_span, CONTEXT_ALIGNMENT)
    timings = _time_paths(spec, settings, pool, grid, guard, device, _stage(progress, 0.0, 0.8))
    measured = measured_crossover_tokens(grid, *_path_medians(grid, timings))

    if measured is None:
        dense_s, dsa_s = _path_medians(grid, timings)
        dsa_always_faster = all(d > s for d, s in zip(dense_s, dsa_s, strict=True))
        factor = 1.0 / settings.crossover_span**2 if dsa_always_faster else settings.crossover_span**2
        extra = crossover_grid(predicted * factor, settings.crossover_points // 2, settings.crossover_span,
                               CONTEXT_ALIGNMENT)
        extra = [context for context in extra if context not in grid]
        logger.info("measured crossover outside the grid; extending it to %s", extra)
        timings.update(_time_paths(spec, settings, pool, extra, guard, device, _stage(progress, 0.8, 0.2)))
        grid = sorted({*grid, *extra})
        measured = measured_crossover_tokens(grid, *_path_medians(grid, timings))

    dense_s, dsa_s = _path_medians(grid, timings)
    dense_iqr_s = [_pooled(timings[(DENSE_PATH, context)]).value.iqr_s for context in grid]
    dsa_iqr_s = [_pooled(timings[(DSA_PATH, context)]).value.iqr_s for context in grid]
    return {
        **summary,
        "predicted_tokens": float(predicted),
        "measured_tokens": measured,
        "ratio": None if measured is None else measured / predicted,
        "within_target": measured is not None and abs(measured / predicted - 1) <= TARGET_CROSSOVER_FRACTION,
        "grid_tokens": list(grid),
        "dense_measured_s": dense_s,
        "dsa_measured_s": dsa_s,
        "dense_iqr_s": dense_iqr_s,
        "dsa_iqr_s": dsa_iqr_s,
        "dense_predicted_s": [predicted_path_s((_dense_op(spec, batch, context),), profile) for context in grid],
        "dsa_predicted_s": [predicted_path_s(dsa_path_ops(spec, batch, context), profile) for context in grid],
    }


def longest_path_speedup(cases: Sequence[Case], records: Sequence[Guarded[TimingRecord]]) -> dict[str, Any]:
    """Return dense over DSA decode time at the longest context both paths were timed at, from the path rows.

    The DSA path beats dense measurably there when its 75th-percentile time is below dense's 25th.
    """
    by_path = {(case.kernel, case.shape["context_tokens"]): record.value
               for case, record in zip(cases, records, strict=True) if case.kernel in (DENSE_PATH, DSA_PATH)}
    contexts = [context for path, context in by_path if path == DENSE_PATH and (DSA_PATH, context) in by_path]
    if not contexts:
        return {}
    longest = max(contexts)
    dense, dsa = by_path[(DENSE_PATH, longest)], by_path[(DSA_PATH, longest)]
    return {
        "longest_context_tokens": longest,
        "speedup_at_longest": dense.median_s / dsa.median_s,
        "separated_at_longest": _quantile(dsa, 0.75) < _quantile(dense, 0.25),
    }


def _dense_op(spec: ModelSpec, batch: int, context: int) -> Op:
    return dense_mqa_decode_call(spec, batch, context, latent_format="fp32", dtype="fp32")


def _path_case(spec: ModelSpec, batch: int, context: int, pool: InputPool, path: str) -> Case:
    if path == DENSE_PATH:
        return dense_decode_case(spec, batch, context, TEST, pool, DENSE_PATH)
    return dsa_decode_case(spec, batch, context, TEST, pool)


def _time_paths(spec: ModelSpec, settings: SweepSettings, pool: InputPool, contexts: Sequence[int], guard: SpeedGuard,
                device: torch.device, progress: Progress) -> dict[tuple[str, int], list[Guarded[TimingRecord]]]:
    """Time the dense and DSA paths at each context ``crossover_rounds`` times, and return the steady passes."""
    steps: list[Step[TimingRecord]] = []
    for round_index in range(settings.crossover_rounds):
        for context in contexts:
            for path in (DENSE_PATH, DSA_PATH):
                case = _path_case(spec, settings.batch, context, pool, path)
                steps.append(Step((path, context, round_index), f"validate: {path} (context {context}, round "
                                  f"{round_index + 1})", _timer(case, settings, device)))
    measurements = measure_steadily(guard, steps, progress)
    timings: dict[tuple[str, int], list[Guarded[TimingRecord]]] = {}
    for key, measurement in measurements.items():
        path, context, _ = key  # type: ignore[misc]
        timings.setdefault((path, context), []).append(measurement)
    return {key: _steady_passes(passes, guard) for key, passes in timings.items()}


def _path_medians(contexts: Sequence[int], timings: Mapping[tuple[str, int], list[Guarded[TimingRecord]]]
                  ) -> tuple[list[float], list[float]]:
    dense = [_pooled(timings[(DENSE_PATH, context)]).value.median_s for context in contexts]
    dsa = [_pooled(timings[(DSA_PATH, context)]).value.median_s for context in contexts]
    return dense, dsa


def _pooled(measurements: Sequence[Guarded[TimingRecord]]) -> Guarded[TimingRecord]:
    """Merge the timing records of repeated passes over one shape into one record of all their samples."""
    if len(measurements) == 1:
        return measurements[0]
    samples = np.array([sample for measurement in measurements for sample in measurement.value.samples_s])
    q25, median, q75 = np.percentile(samples, [25, 50, 75])
    first = measurements[0].value
    record = dataclasses.replace(first, median_s=float(median), min_s=float(samples.min()), max_s=float(samples.max()),
                                 iqr_s=float(q75 - q25), repeats=len(samples), samples_s=tuple(samples.tolist()))
    slowest_gemm = max(measurement.probe_gemm_s for measurement in measurements)
    slowest_copy = max(measurement.probe_copy_s for measurement in measurements)
    return Guarded(record, slowest_gemm, slowest_copy)


def _quantile(record: TimingRecord, quantile: float) -> float:
    return float(np.quantile(np.array(record.samples_s), quantile))


# --- results ------------------------------------------------------------------------------------------

SHAPE_COLUMNS = ("batch", "context_tokens", "tokens", "in_features", "out_features", "n_heads", "kv_lora_rank",
                 "qk_rope_head_dim", "index_n_heads", "index_head_dim", "index_topk")


def rows_frame(cases: Sequence[Case], records: Sequence[Guarded[TimingRecord]], profile: HardwareProfile,
               spec: ModelSpec, guard: SpeedGuard) -> pd.DataFrame:
    """Build one row per case: prediction on ``profile``, measurement, error and every shape and condition.

    ``speed_fraction`` is the machine's speed around the row's slowest pass, judged by ``guard``'s probes.
    """
    rows = []
    for case, measurement in zip(cases, records, strict=True):
        record = measurement.value
        predicted = predicted_path_s(case.ops, profile)
        row: dict[str, Any] = {
            "kernel": case.kernel,
            "kernel_class": case.kernel_class,
            "phase": case.phase,
            "split": case.split,
            "predicted_s": predicted,
            "measured_s": record.median_s,
            "error_fraction": float(relative_errors([predicted], [record.median_s])[0]),
            "measured_min_s": record.min_s,
            "measured_max_s": record.max_s,
            "measured_iqr_s": record.iqr_s,
            "repeats": record.repeats,
            "warmup": record.warmup,
            "speed_fraction": guard.speed_fraction(measurement),
            "flops": float(sum(float(np.sum(op.flops_per_call)) for op in case.ops)),
            "bytes": float(sum(float(np.sum(op.bytes_per_call)) for op in case.ops)),
        }
        for name in SHAPE_COLUMNS:
            row[name] = case.shape.get(name)
        row.update({
            "dtype": record.dtype,
            "device": record.device,
            "device_name": record.device_name,
            "threads": record.threads,
            "torch_version": record.torch_version,
            "model": spec.name,
            "profile": profile.name,
        })
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in SHAPE_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    return frame


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Compute the median and 90th-percentile error per kernel and split, plus an ``all`` row per split.

    Error is |predicted / measured - 1|, as a fraction. Percentiles interpolate linearly.
    """
    errors = relative_errors(rows["predicted_s"].to_numpy(dtype=float), rows["measured_s"].to_numpy(dtype=float))
    frame = rows.assign(error_fraction=errors)
    groups = []
    for (kernel, split), group in frame.groupby(["kernel", "split"], sort=False):
        groups.append(_summary_row(str(kernel), str(split), group["error_fraction"].to_numpy()))
    for split, group in frame.groupby("split", sort=False):
        groups.append(_summary_row("all", str(split), group["error_fraction"].to_numpy()))
    summary = pd.DataFrame(groups, columns=["kernel", "split", "rows", "median_error_fraction", "p90_error_fraction"])
    split_order = {FIT: 0, TEST: 1}
    summary["_split_order"] = summary["split"].map(split_order).fillna(2)
    summary["_all_last"] = summary["kernel"] == "all"
    summary = summary.sort_values(["_all_last", "kernel", "_split_order"], kind="stable")
    return summary.drop(columns=["_split_order", "_all_last"]).reset_index(drop=True)


def _summary_row(kernel: str, split: str, errors: np.ndarray) -> dict[str, Any]:
    return {
        "kernel": kernel,
        "split": split,
        "rows": int(errors.size),
        "median_error_fraction": float(np.median(errors)),
        "p90_error_fraction": float(np.percentile(errors, 90)),
    }


def format_summary(summary: pd.DataFrame) -> str:
    """Return the summary as a text table with errors in percent, for a terminal."""
    lines = [f"{'kernel':<24}{'split':<7}{'rows':>5}{'median error (%)':>18}{'p90 error (%)':>15}"]
    for record in summary.to_dict("records"):
        lines.append(f"{record['kernel']:<24}{record['split']:<7}{record['rows']:>5}"
                     f"{100 * float(record['median_error_fraction']):>18.1f}"
                     f"{100 * float(record['p90_error_fraction']):>15.1f}")
    return "\n".join(lines)


def format_crossover(crossover: Mapping[str, Any]) -> str:
    """Return the predicted and measured crossover as one line of text."""
    predicted = crossover["predicted_tokens"]
    measured = crossover["measured_tokens"]
    text = (f"DSA vs dense decode crossover (batch {crossover['batch']}, {crossover['n_heads']} heads, "
            f"top-k {crossover['index_topk']}): ")
    if predicted is None:
        text += "none predicted, so none measured"
    elif measured is None:
        text += f"predicted {predicted:.0f} tokens, measured: not found on the grid"
    else:
        text += f"predicted {predicted:.0f} tokens, measured {measured:.0f} tokens (ratio {measured / predicted:.2f})"
    if "speedup_at_longest" in crossover:
        text += (f"; DSA {crossover['speedup_at_longest']:.2f}x faster than dense at "
                 f"{crossover['longest_context_tokens']} tokens")
    return text


def crossover_frame(crossover: Mapping[str, Any]) -> pd.DataFrame:
    """Return the crossover grid as a table, with the predicted and measured crossover on every row."""
    frame = pd.DataFrame({
        "context_tokens": crossover["grid_tokens"],
        "dense_measured_s": crossover["dense_measured_s"],
        "dsa_measured_s": crossover["dsa_measured_s"],
        "dense_iqr_s": crossover["dense_iqr_s"],
        "dsa_iqr_s": crossover["dsa_iqr_s"],
        "dense_predicted_s": crossover["dense_predicted_s"],
        "dsa_predicted_s": crossover["dsa_predicted_s"],
    })
    for name in ("batch", "n_heads", "index_n_heads", "index_topk", "predicted_tokens", "measured_tokens"):
        frame[name] = crossover[name]
    frame = frame.rename(columns={"predicted_tokens": "predicted_crossover_tokens",
                                  "measured_tokens": "measured_crossover_tokens"})
    return frame


# --- helpers ------------------------------------------------------------------------------------------


def _read_profile_data(path: Path, device_type: str) -> dict[str, Any]:
    """Load and check a profile given by path or shipped name, and return its data as in the YAML file."""
    profile = load_profile(str(path))
    expected_kind = "gpu" if device_type == "cuda" else "cpu"
    if profile.device_kind != expected_kind:
        raise MeasurementError(
            f"profile {path} describes a {profile.device_kind}, but --device {device_type} measures a {expected_kind}: "
            "pass a profile of this device, or leave out --profile to measure one"
        )
    try:
        data = yaml.safe_load(Path(profile.source_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:  # load_profile read it a moment ago, so this is unlikely
        raise MeasurementError(f"failed to read hardware profile {profile.source_path}: {error}") from error
    return _plain_copy(data)


def _plain_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-copy profile data made of dicts, lists and scalars."""
    def copy(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, list):
            return [copy(item) for item in value]
        return value

    return copy(data)


def _stage(progress: Progress, start: float, share: float) -> Progress:
    """Map a stage's own 0-1 progress onto [start, start + share] of the whole run."""
    def report(label: str, fraction: float) -> None:
        progress(label, start + share * min(max(fraction, 0.0), 1.0))

    return report


def _round(value: float) -> float:
    return float(f"{value:.4g}") if math.isfinite(value) and value != 0 else float(value)


def _ignore_progress(label: str, fraction: float) -> None:
    return None

