"""The degree-blocked incremental MADE solve (MAF sampling, IAF density) against TFP's D passes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from normalizingflows.bijectors import MaskedAutoregressive
from normalizingflows.flows._parts import affine, spline, spline_param_count
from normalizingflows.nn import MADE

tfb = tfp.bijectors

BINS = 4


def _spline(params: tf.Tensor) -> tfb.Bijector:
    return spline(params, BINS, 3.0)


# (features, hidden_units, order, context_features, transform)
CASES = [
    (1, (6, 6), "left-to-right", None, "affine"),
    (1, (6,), "left-to-right", 2, "affine"),
    (2, (5,), "right-to-left", None, "affine"),
    (5, (16, 16), "left-to-right", None, "affine"),
    (5, (16, 16), "random", 3, "spline"),
    (7, (10, 9), "random", None, "spline"),  # 10 and 9 units over 6 degrees: unequal blocks
    (6, (), "right-to-left", None, "affine"),  # no hidden layer
    (4, (), "random", 2, "affine"),
    (9, (4,), "left-to-right", None, "affine"),  # fewer units than degrees: empty blocks
    (12, (40, 40, 40), "random", 2, "affine"),
]
IDS = [f"D{d}-h{'x'.join(map(str, h)) or 0}-{o}-c{c}-{t}" for d, h, o, c, t in CASES]


def _setup(features, hidden, order, context, transform, dtype=tf.float32, n=33):
    made = MADE(features, params=2 if transform == "affine" else spline_param_count(BINS),
                hidden_units=hidden, order=order, context_features=context, seed=3, dtype=dtype,
                output_initializer="glorot_uniform", output_bias_initializer="random_normal")
    make = affine if transform == "affine" else _spline
    x = tf.random.stateless_normal([n, features], seed=[1, 2], dtype=dtype)
    c = None if context is None else tf.random.stateless_normal([n, context], seed=[3, 4],
                                                                dtype=dtype)
    fast = MaskedAutoregressive(made, make)
    reference = tfb.MaskedAutoregressiveFlow(
        bijector_fn=lambda y, **kwargs: make(made(y, context=kwargs.get("context"))))
    return made, fast, reference, x, c


def _kw(c):
    return {} if c is None else {"context": c}


@pytest.mark.parametrize("features,hidden,order,context,transform", CASES, ids=IDS)
def test_incremental_forward_equals_tfp_d_passes(features, hidden, order, context, transform):
    _, fast, reference, x, c = _setup(features, hidden, order, context, transform)
    assert fast.incremental
    expected = reference.forward(x, **_kw(c)).numpy()
    run = lambda a, b: fast.forward(a, context=b)
    np.testing.assert_allclose(run(x, c).numpy(), expected, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(tf.function(run)(x, c).numpy(), expected, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(tf.function(run, jit_compile=True)(x, c).numpy(), expected,
                               atol=5e-5, rtol=1e-4)
    naive = MaskedAutoregressive(fast.conditioner, fast._make_transform, incremental=False)
    assert not naive.incremental
    np.testing.assert_allclose(naive.forward(x, context=c).numpy(), expected, atol=2e-5,
                               rtol=1e-5)
    # and it is a bijection: the one-pass inverse takes it back
    np.testing.assert_allclose(fast.inverse(run(x, c), context=c).numpy(), x.numpy(),
                               atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("features,hidden,order,context,transform",
                         [CASES[4], CASES[5], CASES[7]], ids=[IDS[4], IDS[5], IDS[7]])
def test_incremental_forward_is_exact_in_float64(features, hidden, order, context, transform):
    _, fast, reference, x, c = _setup(features, hidden, order, context, transform,
                                      dtype=tf.float64)
    np.testing.assert_allclose(fast.forward(x, context=c).numpy(),
                               reference.forward(x, **_kw(c)).numpy(), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("features,hidden,order,context,transform",
                         [CASES[3], CASES[4], CASES[7]], ids=[IDS[3], IDS[4], IDS[7]])
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_incremental_forward_gradients_equal_tfp(features, hidden, order, context, transform,
                                                 jit):
    made, fast, reference, x, c = _setup(features, hidden, order, context, transform,
                                         dtype=tf.float64)

    def grads(bijector, **kwargs):
        def run(a):
            with tf.GradientTape() as tape:
                tape.watch(a)
                y = bijector.forward(a, **kwargs)
                loss = tf.reduce_sum(tf.sin(y)) + bijector.forward_log_det_jacobian(
                    a, event_ndims=1, **kwargs)[0]
            return tape.gradient(loss, [a, *made.trainable_variables])
        return [g.numpy() for g in (tf.function(run, jit_compile=True) if jit else run)(x)]

    for got, want in zip(grads(fast, context=c), grads(reference, **_kw(c)), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=1e-9)


def test_conditional_made_first_input_depends_on_the_context():
    made = MADE(4, params=2, hidden_units=(16,), context_features=3, seed=0,
                output_initializer="glorot_uniform")
    x = tf.zeros([1, 4])
    c = tf.constant([[0.3, -1.0, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(c)
        first = made(x, context=c)[0, int(np.argmin(made.degrees))]
    assert float(tf.reduce_max(tf.abs(tape.jacobian(first, c)))) > 0.0


@pytest.mark.parametrize("features,hidden,order,context,transform",
                         [CASES[4], CASES[7], CASES[9]], ids=[IDS[4], IDS[7], IDS[9]])
def test_chunked_solve_equals_tfp(features, hidden, order, context, transform):
    # 33 rows in chunks of at most 8: five chunks of 7 rows, the last one padded by 2.
    made, fast, reference, x, c = _setup(features, hidden, order, context, transform,
                                         dtype=tf.float64)
    made.solve_rows = 8
    expected = reference.forward(x, **_kw(c)).numpy()
    run = lambda a, b: fast.forward(a, context=b)
    for fn in (run, tf.function(run), tf.function(run, jit_compile=True)):
        np.testing.assert_allclose(fn(x, c).numpy(), expected, atol=1e-12, rtol=1e-12)
    # an unknown batch size takes the chunked path whatever its size
    spec = [tf.TensorSpec([None, features], tf.float64),
            None if c is None else tf.TensorSpec([None, context], tf.float64)]
    made.solve_rows = 10**6
    dynamic = tf.function(run, input_signature=spec) if c is not None else tf.function(
        lambda a: fast.forward(a), input_signature=spec[:1])
    got = dynamic(x, c) if c is not None else dynamic(x)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
def test_chunked_solve_gradients_equal_tfp(jit):
    made, fast, reference, x, c = _setup(*CASES[4], dtype=tf.float64)
    made.solve_rows = 8

    def grads(bijector, **kwargs):
        def run(a):
            with tf.GradientTape() as tape:
                tape.watch(a)
                loss = tf.reduce_sum(tf.sin(bijector.forward(a, **kwargs)))
            return tape.gradient(loss, [a, *made.trainable_variables])
        # eager map_fn gradients of gathers arrive as IndexedSlices
        return [tf.convert_to_tensor(g).numpy()
                for g in (tf.function(run, jit_compile=True) if jit else run)(x)]

    for got, want in zip(grads(fast, context=c), grads(reference, **_kw(c)), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=1e-9)


def test_solve_rows_holds_the_cache_budget():
    from normalizingflows.nn.made import SOLVE_CACHE_BYTES

    assert MADE(43, hidden_units=(512, 512)).solve_rows == SOLVE_CACHE_BYTES // (4 * 1024)
    assert MADE(5, hidden_units=(8,)).solve_rows == SOLVE_CACHE_BYTES // (4 * 8)
    assert MADE(5, hidden_units=(4096, 4096)).solve_rows == 256


@pytest.mark.parametrize("chunked", [False, True], ids=["rows", "chunked"])
@pytest.mark.parametrize("features,hidden,order,context,transform", CASES, ids=IDS)
def test_solve_returns_the_parameters_it_used(features, hidden, order, context, transform,
                                              chunked):
    made, fast, _, z, c = _setup(features, hidden, order, context, transform, dtype=tf.float64)
    if chunked:
        made.solve_rows = 8  # 33 rows: five chunks, the last one padded
    step = lambda params, z_i: fast._make_transform(params).forward(z_i)
    x, params = made.solve(step, z, c, return_params=True)
    np.testing.assert_allclose(params.numpy(), made(x, context=c).numpy(), atol=1e-12,
                               rtol=1e-12)
    np.testing.assert_allclose(made.solve(step, z, c).numpy(), x.numpy(), atol=0, rtol=0)


@pytest.mark.parametrize("features,hidden,order,context,transform",
                         [CASES[3], CASES[4], CASES[9]], ids=[IDS[3], IDS[4], IDS[9]])
def test_sequential_log_det_takes_no_extra_network_pass(features, hidden, order, context,
                                                        transform, monkeypatch):
    """An IAF density (MAF sample and log-prob) needs forward and its log-det on the same
    input: the log-det comes from the parameters of the solve, not from another MADE pass."""
    made, fast, reference, z, c = _setup(features, hidden, order, context, transform,
                                         dtype=tf.float64)
    passes = []
    call = MADE.call
    monkeypatch.setattr(MADE, "call", lambda self, *a, **k: passes.append(1) or call(self, *a,
                                                                                     **k))
    iaf = tfb.Invert(fast)
    y = fast.forward(z, context=c)
    ildj = iaf.inverse_log_det_jacobian(z, event_ndims=1, context=c)  # same z: cached
    assert passes == []
    expected = reference.forward_log_det_jacobian(z, event_ndims=1, **_kw(c))
    np.testing.assert_allclose(ildj.numpy(), expected.numpy(), atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(iaf.inverse(z, context=c).numpy(), y.numpy(), atol=0, rtol=0)
    # the one-pass direction shares its pass between the inverse and its log-det the same way
    y = tf.identity(y)
    passes.clear()  # the reference's D passes
    x = fast.inverse(y, context=c)
    fast.inverse_log_det_jacobian(y, event_ndims=1, context=c)
    assert passes == [1]
    np.testing.assert_allclose(x.numpy(), z.numpy(), atol=1e-10, rtol=1e-10)


def test_a_conditioner_solve_without_return_params_still_works():
    made, fast, reference, z, c = _setup(*CASES[4], dtype=tf.float64)

    class OldSolve:  # a user's conditioner written against the solve(step, z, context) form
        def __call__(self, y, context=None):
            return made(y, context=context)

        def solve(self, step, z, context=None):
            return made.solve(step, z, context)

    old = MaskedAutoregressive(OldSolve(), fast._make_transform)
    assert old.incremental
    np.testing.assert_allclose(old.forward(z, context=c).numpy(),
                               reference.forward(z, context=c).numpy(), atol=1e-12)
    np.testing.assert_allclose(
        old.forward_log_det_jacobian(z, event_ndims=1, context=c).numpy(),
        reference.forward_log_det_jacobian(z, event_ndims=1, context=c).numpy(), atol=1e-12)


# ResMADE: every hidden layer has one width and the same degrees (features, hidden, context)
RESIDUAL_CASES = [(1, (6,), 2), (5, (16, 16), None), (7, (10,), 3), (9, (4, 4), None)]


@pytest.mark.parametrize("chunked", [False, True], ids=["rows", "chunked"])
@pytest.mark.parametrize("features,hidden,context", RESIDUAL_CASES,
                         ids=[f"D{d}-h{'x'.join(map(str, h))}-c{c}" for d, h, c in RESIDUAL_CASES])
def test_residual_made_solve_equals_d_passes(features, hidden, context, chunked):
    made = MADE(features, params=spline_param_count(BINS), hidden_units=hidden, order="random",
                context_features=context, seed=3, dtype=tf.float64, residual=True,
                dropout=0.5, output_initializer="glorot_uniform",
                output_bias_initializer="random_normal")
    if chunked:
        made.solve_rows = 8
    z = tf.random.stateless_normal([33, features], seed=[1, 2], dtype=tf.float64)
    c = None if context is None else tf.random.stateless_normal([33, context], seed=[3, 4],
                                                                dtype=tf.float64)
    reference = tfb.MaskedAutoregressiveFlow(
        bijector_fn=lambda y, **kwargs: _spline(made(y, context=kwargs.get("context"))))
    step = lambda params, z_i: _spline(params).forward(z_i)
    x, params = made.solve(step, z, c, return_params=True)  # no dropout in the solve
    np.testing.assert_allclose(x.numpy(), reference.forward(z, **_kw(c)).numpy(), atol=1e-10)
    np.testing.assert_allclose(params.numpy(), made(x, context=c).numpy(), atol=1e-12)
