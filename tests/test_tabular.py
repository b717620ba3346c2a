"""experiments/tabular.py on fixtures: every dataset's path runs unchanged once its files are
present (POWER, GAS, HEPMASS in the MAF archive layout; MINIBOONE's split files), rows land in
the CSV with finite numbers, a time-limited run resumes, and the table renders."""

import argparse
import csv
import math
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from uci_fixtures import gas_table, power_raw, write_hepmass

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import tabular  # noqa: E402

SHARED = Path(os.environ.get("NF_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _run(tmp_path, *args):
    out = tmp_path / "results.csv"
    row = tabular.main([*args, "--checkpoint-dir", str(tmp_path / "ck"), "--out", str(out),
                        "--verbose", "0", "--hidden", "8"])
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return row, rows


def _check(row):
    assert math.isfinite(float(row["test_loglik"])) and float(row["test_pm2se"]) > 0
    assert math.isfinite(float(row["val_loglik"]))
    assert int(row["parameters"]) > 0 and row["command"].startswith("PYTHONPATH=.")


def test_power_maf_time_limited_run_resumes(tmp_path):
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power/data.npy", power_raw(1000))
    args = ["--dataset", "power", "--model", "maf5", "--data-dir", str(tmp_path),
            "--max-minutes", "1e-6"]
    first, _ = _run(tmp_path, *args)
    _check(first)
    assert first["train_rows"] == 810 and first["protocol"].startswith("published splits")
    assert first["ended"] == "time limit" and first["epochs_run"] == 1
    second, rows = _run(tmp_path, *args, "--resume")
    assert second["epochs_run"] == 2 and second["ended"] == "time limit"
    assert float(second["total_seconds"]) >= float(second["seconds"])
    assert float(second["total_seconds"]) >= float(first["total_seconds"])
    assert len(rows) == 1  # the resumed run replaced the row of the same run
    assert "--resume" in rows[0]["command"] and "--out" not in rows[0]["command"]


def test_training_overrides_are_a_run_and_row_of_their_own(tmp_path, monkeypatch):
    """--lr, --batch-size and --schedule reach fit, name the protocol and keep their own
    checkpoint folder, next to the recipe's row and never in its place."""
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power/data.npy", power_raw(1000))
    args = ["--dataset", "power", "--model", "maf5", "--data-dir", str(tmp_path),
            "--epochs", "1"]
    seen = []
    fit = tabular.nf.training.fit

    def spy(*a, **kw):
        seen.append({k: kw[k] for k in ("lr", "batch_size", "schedule", "checkpoint_dir")})
        return fit(*a, **kw)

    monkeypatch.setattr(tabular.nf.training, "fit", spy)
    _run(tmp_path, *args)
    row, rows = _run(tmp_path, *args, "--lr", "3e-3", "--batch-size", "50", "--schedule",
                     "cosine")
    _check(row)
    assert seen[0]["lr"] == 1e-4 and seen[0]["batch_size"] == 100 and seen[0]["schedule"] is None
    assert (seen[1]["lr"], seen[1]["batch_size"], seen[1]["schedule"]) == (3e-3, 50, "cosine")
    assert seen[0]["checkpoint_dir"] != seen[1]["checkpoint_dir"]
    assert row["protocol"].endswith("; hidden 8; lr 0.003; batch 50; cosine schedule over 1 "
                                    "epochs")
    assert len(rows) == 2 and "--schedule cosine" in rows[1]["command"]
    row, rows = _run(tmp_path, *args, "--schedule", "constant")
    assert seen[2]["schedule"] is None and row["protocol"].endswith("; constant schedule")


def test_a_shorter_cosine_of_a_spline_recipe_is_its_own_run():
    """The NSF recipe's cosine decays over --epochs: fewer epochs than the default bound make
    a run of their own; overrides on the closed-form Gaussian, which trains nothing, do not."""
    nsf = tabular.recipe_of("nsf_coupling", "miniboone")
    ns = argparse.Namespace(hidden=None, dtype="float32", no_jit=False, lr=None,
                            batch_size=None, schedule=None, epochs=tabular.EPOCHS)
    assert tabular.deviations(ns, 32, nsf) == []
    ns.schedule = "cosine"  # the recipe's own schedule, named or not
    assert tabular.deviations(ns, 32, nsf) == []
    ns.epochs = 12
    assert tabular.deviations(ns, 32, nsf) == [("cosine schedule over 12 epochs", "_cosine12")]
    ns.schedule = None
    assert tabular.deviations(ns, 32, nsf) == [("cosine schedule over 12 epochs", "_cosine12")]
    ns.lr, ns.schedule = 1e-3, "constant"
    assert tabular.deviations(ns, 32, nsf) == [("lr 0.001", "_lr0.001"),
                                               ("constant schedule", "_constant")]
    assert tabular.deviations(ns, 32, tabular.recipe_of("gaussian", "miniboone")) == []


def _gas_pickle(tmp_path, rows):
    """The MAF archive's GAS file: a pandas DataFrame pickle of ``rows`` rows."""
    pd = pytest.importorskip("pandas", reason="GAS is a pandas DataFrame pickle")
    values, columns = gas_table(rows)
    (tmp_path / "gas").mkdir()
    with open(tmp_path / "gas/ethylene_CO.pickle", "wb") as f:
        pickle.dump(pd.DataFrame(values, columns=columns), f)


def test_gas_made_on_the_archive_pickle(tmp_path):
    _gas_pickle(tmp_path, 1000)
    row, _ = _run(tmp_path, "--dataset", "gas", "--model", "made", "--data-dir", str(tmp_path),
                  "--epochs", "1", "--trust-pickle")
    _check(row)
    assert row["train_rows"] == 810 and row["ended"] == "epochs"


def test_gas_made_mixed_bfloat16_is_its_own_row(tmp_path):
    _gas_pickle(tmp_path, 600)
    args = ["--dataset", "gas", "--model", "made", "--data-dir", str(tmp_path), "--epochs", "1",
            "--trust-pickle"]
    _run(tmp_path, *args)
    row, rows = _run(tmp_path, *args, "--dtype", "mixed_bfloat16", "--no-jit")
    _check(row)
    assert row["protocol"].endswith("; mixed_bfloat16; no XLA")
    assert len(rows) == 2  # next to the float32 row, not in its place
    assert "val-as-train" not in tabular.table(tmp_path / "results.csv")
    assert "published splits; hidden 8; mixed_bfloat16; no XLA" in tabular.table(
        tmp_path / "results.csv")


def test_hepmass_made_mog(tmp_path):
    write_hepmass(tmp_path / "hepmass", 2000, 600)
    row, _ = _run(tmp_path, "--dataset", "hepmass", "--model", "made_mog", "--data-dir",
                  str(tmp_path), "--epochs", "1")
    _check(row)
    assert row["train_rows"] == 900 and row["test_rows"] == 300


def test_miniboone_split_files_without_train_and_the_gaussian(tmp_path):
    raw = np.load(FIXTURES / "miniboone/data_first200rows.npy")
    x = (raw - raw.mean(0)) / raw.std(0)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone/val.npy", x[:120])
    np.save(tmp_path / "miniboone/test.npy", x[120:])
    row, rows = _run(tmp_path, "--dataset", "miniboone", "--model", "gaussian", "--data-dir",
                     str(tmp_path))
    assert row["protocol"].startswith("val-as-train") and row["train_rows"] == 108
    assert row["ended"] == "closed form" and row["published"] == "-37.24 +/- 1.07"
    # The closed form against an independent evaluation (numpy's slogdet and solve).
    train = np.asarray(x[:120], np.float32)[np.random.default_rng(0).permutation(120)[:108]]
    t = train.astype(np.float64)
    cov = np.cov(t, rowvar=False, bias=True)
    d = x[120:].astype(np.float32).astype(np.float64) - t.mean(0)
    quad = np.einsum("ij,ij->i", d, np.linalg.solve(cov, d.T).T)
    expect = -0.5 * (quad + np.linalg.slogdet(2 * np.pi * cov)[1])
    assert float(row["test_loglik"]) == pytest.approx(expect.mean(), rel=1e-6)
    # A flow on the same protocol, then the table of both rows.
    row, rows = _run(tmp_path, "--dataset", "miniboone", "--model", "maf5", "--data-dir",
                     str(tmp_path), "--epochs", "2")
    _check(row)
    assert [r["model"] for r in rows] == ["gaussian", "maf5"]
    text = tabular.main(["--table", "--out", str(tmp_path / "results.csv")])
    assert text.count("\n") == 3 and "| miniboone | maf5 |" in text


@pytest.mark.skipif(not (SHARED / "BSDS300/images/train").is_dir(),
                    reason="needs the BSDS300 images of ../shared/data")
def test_bsds300_patches_from_the_images(tmp_path):
    row, _ = _run(tmp_path, "--dataset", "bsds300", "--model", "gaussian", "--data-dir",
                  str(SHARED), "--n-train", "20000")
    assert row["protocol"].startswith("patches regenerated from the raw images")
    assert row["test_rows"] == 250_000 and row["train_rows"] == 20_000
    assert 80 < float(row["test_loglik"]) < 140  # the MAF file's Gaussian: 96.67


def test_refuses_a_run_without_dataset_or_model():
    with pytest.raises(SystemExit):
        tabular.main(["--model", "maf5"])


def test_compute_is_on_record_after_every_epoch(tmp_path):
    """A killed run keeps its compute up to its last epoch (not only a run that ends itself)."""
    import json

    log = tabular.ComputeLog(tmp_path / "compute.json", before=100.0)
    log.on_epoch_end(0)
    first = json.loads((tmp_path / "compute.json").read_text())["seconds"]
    assert 100.0 <= first < 160.0
    log.on_epoch_end(1)
    assert json.loads((tmp_path / "compute.json").read_text())["seconds"] >= first


def test_the_readme_table_is_the_csv():
    """experiments/README.md shows the results CSV as it is (``--table``), row for row."""
    table = tabular.table(tabular.RESULTS)
    readme = (ROOT / "experiments" / "README.md").read_text()
    assert table in readme, "rerun `experiments/tabular.py --table` into experiments/README.md"
