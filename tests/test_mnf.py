"""Multiplicative normalizing flows (nf.layers): the KL bound, the ELBO, gradients,
stochasticity, save/load and parameter counts, on tiny layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import normalizingflows as nf
from normalizingflows.layers import (
    KLAnnealing,
    LeNet,
    MNFConv2D,
    MNFDense,
    MNFLeNet,
    accuracy,
    expected_calibration_error,
    mnf_layers,
    parameter_counts,
    predictive_entropy,
    split_seed,
)

__all__: list[str] = []

tfd = tfp.distributions

TINY = {"filters": (2, 3), "hidden_units": 8, "input_shape": (16, 16, 1), "flow_layers": 1,
        "aux_flow_layers": 1, "flow_hidden_units": (4,)}
N_TRAIN = 50


def tiny_lenet(seed: int = 0, **kwargs) -> MNFLeNet:
    return MNFLeNet(train_size=N_TRAIN, seed=seed, **{**TINY, **kwargs})


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, 16, 16, 1)).astype(np.float32)


def dense(flow: str = "realnvp", layers: int = 2, **kwargs) -> MNFDense:
    layer = MNFDense(3, flow=flow, flow_layers=layers, aux_flow_layers=layers,
                     flow_hidden_units=(6,), train_size=N_TRAIN, **kwargs)
    layer.build((None, 4))
    return layer


def conv(**kwargs) -> MNFConv2D:
    layer = MNFConv2D(3, 3, flow_layers=2, aux_flow_layers=2, flow_hidden_units=(6,),
                      train_size=N_TRAIN, **kwargs)
    layer.build((None, 5, 5, 2))
    return layer


# ---------------------------------------------------------------------------- the KL bound

@pytest.mark.parametrize("make", [dense, conv], ids=["dense", "conv"])
def test_kl_parts_match_their_definitions(make) -> None:
    layer = make(prior_stddev=0.7)
    seed = tf.constant([3, 4], tf.int64)
    parts = layer.kl_terms(seed, samples=5)
    for value in parts.values():
        assert value.shape == (5,) and bool(tf.reduce_all(tf.math.is_finite(value)))
    # The same stateless seed draws the same z that the KL used.
    z = layer.sample_noise(5, split_seed(seed, 2)[0])
    mean = layer.kernel_mean if layer._noise_first else tf.transpose(
        tf.reshape(layer.kernel_mean, [-1, layer.noise_features]))
    std = tf.exp(0.5 * (layer.kernel_log_var if layer._noise_first else tf.transpose(
        tf.reshape(layer.kernel_log_var, [-1, layer.noise_features]))))
    mean, std = tf.reshape(mean, [layer.noise_features, -1]), tf.reshape(
        std, [layer.noise_features, -1])
    want = [float(tf.reduce_sum(tfd.kl_divergence(tfd.Normal(z[s][:, None] * mean, std),
                                                  tfd.Normal(0.0, 0.7))))
            for s in range(5)]
    np.testing.assert_allclose(parts["kl_gaussian"].numpy(), want, rtol=1e-4)
    assert bool(tf.reduce_all(parts["kl_gaussian"] >= 0))
    # log q(z): N(mu_z, sigma_z^2) pushed through the q flow.
    base = tfd.Independent(tfd.Normal(layer.z_mean, tf.exp(0.5 * layer.z_log_var)), 1)
    q = tfd.TransformedDistribution(base, layer._bijectors.q)
    np.testing.assert_allclose(parts["log_q"].numpy(), q.log_prob(tf.identity(z)).numpy(),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(parts["bound"].numpy(), (parts["kl_gaussian"] + parts["log_q"]
                                                        - parts["log_r"]).numpy(), rtol=1e-6)


def test_gaussian_kl_vanishes_at_the_prior() -> None:
    layer = dense(layers=0, prior_stddev=0.5)
    layer.kernel_mean.assign(tf.zeros_like(layer.kernel_mean))
    layer.kernel_log_var.assign(tf.fill(layer.kernel_log_var.shape, math.log(0.25)))
    kl = layer.kl_terms(0, samples=4)["kl_gaussian"].numpy()
    np.testing.assert_allclose(kl, 0.0, atol=1e-5)


def test_kl_bound_is_finite_nonnegative_on_average_and_decreases_on_kl_alone() -> None:
    layer = dense()
    seeds = [tf.constant([i, 7], tf.int64) for i in range(4)]

    @tf.function
    def mean_bound() -> tf.Tensor:
        return tf.reduce_mean([layer.kl_divergence(s, samples=64) for s in seeds])

    before = float(mean_bound())
    assert np.isfinite(before) and before >= 0.0
    opt = tf_keras.optimizers.Adam(0.05)

    @tf.function
    def step(seed: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = layer.kl_divergence(seed, samples=8)
        opt.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables),
                                layer.trainable_variables, strict=True))

    for i in range(60):
        step(tf.constant([100 + i, 0], tf.int64))
    after = float(mean_bound())
    assert np.isfinite(after) and after < 0.5 * before


# ---------------------------------------------------------------------------- the ELBO

def test_layer_adds_its_kl_over_train_size_in_training_calls_only() -> None:
    layer = dense()
    x = tf.random.stateless_normal([5, 4], [1, 1])
    seed = tf.constant([5, 6], tf.int64)
    layer(x, training=True, seed=seed)
    assert len(layer.losses) == 1
    want = layer.kl_divergence(split_seed(seed, 3)[2]) / N_TRAIN
    np.testing.assert_allclose(layer.losses[0].numpy(), want.numpy(), rtol=1e-5)
    layer(x, training=False, seed=seed)
    assert layer.losses == []


def test_model_loss_is_cross_entropy_plus_kl_over_n() -> None:
    model = tiny_lenet()
    model.compile(tf_keras.optimizers.Adam(1e-3),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = images(), tf.constant(np.arange(6) % 10)
    seed = tf.constant([8, 9], tf.int64)
    logits = model(x, training=True, seed=seed)
    kls = [layer.kl_divergence(split_seed(s, 3)[2])
           for layer, s in zip(model.mnf, split_seed(seed, 4), strict=True)]
    np.testing.assert_allclose(tf.add_n(model.losses).numpy(),
                               (tf.add_n(kls) / N_TRAIN).numpy(), rtol=1e-5)
    ce = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(y, logits,
                                                                        from_logits=True))
    loss = model.compute_loss(x, y, logits)
    np.testing.assert_allclose(loss.numpy(), (ce + tf.add_n(kls) / N_TRAIN).numpy(), rtol=1e-5)
    assert float(tf.add_n(kls)) > 0


def test_fit_with_kl_annealing_trains() -> None:
    model = tiny_lenet()
    tf_keras.utils.set_random_seed(0)
    model.compile(tf_keras.optimizers.Adam(1e-2),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x, y = images(40, seed=1), np.arange(40) % 2
    history = model.fit(x, y, batch_size=20, epochs=2, verbose=0,
                        callbacks=[KLAnnealing(epochs=1, start=0.5)])
    assert all(np.isfinite(history.history["loss"]))
    assert [float(layer.kl_scale.numpy()) for layer in mnf_layers(model)] == [1.0] * 4
    assert KLAnnealing(epochs=2, start=0.5).value(1) == 0.75


# ---------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("flow", ["realnvp", "maf"])
def test_gradients_reach_every_variational_parameter_and_the_flows(flow: str) -> None:
    model = tiny_lenet(flow=flow)
    x, y = images(), np.arange(6) % 10
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    names = {v.name for v in variables}
    for layer in model.mnf:
        assert layer.q_nets and layer.r_nets
        for net in [*layer.q_nets, *layer.r_nets]:
            assert {v.name for v in net.trainable_variables} <= names
    before = [v.numpy().copy() for v in variables]
    opt = tf_keras.optimizers.Adam(1e-2)
    for step in range(3):
        with tf.GradientTape() as tape:
            logits = model(x, training=True, seed=tf.constant([step, 1], tf.int64))
            loss = loss_fn(y, logits) + tf.add_n(model.losses)
        grads = tape.gradient(loss, variables)
        assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
        opt.apply_gradients(zip(grads, variables, strict=True))
    unchanged = [v.name for v, b in zip(variables, before, strict=True)
                 if np.array_equal(v.numpy(), b)]
    assert unchanged == []


# ---------------------------------------------------------------------------- predictions

def test_mnf_is_stochastic_and_lenet_deterministic() -> None:
    x = images(4)
    mnf = tiny_lenet()
    assert not np.allclose(mnf(x).numpy(), mnf(x).numpy())
    np.testing.assert_array_equal(mnf(x, seed=3).numpy(), mnf(x, seed=3).numpy())
    probs = mnf.predict_samples(x, samples=7, seed=1, batch_rows=10)
    assert probs.shape == (7, 4, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert probs.std(axis=0).min() > 0
    np.testing.assert_array_equal(probs, mnf.predict_samples(x, samples=7, seed=1,
                                                             batch_rows=10))
    lenet = LeNet(filters=(2, 3), hidden_units=8, input_shape=(16, 16, 1))
    np.testing.assert_array_equal(lenet(x).numpy(), lenet(x).numpy())
    lp = lenet.predict_samples(x, samples=3)
    assert lp.shape == (3, 4, 10) and np.array_equal(lp[0], lp[2])
    np.testing.assert_allclose(lp[0], tf.nn.softmax(lenet(x)).numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="shape"):
        mnf.predict_samples(np.zeros((2, 28, 28, 1), np.float32))


def test_save_and_load_weights_round_trip(tmp_path) -> None:
    x = images(3)
    model = tiny_lenet(seed=0)
    want = model.predict_samples(x, samples=4, seed=5)
    model.save_weights(str(tmp_path / "keras" / "weights"))
    tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt" / "weights"))
    for how in ("keras", "checkpoint"):
        other = tiny_lenet(seed=1)
        assert not np.allclose(other.predict_samples(x, samples=4, seed=5), want)
        if how == "keras":
            other.load_weights(str(tmp_path / "keras" / "weights")).assert_consumed()
        else:
            tf.train.Checkpoint(model=other).read(
                str(tmp_path / "ckpt" / "weights")).assert_existing_objects_matched()
        np.testing.assert_allclose(other.predict_samples(x, samples=4, seed=5), want,
                                   rtol=1e-6)


# ---------------------------------------------------------------------------- counts, metrics

def test_parameter_counts() -> None:
    assert nf.diagnostics.count_parameters(LeNet()) == 431_080
    no_flow = parameter_counts(filters=(2, 3), hidden_units=8, flow_layers=0,
                               aux_flow_layers=0)
    # LeNet: conv 5*5*1*2+2, conv 5*5*2*3+3, dense 48*8+8, dense 8*10+10.
    assert no_flow["lenet"] == 52 + 153 + 392 + 90
    # MNF: weight means and log-variances, the bias, and 5 vectors over the noise
    # (mu_z, log sigma_z^2, c, b1, b2): 2 + 3 + 48 + 8 noise variables.
    assert no_flow["mnf_lenet"] == 2 * (50 + 150 + 384 + 80) + (2 + 3 + 8 + 10) + 5 * 61
    model = tiny_lenet()
    flows = sum(nf.diagnostics.count_parameters(net) for layer in model.mnf
                for net in [*layer.q_nets, *layer.r_nets])
    assert flows > 0
    counts = parameter_counts(filters=(2, 3), hidden_units=8, input_shape=(16, 16, 1),
                              flow_layers=1, aux_flow_layers=1, flow_hidden_units=(4,))
    assert counts["mnf_lenet"] == nf.diagnostics.count_parameters(model)
    # 16x16 inputs: 12x12 -> 6x6 -> 2x2 -> 1x1 x 3 filters into the dense layer.
    assert counts["lenet"] == 52 + 153 + (3 * 8 + 8) + 90
    assert counts["mnf_lenet"] == (2 * (50 + 150 + 3 * 8 + 80) + (2 + 3 + 8 + 10)
                                   + 5 * (2 + 3 + 3 + 8) + flows)


def test_uncertainty_metrics() -> None:
    probs = np.array([[0.8, 0.2], [0.8, 0.2], [0.8, 0.2], [0.8, 0.2], [0.8, 0.2],
                      [0.3, 0.7]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert accuracy(probs, labels) == pytest.approx(5 / 6)
    # Bin of 0.8: accuracy 4/5 = confidence; bin of 0.7: accuracy 1, confidence 0.7.
    assert expected_calibration_error(probs, labels) == pytest.approx(0.3 / 6)
    np.testing.assert_allclose(predictive_entropy([[0.25] * 4]), [math.log(4)])
    with pytest.raises(ValueError, match="labels"):
        accuracy(probs, labels[:3])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="flow"):
        MNFDense(2, flow="planar")
    with pytest.raises(ValueError, match="train_size"):
        MNFDense(2, train_size=0)
    with pytest.raises(ValueError, match="prior_stddev"):
        MNFConv2D(2, 3, prior_stddev=0.0)
    with pytest.raises(ValueError, match="at least 2 noise variables"):
        MNFDense(2)(tf.ones([3, 1]))
