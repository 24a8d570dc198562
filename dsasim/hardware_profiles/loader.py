"""Load hardware profiles from YAML into SI units, and write validated profiles back to YAML.

This module is the one place where profile units are converted: TB/s, GB/s and TFLOP/s are decimal
(1e12, 1e9, 1e12), capacity is in GiB (2**30 bytes) as the device reports it, and times are in
microseconds. Loading only reads files. Every failure raises ``ProfileError`` with a one-line message
that names the file, the field, the bad value, what was expected and what to do.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dsasim.errors import ProfileError
from dsasim.hardware_profiles.profile import HardwareProfile, KernelEfficiency, Link, Price
from dsasim.hardware_profiles.schema import ProfileFile, ScaleOutSpec, ScaleUpSpec

logger = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).resolve().parent  # folder of the shipped <name>.yaml profiles
PROFILE_SUFFIXES = (".yaml", ".yml")

BYTES_PER_TB = 1e12
BYTES_PER_GB = 1e9
FLOP_PER_TFLOP = 1e12
BYTES_PER_GIB = 2**30
MICROSECONDS_PER_SECOND = 1e6

MAX_VALUE_CHARS = 60  # error messages shorten the repr of a longer value


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping instead of keeping the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def list_profiles() -> list[str]:
    """Return the sorted names of the shipped profiles."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> HardwareProfile:
    """Load a hardware profile in SI units, by shipped name (``h800``) or by file path.

    A value that ends in .yaml or .yml, or contains a path separator, is a path. Anything else names a
    shipped profile, whose ``name`` field must equal its file stem, while a profile loaded by path may
    carry any name. Shipped profiles are parsed once and cached. Files loaded by path are read on every
    call, so a profile just rewritten by ``write_profile_yaml`` is seen at once.
    """
    if _is_path(name_or_path):
        path = Path(name_or_path).expanduser().resolve()
        return _to_profile(_read_profile_file(path), path)

    path = (PROFILE_DIR / f"{name_or_path}.yaml").resolve()
    if not name_or_path or not path.is_file():
        known = ", ".join(list_profiles())
        raise ProfileError(
            f"unknown hardware {name_or_path!r} (known: {known}); "
            "pass one of these names or the path of a .yaml profile"
        )
    return _to_profile(_read_shipped_profile(path), path)


def profile_to_yaml_text(data: Mapping[str, Any]) -> str:
    """Validate profile data laid out as in the YAML files and return it as YAML text.

    Keys come out in the schema's order, and optional keys left out of ``data`` stay out.
    """
    return _render_yaml(data, "profile data")


