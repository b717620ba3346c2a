"""Batched-parameter Planar/Radial, the `Conditional` bijector, conditional planar/radial flows.

A conditional planar or radial flow takes each map's raw parameters from a hyper-network of the
context, so its maps carry batched parameters (one map per row). These tests pin that the
batched maps are exactly the per-row maps, that `Conditional` delegates faithfully, and that
the conditional catalog flows are exact, trainable and compile.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import normalizingflows as nf
from normalizingflows.bijectors import Conditional, Planar, Radial

tfb = tfp.bijectors

__all__: list[str] = []

F64 = tf.float64
N, D = 5, 3


def fresh(t) -> tf.Tensor:
    """A new tensor with the same value (TFP caches bijector results by tensor identity)."""
    return tf.constant(np.asarray(t))


def normal(shape, seed: int, stddev: float = 1.0, dtype=F64) -> tf.Tensor:
    return tf.random.stateless_normal(shape, seed=[seed, 17], stddev=stddev, dtype=dtype)


def four(bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor, **kwargs) -> list[np.ndarray]:
    """forward(x), inverse(y), fldj(x), ildj(y), each on fresh tensors."""
    return [
        bij.forward(fresh(x), **kwargs).numpy(),
        bij.inverse(fresh(y), **kwargs).numpy(),
        bij.forward_log_det_jacobian(fresh(x), event_ndims=1, **kwargs).numpy(),
        bij.inverse_log_det_jacobian(fresh(y), event_ndims=1, **kwargs).numpy(),
    ]


def slogdet(fn, x: tf.Tensor) -> np.ndarray:
    x = fresh(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = fn(x)
    sign, logabsdet = tf.linalg.slogdet(tape.batch_jacobian(out, x, experimental_use_pfor=False))
    assert np.all(sign.numpy() != 0)
    return logabsdet.numpy()


# ----------------------------------------------------------------------------- batched params


def planar_params(batch, seed: int = 0):
    w = normal([*batch, D], seed, stddev=1.5)
    u = normal([*batch, D], seed + 1)
    # Row 0 has w . u = -1.5 < -1: the per-row constraint must repair it (row by row).
    w0 = tf.reshape(w, [-1, D])[:1]
    u = tf.tensor_scatter_nd_update(tf.reshape(u, [-1, D]), [[0]],
                                    -1.5 * w0 / tf.reduce_sum(w0 * w0))
    u = tf.reshape(u, [*batch, D])
    b = normal(batch, seed + 2, stddev=0.5)
    return w, u, b


def radial_params(batch, seed: int = 0):
    return normal([*batch, D], seed), normal(batch, seed + 1), normal(batch, seed + 2, 1.5)


CASES = [
    ("planar_tanh", planar_params, lambda *p: Planar(*p)),
    ("planar_leaky_relu", planar_params, lambda *p: Planar(*p, nonlinearity="leaky_relu")),
    ("radial", radial_params, lambda *p: Radial(*p)),
]


@pytest.mark.parametrize("make_params,make", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("batch", [(N,), (2, 3)], ids=["rank1", "rank2"])
def test_batched_parameters_equal_the_per_row_bijectors(make_params, make, batch) -> None:
    params = make_params(batch)
    x = 1.5 * normal([*batch, D], seed=9)
    y = 1.5 * normal([*batch, D], seed=10)
    batched = four(make(*params), x, y)
    flat = [tf.reshape(p, [-1, *p.shape[len(batch):]]) for p in params]
    xf, yf = tf.reshape(x, [-1, D]), tf.reshape(y, [-1, D])
    rows = [four(make(*(p[i] for p in flat)), xf[i:i + 1], yf[i:i + 1])
            for i in range(xf.shape[0])]
    for k, what in enumerate(("forward", "inverse", "fldj", "ildj")):
        expected = np.concatenate([r[k] for r in rows], axis=0)
        assert batched[k].shape == (*batch, D) if k < 2 else batched[k].shape == batch
        np.testing.assert_allclose(batched[k].reshape(expected.shape), expected, rtol=1e-10,
                                   atol=1e-10, err_msg=what)
    # Round trips of the batched map.
    bij = make(*params)
    np.testing.assert_allclose(bij.inverse(fresh(batched[0])), x, atol=1e-10)
    np.testing.assert_allclose(bij.forward(fresh(batched[1])), y, atol=1e-10)


@pytest.mark.parametrize("make_params,make", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_batched_parameters_broadcast_against_a_larger_input_batch(make_params, make) -> None:
    params = make_params((N,), seed=3)
    bij = make(*params)
    x = normal([4, N, D], seed=11)
    out = four(bij, x, x)
    for m in range(4):
        row = four(bij, x[m], x[m])
        for k in range(4):
            np.testing.assert_allclose(out[k][m], row[k], rtol=1e-10, atol=1e-10)
    assert bij.experimental_batch_shape(x_event_ndims=1) == [N]


@pytest.mark.parametrize("make_params,make", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_batched_log_dets_match_the_autodiff_jacobian(make_params, make) -> None:
    bij = make(*make_params((N,), seed=5))
    x, y = 1.5 * normal([N, D], seed=12), 1.5 * normal([N, D], seed=13)
    fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy()
    ildj = bij.inverse_log_det_jacobian(fresh(y), event_ndims=1).numpy()
    np.testing.assert_allclose(fldj, slogdet(bij.forward, x), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ildj, slogdet(bij.inverse, y), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make_params,make", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gradients_of_batched_parameters_are_the_per_row_gradients(make_params, make) -> None:
    # Through the inverse too: the implicit-function step of the tanh root solve, per row.
    params = [tf.Variable(p) for p in make_params((N,), seed=6)]
    y = 1.5 * normal([N, D], seed=14)

    def loss(bij, yy):
        return (tf.reduce_sum(bij.inverse(fresh(yy)) * [1.0, 2.0, 3.0])
                + tf.reduce_sum(bij.inverse_log_det_jacobian(fresh(yy), event_ndims=1)))

    with tf.GradientTape() as tape:
        value = loss(make(*params), y)
    grads = tape.gradient(value, params)
    for i in range(N):
        row = [tf.Variable(p[i]) for p in params]
        with tf.GradientTape() as tape:
            value = loss(make(*row), y[i:i + 1])
        for g, r in zip(grads, tape.gradient(value, row), strict=True):
            np.testing.assert_allclose(g.numpy()[i], r.numpy(), rtol=1e-9, atol=1e-12)


def test_unbatched_parameters_keep_their_shapes_and_errors() -> None:
    bij = Planar.new(D, dtype=F64)
    assert bij.u_hat().shape == (D,) and bij.experimental_batch_shape(x_event_ndims=1) == []
    assert Radial.new(D).alpha().shape == ()
    with pytest.raises(ValueError, match="`b`"):
        Planar(tf.ones([N, D]), tf.ones([N, D]), tf.zeros([N + 1]))
    with pytest.raises(ValueError, match="`w` and `u`"):
        Planar(tf.ones([N, D]), tf.ones([N + 1, D]), 0.0)
    with pytest.raises(ValueError, match="`b`"):
        Planar(tf.ones([D]), tf.ones([D]), tf.zeros([N]))  # b of higher rank than the batch
    with pytest.raises(ValueError, match="alpha_raw"):
        Radial(tf.zeros([N, D]), tf.zeros([N + 1]), tf.zeros([N]))
    with pytest.raises(ValueError, match="beta_raw"):
        Radial(tf.zeros([N, D]), tf.zeros([N]), tf.zeros([2, N]))


def test_initial_parameters_are_those_of_new() -> None:
    for cls, names in ((Planar, ("w", "u", "b")), (Radial, ("z0", "alpha_raw", "beta_raw"))):
        made = cls.new(D, dtype=F64, seed=12)
        for name, value in zip(names, cls.initial_parameters(D, dtype=F64, seed=12),
                               strict=True):
            np.testing.assert_array_equal(getattr(made, name).numpy(), value.numpy())


# ----------------------------------------------------------------------------- Conditional


def _conditional() -> tuple[Conditional, list[tf.Variable]]:
    """A planar map whose parameters are linear in a 2-wide context."""
    a = tf.Variable(normal([2, 2 * D + 1], seed=20, stddev=0.7))
    base = tf.Variable(normal([2 * D + 1], seed=21, stddev=0.7))

    def make(context: tf.Tensor) -> tfb.Bijector:
        p = base + tf.linalg.matvec(a, context, transpose_a=True)
        return Planar(p[..., :D], p[..., D:2 * D], p[..., 2 * D], name="inner")

    return Conditional(make, dtype=F64, name="cond_planar"), [a, base]


def test_conditional_round_trip_and_log_dets_against_autodiff() -> None:
    bij, _ = _conditional()
    c = normal([N, 2], seed=22)
    x, y = 1.5 * normal([N, D], seed=23), 1.5 * normal([N, D], seed=24)
    fx = bij.forward(fresh(x), context=c)
    np.testing.assert_allclose(bij.inverse(fresh(fx), context=c), x, atol=1e-10)
    iy = bij.inverse(fresh(y), context=c)
    np.testing.assert_allclose(bij.forward(fresh(iy), context=c), y, atol=1e-10)
    fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=1, context=c)
    ildj = bij.inverse_log_det_jacobian(fresh(y), event_ndims=1, context=c)
    np.testing.assert_allclose(fldj, slogdet(lambda t: bij.forward(t, context=c), x), atol=1e-9)
    np.testing.assert_allclose(ildj, slogdet(lambda t: bij.inverse(t, context=c), y), atol=1e-9)
    # The context matters, and it equals the bijector built by hand.
    other = bij.forward(fresh(x), context=c + 1.0)
    assert np.abs(other - fx).max() > 1e-3
    np.testing.assert_array_equal(bij.bijector(c).forward(fresh(x)), fx)


def test_conditional_in_a_chain_under_xla_and_gradients() -> None:
    bij, variables = _conditional()
    chain = tfb.Chain([tfb.Shift(tf.constant(0.5, F64)), bij])
    c = normal([N, 2], seed=25)
    x = normal([N, D], seed=26)
    kwargs = {"cond_planar": {"context": c}}

    def run(xx, cc):
        kw = {"cond_planar": {"context": cc}}
        return (chain.forward(xx, **kw), chain.inverse(xx, **kw),
                chain.forward_log_det_jacobian(xx, event_ndims=1, **kw),
                chain.inverse_log_det_jacobian(xx, event_ndims=1, **kw))

    eager = run(fresh(x), c)
    compiled = tf.function(run, jit_compile=True)(fresh(x), c)
    for e, k in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(k, e, rtol=1e-9, atol=1e-9)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(chain.inverse_log_det_jacobian(fresh(x), event_ndims=1, **kwargs))
    for g in tape.gradient(loss, variables):
        assert g is not None and np.any(g.numpy() != 0)


def test_conditional_needs_a_context_and_a_bijector() -> None:
    bij, _ = _conditional()
    with pytest.raises(ValueError, match="needs `context=`"):
        bij.inverse(normal([N, D], seed=27))
    with pytest.raises(ValueError, match="must return a tfb.Bijector"):
        Conditional(lambda c: c).forward(tf.zeros([1, 2]), context=tf.zeros([1, 2]))
    with pytest.raises(TypeError, match="callable"):
        Conditional("planar")


# ----------------------------------------------------------------------------- flows

FLOWS = [("planar", {}), ("planar", {"invert": True}), ("planar", {"nonlinearity": "leaky_relu"}),
         ("radial", {}), ("radial", {"invert": True}), ("planar", {"context_net": [6]}),
         ("radial", {"context_net": [6]})]
FLOW_IDS = [f"{n}-{','.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in FLOWS]
C = 3


def make_flow(name: str, kwargs: dict, dtype: str = "float32", features: int = 2):
    """A small conditional flow moved away from its (context-independent) initialisation."""
    flow = nf.flows.build(name, features, layers=2, hidden_units=8, context_features=C,
                          dtype=dtype, **kwargs)
    for i, v in enumerate(flow.trainable_variables):
        v.assign_add(0.1 * tf.random.stateless_normal(v.shape, seed=[1, i], dtype=v.dtype))
    return flow


def inputs(n: int, features: int = 2, dtype=tf.float32, seed: int = 0):
    return (tf.random.stateless_normal([n, features], seed=[seed, 1], dtype=dtype),
            tf.random.stateless_normal([n, C], seed=[seed, 2], dtype=dtype))


@pytest.mark.parametrize("name,kwargs", FLOWS, ids=FLOW_IDS)
def test_conditional_flow_is_exact_and_depends_on_the_context(name, kwargs) -> None:
    flow = make_flow(name, kwargs, dtype="float64")
    assert flow.conditional and flow.context_features == C and len(flow.nets) == 2
    x, c = inputs(6, dtype=F64)
    lp = flow.log_prob(x, context=c)
    assert lp.shape == (6,) and np.isfinite(lp.numpy()).all()
    z = flow.to_base(fresh(x), context=c)
    back = flow.bijector.forward(fresh(z), **flow.condition_kwargs(c)["bijector_kwargs"])
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-10)
    np.testing.assert_allclose(
        flow.distribution.log_prob(fresh(x), **flow.condition_kwargs(c)).numpy(), lp.numpy(),
        rtol=1e-12, atol=1e-12)
    other = flow.log_prob(fresh(x), context=c + 1.0)
    assert np.abs(other.numpy() - lp.numpy()).max() > 1e-3
    # One context for every row equals that context repeated.
    np.testing.assert_allclose(flow.log_prob(fresh(x), context=c[0]).numpy(),
                               flow.log_prob(fresh(x), context=tf.repeat(c[:1], 6, 0)).numpy(),
                               rtol=1e-12)
    s, s_lp = flow.sample_and_log_prob(6, context=c, seed=3)
    np.testing.assert_allclose(flow.log_prob(fresh(s), context=c).numpy(), s_lp.numpy(),
                               rtol=1e-9, atol=1e-9)
    s1 = flow.sample(5, context=c[0], seed=2)
    assert s1.shape == (5, 2) and np.isfinite(s1.numpy()).all()


@pytest.mark.parametrize("name,kwargs", FLOWS, ids=FLOW_IDS)
def test_every_conditional_flow_variable_gets_a_gradient(name, kwargs) -> None:
    flow = make_flow(name, kwargs)
    x, c = inputs(32, seed=4)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x, context=c))
    variables = flow.trainable_variables
    n_hyper = sum(len(net.trainable_variables) for net in flow.nets)
    n_embed = len(flow.context_net.trainable_variables) if flow.context_net else 0
    assert len(variables) == n_hyper + n_embed and (n_embed > 0) == ("context_net" in kwargs)
    for var, grad in zip(variables, tape.gradient(loss, variables), strict=True):
        assert grad is not None, var.name
        assert np.abs(grad.numpy()).max() > 0, var.name


@pytest.mark.parametrize("name,kwargs", FLOWS[:5], ids=FLOW_IDS[:5])
def test_conditional_flow_under_xla_agrees_with_eager(name, kwargs) -> None:
    flow = make_flow(name, kwargs)
    x, c = inputs(8, seed=5)
    eager = flow.log_prob(fresh(x), context=c).numpy()
    compiled = tf.function(lambda a, b: flow.log_prob(a, context=b), jit_compile=True)
    np.testing.assert_allclose(compiled(fresh(x), c).numpy(), eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,kwargs", FLOWS[:5], ids=FLOW_IDS[:5])
def test_conditional_flow_starts_as_the_unconditional_flow(name, kwargs) -> None:
    # The hyper-networks' output bias is the unconditional initialisation, the kernel zero.
    x, c = inputs(8, seed=6)
    cond = nf.flows.build(name, 2, layers=3, context_features=C, seed=4, **kwargs)
    plain = nf.flows.build(name, 2, layers=3, seed=4, **kwargs)
    np.testing.assert_allclose(cond.log_prob(x, context=c).numpy(), plain.log_prob(x).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_conditional_planar_trains_with_keras_fit() -> None:
    flow = nf.flows.build("planar", 2, layers=2, hidden_units=8, context_features=C)
    x, c = inputs(64, seed=7)
    flow.compile(tf_keras.optimizers.Adam(1e-2))
    before = [v.numpy().copy() for v in flow.trainable_variables]
    history = flow.fit((x, c), batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(np.any(b != v.numpy()) for b, v in zip(before, flow.trainable_variables,
                                                       strict=True))


def test_unconditional_flows_are_unchanged_and_reject_a_context() -> None:
    flow = nf.flows.build("radial", 2, layers=2)
    assert not flow.conditional and flow.nets == []
    assert all(isinstance(b, Radial) for b in flow.bijector.bijector.bijectors)
    with pytest.raises(ValueError, match="context was given"):
        flow.log_prob(tf.zeros([2, 2]), context=tf.zeros([2, C]))
    with pytest.raises(ValueError, match="context_net needs context_features"):
        nf.flows.build("planar", 2, layers=2, context_net=[4])
