from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsasim.errors import ProfileError
from dsasim.hardware_profiles import (
    KERNEL_CLASSES,
    list_profiles,
    load_profile,
    loader,
    profile_to_yaml_text,
    write_profile_yaml,
)

SHIPPED = ["a100-sxm", "b200", "h100-sxm", "h20", "h200", "h800", "mi300x"]
H800_PATH = loader.PROFILE_DIR / "h800.yaml"


def h800_data() -> dict[str, Any]:
    """Return the shipped H800 file as plain data, a fresh copy on each call."""
    return copy.deepcopy(yaml.safe_load(H800_PATH.read_text(encoding="utf-8")))


def cpu_data() -> dict[str, Any]:
    """Return a minimal CPU profile: fp32 peak only, no sm_count, links or price."""
    return {
        "name": "test-cpu",
        "description": "two-thread test VM",
        "device_kind": "cpu",
        "peak_tflops": {"fp32": 0.2},
        "peak_source": "measured GEMM",
        "hbm_bandwidth_tb_per_s": 0.03,
        "hbm_capacity_gib": 8.0,
        "hbm_stream_fraction": 0.8,
        "hbm_source": "measured copy",
        "kernel_launch_us": 5.0,
        "kernel_launch_source": "measured empty call",
        "efficiencies": h800_data()["efficiencies"],
    }


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_raising(path: Path) -> str:
    """Load ``path``, expect ProfileError, and return its message after checking it names the file."""
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(path))
    message = str(excinfo.value)
    assert str(path.resolve()) in message
    assert "\n" not in message
    return message


def load_mutated(tmp_path: Path, data: dict[str, Any]) -> str:
    return load_raising(write_yaml(tmp_path / "profile.yaml", data))


# Shipped profiles


def test_list_profiles_shipped_names() -> None:
    assert list_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_load_profile_every_shipped(name: str) -> None:
    profile = load_profile(name)

    assert profile.name == name
    assert profile.device_kind == "gpu"
    assert list(profile.efficiencies) == list(KERNEL_CLASSES)
    assert profile.scale_up is not None
    assert profile.scale_out is not None


def test_h800_si_units() -> None:
    profile = load_profile("h800")

    assert profile.hbm_bandwidth_bytes_per_s == 3.35e12
    assert profile.hbm_capacity_bytes == 79.6 * 2**30
    assert profile.kernel_launch_s == pytest.approx(2.6e-6)
    assert profile.peak_flops_per_s == {"fp8": 1979e12, "bf16": 989e12}
    assert profile.sm_count == 132
    assert profile.hbm_stream_fraction == 0.9
    assert profile.source_path == str(H800_PATH)


def test_h800_links_si_units() -> None:
    profile = load_profile("h800")
    assert profile.scale_up is not None
    assert profile.scale_out is not None

    assert profile.scale_up.bandwidth_bytes_per_s == 200e9
    assert profile.scale_up.latency_s == pytest.approx(3.3e-6)
    assert profile.scale_up.achievable_fraction == 0.77
    assert profile.scale_up.domain_gpus == 8
    assert profile.scale_out.bandwidth_bytes_per_s == 50e9
    assert profile.scale_out.latency_s == pytest.approx(3.7e-6)
    assert profile.scale_out.domain_gpus is None


def test_h800_price_and_efficiencies() -> None:
    profile = load_profile("h800")
    assert profile.price is not None
    gemm_fp8 = profile.efficiencies["gemm_fp8"]
    gemm_bf16 = profile.efficiencies["gemm_bf16"]

    assert profile.price.usd_per_gpu_hour == 2.0
    assert profile.price.date == "2025-09-29"
    assert gemm_fp8.compute_fraction == 0.74
    assert gemm_fp8.memory_fraction == 0.8
    assert gemm_fp8.overhead_s == pytest.approx(7e-6)
    assert gemm_fp8.provenance == "fitted"
    assert gemm_bf16.memory_fraction is None
    assert gemm_bf16.overhead_s == pytest.approx(7e-6)


