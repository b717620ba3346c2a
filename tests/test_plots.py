"""nf.plot figures (samples, losses, layer-by-layer, latent space, energies) and normality_test."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from matplotlib.figure import Figure
from PIL import Image
from tensorflow_probability.python.bijectors import invert as tfp_invert

import normalizingflows as nf
from normalizingflows import diagnostics, plot

tfb = tfp.bijectors

FLOWS = {
    "maf": dict(layers=3, hidden_units=8),
    "realnvp": dict(layers=3, hidden_units=8),
    "planar": dict(layers=4),
}
STEPS = {"maf": 3, "realnvp": 5, "planar": 4}  # realnvp: 3 couplings + 2 permutations


@pytest.fixture(scope="module")
def flows() -> dict:
    return {name: nf.flows.build(name, 2, **kw) for name, kw in FLOWS.items()}


def _save(fig: Figure, path) -> None:
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 0


def test_samples_scatter_and_loss_curves(tmp_path) -> None:
    rng = np.random.default_rng(0)
    s, d = rng.normal(size=(300, 3)), rng.normal(size=(200, 3))
    fig = plot.samples_scatter(tf.constant(s), data=d, bound=3.0, title="t")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "t"
    np.testing.assert_allclose(fig.axes[0].collections[1].get_offsets(), s[:, :2])
    _save(fig, tmp_path / "scatter.png")
    with pytest.raises(ValueError, match="samples"):
        plot.samples_scatter(np.zeros(5))

    fig = plot.loss_curves({"loss": [2.0, 1.0], "val_loss": [2.5, 1.5], "lr": [1e-3, 1e-3]})
    assert len(fig.axes) == 2
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["loss", "val_loss"]
    _save(fig, tmp_path / "loss.png")
    with pytest.raises(ValueError, match="non-empty"):
        plot.loss_curves({"loss": []})


def test_loss_curves_from_keras_history(flows) -> None:
    x = np.random.default_rng(1).normal(size=(64, 2)).astype("float32")
    flow = nf.flows.build("maf", 2, layers=1, hidden_units=4)
    flow.compile(optimizer="adam")
    history = flow.fit(x, epochs=2, batch_size=32, validation_data=(x,), verbose=0)
    fig = plot.loss_curves(history)
    labels = {ln.get_label() for ln in fig.axes[0].lines}
    assert {"loss", "val_loss"} <= labels


def test_bijector_steps_order() -> None:
    chain = tfb.Chain([tfb.Scale(2.0), tfb.Shift(1.0)])  # forward: shift, then scale
    assert [s.name for s in plot.bijector_steps(chain)] == ["shift", "scale"]
    inv = plot.bijector_steps(tfb.Invert(tfb.Chain([chain, tfb.Exp()])))
    x = tf.constant([[0.5, 2.0]])
    y = x
    for step in inv:
        y = step.forward(y)
    np.testing.assert_allclose(y, tfb.Invert(tfb.Chain([chain, tfb.Exp()])).forward(x),
                               rtol=1e-6)
    assert plot.bijector_steps(tfb.Invert(tfb.Invert(tfb.Exp())))[0].name == "exp"


@pytest.mark.parametrize("name", list(FLOWS))
def test_layer_by_layer(flows, name, tmp_path) -> None:
    flow = flows[name]
    steps = plot.bijector_steps(flow.bijector)
    assert len(steps) == STEPS[name]
    if name == "planar":
        assert isinstance(flow.bijector, tfp_invert._Invert)  # tfb.Invert(Chain([...]))
        assert all(isinstance(s, tfp_invert._Invert) for s in steps)
    fig = plot.layer_by_layer(flow, 300, seed=3)
    assert isinstance(fig, Figure) and len(fig.axes) == len(steps) + 1
    first = np.asarray(fig.axes[0].collections[0].get_offsets())
    last = np.asarray(fig.axes[-1].collections[0].get_offsets())
    expected = flow.bijector.forward(tf.constant(first, tf.float32)).numpy()
    np.testing.assert_allclose(last, expected, rtol=1e-4, atol=1e-4)
    _save(fig, tmp_path / f"{name}.png")


def test_layer_by_layer_gif(flows, tmp_path) -> None:
    flow = flows["realnvp"]
    path = plot.layer_by_layer_gif(flow, tmp_path / "sub" / "flow.gif", 100, fps=4)
    assert path == tmp_path / "sub" / "flow.gif" and path.stat().st_size > 0
    with Image.open(path) as gif:
        assert gif.n_frames == len(plot.bijector_steps(flow.bijector)) + 1
    assert [p.name for p in path.parent.iterdir()] == ["flow.gif"]  # no temp file left


def test_layer_by_layer_higher_dimensions() -> None:
    flow = nf.flows.build("maf", 3, layers=2, hidden_units=4)
    fig = plot.layer_by_layer(flow, 100, bound=4.0)
    assert len(fig.axes) == 3
    assert np.asarray(fig.axes[-1].collections[0].get_offsets()).shape == (100, 2)


def test_latent_space_and_energy_heatmap(flows, tmp_path) -> None:
    x = np.random.default_rng(2).normal(size=(500, 2)).astype("float32")
    fig = plot.latent_space(flows["maf"], x)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(),
                               flows["maf"].to_base(x).numpy(), rtol=1e-5, atol=1e-5)
    _save(fig, tmp_path / "latent.png")

    energy = nf.data.energy.get("u2")
    fig = plot.energy_heatmap(energy, resolution=40)
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (40, 40) and np.isclose(img.max(), 1.0) and (img >= 0).all()
    assert fig.axes[0].images[0].get_extent()[1] == pytest.approx(energy.bound)
    _save(fig, tmp_path / "energy.png")


def test_ks_against_known_values() -> None:
    # Single point at 0: D = 0.5; two points: exact sup distance by hand.
    d, _ = diagnostics.ks_normal(np.zeros(1))
    assert d[0] == pytest.approx(0.5)
    z = np.array([-1.0, 1.0])
    phi = diagnostics.standard_normal_cdf(z)
    d, _ = diagnostics.ks_normal(z)
    assert d[0] == pytest.approx(max(phi[0], 0.5 - phi[0], phi[1] - 0.5, 1.0 - phi[1]))
    # Kolmogorov tail: Q(1.36) ~ 0.049, Q(1.63) ~ 0.0098 (the classic 5% and 1% critical values).
    assert diagnostics._kolmogorov_sf(np.array([1.358, 1.628])) == pytest.approx(
        [0.05, 0.01], abs=1e-3)
    try:
        from scipy import stats
    except ImportError:
        return
    z = np.random.default_rng(5).normal(0.1, 1.1, size=(400, 2))
    d, p = diagnostics.ks_normal(z)
    for j in range(2):
        ref = stats.kstest(z[:, j], "norm", method="asymp")
        assert d[j] == pytest.approx(ref.statistic)
        assert p[j] == pytest.approx(ref.pvalue, abs=0.02)


def test_normality_test(flows) -> None:
    flow = nf.flows.build("maf", 2, hidden_units=8)  # starts at the identity
    x = np.random.default_rng(3).normal(size=(2000, 2)).astype("float32")
    np.testing.assert_allclose(flow.to_base(x), x, atol=1e-6)
    good = diagnostics.normality_test(flow, x)
    assert good.ks_statistic.shape == good.p_value.shape == good.mean.shape == (2,)
    assert good.cov.shape == (2, 2)
    assert good.min_p_value > 0.01 and good.max_cov_error < 0.1
    assert np.abs(good.mean).max() < 0.1

    rng = np.random.default_rng(4)
    bad_x = np.stack([rng.exponential(size=2000), rng.uniform(-1, 1, size=2000)], 1)
    bad = diagnostics.normality_test(flow, bad_x.astype("float32"))
    assert (bad.p_value < 1e-6).all() and bad.max_cov_error > 0.5

    direct = diagnostics.normality_test(x)
    np.testing.assert_allclose(direct.p_value, good.p_value, rtol=1e-4)
    with pytest.raises(ValueError, match="x"):
        diagnostics.normality_test(flow)
    with pytest.raises(ValueError, match="x must be None"):
        diagnostics.normality_test(x, x)
    with pytest.raises(ValueError, match="NaN"):
        diagnostics.normality_test(np.full((3, 2), np.nan))
