"""experiments/mnist_flows.py end to end on the 300-digit MNIST fixture (a tiny Glow, one
epoch): float32 under XLA and mixed bfloat16 in graph mode, the second also evaluated by the
float32 flow with the same weights; results and the sample grid go where they are told."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mnist_fixtures import csv_layout
from scripts import load_script

TINY = ["--flow", "glow", "--epochs", "1", "--layers", "1", "--levels", "1",
        "--hidden-units", "4", "--blocks", "0", "--batch-size", "50"]


@pytest.fixture(scope="module")
def mnist_flows():
    return load_script("experiments/mnist_flows.py", "experiment_mnist_flows")


@pytest.mark.parametrize("extra", [[], ["--dtype", "mixed_bfloat16", "--no-jit",
                                         "--temperature", "0.5", "0.7", "--no-split-prior"]],
                         ids=["float32-xla", "mixed_bfloat16-graph"])
def test_mnist_flows_runs_and_writes_where_it_is_told(mnist_flows, tmp_path, extra):
    csv_layout(tmp_path)
    args = [*TINY, *extra, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
            "--results-dir", str(tmp_path / "results"), "--figures-dir", str(tmp_path / "fig")]
    result = mnist_flows.main(args)
    saved = json.loads((tmp_path / "results" / "mnist_glow.json").read_text())
    assert saved == result and result["train_digits"] == 250
    assert np.isfinite(result["test_bpd"]) and 0 < result["test_bpd"] < 8
    assert (tmp_path / "fig" / "mnist_glow_samples.png").stat().st_size > 5_000
    assert result["dtype"] == ("mixed_bfloat16" if extra else "float32")
    assert result["jit_compile"] == (not extra)
    assert result["kwargs"]["coupling_scale"] == "sigmoid" and result["kwargs"]["layers"] == 1
    assert result["kwargs"]["split_prior"] is (not extra)
    assert result["figure_temperatures"] == ([0.5, 0.7, 1.0] if extra else [0.7, 1.0])
    if extra:  # bfloat16 rounding of the networks only
        assert result["test_bpd_float32_eval"] == pytest.approx(result["test_bpd"], abs=0.05)
    else:
        assert "test_bpd_float32_eval" not in result


def test_mnist_flows_augmented_conditional(mnist_flows, tmp_path):
    """``--augment --max-shift`` trains a class-conditional flow on fresh batches of
    (shifted, newly dequantised digits, labels); the options are recorded with the result."""
    csv_layout(tmp_path)
    args = [*TINY, "--conditional", "--augment", "--max-shift", "2", "--global-clipnorm", "5",
            "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
            "--results-dir", str(tmp_path / "results"), "--figures-dir", str(tmp_path / "fig")]
    result = mnist_flows.main(args)
    assert result["augment"] == {"fresh_dequantisation": True, "max_shift": 2}
    assert result["global_clipnorm"] == 5.0 and result["train_digits"] == 250
    assert 0 < result["test_bpd_given_label"] < 8 and 0 < result["test_bpd_marginal"] < 8
    assert (tmp_path / "fig" / "mnist_glow_cond_samples.png").is_file()
    with pytest.raises(SystemExit):  # a shift without --augment would be ignored: refused
        mnist_flows.main([*TINY, "--max-shift", "1", "--data-dir", str(tmp_path)])
    # --evaluate-only: the saved flow, evaluated again without training, scores the same.
    again = mnist_flows.main([*args, "--evaluate-only", "--results-dir",
                              str(tmp_path / "again")])
    assert again["test_bpd_given_label"] == result["test_bpd_given_label"]
    assert again["epochs_run"] is None and again["train_seconds"] is None
    with pytest.raises(SystemExit, match="does not hold the flow"):  # other options: refused
        mnist_flows.main([*args, "--evaluate-only", "--hidden-units", "3"])
    # --warm-start: training goes on from the saved flow (at learning rate 0 it stays that
    # flow: the same score), and the result names the run it started from.
    more = mnist_flows.main([*args, "--warm-start", "", "--tag", "_more", "--lr", "0"])
    assert more["test_bpd_given_label"] == pytest.approx(result["test_bpd_given_label"],
                                                         abs=1e-4)
    assert more["warm_start"] == {"from": "mnist_glow_cond", "epochs_run": 1,
                                  "train_seconds": result["train_seconds"]}
    assert (tmp_path / "out" / "mnist_glow_cond_more").is_dir()
    with pytest.raises(SystemExit, match="does not hold the flow"):
        mnist_flows.main([*args, "--warm-start", "", "--tag", "_x", "--hidden-units", "3"])
    with pytest.raises(SystemExit, match="other than"):
        mnist_flows.main([*args, "--warm-start", ""])
    with pytest.raises(SystemExit):
        mnist_flows.main([*args, "--warm-start", "", "--tag", "_x", "--evaluate-only"])


def test_celeba_flows_runs_and_warm_starts(tmp_path):
    """experiments/celeba_flows.py end to end on 16 random JPEG 'faces' in the CelebA layout
    (a tiny Glow at 32x32, one epoch, with --augment), then --warm-start from its saved flow at
    learning rate 0: the same flow, the same test score, and the run it came from recorded."""
    import tensorflow as tf

    celeba_flows = load_script("experiments/celeba_flows.py", "experiment_celeba_flows")
    faces = tmp_path / "celeba" / "img_align_celeba"
    faces.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(1, 17):  # 8 train, 4 validation, 4 test faces
        name = f"{i:06d}.jpg"
        image = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        (faces / name).write_bytes(tf.io.encode_jpeg(image, quality=95).numpy())
        lines.append(f"{name} {0 if i <= 8 else 1 if i <= 12 else 2}")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    args = ["--data", "celeba32", "--epochs", "1", "--layers", "1", "--levels", "1",
            "--hidden-units", "4", "--blocks", "0", "--batch-size", "4", "--augment",
            "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
            "--results-dir", str(tmp_path / "results"), "--figures-dir", str(tmp_path / "fig")]
    first = celeba_flows.main(args)
    assert first["train_faces"] == 8 and first["test_faces"] == 4 and first["augment"] is True
    assert np.isfinite(first["test_bpd"]) and (tmp_path / "out" / "celeba32_glow").is_dir()
    assert (tmp_path / "fig" / "celeba32_glow_samples.png").is_file()
    assert (tmp_path / "fig" / "celeba32_glow_interpolations.png").is_file()
    more = celeba_flows.main([*args, "--warm-start", "", "--tag", "_more", "--lr", "0"])
    assert more["test_bpd"] == pytest.approx(first["test_bpd"], abs=1e-4)
    assert more["warm_start"] == {"from": "celeba32_glow", "epochs_run": 1,
                                  "train_seconds": first["train_seconds"]}
    assert json.loads((tmp_path / "results" / "celeba32_glow_more.json").read_text()) == more