def test_a100_fp8_falls_back_to_bf16() -> None:
    profile = load_profile("a100-sxm")

    assert "fp8" not in profile.peak_flops_per_s
    assert profile.peak_for("fp8") == (312e12, "bf16")


def test_h20_has_no_price() -> None:
    assert load_profile("h20").price is None


def test_load_profile_path_equals_name() -> None:
    assert load_profile(str(H800_PATH)) == load_profile("h800")


def test_load_profile_returns_fresh_dicts() -> None:
    first = load_profile("h800")
    first.peak_flops_per_s["fp8"] = 1.0

    assert load_profile("h800").peak_flops_per_s["fp8"] == 1979e12


def test_load_profile_cpu_optional_blocks_absent(tmp_path: Path) -> None:
    profile = load_profile(str(write_yaml(tmp_path / "cpu.yaml", cpu_data())))

    assert profile.device_kind == "cpu"
    assert profile.sm_count is None
    assert profile.scale_up is None
    assert profile.scale_out is None
    assert profile.price is None
    assert profile.notes == ()
    assert profile.peak_for("fp8") == (0.2e12, "fp32")


def test_load_profile_path_allows_other_name(tmp_path: Path) -> None:
    data = h800_data()
    data["name"] = "my-h800"

    profile = load_profile(str(write_yaml(tmp_path / "measured.yaml", data)))

    assert profile.name == "my-h800"


# Errors in finding and parsing the file


def test_load_profile_unknown_name() -> None:
    known = re.escape(", ".join(SHIPPED))
    with pytest.raises(ProfileError, match=rf"unknown hardware 'h2000' \(known: {known}\)"):
        load_profile("h2000")


def test_load_profile_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ProfileError, match=rf"file not found: {re.escape(str(path))}"):
        load_profile(str(path))


