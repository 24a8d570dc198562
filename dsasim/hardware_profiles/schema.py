"""Pydantic models of a hardware profile YAML file, in the units its key names state.

Validation is strict: unknown keys, explicit nulls, strings where numbers belong, non-finite numbers,
non-positive numbers and fractions above 1 are all rejected. An optional key is left out of the file,
not set to null. YAML 1.1 reads ``1e12`` and ``1.0e12`` as strings (only ``1.0e+12`` is a number), so
such a value fails as a wrong type.
Conversion to SI units happens in ``loader``, not here.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dsasim.hardware_profiles.profile import KERNEL_CLASSES

PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeNumber = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
Text = Annotated[str, Field(min_length=1)]
# Letters, digits, '.', '_' and '-' only, so that load_profile can resolve the name as a shipped file stem.
ProfileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class StrictModel(BaseModel):
    """Base of every profile model: unknown keys and explicit nulls are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _reject_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError(
                "null_value", "null is not allowed, leave the key out to leave it unset"
            )
        return value


class PeakTflopsSpec(StrictModel):
    """Dense peaks (no 2:4 sparsity) by dtype, in TFLOP/s. A dtype the chip lacks is left out."""

    fp8: PositiveNumber | None = None
    bf16: PositiveNumber | None = None
    fp32: PositiveNumber | None = None

    @model_validator(mode="after")
    def _require_one_peak(self) -> PeakTflopsSpec:
        if self.fp8 is None and self.bf16 is None and self.fp32 is None:
            raise PydanticCustomError("no_peak", "at least one of fp8, bf16, fp32 must be given")
        return self


class ScaleUpSpec(StrictModel):
    """NVLink-class tier, per GPU and per direction."""

    bandwidth_gb_per_s: PositiveNumber
    latency_us: PositiveNumber
    achievable_fraction: Fraction
    domain_gpus: PositiveInt
    source: Text


class ScaleOutSpec(StrictModel):
    """InfiniBand or Ethernet tier, per GPU and per direction. ``domain_gpus`` is left out where unbounded."""

    bandwidth_gb_per_s: PositiveNumber
    latency_us: PositiveNumber
    achievable_fraction: Fraction
    domain_gpus: PositiveInt | None = None
    source: Text


class PriceSpec(StrictModel):
    usd_per_gpu_hour: PositiveNumber
    date: datetime.date  # day the quote was taken, as a YAML date or an ISO "YYYY-MM-DD" string
    source: Text

    @field_validator("date", mode="before")
    @classmethod
    def _parse_iso_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                raise PydanticCustomError("iso_date", "'{value}' is not an ISO date YYYY-MM-DD", {"value": value}) from None
        return value


class EfficiencySpec(StrictModel):
    """Achieved fractions of the device peaks for one kernel class, and where they come from."""

    compute_fraction: Fraction
    memory_fraction: Fraction | None = None  # left out: the profile's hbm_stream_fraction applies
    overhead_us: NonNegativeNumber = 0.0
    provenance: Literal["datasheet", "measured", "fitted", "assumed"]
    source: Text


class ProfileFile(StrictModel):
    """One hardware profile YAML file."""

    name: ProfileName
    description: Text
    device_kind: Literal["gpu", "cpu"]
    peak_tflops: PeakTflopsSpec
    peak_source: Text
    sm_count: PositiveInt | None = None
    hbm_bandwidth_tb_per_s: PositiveNumber  # device memory: HBM on GPUs, DRAM on CPUs
    hbm_capacity_gib: PositiveNumber
    hbm_stream_fraction: Fraction
    hbm_source: Text
    kernel_launch_us: PositiveNumber
    kernel_launch_source: Text
    roofline_blend_exponent: PositiveNumber | None = None  # left out: a pure roofline, max(compute, memory)
    roofline_blend_source: Text | None = None
    scale_up: ScaleUpSpec | None = None
    scale_out: ScaleOutSpec | None = None
    price: PriceSpec | None = None
    efficiencies: dict[str, EfficiencySpec]
    notes: list[Text] = Field(default_factory=list)

    @field_validator("efficiencies", mode="before")
    @classmethod
    def _check_kernel_classes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # the dict type check reports it

        unknown = [str(key) for key in value if key not in KERNEL_CLASSES]
        if unknown:
            raise PydanticCustomError(
                "unknown_kernel_class",
                "unknown kernel class {unknown} (known: {known})",
                {"unknown": ", ".join(unknown), "known": ", ".join(KERNEL_CLASSES)},
            )

        missing = [kernel_class for kernel_class in KERNEL_CLASSES if kernel_class not in value]
        if missing:
            raise PydanticCustomError(
                "missing_kernel_class",
                "missing kernel class {missing}, every class in ({known}) needs an entry",
                {"missing": ", ".join(missing), "known": ", ".join(KERNEL_CLASSES)},
            )
        return value

    @field_validator("sm_count")
    @classmethod
    def _check_sm_count_kind(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("device_kind") == "cpu":
            raise PydanticCustomError(
                "sm_count_on_cpu", "set on a cpu profile, but it counts GPU streaming multiprocessors"
            )
        return value
