"""experiments/mnf_rotation.py end to end on the 300-digit MNIST fixture: one run evaluates
both protocols and draws the figure; several seeds are summarised with paired differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mnist_fixtures import csv_layout
from scripts import load_script

TINY = ["--epochs", "2", "--test-subset", "40", "--rotated", "6", "--test-samples", "2",
        "--rotated-samples", "2", "--violin-samples", "4", "--flow-hidden", "8",
        "--verbose", "0"]


@pytest.fixture(scope="module")
def mnf_rotation():
    return load_script("experiments/mnf_rotation.py", "experiment_mnf_rotation")


def test_one_run_records_both_protocols_and_draws_the_figure(mnf_rotation, tmp_path):
    csv_layout(tmp_path)
    out, figure = tmp_path / "run.json", tmp_path / "rotation.png"
    result = mnf_rotation.main([*TINY, "--data-dir", str(tmp_path), "--out", str(out),
                                "--figure", str(figure)])
    assert json.loads(out.read_text())["models"].keys() == {"lenet", "mnf_lenet"}
    assert result["data"]["train"] == 250 and result["data"]["test"] == 40
    assert figure.stat().st_size > 10_000
    for name, model in result["models"].items():
        best, last = model["protocols"]["best"], model["protocols"]["last"]
        assert last["kept_epoch"] == 2 and best["kept_epoch"] in (1, 2)
        val = model["history"]["val_accuracy"]
        assert best["val_accuracy"] == max(val) and last["val_accuracy"] == val[-1]
        # The headline numbers are the --select protocol's (default: best).
        assert model["test_ece_15_bins"] == best["test_ece_15_bins"]
        for metrics in (best, last):
            assert 0.0 <= metrics["test_ece_15_bins"] <= 1.0
            assert np.isfinite(metrics["test_nll"])
            assert 0.1 <= metrics["test_mean_confidence"] <= 1.0
        if best["kept_epoch"] == 2:  # the same weights: the deterministic LeNet agrees
            if name == "lenet":
                assert best["test_nll"] == last["test_nll"]
    assert len(result["violin"]["mnf_mean_probs"]) == len(mnf_rotation.VIOLIN_ANGLES)


def test_seeds_are_summarised_with_paired_differences(mnf_rotation, tmp_path):
    csv_layout(tmp_path)
    out = tmp_path / "seeds.json"
    result = mnf_rotation.main([*TINY, "--data-dir", str(tmp_path), "--out", str(out),
                                "--seeds", "3,4", "--epochs", "1"])
    assert "violin" not in result and result["seeds"] == [3, 4]
    summary = json.loads(out.read_text())["summary"]
    for protocol in ("best", "last"):
        block = summary[protocol]
        rows = [result["per_seed"][s] for s in ("3", "4")]
        ece = {name: [r[name][protocol]["test_ece_15_bins"] for r in rows]
               for name in ("lenet", "mnf_lenet")}
        diffs = np.subtract(ece["mnf_lenet"], ece["lenet"])
        np.testing.assert_allclose(block["mnf_minus_lenet"]["test_ece_15_bins"]["values"], diffs)
        assert block["mnf_minus_lenet"]["test_ece_15_bins"]["mean"] == pytest.approx(diffs.mean())
        assert block["lenet"]["test_ece_15_bins"]["sd"] == pytest.approx(
            np.std(ece["lenet"], ddof=1))
        assert block["seeds_mnf_ece_lower"] == int((diffs < 0).sum())
    # The two seeds split the data and initialise differently.
    assert result["per_seed"]["3"] != result["per_seed"]["4"]
    table = mnf_rotation.seeds_table(summary)
    assert table.count("\n") == 7 and "MNF - LeNet" in table


def test_unknown_model_is_named(mnf_rotation):
    with pytest.raises(SystemExit, match="unknown model 'resnet'"):
        mnf_rotation.main(["--models", "lenet,resnet"])