def test_load_profile_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: h800\npeak_tflops: [1,\n", encoding="utf-8")

    message = load_raising(path)

    assert "invalid YAML at line 3" in message


def test_load_profile_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\nname: b\n", encoding="utf-8")

    message = load_raising(path)

    assert "line 2" in message
    assert "duplicate key 'name'" in message


def test_load_profile_non_mapping(tmp_path: Path) -> None:
    message = load_raising(write_yaml(tmp_path / "list.yaml", ["h800"]))

    assert "top level must be a mapping" in message
    assert "got a list" in message


def test_load_profile_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")

    assert "got an empty file" in load_raising(path)


# Errors in the profile's content


def test_load_profile_unknown_top_key(tmp_path: Path) -> None:
    data = h800_data()
    data["hbm_bandwith_tb_per_s"] = 3.35

    message = load_mutated(tmp_path, data)

    assert "unknown key 'hbm_bandwith_tb_per_s' at the top level" in message
    assert "hbm_bandwidth_tb_per_s" in message


def test_load_profile_unknown_nested_key(tmp_path: Path) -> None:
    data = h800_data()
    data["scale_up"]["bandwidth_gbps"] = 200

    message = load_mutated(tmp_path, data)

    assert "unknown key 'bandwidth_gbps' in scale_up" in message
    assert "known: bandwidth_gb_per_s, latency_us" in message


def test_load_profile_unknown_efficiency_key(tmp_path: Path) -> None:
    data = h800_data()
    data["efficiencies"]["topk_decode"]["launch_us"] = 1.0

    message = load_mutated(tmp_path, data)

    assert "unknown key 'launch_us' in efficiencies.topk_decode" in message


def test_load_profile_missing_key(tmp_path: Path) -> None:
    data = h800_data()
    del data["hbm_capacity_gib"]

    assert "missing required key 'hbm_capacity_gib' at the top level" in load_mutated(tmp_path, data)


def test_load_profile_missing_nested_key(tmp_path: Path) -> None:
    data = h800_data()
    del data["efficiencies"]["gemm_fp8"]["source"]

    assert "missing required key 'source' in efficiencies.gemm_fp8" in load_mutated(tmp_path, data)


def test_load_profile_missing_efficiency_class(tmp_path: Path) -> None:
    data = h800_data()
    del data["efficiencies"]["topk_decode"]
    del data["efficiencies"]["elementwise"]

    message = load_mutated(tmp_path, data)

    assert "efficiencies: missing kernel class topk_decode, elementwise" in message


def test_load_profile_unknown_efficiency_class(tmp_path: Path) -> None:
    data = h800_data()
    data["efficiencies"]["gemm_fp4"] = data["efficiencies"]["gemm_fp8"]

    message = load_mutated(tmp_path, data)

    assert "unknown kernel class gemm_fp4" in message
    assert f"known: {', '.join(KERNEL_CLASSES)}" in message


def test_load_profile_negative(tmp_path: Path) -> None:
    data = h800_data()
    data["hbm_bandwidth_tb_per_s"] = -3.35

    assert "hbm_bandwidth_tb_per_s = -3.35 must be greater than 0" in load_mutated(tmp_path, data)


def test_load_profile_zero(tmp_path: Path) -> None:
    data = h800_data()
    data["scale_up"]["latency_us"] = 0

    assert "scale_up.latency_us = 0 must be greater than 0" in load_mutated(tmp_path, data)


def test_load_profile_negative_overhead(tmp_path: Path) -> None:
    data = h800_data()
    data["efficiencies"]["gemm_fp8"]["overhead_us"] = -1.0

    assert "efficiencies.gemm_fp8.overhead_us = -1.0 must be at least 0" in load_mutated(tmp_path, data)


def test_load_profile_nan(tmp_path: Path) -> None:
    path = tmp_path / "nan.yaml"
    text = H800_PATH.read_text(encoding="utf-8").replace("hbm_capacity_gib: 79.6", "hbm_capacity_gib: .nan")
    path.write_text(text, encoding="utf-8")

    assert "hbm_capacity_gib = nan is not a finite number" in load_raising(path)


def test_load_profile_inf(tmp_path: Path) -> None:
    data = h800_data()
    data["peak_tflops"]["fp8"] = float("inf")

    assert "peak_tflops.fp8 = inf is not a finite number" in load_mutated(tmp_path, data)


def test_load_profile_fraction_above_one(tmp_path: Path) -> None:
    data = h800_data()
    data["efficiencies"]["gemm_fp8"]["compute_fraction"] = 1.5

    message = load_mutated(tmp_path, data)

    assert "efficiencies.gemm_fp8.compute_fraction = 1.5 is above 1" in message
    assert "expected a fraction in (0, 1]" in message


def test_load_profile_string_for_number(tmp_path: Path) -> None:
    data = h800_data()
    data["hbm_bandwidth_tb_per_s"] = "fast"

    assert "hbm_bandwidth_tb_per_s = 'fast' is not a number" in load_mutated(tmp_path, data)


def test_load_profile_exponent_without_dot(tmp_path: Path) -> None:
    path = tmp_path / "exponent.yaml"
    text = re.sub(r"  bf16: 989(\.0)?\n", "  bf16: 9.89e+2\n", H800_PATH.read_text(encoding="utf-8"))
    text = re.sub(r"  fp8: 1979(\.0)?\n", "  fp8: 2e3\n", text)
    path.write_text(text, encoding="utf-8")

    message = load_raising(path)

    assert "peak_tflops.fp8 = '2e3' is not a number" in message
    assert "write 1.0e+12" in message


def test_load_profile_null_value(tmp_path: Path) -> None:
    data = h800_data()
    data["price"] = None

    assert "price is null" in load_mutated(tmp_path, data)


def test_load_profile_unknown_device_kind(tmp_path: Path) -> None:
    data = h800_data()
    data["device_kind"] = "tpu"

    assert "device_kind = 'tpu' is invalid, expected 'gpu' or 'cpu'" in load_mutated(tmp_path, data)


def test_load_profile_unknown_provenance(tmp_path: Path) -> None:
    data = h800_data()
    data["efficiencies"]["topk_decode"]["provenance"] = "guessed"

    assert "efficiencies.topk_decode.provenance = 'guessed' is invalid" in load_mutated(tmp_path, data)


def test_load_profile_no_peak(tmp_path: Path) -> None:
    data = h800_data()
    data["peak_tflops"] = {}

    assert "peak_tflops: at least one of fp8, bf16, fp32" in load_mutated(tmp_path, data)


def test_load_profile_cpu_with_sm_count(tmp_path: Path) -> None:
    data = cpu_data()
    data["sm_count"] = 4

    assert "sm_count: set on a cpu profile" in load_mutated(tmp_path, data)


def test_load_profile_bad_date(tmp_path: Path) -> None:
    data = h800_data()
    data["price"]["date"] = "2025-13-01"

    assert "price.date: '2025-13-01' is not an ISO date YYYY-MM-DD" in load_mutated(tmp_path, data)


def test_load_profile_empty_source(tmp_path: Path) -> None:
    data = h800_data()
    data["efficiencies"]["topk_decode"]["source"] = ""

    assert "efficiencies.topk_decode.source is empty" in load_mutated(tmp_path, data)


def test_load_profile_counts_other_errors(tmp_path: Path) -> None:
    data = h800_data()
    data["hbm_bandwidth_tb_per_s"] = 0
    data["hbm_capacity_gib"] = 0

    assert "(and 1 more error)" in load_mutated(tmp_path, data)


def test_load_profile_shipped_name_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "PROFILE_DIR", tmp_path)
    path = write_yaml(tmp_path / "h999.yaml", h800_data())

    with pytest.raises(ProfileError) as excinfo:
        load_profile("h999")
    message = str(excinfo.value)

    assert str(path) in message
    assert "name = 'h800' does not match the file name 'h999'" in message


