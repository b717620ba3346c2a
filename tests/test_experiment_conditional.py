"""experiments/conditional.py: exact conditional densities and a tiny end-to-end run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scripts import load_script


@pytest.fixture(scope="module")
def conditional():
    return load_script("experiments/conditional.py", "experiment_conditional")


@pytest.mark.parametrize("k", [1.0, -0.5])
def test_exact_banana_density_integrates_to_one(conditional, k):
    # Midpoint rule over x2 in [-16, 16] (8 stds) and x1 in [-70, 70] (k x2^2 / 4 + 6 stds).
    h = 0.04
    x1 = np.arange(-70.0 + h / 2, 70.0, h)
    x2 = np.arange(-16.0 + h / 2, 16.0, h)
    g1, g2 = np.meshgrid(x1, x2)
    points = np.stack([g1.ravel(), g2.ravel()], axis=1)
    total = np.exp(conditional.banana_log_prob(points, k)).sum() * h * h
    assert abs(total - 1.0) < 1e-6


def test_exact_banana_matches_its_samples(conditional):
    # The sample mean of log p(x | k) is minus the entropy, log(4 pi e), for every k.
    for k in (-1.0, 0.0, 1.0):
        x = conditional.banana_sample(np.full(40_000, k), seed=3)
        lp = conditional.banana_log_prob(x, k)
        se = lp.std() / math.sqrt(len(lp))
        assert abs(lp.mean() + conditional.BANANA_ENTROPY) < 4 * se
    # k = 1 is the MAF paper's banana of nf.data.toy: same sample moments.
    import normalizingflows as nf
    ref = nf.data.toy.banana(40_000, seed=0)
    ours = conditional.banana_sample(np.ones(40_000), seed=0)
    np.testing.assert_allclose(ours.mean(0), ref.mean(0), atol=0.06)
    np.testing.assert_allclose(ours.std(0), ref.std(0), rtol=0.03)


def test_exact_moon_densities_integrate_to_one(conditional):
    h = 0.02
    axis = np.arange(-1.8 + h / 2, 1.8, h)
    g1, g2 = np.meshgrid(axis, axis)
    points = np.stack([g1.ravel(), g2.ravel()], axis=1)
    for label in (0, 1, None):
        lp = conditional.moons_log_prob(points, label, m=300, chunk=4000)
        assert abs(np.exp(lp).sum() * h * h - 1.0) < 1e-3
    x, y = conditional.labelled_moons(1000, seed=0)
    assert x.shape == (1000, 2) and (y == 0).sum() == 500
    # Each point is far likelier under its own moon.
    lp0, lp1 = conditional.moons_log_prob(x, 0, m=300), conditional.moons_log_prob(x, 1, m=300)
    own, other = np.where(y == 0, lp0, lp1), np.where(y == 0, lp1, lp0)
    assert (own > other).mean() > 0.99


def test_tiny_run_writes_rows_and_figures(conditional, tmp_path):
    cfg = dict(conditional.QUICK, n_banana=400, n_moons=400, n_val=100, n_test=100, epochs=1,
               resolution=16, banana_grid=60, moons_grid=40)
    rows = conditional.run_banana(cfg, 0, tmp_path / "banana.png")
    rows += conditional.run_moons(cfg, 0, tmp_path / "moons.png")
    conditional.write_csv(rows, tmp_path / "conditional.csv")
    assert (tmp_path / "banana.png").stat().st_size > 0
    assert (tmp_path / "moons.png").stat().st_size > 0
    with open(tmp_path / "conditional.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["context"] for r in table] == ["k=-1", "k=-0.5", "k=0", "k=0.5", "k=1",
                                            "k~U[-1,1]", "y=0", "y=1", "marginal", "marginal"]
    for r in table:
        assert math.isfinite(float(r["test_log_likelihood"]))
        gap = float(r["exact"]) - float(r["test_log_likelihood"])
        assert abs(gap - float(r["gap"])) < 2e-3
    # A conditional flow's density integrates to about 1 for each context.
    for r in table[:5]:
        assert abs(float(r["grid_integral"]) - 1.0) < 0.05
