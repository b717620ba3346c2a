"""The command line: train / evaluate / sample / fit-energy outputs, and clear failures (one
line on stderr, exit status 2, no output folder left behind) on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from normalizingflows.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--flow", "realnvp", "--data", "moons", "--n", "1000", "--epochs", "2",
         "--layers", "1", "--hidden-units", "8", "--batch-size", "200", "--verbose", "0",
         "--no-jit"]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def test_train_writes_metrics_plots_and_checkpoint(trained):
    for name in ("metrics.json", "density.png", "samples.png", "loss.png", "flow/config.json",
                 "checkpoints/run_config.json"):
        assert (trained / name).exists(), name
    m = json.loads((trained / "metrics.json").read_text())
    assert np.isfinite(m["test_log_likelihood"]) and m["test_log_likelihood_se"] > 0
    assert m["parameters"] > 0 and m["epochs"] == 2 and m["train_seconds"] > 0
    assert len(m["history"]["val_loss"]) == 2
    assert _leftovers(trained.parent) == []


def test_train_in_mixed_bfloat16_saves_the_precision(tmp_path):
    out = tmp_path / "run"
    assert main([*TRAIN, "--dtype", "mixed_bfloat16", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(m["test_log_likelihood"])
    import normalizingflows as nf

    assert nf.load(out / "flow").precision == "mixed_bfloat16"


def test_evaluate_and_sample_a_saved_flow(trained, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(trained), "--data", "moons", "--n", "1000"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    m = json.loads((trained / "metrics.json").read_text())
    assert result["log_likelihood"] == pytest.approx(m["test_log_likelihood"], abs=1e-5)
    out = trained.parent / "s.npy"
    assert main(["sample", "--checkpoint", str(trained / "flow"), "--n", "50", "--out",
                 str(out)]) == 0
    x = np.load(out)
    assert x.shape == (50, 2) and np.isfinite(x).all()


def test_resume_of_a_finished_run_and_of_a_different_config(trained, capsys):
    before = (trained / "metrics.json").read_text()
    assert main([*TRAIN, "--out", str(trained), "--resume", "--layers", "2"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "layers" in err
    assert (trained / "metrics.json").read_text() == before  # OUT untouched
    assert _leftovers(trained.parent) == []
    # The same config resumes the finished run: no epochs left, same result.
    assert main([*TRAIN, "--out", str(trained), "--resume"]) == 0
    after = json.loads((trained / "metrics.json").read_text())
    assert after["resumed_from_epoch"] == 2
    assert after["test_log_likelihood"] == pytest.approx(
        json.loads(before)["test_log_likelihood"], abs=1e-6)


def test_corrupt_checkpoints_give_clear_errors(trained, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    for f in (broken / "flow").glob("weights.data*"):
        f.write_bytes(b"garbage")
    for f in (broken / "checkpoints" / "ckpt").glob("*.data*"):
        f.write_bytes(b"garbage")
    assert main(["evaluate", "--checkpoint", str(broken), "--data", "moons"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main([*TRAIN, "--out", str(broken), "--resume"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "none"), "--n", "5", "--out",
                 str(tmp_path / "x.npy")]) == 2
    assert "config.json" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--data", "no_such_set"], "unknown dataset"),
    (["--flow", "no_such_flow"], "unknown flow"),
    (["--bins", "1"], "bins"),
    (["--data", "{nan}"], "NaN"),
])
def test_bad_train_input(argv, message, tmp_path, capsys):
    bad = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    bad[7, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    argv = [a.replace("{nan}", str(tmp_path / "nan.npy")) for a in argv]
    args = list(TRAIN)
    for key, value in zip(argv[::2], argv[1::2], strict=True):
        if key in args:
            args[args.index(key) + 1] = value
        else:
            args += [key, value]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*TRAIN, "--epochs", "0", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["fit-energy", "--energy", "no_such_energy", "--out", str(tmp_path / "e")]) == 2
    assert "unknown energy" in capsys.readouterr().err
    assert main(["fit-energy", "--energy", "u1", "--flow", "maf_mog",
                 "--out", str(tmp_path / "e")]) == 2
    assert "samples slowly" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_fit_energy_writes_log_z_and_ess(tmp_path):
    out = tmp_path / "energy"
    assert main(["fit-energy", "--energy", "u1", "--flow", "realnvp", "--layers", "2",
                 "--hidden-units", "8", "--steps", "20", "--eval-samples", "500",
                 "--verbose", "0", "--no-jit", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("loss", "log_z_estimate", "ess", "ess_fraction", "log_z_reference"):
        assert np.isfinite(m[key]), key
    assert (out / "density.png").exists() and (out / "flow" / "config.json").exists()


def test_module_entry_point_reports_errors_on_stderr():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "normalizingflows", "train", "--flow", "maf",
                           "--data", "nope"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert "unknown dataset --data 'nope'" in proc.stderr


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("data", ["shapes", "mnist"])
def test_train_an_image_flow_reports_bits_per_dim_and_a_sample_grid(data, tmp_path, capsys,
                                                                    monkeypatch):
    if data == "mnist" and not (SHARED / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("shared/data/mnist absent")
    if data == "mnist":
        monkeypatch.setenv("NF_DATA_DIR", str(SHARED))
    out = tmp_path / "img"
    argv = ["train", "--flow", "glow", "--data", data, "--n", "120", "--epochs", "1",
            "--layers", "1", "--hidden-units", "8", "--batch-size", "40", "--verbose", "0",
            "--out", str(out)]
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["kwargs"]["image_shape"] == list(
        {"shapes": (20, 20, 1), "mnist": (28, 28, 1)}[data])
    assert 0 < m["test_bits_per_dim"] < (3 if data == "shapes" else 12)
    assert m["test_bits_per_dim_median"] <= m["test_bits_per_dim_worst"]
    assert isinstance(m["test_bits_per_dim_worst_index"], int)
    assert "bits/dim" in capsys.readouterr().out
    assert (out / "samples.png").stat().st_size > 1000
    assert main(["evaluate", "--checkpoint", str(out), "--data", data, "--n", "120"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 120 and abs(result["bits_per_dim"] - m["test_bits_per_dim"]) < 1e-4