def write_profile_yaml(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Validate profile data and write it to ``path`` atomically, returning the path written.

    Nothing is created when validation fails. The text goes to a temporary file in the target folder,
    which then replaces ``path`` in one step, so a reader never sees a half-written profile.
    """
    target = Path(path).expanduser()
    if target.suffix not in PROFILE_SUFFIXES:
        raise ProfileError(
            f"invalid hardware profile path {target}: expected a file name ending in .yaml or .yml, "
            "because load_profile reads only those as paths; rename the target"
        )
    text = _render_yaml(data, f"profile data for {target}")

    folder = target.parent
    if not folder.is_dir():
        raise ProfileError(
            f"failed to write hardware profile {target}: folder {folder} not found; create it first"
        )

    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise ProfileError(f"failed to write hardware profile {target}: {error.strerror or error}") from error

    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp_file:
            temp_file.write(text)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp creates the file readable by its owner only
        os.replace(temp_name, target)
    except OSError as error:
        Path(temp_name).unlink(missing_ok=True)
        raise ProfileError(f"failed to write hardware profile {target}: {error.strerror or error}") from error

    logger.info("wrote hardware profile %s to %s", data.get("name"), target)
    return target


def _is_path(name_or_path: str) -> bool:
    separators = [separator for separator in ("/", os.sep, os.altsep) if separator]
    has_separator = any(separator in name_or_path for separator in separators)
    return has_separator or name_or_path.lower().endswith(PROFILE_SUFFIXES)


@functools.cache
def _read_shipped_profile(path: Path) -> ProfileFile:
    """Read a shipped profile once. The cached model is frozen, and callers get SI copies of it."""
    spec = _read_profile_file(path)
    if spec.name != path.stem:
        raise ProfileError(
            f"invalid hardware profile {path}: name = {spec.name!r} does not match the file name "
            f"{path.stem!r}; a shipped profile's name must equal its file stem, "
            "so rename the file or fix the name"
        )
    return spec


def _read_profile_file(path: Path) -> ProfileFile:
    """Read, parse and validate one profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(list_profiles())
        raise ProfileError(
            f"hardware profile file not found: {path}; check the path, or pass a shipped name ({known})"
        ) from None
    except UnicodeDecodeError as error:
        raise ProfileError(
            f"failed to read hardware profile {path}: not UTF-8 text ({error.reason}); save it as UTF-8"
        ) from None
    except OSError as error:
        raise ProfileError(f"failed to read hardware profile {path}: {error.strerror or error}") from None

    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: builds no Python objects
    except yaml.YAMLError as error:
        raise ProfileError(f"invalid hardware profile {path}: {_describe_yaml_error(error)}") from None

    return _validate(raw, str(path))


def _validate(raw: Any, label: str) -> ProfileFile:
    if not isinstance(raw, Mapping):
        found = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise ProfileError(
            f"invalid hardware profile {label}: the top level must be a mapping of profile keys "
            f"(name, description, ...), got {found}; write the profile as 'key: value' lines"
        )
    try:
        return ProfileFile.model_validate(dict(raw))
    except ValidationError as error:
        raise ProfileError(_describe_validation_error(error, label)) from None


def _render_yaml(data: Mapping[str, Any], label: str) -> str:
    spec = _validate(data, label)
    plain = spec.model_dump(mode="python", exclude_unset=True)
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False, width=110)


def _to_profile(spec: ProfileFile, path: Path) -> HardwareProfile:
    """Convert a validated file into SI units. Each call builds new objects, so callers share no dicts."""
    peaks = spec.peak_tflops.model_dump(exclude_none=True)
    peak_flops_per_s = {dtype: tflops * FLOP_PER_TFLOP for dtype, tflops in peaks.items()}

    efficiencies = {
        kernel_class: KernelEfficiency(
            compute_fraction=entry.compute_fraction,
            memory_fraction=entry.memory_fraction,
            overhead_s=entry.overhead_us / MICROSECONDS_PER_SECOND,
            provenance=entry.provenance,
            source=entry.source,
        )
        for kernel_class, entry in spec.efficiencies.items()
    }

    price = None
    if spec.price is not None:
        price = Price(
            usd_per_gpu_hour=spec.price.usd_per_gpu_hour,
            date=spec.price.date.isoformat(),
            source=spec.price.source,
        )

    return HardwareProfile(
        name=spec.name,
        description=spec.description,
        device_kind=spec.device_kind,
        peak_flops_per_s=peak_flops_per_s,
        hbm_bandwidth_bytes_per_s=spec.hbm_bandwidth_tb_per_s * BYTES_PER_TB,
        hbm_capacity_bytes=spec.hbm_capacity_gib * BYTES_PER_GIB,
        hbm_stream_fraction=spec.hbm_stream_fraction,
        kernel_launch_s=spec.kernel_launch_us / MICROSECONDS_PER_SECOND,
        efficiencies=efficiencies,
        roofline_blend_exponent=spec.roofline_blend_exponent,
        sm_count=spec.sm_count,
        scale_up=_to_link(spec.scale_up),
        scale_out=_to_link(spec.scale_out),
        price=price,
        source_path=str(path),
        notes=tuple(spec.notes),
    )


def _to_link(spec: ScaleUpSpec | ScaleOutSpec | None) -> Link | None:
    if spec is None:
        return None
    return Link(
        bandwidth_bytes_per_s=spec.bandwidth_gb_per_s * BYTES_PER_GB,
        latency_s=spec.latency_us / MICROSECONDS_PER_SECOND,
        achievable_fraction=spec.achievable_fraction,
        domain_gpus=spec.domain_gpus,
        provenance=spec.source,
    )


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    problem = " ".join(str(problem).split())
    if mark is None:
        return f"invalid YAML: {problem}; fix the syntax"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}; fix the syntax"