# Writing profiles


def test_write_profile_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h800-copy.yaml"

    written = write_profile_yaml(h800_data(), path)
    reloaded = dataclasses.replace(load_profile(str(path)), source_path="")
    shipped = dataclasses.replace(load_profile("h800"), source_path="")

    assert written == path
    assert reloaded == shipped


def test_write_profile_yaml_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "cpu.yaml"
    path.write_text("old contents", encoding="utf-8")

    write_profile_yaml(cpu_data(), path)

    assert [entry.name for entry in tmp_path.iterdir()] == ["cpu.yaml"]
    assert load_profile(str(path)).name == "test-cpu"


def test_write_profile_yaml_accepts_iso_date_string(tmp_path: Path) -> None:
    data = cpu_data()
    data["price"] = {"usd_per_gpu_hour": 0.1, "date": "2026-05-01", "source": "test quote"}

    profile = load_profile(str(write_profile_yaml(data, tmp_path / "priced.yaml")))

    assert profile.price is not None
    assert profile.price.date == "2026-05-01"


def test_write_profile_yaml_rejects_invalid(tmp_path: Path) -> None:
    data = h800_data()
    data["hbm_stream_fraction"] = 1.2
    path = tmp_path / "invalid.yaml"

    with pytest.raises(ProfileError, match=r"hbm_stream_fraction = 1\.2 is above 1"):
        write_profile_yaml(data, path)

    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_profile_yaml_rejects_suffix(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"expected a file name ending in \.yaml or \.yml"):
        write_profile_yaml(h800_data(), tmp_path / "h800.json")


def test_write_profile_yaml_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "h800.yaml"
    with pytest.raises(ProfileError, match=r"failed to write .*: folder .*absent not found"):
        write_profile_yaml(h800_data(), path)


def test_profile_to_yaml_text_omits_unset_keys() -> None:
    text = profile_to_yaml_text(cpu_data())

    assert "scale_up" not in text
    assert "sm_count" not in text
    assert "overhead_us: 0" not in text
    assert yaml.safe_load(text)["name"] == "test-cpu"


def test_profile_to_yaml_text_rejects_non_mapping() -> None:
    with pytest.raises(ProfileError, match="top level must be a mapping"):
        profile_to_yaml_text(["h800"])  # type: ignore[arg-type]
