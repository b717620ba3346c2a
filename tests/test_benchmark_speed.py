"""benchmarks/speed.py: a --quick smoke run of ours vs stock TFP (no torch needed) writes a
Markdown table and a JSON whose every measured cell and ratio is a finite positive number."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from scripts import load_script


@pytest.fixture(scope="module")
def speed() -> Any:
    return load_script("benchmarks/speed.py", "benchmark_speed")


def _number(cell: str) -> float:
    """``"12,345*"``, ``"0.91x"``, ``"3.12"`` -> float (markers stripped)."""
    return float(cell.rstrip("*†x%").replace(",", ""))


def _table(text: str, first: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the Markdown table whose header starts with ``| first |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [c.strip() for c in lines[start].strip("|").split("|")], rows


QUICK = ["--quick", "--features", "3", "--layers", "1", "--hidden", "8", "8", "--samples", "64",
         "--min-time", "0.005"]


def _check_cells(payload: dict[str, Any], expected: set[tuple[str, str, str]]) -> None:
    cells = {(r["flow"], r["metric"], r["column"]): r for r in payload["results"]}
    assert set(cells) == expected
    for key, rec in cells.items():
        assert rec["rate"] is not None and math.isfinite(rec["rate"]) and rec["rate"] > 0, \
            (key, rec)
        assert not rec["note"].startswith(("error", "skipped")), (key, rec)
    for roof in payload["roofline"]:
        assert roof["samples_per_s"] > 0 and math.isfinite(roof["gflops"]), roof
        assert roof["matmuls"] == 3 * 3 - 1  # one layer of 3 dense matmuls, no first dX


def test_quick_run_nf_vs_tfp(speed: Any, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    payload = speed.main([*QUICK, "--systems", "nf", "tfp", "--flows", "maf", "--out", str(out)])
    assert payload["columns"] == ["nf", "tfp", "tfp_xla"]
    expected = {("maf", m, c) for m in ("train", "log_prob", "sample")
                for c in ("nf", "tfp", "tfp_xla")}
    _check_cells(payload, expected)

    # The JSON next to --out holds the same numbers; the Markdown table has every cell.
    assert json.loads(out.with_suffix(".json").read_text())["results"] == payload["results"]
    text = out.read_text()
    assert "cores:" in text and "tensorflow 2." in text
    head, rows = _table(text, "flow | metric")
    assert head[2:] == ["nf (ours, XLA)", "TFP tf.function", "TFP XLA", "nf/TFP fn",
                        "nf/TFP XLA"]
    assert len(rows) == 3
    for row in rows:
        values = [_number(c) for c in row[2:]]
        assert all(math.isfinite(v) and v > 0 for v in values), row
        assert row[5].endswith("x") and row[6].endswith("x")
        # The ratios are printed with two decimals: 0.11x may stand for 0.1077.
        assert values[3] == pytest.approx(values[0] / values[1], rel=0.02, abs=0.006)
        assert values[4] == pytest.approx(values[0] / values[2], rel=0.02, abs=0.006)
    head, rows = _table(text, "flow | matmuls")
    assert [r[0] for r in rows] == ["maf"]
    assert all(_number(c) > 0 for c in rows[0][1:]), rows
    _, rows = _table(text, "target | measured")
    assert any(r[0].startswith("MAF train: nf / TFP tf.function") for r in rows)


def test_quick_run_iaf_density_on_many_points(speed: Any) -> None:
    payload = speed.main([*QUICK, "--systems", "nf", "--flows", "iaf"])
    assert payload["columns"] == ["nf"]
    _check_cells(payload, {("iaf", m, "nf")
                           for m in ("train", "log_prob", "sample", "log_prob_big")})


def test_missing_torch_skips_peers(speed: Any, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(speed, "_torch_missing", lambda: "torch not importable (test)")
    payload = speed.main([*QUICK, "--systems", "zuko", "nflows", "--flows", "maf"])
    assert set(payload["skipped_systems"]) == {"zuko", "nflows"}
    assert payload["results"] == [] and payload["columns"] == []
    assert "zuko: not run (torch not importable (test))" in capsys.readouterr().out


def test_mixed_precision_quick_run(tmp_path: Path) -> None:
    mixed = load_script("benchmarks/mixed_precision.py", "benchmark_mixed_precision")
    out = tmp_path / "MIXED.md"
    payload = mixed.main(["--quick", "--flows", "maf", "--out", str(out)])
    columns = [m[0] for m in mixed.MODES]
    cells = {(r["metric"], r["column"]): r["rate"] for r in payload["results"]}
    assert set(cells) == {(m, c) for m in ("train", "log_prob") for c in columns}
    assert all(math.isfinite(r) and r > 0 for r in cells.values())
    head, rows = _table(out.read_text(), "D | batch")
    assert head[4:8] == columns and len(rows) == 2
    for row in rows:
        values = [_number(c) for c in row[4:]]
        assert values[4] == pytest.approx(values[1] / values[0], rel=0.02, abs=0.006)
    assert json.loads(out.with_suffix(".json").read_text())["results"] == payload["results"]


def test_log_prob_profile_counts_the_ops_of_the_calls() -> None:
    """benchmarks/profile_log_prob.py: the profiler's XLA ops, summed by kind, per call."""
    profile = load_script("benchmarks/profile_log_prob.py", "benchmark_profile_log_prob")
    out = profile.main(["--calls", "3", "--features", "3", "--layers", "2", "--hidden", "8",
                        "8", "--batch", "16"])
    assert out["wall_us"] > 0
    assert out["dot_us"] > 0 and out["mask_select_us"] > 0  # MADE's masked matmuls
    # The ops' thread time fits in the threads that ran them (the pool and the caller): no
    # event that encloses others (the executor, the call) is counted as work.
    assert out["dot_us"] + out["mask_select_us"] + out["concat_us"] + out["other_us"] < (
        ((os.cpu_count() or 1) + 1) * out["wall_us"])


def test_made_layout_ab_times_both_layouts() -> None:
    """benchmarks/made_layout.py: packed and per-piece MADEs, the same density, both timed."""
    ab = load_script("benchmarks/made_layout.py", "benchmark_made_layout")
    times = ab.main(["--features", "3", "--layers", "2", "--hidden", "8", "8", "--batch", "16",
                     "--rounds", "3"])
    assert set(times) == {"log_prob", "train"}
    for metric in times.values():
        assert set(metric) == {"pieces", "packed"}
        assert all(len(t) >= 2 and min(t) > 0 for t in metric.values())