def _describe_validation_error(error: ValidationError, label: str) -> str:
    """Build one line from the first pydantic error, with a count of the others."""
    details = error.errors(include_url=False)
    first = details[0]
    loc = tuple(first["loc"])
    problem, action = _describe_problem(first, loc)

    others = len(details) - 1
    more = f" (and {others} more error{'s' if others > 1 else ''})" if others else ""
    return f"invalid hardware profile {label}: {problem}; {action}{more}"


def _describe_problem(detail: ErrorDetails, loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Return what is wrong, naming the field and value, and what to do about it."""
    kind = detail["type"]
    context = detail.get("ctx", {})
    field = _field_path(loc) or "top level"
    value = _show_value(detail["input"])

    if kind == "extra_forbidden":
        known = ", ".join(_known_keys(loc[:-1]))
        return (
            f"unknown key {loc[-1]!r} {_where(loc[:-1])} (known: {known})",
            "remove it or correct its spelling",
        )
    if kind == "missing":
        return f"missing required key {loc[-1]!r} {_where(loc[:-1])}", "add it"
    if kind == "null_value":
        return f"{field} is null", "give it a value, or leave the key out if it is optional"
    if kind == "finite_number":
        return f"{field} = {value} is not a finite number", "replace it with a finite number"
    if kind == "greater_than":
        return f"{field} = {value} must be greater than {context['gt']}", "set a positive value"
    if kind == "greater_than_equal":
        return f"{field} = {value} must be at least {context['ge']}", "set a value of 0 or more"
    if kind == "less_than_equal":
        return (
            f"{field} = {value} is above {context['le']}, expected a fraction in (0, 1]",
            "write the fraction, e.g. 0.9 for 90 %",
        )
    if kind in _EXPECTED_TYPES:
        expected = _EXPECTED_TYPES[kind]
        return f"{field} = {value} is not {expected}", _type_action(expected, detail["input"])
    if kind == "string_too_short":
        return f"{field} is empty", "write the text"
    if kind == "string_pattern_mismatch":
        return (
            f"{field} = {value} is not a valid profile name, expected letters, digits, '.', '_' or '-'",
            "rename it",
        )
    if kind == "literal_error":
        expected = context.get("expected", "one of the listed values")
        return f"{field} = {value} is invalid, expected {expected}", "use one of those values"
    if kind in _CUSTOM_ACTIONS:
        return f"{field}: {detail['msg']}", _CUSTOM_ACTIONS[kind]
    return f"{field} = {value} is invalid: {detail['msg']}", "fix the value"


_EXPECTED_TYPES = {
    "float_type": "a number",
    "int_type": "an integer",
    "string_type": "text",
    "bool_type": "true or false",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "list_type": "a list",
    "date_type": "a date (YYYY-MM-DD)",
}

_CUSTOM_ACTIONS = {
    "unknown_kernel_class": "remove it or correct its spelling",
    "missing_kernel_class": "add an entry for each",
    "no_peak": "add the peak of at least one dtype",
    "sm_count_on_cpu": "remove sm_count",
    "iso_date": "write the date as YYYY-MM-DD",
}


def _type_action(expected: str, value: Any) -> str:
    if isinstance(value, str) and _parses_as_float(value):
        if "e" in value.lower():
            return f"write {expected}; YAML 1.1 reads an exponent without a dot and sign as text, so write 1.0e+12"
        return f"write {expected} without quotes"
    return f"write {expected}"


def _parses_as_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _where(parent_loc: tuple[int | str, ...]) -> str:
    parent = _field_path(parent_loc)
    return f"in {parent}" if parent else "at the top level"


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = part
    return path


def _show_value(value: Any) -> str:
    text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Return the keys allowed in the mapping at ``loc``, by walking the schema's field types."""
    current: Any = ProfileFile
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = _strip_optional(field.annotation)
        elif typing.get_origin(current) in (dict, list):
            current = _strip_optional(typing.get_args(current)[-1])
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation
