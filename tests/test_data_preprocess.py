"""Dequantisation, logit transform, bits/dim against hand-computed values; as_dataset + fit."""

import math

import numpy as np
import pytest
import tensorflow as tf

import normalizingflows.data as nfd
from normalizingflows.data import preprocess as pp


def test_logit_hand_values():
    # lam = 0.05, x = 0.25: s = 0.05 + 0.9 * 0.25 = 0.275, y = log(0.275 / 0.725)
    assert pp.logit_transform(np.array(0.25), 0.05) == pytest.approx(-0.9694006, abs=1e-6)
    assert pp.logit_transform(np.array(0.5), 0.05) == pytest.approx(0.0, abs=1e-12)
    # log|dy/dx| = log 0.9 - log 0.275 - log 0.725 = -0.1053605 + 1.2909842 + 0.3215836
    #            = 1.5072073
    assert pp.logit_log_det_jacobian(np.array([0.25]), 0.05) == pytest.approx(1.5072073, abs=1e-6)
    x = np.linspace(0, 1, 11)
    for lam in (1e-6, 0.05):
        np.testing.assert_allclose(pp.inverse_logit_transform(pp.logit_transform(x, lam), lam),
                                   x, atol=1e-9)
    with pytest.raises(ValueError, match="lam"):
        pp.logit_transform(x, 0.5)


def test_logit_jacobian_matches_finite_difference():
    x = np.array([0.1, 0.5, 0.93])
    eps = 1e-6
    fd = (pp.logit_transform(x + eps, 0.05) - pp.logit_transform(x - eps, 0.05)) / (2 * eps)
    np.testing.assert_allclose(pp.logit_log_det_jacobian(x, 0.05, event_ndims=0), np.log(fd),
                               rtol=1e-6)


def test_bits_per_dim_hand_value_and_round_trip():
    # D = 2, x = (0.25, 0.5), lam = 0.05, log p_y = -3 nats
    # ldj = 1.5072073 + (log 0.9 - 2 log 0.5) = 1.5072073 + 1.2809338 = 2.7881411
    # log p_x = -3 + 2.7881411 = -0.2118589
    # bpd = (0.2118589 + 2 * 8 log 2) / (2 log 2) = 0.2118589 / 1.3862944 + 8 = 8.1528239
    x = np.array([[0.25, 0.5]])
    bpd = pp.bits_per_dim(np.array([-3.0]), x, 0.05)
    assert bpd[0] == pytest.approx(8.1528239, abs=1e-6)
    back = pp.logit_space_log_prob(bpd, x, 0.05)
    assert back[0] == pytest.approx(-3.0, abs=1e-9)
    # uniform density on [0,1)^D is exactly 8 bits/dim
    assert pp.nats_to_bits_per_dim(0.0, 784, levels=256) == pytest.approx(8.0)
    assert pp.nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert pp.bits_per_dim_to_nats(8.5, 10, levels=256) == pytest.approx(5 * math.log(2))


def test_dequantize():
    k = np.array([0, 1, 255, 128], dtype=np.uint8)
    a = pp.dequantize(k, seed=3)
    np.testing.assert_array_equal(np.floor(a * 256).astype(int), k)
    np.testing.assert_array_equal(a, pp.dequantize(k, seed=3))
    assert not np.array_equal(a, pp.dequantize(k, seed=4))
    with pytest.raises(ValueError, match="pixel levels"):
        pp.dequantize(np.array([256]))
    y = pp.to_flow_input(k, form="logit", lam=1e-6, seed=0)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    with pytest.raises(ValueError, match="form"):
        pp.to_flow_input(k, form="bits")


def test_as_dataset_forms():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    ds = nfd.as_dataset(x, batch_size=4, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in ds]), x)
    a = [(u.numpy(), v.numpy()) for u, v in nfd.as_dataset((x, y), batch_size=10, seed=1)][0]
    b = [(u.numpy(), v.numpy()) for u, v in nfd.as_dataset((x, y), batch_size=10, seed=1)][0]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0][:, 0] / 2, a[1])  # pairs stay aligned
    s = nfd.Splits(x, x[:2], x[:3], {"name": "t"}, labels=(y, y[:2], y[:3]))
    xb, yb = next(iter(nfd.as_dataset(s, batch_size=3, split="test", labels=True)))
    assert xb.shape == (3, 2) and yb.shape == (3,)
    with pytest.raises(ValueError, match="lengths"):
        nfd.as_dataset((x, y[:3]))
    with pytest.raises(ValueError, match="batch_size"):
        nfd.as_dataset(x, batch_size=0)
    with pytest.raises(ValueError, match="split"):
        nfd.as_dataset(s, split="dev")


def test_as_dataset_feeds_keras_fit():
    import tf_keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer=tf_keras.optimizers.Adam(0.1), loss="mse")
    hist = model.fit(nfd.as_dataset((x, y), batch_size=16, seed=0), epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 3
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert isinstance(nfd.as_dataset(x, repeat=True).element_spec, tf.TensorSpec)
