"""Energies U1-U4, U8: values, log Z, gradients, XLA, the GMM fit and the registered datasets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import normalizingflows as nf
from normalizingflows.data import energy as E


def _lse(*a):
    m = max(a)
    return m + math.log(sum(math.exp(v - m) for v in a))


def _reference(name, z1, z2):
    """Rezende & Mohamed, Table 1, in plain Python (and U8 as documented)."""
    w1 = math.sin(2 * math.pi * z1 / 4)
    w2 = 3 * math.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + math.exp(-(z1 - 1) / 0.3))
    r = math.hypot(z1, z2)
    if name == "u1":
        return 0.5 * ((r - 2) / 0.4) ** 2 - _lse(-0.5 * ((z1 - 2) / 0.6) ** 2,
                                                 -0.5 * ((z1 + 2) / 0.6) ** 2)
    if name == "u2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "u3":
        return -_lse(-0.5 * ((z2 - w1) / 0.35) ** 2, -0.5 * ((z2 - w1 + w2) / 0.35) ** 2)
    if name == "u4":
        return -_lse(-0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + w3) / 0.35) ** 2)
    terms = []
    for k in range(4):
        u = z1 * math.cos(k * math.pi / 4) + z2 * math.sin(k * math.pi / 4)
        terms += [-0.5 * ((u - 3) / 0.6) ** 2, -0.5 * ((u + 3) / 0.6) ** 2]
    return 0.5 * ((r - 3) / 0.4) ** 2 - _lse(*terms)


def test_names_and_get():
    assert E.names() == ["u1", "u2", "u3", "u4", "u8"]
    assert E.get("U1").name == "u1" and E.get("energy_u8").name == "u8"
    assert [E.get(n).taper for n in E.names()] == [None, 4.0, 4.0, 4.0, None]
    with pytest.raises(ValueError, match="unknown energy"):
        E.get("u5")
    with pytest.raises(ValueError, match="taper"):
        E.get("u2", taper=-1.0)


def test_hand_computed_values():
    u = lambda name, z: float(E.get(name, taper=False).energy(tf.constant([z], tf.float64))[0])  # noqa: E731
    assert u("u1", [2.0, 0.0]) == pytest.approx(0.0, abs=1e-9)  # on the ring, at a mode
    assert u("u1", [0.0, 0.0]) == pytest.approx(12.5 + 0.5 * (2 / 0.6) ** 2 - math.log(2))
    assert u("u2", [1.0, 1.0]) == pytest.approx(0.0)  # z2 = w1 = sin(pi / 2)
    assert u("u2", [0.0, 1.0]) == pytest.approx(3.125)
    assert u("u3", [1.0, -2.0]) == pytest.approx(0.0, abs=1e-12)  # second branch, w2 = 3
    assert u("u4", [1.0, 1.0]) == pytest.approx(-math.log(1 + math.exp(-0.5 * (1.5 / 0.35) ** 2)))
    cosines = (1, math.sqrt(0.5), 0, -math.sqrt(0.5))  # of the angles between z and theta_k
    g = [math.exp(-0.5 * ((3 * c - s) / 0.6) ** 2) for c in cosines for s in (3, -3)]
    assert u("u8", [3.0, 0.0]) == pytest.approx(-math.log(sum(g)))


@pytest.mark.parametrize("name", E.names())
def test_matches_the_table_at_random_points(name):
    z = np.random.default_rng(0).uniform(-4, 4, (64, 2))
    got = E.get(name, taper=False).energy(tf.constant(z)).numpy()
    want = [_reference(name, a, b) for a, b in z]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(E.get(name, taper=False).log_prob_unnormalized(z), -got)


def test_taper():
    e = E.get("u2")
    x = tf.constant([[3.0, math.sin(1.5 * math.pi)], [5.0, math.sin(2.5 * math.pi)]], tf.float64)
    np.testing.assert_allclose(e.energy(x).numpy(), [0.0, 0.5 * (1.0 / E.TAPER_WIDTH) ** 2],
                               atol=1e-12)
    assert E.get("u2", taper=False).log_z == math.inf
    assert E.get("u1", taper=False).log_z == E.get("u1").log_z


@pytest.mark.parametrize("name", E.names())
def test_log_z_on_a_grid(name):
    e = E.get(name)
    coarse = E.reference_log_z(name, taper=e.taper, resolution=1401)  # spacing 0.01
    assert coarse == pytest.approx(E.LOG_Z[name], abs=2e-5)
    assert e.log_z == E.LOG_Z[name]
    # and the mass lies inside the square of half-width bound
    inside = nf.diagnostics.grid_integral(e.log_prob, bound=e.bound, resolution=400,
                                          dtype="float64")
    assert 0.98 < inside <= 1.001


def test_u1_log_z_reference_value():
    assert E.get("u1").log_z == pytest.approx(1.8775, abs=1e-4)


@pytest.mark.parametrize("name", E.names())
def test_gradients_dtypes_and_xla(name):
    e = E.get(name)
    for dtype in (tf.float32, tf.float64):
        x = tf.constant([[0.0, 0.0], [1.0, -2.0], [5.0, 6.0], [-3.0, 0.5]], dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            u = e.energy(x)
        assert u.dtype == dtype and u.shape == (4,)
        assert np.all(np.isfinite(tape.gradient(u, x).numpy()))
        xla = tf.function(e.energy, jit_compile=True)(x)
        np.testing.assert_allclose(xla.numpy(), u.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        e.energy(tf.zeros([3, 3]))


def test_fit_gmm_smoke():
    e = E.get("u1")
    q = E.fit_gmm(e, components=5, steps=30, seed=0)
    assert q.components_distribution.loc.shape == (5, 2)
    assert len(q.trainable_variables) == 3
    loss, err = E.reverse_kl(q, e, 20_000, seed=1)
    assert loss > -e.log_z - 4 * err
    untrained, _ = E.reverse_kl(E.fit_gmm(e, components=5, steps=0, seed=0), e, 20_000, seed=1)
    assert loss < untrained
    assert q.sample(7, seed=(1, 2)).shape == (7, 2)


def test_energy_datasets():
    assert {f"energy_u{k}" for k in (1, 2, 3, 4, 8)} <= set(nf.data.names())
    a = nf.data.load("energy_u1", n=400, steps=20, components=4, seed=0)
    b = nf.data.load("energy_u1", n=400, steps=20, components=4, seed=0)
    assert a.train.shape == (320, 2) and a.val.shape == (40, 2) and a.test.shape == (40, 2)
    assert a.train.dtype == np.float32
    np.testing.assert_array_equal(a.train, b.train)
    assert a.info["log_z"] == E.LOG_Z["u1"] and a.info["best_log_likelihood"] < 0
