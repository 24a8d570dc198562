"""The command line, through typer's CliRunner: outputs written, bad input rejected in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dsasim.cli import app

runner = CliRunner()


def test_curves_writes_csv_and_png(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--out", str(tmp_path / "new"), "--max-position", "8192", "--step", "512"])
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "new" / "cost_curves.csv")
    assert {"model", "hardware", "phase", "position", "usd_per_million_tokens"} <= set(curves.columns)
    assert (tmp_path / "new" / "cost_curves.png").stat().st_size > 10_000


def test_curves_default_positions(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "cost_curves.csv")
    for _, group in curves.groupby(["model", "hardware", "phase"]):
        positions = group["position"].to_numpy()
        assert positions[0] == 0
        assert positions[-1] == 131072
        assert positions.max() - positions.min() == 131072
        assert (pd.Series(positions).diff().dropna() <= 512).all()
    assert not curves.duplicated(["model", "hardware", "phase", "position"]).any()
    assert set(curves["model"]) == {"deepseek-v3.1-terminus", "deepseek-v3.2-exp"}


def test_curves_deployment_flags_change_cost(tmp_path: Path) -> None:
    base = runner.invoke(app, ["curves", "--out", str(tmp_path / "a"), "--max-position", "1024"])
    small = runner.invoke(app, ["curves", "--out", str(tmp_path / "b"), "--max-position", "1024", "--batch-per-gpu", "16"])
    assert base.exit_code == 0, base.output
    assert small.exit_code == 0, small.output
    a = pd.read_csv(tmp_path / "a" / "cost_curves.csv")
    b = pd.read_csv(tmp_path / "b" / "cost_curves.csv")
    decode_a = a[a["phase"] == "decode"]["usd_per_million_tokens"].to_numpy()
    decode_b = b[b["phase"] == "decode"]["usd_per_million_tokens"].to_numpy()
    assert (decode_b > decode_a).all()


def test_curves_unknown_hardware_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--hardware", "h2000", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown hardware 'h2000' (known: a100-sxm" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "cost_curves.csv").exists()


def test_curves_no_price_asks_for_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--hardware", "h20", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "pass --usd-per-gpu-hour" in result.output


def test_curves_bad_ep_names_the_limit(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--ep", "48", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "does not divide" in result.output


def test_breakdown_json_is_one_object() -> None:
    result = runner.invoke(app, ["breakdown", "--model", "deepseek-v3.2-exp", "--hardware", "h800", "--phase", "decode",
                                 "--position", "65536", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    ops = {row["op"]: row for row in payload["ops"]}
    assert ops["indexer_logits"]["bound"] == "memory"
    assert sum(row["share_fraction"] for row in payload["ops"]) == pytest.approx(1.0)


def test_breakdown_table_has_units() -> None:
    result = runner.invoke(app, ["breakdown", "--phase", "prefill", "--position", "1000"])
    assert result.exit_code == 0, result.output
    assert "time (us/token)" in result.output
    assert "core_attention_mha" in result.output


def test_breakdown_bad_phase() -> None:
    result = runner.invoke(app, ["breakdown", "--phase", "training"])
    assert result.exit_code == 1
    assert "--phase 'training' is invalid: expected one of prefill, decode" in result.output


def test_hardware_lists_profiles() -> None:
    result = runner.invoke(app, ["hardware"])
    assert result.exit_code == 0, result.output
    for name in ("a100-sxm", "b200", "h100-sxm", "h20", "h200", "h800"):
        assert name in result.output


def test_hardware_show_prints_yaml() -> None:
    result = runner.invoke(app, ["hardware", "show", "h800"])
    assert result.exit_code == 0, result.output
    assert "hbm_bandwidth_tb_per_s: 3.35" in result.output


def test_hardware_show_unknown() -> None:
    result = runner.invoke(app, ["hardware", "show", "tpu"])
    assert result.exit_code == 1
    assert "unknown hardware 'tpu'" in result.output


def test_throughput_json_is_one_object() -> None:
    result = runner.invoke(app, ["throughput", "--model", "deepseek-v3.1-terminus", "--hardware", "h800", "--phase", "decode",
                                 "--ep", "128", "--batch-per-gpu", "128", "--context", "4096", "--mtp-tokens", "0", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["tokens_per_s_per_gpu"] > 0
    assert payload["deployment"]["batch_per_gpu"] == 128


def test_throughput_prefill_profile_conditions() -> None:
    result = runner.invoke(app, ["throughput", "--model", "deepseek-v3.1-terminus", "--hardware", "h800", "--phase", "prefill",
                                 "--ep", "32", "--tokens-per-gpu", "16384", "--context", "4096", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tokens_per_s_per_gpu"] > 0


def test_throughput_batch_too_large_names_limit() -> None:
    result = runner.invoke(app, ["throughput", "--phase", "decode", "--batch-per-gpu", "4096", "--context", "131072"])
    assert result.exit_code == 1
    assert "over" in result.output
    assert "the largest batch that fits is" in result.output


def test_plan_writes_csv_and_png(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--model", "deepseek-v3.2-exp", "--hardware", "h800", "--phase", "decode",
                                 "--context", "131072", "--tpot-ms", "50", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "plan.csv")
    assert (table["memory_used_bytes"] <= table["memory_capacity_bytes"]).all()
    assert (tmp_path / "pareto.png").stat().st_size > 10_000


def test_validate_measurements_writes_report(tmp_path: Path) -> None:
    from dsasim.validate.published import SHIPPED_H800_DIR

    result = runner.invoke(app, ["validate", "--measurements", str(SHIPPED_H800_DIR), "--hardware", "h800",
                                 "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "report" / "validation.csv")
    assert {"kernel", "phase", "split", "predicted_s", "measured_s"} <= set(rows.columns)
    assert len(rows) == 89
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert set(summary["split"]) == {"fit", "test"}
    assert (tmp_path / "report" / "validation.png").exists()


def test_validate_unknown_measurement_format(tmp_path: Path) -> None:
    (tmp_path / "flash_decoding.csv").write_text("a,latency_us\n1,2\n")
    result = runner.invoke(app, ["validate", "--measurements", str(tmp_path), "--out", str(tmp_path / "report")])
    assert result.exit_code == 1
    assert "unknown format" in result.output
    assert not (tmp_path / "report" / "validation.csv").exists()


def test_curves_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = runner.invoke(app, ["curves", "--out", str(target), "--max-position", "1024"])
    assert result.exit_code == 1
    assert "is an existing file: pass a folder path to --out" in result.output
    assert "Traceback" not in result.output


def test_curves_png_path_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "cost_curves.png").mkdir()
    result = runner.invoke(app, ["curves", "--out", str(tmp_path), "--max-position", "1024"])
    assert result.exit_code == 1
    assert "is an existing folder" in result.output
    assert not (tmp_path / "cost_curves.csv").exists()


def test_curves_duplicate_models_once(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--models", "deepseek-v3.2-exp,deepseek-v3.2-exp", "--out", str(tmp_path),
                                 "--max-position", "1024"])
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "cost_curves.csv")
    assert not curves.duplicated(["model", "hardware", "phase", "position"]).any()


def test_curves_output_mode_follows_umask(tmp_path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    result = runner.invoke(app, ["curves", "--out", str(tmp_path), "--max-position", "1024"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cost_curves.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_breakdown_warns_past_trained_context() -> None:
    result = runner.invoke(app, ["breakdown", "--position", "200000"])
    assert result.exit_code == 0, result.output
    assert "exceeds deepseek-v3.2-exp's max_position_embeddings" in result.output


def test_throughput_default_batch_shrinks_to_fit() -> None:
    result = runner.invoke(app, ["throughput", "--phase", "decode", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "the largest that fits" in result.stderr
    assert payload["memory"]["total_bytes"] <= payload["memory"]["capacity_bytes"]
    assert any("the largest that fits" in warning for warning in payload["warnings"])


def test_throughput_warns_ignored_size_flag() -> None:
    result = runner.invoke(app, ["throughput", "--phase", "prefill", "--batch-per-gpu", "64", "--json"])
    assert result.exit_code == 0, result.output
    assert "--batch-per-gpu sets decode requests and is ignored in prefill" in result.stderr
    assert json.loads(result.stdout)["warnings"]


def test_throughput_warns_mtp_beyond_layers() -> None:
    result = runner.invoke(app, ["throughput", "--mtp-tokens", "3", "--batch-per-gpu", "8", "--json"])
    assert result.exit_code == 0, result.output
    assert "exceeds the 1 multi-token-prediction layer" in result.stderr


def test_throughput_text_shows_kernel_overheads() -> None:
    result = runner.invoke(app, ["throughput", "--batch-per-gpu", "8"])
    assert result.exit_code == 0, result.output
    assert "fixed kernel overheads" in result.stdout


def test_config_json_error_names_line(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"hidden_size": 7168,\n "name": "unterminated')
    result = runner.invoke(app, ["breakdown", "--model", str(config)])
    assert result.exit_code == 1
    assert "is not valid JSON: Unterminated string starting at (line 2, column 10)" in result.stderr


def test_plan_rejects_nonpositive_target(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--tpot-ms", "0", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "--tpot-ms 0.0 is invalid: expected a positive, finite time" in result.output


def test_plan_unreachable_target(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--context", "131072", "--tpot-ms", "0.001", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "none of the" in result.output
    # The feasible rows are still written, so the user can see how far the target is.
    assert (tmp_path / "plan.csv").exists()
    assert "relax --tpot-ms" in result.output


def test_out_empty_rejected(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--out", ""])
    assert result.exit_code == 2
    assert "is empty" in result.output


def test_out_name_too_long_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--out", str(tmp_path / ("a" * 300)), "--max-position", "1024"])
    assert result.exit_code == 1
    assert "cannot be used" in result.stderr
    assert "Traceback" not in result.output


def test_curves_position_count_limit(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curves", "--out", str(tmp_path), "--max-position", "99999999999"])
    assert result.exit_code == 1
    assert "positions per curve" in result.stderr
    assert not (tmp_path / "cost_curves.csv").exists()


def test_model_folder_asks_for_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["breakdown", "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert "is a folder" in result.stderr


def test_plan_rejects_infinite_target(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--tpot-ms", "inf", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "positive, finite time" in result.stderr


def test_version_option() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dsasim ")


def test_plan_takes_largest_batch_meeting_target(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--model", "deepseek-v3.1-terminus", "--hardware", "h200", "--context", "32768",
                                 "--tpot-ms", "50", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "plan.csv")
    best = table.iloc[0]
    assert best["tpot_s"] <= 0.050
    same = table[(table["ep_gpus"] == best["ep_gpus"]) & (table["micro_batches"] == best["micro_batches"])
                 & (table["mtp_tokens"] == best["mtp_tokens"]) & (table["latent_cache_format"] == best["latent_cache_format"])
                 & (table["redundant_experts"] == best["redundant_experts"])]
    # the next larger batch of the same configuration misses the target or does not fit
    larger = same[same["batch_per_gpu"] == best["batch_per_gpu"] + 1]
    assert larger.empty or not bool(larger.iloc[0]["meets_latency"])


def test_validate_rejects_device_with_measurements(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--measurements", str(tmp_path), "--device", "cuda", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not with --measurements" in result.output
    assert not (tmp_path / "o").exists()


def test_plan_failure_leaves_no_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--phase", "prefill", "--tpot-ms", "50", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert not (tmp_path / "o").exists()
