"""The XLA-compiled train step is the default of Flow.compile, with a fallback and an opt-out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import normalizingflows as nf


class _PyFunctionEmbedding(tf_keras.layers.Layer):
    """A context embedding with an op XLA has no kernel for (``tf.py_function``)."""

    def build(self, input_shape):
        self.dense = tf_keras.layers.Dense(4)
        self.dense.build(input_shape)

    def call(self, c):
        out = tf.py_function(lambda t: 2.0 * t, [self.dense(c)], tf.float32)
        out.set_shape([None, 4])
        return out


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 2)).astype("float32")
    x = (c[:, :1] + 0.3 * rng.normal(size=(n, 2))).astype("float32")
    return x, c


def test_compile_defaults_to_xla_with_an_opt_out():
    flow = nf.flows.build("maf", 2, layers=1, hidden_units=8)
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    assert flow.jit_compile is True
    flow.compile(tf_keras.optimizers.Adam(1e-3), jit_compile=False)
    assert flow.jit_compile is False
    flow.compile(tf_keras.optimizers.Adam(1e-3), run_eagerly=True)
    assert not flow.jit_compile


def test_xla_fit_matches_graph_fit():
    x, _ = _data()
    losses = []
    for jit in (None, False):
        flow = nf.flows.build("iaf", 2, layers=2, hidden_units=8, seed=1)
        flow.compile(tf_keras.optimizers.Adam(1e-2), jit_compile=jit)
        history = flow.fit(x, batch_size=64, epochs=2, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_a_step_xla_cannot_compile_falls_back_with_a_warning():
    x, c = _data()
    flow = nf.flows.build("maf", 2, layers=1, hidden_units=8, context_features=2,
                          context_net=_PyFunctionEmbedding())
    flow.compile(tf_keras.optimizers.Adam(1e-2))
    assert flow.jit_compile
    with pytest.warns(RuntimeWarning, match="XLA could not compile"):
        history = flow.fit((x, c), batch_size=64, epochs=3, verbose=0)
    assert flow.jit_compile is False
    loss = history.history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    # The escape hatch: no attempt, no warning.
    flow.compile(tf_keras.optimizers.Adam(1e-2), jit_compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        flow.fit((x, c), batch_size=64, epochs=1, verbose=0)


def test_other_errors_are_not_swallowed():
    flow = nf.flows.build("maf", 2, layers=1, hidden_units=8)
    flow.compile(tf_keras.optimizers.Adam(1e-2))
    bad = tf.data.Dataset.from_tensor_slices(np.zeros((8, 3), "float32")).batch(4)
    with pytest.raises(Exception) as info:
        flow.fit(bad, epochs=1, verbose=0)
    assert "XLA could not compile" not in str(info.value)
