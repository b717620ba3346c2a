"""Toy data sets: shapes, seeding, splits, exact densities and best log-likelihoods."""

from __future__ import annotations

import math

import numpy as np
import pytest

import normalizingflows as nf
from normalizingflows.data import toy

FFJORD = ["swissroll", "circles", "rings", "half_moons", "2spirals", "pinwheel", "checkerboard",
          "8gaussians", "line", "cos"]
EXACT = ["8gaussians", "4gaussians", "checkerboard", "banana", "line", "cos"]
# rectangles holding (nearly) all the mass of each exact density: (x1 range, x2 range)
BOX = {"8gaussians": (5, 5), "4gaussians": (5, 5), "checkerboard": (4.5, 4.5),
       "banana": ((-6, 40), (-14, 14)), "line": (3, 4), "cos": (3, 4)}


def test_every_requested_set_exists():
    for name in FFJORD + ["moons", "4gaussians", "smiley", "banana", "raster"]:
        assert name in toy.names()
        assert name in nf.data.names()


@pytest.mark.parametrize("name", toy.names())
def test_shapes_seeding_and_splits(name):
    x = toy.sample(name, 501, seed=3)
    assert x.shape == (501, 2) and x.dtype == np.float32 and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, toy.sample(name, 501, seed=3))
    assert not np.array_equal(x, toy.sample(name, 501, seed=4))
    splits = nf.data.load(name, n=1000, seed=1, val_fraction=0.2, test_fraction=0.1)
    assert (splits.train.shape, splits.val.shape, splits.test.shape) == ((700, 2), (200, 2),
                                                                         (100, 2))
    assert splits.info["sizes"] == (700, 200, 100)
    assert splits.info["best_log_likelihood"] == toy.best_log_likelihood(name)


def _grid(name, resolution):
    (a0, a1), (b0, b1) = [(-r, r) if np.isscalar(r) else r for r in BOX[name]]
    xs, ys = np.linspace(a0, a1, resolution), np.linspace(b0, b1, resolution)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1), (xs[1] - xs[0]) * (ys[1] - ys[0])


@pytest.mark.parametrize("name", EXACT)
def test_exact_density_integrates_to_one_and_gives_best_log_likelihood(name):
    points, cell = _grid(name, 801)
    lp = toy.log_prob(name, points)
    p = np.exp(lp)
    assert abs(p.sum() * cell - 1.0) < 5e-3
    neg_entropy = np.sum(p * np.where(p > 0, lp, 0.0)) * cell
    assert abs(neg_entropy - toy.best_log_likelihood(name)) < 5e-3
    # the samples come from this density: their mean log-density is E_p[log p]
    lps = toy.log_prob(name, toy.sample(name, 40_000, seed=0))
    assert np.all(np.isfinite(lps))
    se = lps.std() / math.sqrt(len(lps))
    assert abs(lps.mean() - toy.best_log_likelihood(name)) <= 5 * se + 1e-9


@pytest.mark.parametrize("name", ["8gaussians", "banana"])
def test_exact_density_matches_the_sample_histogram(name):
    x = toy.sample(name, 200_000, seed=1).astype(np.float64)
    (a0, a1), (b0, b1) = [(-r, r) if np.isscalar(r) else r for r in BOX[name]]
    ex, ey = np.linspace(a0, a1, 21), np.linspace(b0, b1, 21)
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[ex, ey])
    hist = hist / len(x)
    # bin masses of the exact density by a 10x10 midpoint rule inside each bin
    fx = np.linspace(a0, a1, 201)[:-1] + (a1 - a0) / 400
    fy = np.linspace(b0, b1, 201)[:-1] + (b1 - b0) / 400
    gx, gy = np.meshgrid(fx, fy, indexing="ij")
    p = np.exp(toy.log_prob(name, np.stack([gx.ravel(), gy.ravel()], 1))).reshape(200, 200)
    mass = p.reshape(20, 10, 20, 10).sum(axis=(1, 3)) * (fx[1] - fx[0]) * (fy[1] - fy[0])
    assert np.abs(hist - mass).max() < 0.004


def test_best_log_likelihood_values():
    assert toy.best_log_likelihood("checkerboard") == pytest.approx(-3.466, abs=5e-4)
    assert toy.best_log_likelihood("8gaussians") == pytest.approx(-2.832, abs=1e-3)
    assert toy.best_log_likelihood("banana") == pytest.approx(-(math.log(2 * math.pi) + 1
                                                                 + math.log(2)))
    assert toy.best_log_likelihood("swissroll") is None
    assert nf.data.load("checkerboard", n=100).info["best_log_likelihood_method"].startswith(
        "exact")


def test_checkerboard_samples_lie_on_the_filled_squares():
    x = toy.checkerboard(20_000, seed=0)
    assert np.all(np.abs(x) <= 4)
    assert np.all(np.isfinite(toy.log_prob("checkerboard", x)))
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=[np.arange(-4, 5, 2)] * 2)[0]
    assert (counts > 0).sum() == 8
    assert counts[counts > 0].min() > 0.9 * 20_000 / 8


def test_banana_orientation():
    x = toy.banana(50_000, seed=0)
    assert x[:, 1].std() == pytest.approx(2.0, rel=0.03)   # x2 ~ N(0, 4)
    assert x[:, 0].mean() == pytest.approx(1.0, abs=0.05)  # E[x2^2 / 4] = 1


def test_raster_from_image_and_text():
    image = np.zeros((4, 8))
    image[0, 7] = 1.0  # top-right pixel; pixels are 1x1 for bound=4 and width 8
    x = toy.raster(300, image=image, seed=0)
    assert np.all((x[:, 0] >= 3) & (x[:, 0] <= 4) & (x[:, 1] >= 1) & (x[:, 1] <= 2))
    logo = toy.raster(2000, text="TFP", seed=0)
    assert np.abs(logo).max() <= 4
    assert toy.render_text("TFP").max() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="non-negative"):
        toy.raster(10, image=-np.ones((3, 3)))


def test_moons_kept_and_errors():
    np.testing.assert_array_equal(toy.sample("moons", 64, seed=2), toy.moons(64, seed=2))
    with pytest.raises(ValueError, match="unknown toy dataset"):
        toy.sample("nope", 3)
    with pytest.raises(ValueError, match="no closed-form density"):
        toy.log_prob("swissroll", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        toy.log_prob("banana", np.zeros(3))
