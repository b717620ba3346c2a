"""Per-bijector facts: constraints, inverses, training semantics, TFP composition, caching."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import normalizingflows as nf
from normalizingflows.bijectors import ActNorm, BatchNorm, Planar, Radial

tfb = tfp.bijectors
tfd = tfp.distributions

__all__: list[str] = []


def fresh(t) -> tf.Tensor:
    """A new tensor with the same value (TFP caches results by tensor identity)."""
    return tf.constant(np.asarray(t))


def normal(shape, seed: int, dtype=tf.float64, stddev: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_normal(shape, seed=[seed, 99], stddev=stddev, dtype=dtype)


def variables_snapshot(bij: tfb.Bijector) -> list[np.ndarray]:
    return [v.numpy().copy() for v in bij.variables]


# ============================================================================ Planar


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("w_scale", [0.1, 1.0, 30.0])
def test_planar_constraint_holds_for_adversarial_u(dtype, w_scale) -> None:
    w = w_scale * normal([3], seed=1, dtype=dtype)
    for u in (-10.0 * w, -1e4 * w, 10.0 * w, tf.zeros_like(w)):
        bij = Planar(w, u, 0.0)
        dot = tf.reduce_sum(w * bij.u_hat()).numpy()
        wu = abs(tf.reduce_sum(w * u).numpy())
        eps = np.finfo(dtype.as_numpy_dtype).eps
        assert dot >= -1.0 - 8 * eps * (1.0 + wu), (w_scale, dot)
        # The internal 1 + c = 1 + m(w . u) is what the log-det uses: never negative.
        assert bij._params()[4].numpy() >= 0.0


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_planar_inverse_converges_on_adversarial_parameters(dtype) -> None:
    eps = np.finfo(dtype.as_numpy_dtype).eps
    y = tf.concat(
        [normal([50, 2], seed=s, dtype=dtype, stddev=scale)
         for s, scale in enumerate([1e-6, 1e-2, 1.0, 1e2, 1e4])],
        axis=0,
    )
    params = [
        ([3.0, 4.0], [-30.0, -40.0]),  # u = -10 w: c = -1 to rounding
        ([0.3, 0.4], [-3.0, -4.0]),  # c close to -1, strictly
        ([100.0, -20.0], [5.0, 1.0]),  # large |w|
        ([0.01, 0.0], [1e4, 0.0]),  # huge c
        ([1.0, 1.0], [2.0, 3.0]),
        ([0.0, 0.0], [1.0, 2.0]),  # w = 0: identity
    ]
    for w, u in params:
        bij = Planar(tf.constant(w, dtype), tf.constant(u, dtype), tf.constant(0.3, dtype))
        x = bij.inverse(fresh(y))
        assert np.all(np.isfinite(x.numpy()))
        # The scalar equation is solved to machine precision.
        a, _, _ = bij._solve(fresh(y))
        wv, _, b, c, _ = bij._params()
        t = tf.reduce_sum(y * wv, axis=-1) + b
        residual = np.abs((a + c * tf.tanh(a) - t).numpy())
        scale = np.abs(t.numpy()) + np.abs(c.numpy()) + np.abs(a.numpy())
        assert np.all(residual <= 8 * eps * scale), (w, u, residual.max())
        # And the round trip reproduces y up to the conditioning of the forward map.
        y_back = bij.forward(fresh(x)).numpy()
        wn = np.linalg.norm(w) * np.linalg.norm(bij.u_hat().numpy())
        err = np.abs(y_back - y.numpy()) / (1.0 + np.abs(y.numpy()))
        assert err.max() <= 64 * eps * (1.0 + wn), (w, u, err.max())
        ildj = bij.inverse_log_det_jacobian(fresh(y), event_ndims=1)
        assert np.all(np.isfinite(ildj.numpy()))


def test_planar_inverse_parameter_gradients_match_finite_differences() -> None:
    w = tf.Variable([0.8, -0.5, 0.3], dtype=tf.float64)
    u = tf.Variable([-1.2, 0.4, 0.9], dtype=tf.float64)
    b = tf.Variable(0.2, dtype=tf.float64)
    bij = Planar(w, u, b)
    y = normal([5, 3], seed=4)
    weights = normal([5, 3], seed=5)

    def loss() -> tf.Tensor:
        return tf.reduce_sum(bij.inverse(fresh(y)) * weights) + tf.reduce_sum(
            bij.inverse_log_det_jacobian(fresh(y), event_ndims=1)
        )

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, [w, u, b])
    h = 1e-6
    for var, grad in zip([w, u, b], grads, strict=True):
        flat = var.numpy().reshape(-1)
        numeric = np.zeros_like(flat)
        for i in range(flat.size):
            for sign in (1.0, -1.0):
                shifted = flat.copy()
                shifted[i] += sign * h
                var.assign(shifted.reshape(var.shape))
                numeric[i] += sign * loss().numpy() / (2 * h)
            var.assign(flat.reshape(var.shape))
        np.testing.assert_allclose(grad.numpy().reshape(-1), numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0])
def test_planar_leaky_relu_closed_form(slope) -> None:
    w = tf.constant([2.0, -1.0], tf.float64)
    u = tf.constant([0.5, 0.25], tf.float64)
    b = tf.constant(0.1, tf.float64)
    bij = Planar(w, u, b, nonlinearity="leaky_relu", negative_slope=slope)
    wu = float(tf.reduce_sum(w * u))
    c = wu if wu >= -0.5 else -1.0 + 0.5 * np.exp(2.0 * wu + 1.0)  # m(w . u)
    u_hat = u.numpy() + (c - wu) * w.numpy() / float(tf.reduce_sum(w * w))
    np.testing.assert_allclose(bij.u_hat().numpy(), u_hat, rtol=1e-14)
    y = normal([40, 2], seed=3, stddev=3.0).numpy()
    t = y @ w.numpy() + b.numpy()
    a = np.where(t >= 0, t / (1.0 + c), t / (1.0 + slope * c))
    z = y - u_hat * np.where(a >= 0, a, slope * a)[:, None]
    np.testing.assert_allclose(bij.inverse(fresh(y)).numpy(), z, rtol=1e-13, atol=1e-13)
    x = normal([40, 2], seed=8, stddev=3.0).numpy()
    ax = x @ w.numpy() + b.numpy()
    np.testing.assert_allclose(
        bij.forward(fresh(x)).numpy(),
        x + u_hat * np.where(ax >= 0, ax, slope * ax)[:, None],
        rtol=1e-13,
        atol=1e-13,
    )
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy(),
        np.log(1.0 + np.where(ax >= 0, 1.0, slope) * c),
        rtol=1e-13,
        atol=1e-13,
    )


def test_planar_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        Planar([1.0], [1.0], 0.0, nonlinearity="relu6")
    with pytest.raises(ValueError, match="negative_slope"):
        Planar([1.0], [1.0], 0.0, nonlinearity="leaky_relu", negative_slope=1.5)
    with pytest.raises(ValueError, match="`w` and `u`"):
        Planar([1.0, 2.0], [1.0], 0.0)
    with pytest.raises(ValueError, match="`b`"):
        Planar([1.0], [1.0], [0.0])
    with pytest.raises(TypeError, match="`u`"):
        Planar(tf.Variable([1.0]), tf.Variable([1.0], dtype=tf.float64), 0.0)


# ============================================================================ Radial


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_radial_constraint_and_inverse_for_extreme_raw_parameters(dtype) -> None:
    x = tf.concat(
        [normal([20, 3], seed=s, dtype=dtype, stddev=scale)
         for s, scale in enumerate([1e-5, 1e-1, 1.0, 1e3])],
        axis=0,
    )
    tol = 1e-4 if dtype == tf.float32 else 1e-10
    for alpha_raw, beta_raw in [(0.0, -1e3), (-20.0, -50.0), (20.0, -30.0), (0.0, 30.0),
                                (-5.0, 8.0)]:
        bij = Radial(tf.zeros([3], dtype), alpha_raw, beta_raw)
        alpha, beta = bij.alpha().numpy(), bij.beta().numpy()
        assert alpha > 0 and beta >= -alpha, (alpha_raw, beta_raw, alpha, beta)
        y = bij.forward(fresh(x))
        x_back = bij.inverse(fresh(y)).numpy()
        np.testing.assert_allclose(x_back, x.numpy(), rtol=tol, atol=tol * 1e-2)
        fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy()
        ildj = bij.inverse_log_det_jacobian(fresh(y), event_ndims=1).numpy()
        assert np.all(np.isfinite(fldj)) and np.all(np.isfinite(ildj))
        np.testing.assert_allclose(ildj, -fldj, rtol=tol, atol=tol)


def test_radial_radius_is_per_sample() -> None:
    bij = Radial.new(4, dtype=tf.float64, seed=2)
    x = normal([6, 4], seed=6, stddev=2.0)
    batch = [bij.forward(fresh(x)), bij.inverse(fresh(x)),
             bij.forward_log_det_jacobian(fresh(x), event_ndims=1),
             bij.inverse_log_det_jacobian(fresh(x), event_ndims=1)]
    for i in range(6):
        row = fresh(x[i : i + 1])
        single = [bij.forward(row), bij.inverse(fresh(row)),
                  bij.forward_log_det_jacobian(fresh(row), event_ndims=1),
                  bij.inverse_log_det_jacobian(fresh(row), event_ndims=1)]
        for full, one in zip(batch, single, strict=True):
            np.testing.assert_allclose(full.numpy()[i], one.numpy()[0], rtol=1e-14, atol=1e-14)


def test_radial_is_finite_with_finite_gradients_at_the_centre() -> None:
    bij = Radial.new(3, dtype=tf.float64, seed=4)
    z0 = bij.z0.numpy()
    x = tf.constant(np.stack([z0, z0 + 1.0]))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = bij.forward(x)
        outs = [y, bij.forward_log_det_jacobian(x, event_ndims=1),
                bij.inverse(fresh(x)), bij.inverse_log_det_jacobian(fresh(x), event_ndims=1)]
        loss = sum(tf.reduce_sum(o) for o in outs)
    for o in outs:
        assert np.all(np.isfinite(o.numpy()))
    np.testing.assert_allclose(y.numpy()[0], z0, atol=1e-15)  # z0 is a fixed point
    for g in tape.gradient(loss, [x, *bij.trainable_variables]):
        assert np.all(np.isfinite(tf.convert_to_tensor(g).numpy()))
    # The Jacobian at z0 is (1 + beta / alpha) I.
    jac = tape.batch_jacobian(y, x, experimental_use_pfor=False).numpy()[0]
    factor = 1.0 + bij.beta().numpy() / bij.alpha().numpy()
    np.testing.assert_allclose(jac, factor * np.eye(3), atol=1e-12)
    fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy()[0]
    np.testing.assert_allclose(fldj, 3 * np.log(factor), rtol=1e-12)


def test_radial_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="z0"):
        Radial(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="alpha_raw"):
        Radial([0.0], [0.0], 0.0)


# ============================================================================ BatchNorm


def test_batch_norm_training_updates_moving_stats_by_the_momentum_rule() -> None:
    bn = BatchNorm.new(3, dtype=tf.float64, momentum=0.8)
    mean0, var0 = bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()
    y = normal([2, 16, 3], seed=1, stddev=2.0) + 5.0  # two batch axes
    x = bn.inverse(fresh(y), training=True)
    flat = y.numpy().reshape(-1, 3)
    mu, var = flat.mean(axis=0), flat.var(axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.8 * mean0 + 0.2 * mu, rtol=1e-14)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.8 * var0 + 0.2 * var, rtol=1e-14)
    # The output used the batch statistics (and the bounded inverse std).
    inv_std = bn.inv_std(tf.constant(var)).numpy()
    np.testing.assert_allclose(x.numpy(), (y.numpy() - mu) * inv_std, rtol=1e-12, atol=1e-12)
    ildj = bn.inverse_log_det_jacobian(fresh(y), event_ndims=1, training=True)
    assert ildj.shape == (2, 16)
    np.testing.assert_allclose(ildj.numpy(), np.sum(np.log(inv_std)), rtol=1e-12)
    # The log-det (training) does not update; only `inverse` does.
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.8 * mean0 + 0.2 * mu, rtol=1e-14)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_batch_norm_training_step_compiles(jit_compile) -> None:
    bn = nf.bijectors.catalog()["batch_norm"](3, seed=2)
    mean0 = bn.moving_mean.numpy().copy()
    y = normal([32, 3], seed=5, dtype=tf.float32, stddev=2.0) + 1.0

    @tf.function(jit_compile=jit_compile)
    def step(y):
        with tf.GradientTape() as tape:
            x = bn.inverse(y, training=True)
            loss = tf.reduce_sum(x**2) - tf.reduce_sum(
                bn.inverse_log_det_jacobian(y, event_ndims=1, training=True))
        return tape.gradient(loss, bn.trainable_variables)

    grads = step(fresh(y))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    np.testing.assert_allclose(bn.moving_mean.numpy(),
                               0.9 * mean0 + 0.1 * y.numpy().mean(axis=0), rtol=1e-5)
    step(fresh(y))  # once per call: a second call applies the rule again
    np.testing.assert_allclose(bn.moving_mean.numpy(),
                               0.81 * mean0 + 0.19 * y.numpy().mean(axis=0), rtol=1e-5)


def test_batch_norm_evaluation_never_mutates_and_is_exact() -> None:
    bn = nf.bijectors.catalog()["batch_norm"](4, dtype=tf.float64, seed=3)
    before = variables_snapshot(bn)
    y = normal([7, 4], seed=2)
    x = bn.inverse(fresh(y))
    bn.inverse_log_det_jacobian(fresh(y), event_ndims=1)
    y_back = bn.forward(fresh(x))
    bn.forward_log_det_jacobian(fresh(x), event_ndims=1, training=True)  # forward: no update
    bn.forward(fresh(x), training=True)
    for a, b in zip(before, variables_snapshot(bn), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(y_back.numpy(), y.numpy(), rtol=1e-14, atol=1e-14)
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    expected = ((y.numpy() - mean) * bn.inv_std(tf.constant(var)).numpy()
                * np.exp(bn.log_scale.numpy()) + bn.shift.numpy())
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-14, atol=1e-14)


def test_batch_norm_gradients_flow_through_batch_statistics() -> None:
    bn = BatchNorm.new(2, dtype=tf.float64)
    y = tf.Variable(normal([8, 2], seed=7))
    # The batch mean is subtracted, so sum(x) over the batch is constant in y: its gradient
    # vanishes only if the gradient also flows through the mean.
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(bn.inverse(tf.convert_to_tensor(y), training=True))
    np.testing.assert_allclose(tape.gradient(total, y).numpy(), 0.0, atol=1e-12)
    # And the full gradient matches finite differences (mean and variance depend on y).
    weights = normal([8, 2], seed=8)

    def loss(values) -> tf.Tensor:
        yy = tf.constant(values)
        return tf.reduce_sum(bn.inverse(yy, training=True) * weights) + tf.reduce_sum(
            bn.inverse_log_det_jacobian(tf.constant(values), event_ndims=1, training=True)
        )

    base = y.numpy()
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(bn.inverse(tf.convert_to_tensor(y), training=True) * weights)
        value += tf.reduce_sum(
            bn.inverse_log_det_jacobian(tf.convert_to_tensor(y), event_ndims=1, training=True)
        )
    grad = tape.gradient(value, y).numpy()
    numeric = np.zeros_like(base)
    h = 1e-6
    for idx in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (loss(plus).numpy() - loss(minus).numpy()) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def _deep_batch_norm_chain(max_inv_std: float, layers: int = 20, features: int = 3):
    """Chain of BatchNorm layers interleaved with random, well-conditioned affine maps."""
    bijectors, names = [], []
    for i in range(layers):
        names.append(f"bn{i}")
        bijectors.append(BatchNorm.new(features, momentum=0.0, max_inv_std=max_inv_std,
                                       name=f"bn{i}"))
        tril = np.eye(features) + 0.4 * np.tril(np.random.default_rng(i).normal(
            size=(features, features)), -1)
        bijectors.append(tfb.Shift(tf.constant(np.random.default_rng(100 + i).normal(
            size=features), tf.float32)))
        bijectors.append(tfb.ScaleMatvecTriL(tf.constant(tril, tf.float32)))
    return tfb.Chain(bijectors), [b for b in bijectors if isinstance(b, BatchNorm)], names


def test_batch_norm_deep_stack_is_stable_out_of_distribution() -> None:
    chain, bns, names = _deep_batch_norm_chain(max_inv_std=10.0)
    data = normal([256, 3], seed=12, dtype=tf.float32)
    kwargs = {name: {"training": True} for name in names}
    chain.inverse(fresh(data), **kwargs)  # momentum 0: the moving stats become the batch's
    ood = 1e3 * data + 50.0
    x = chain.inverse(fresh(ood))
    ildj = chain.inverse_log_det_jacobian(fresh(ood), event_ndims=1)
    assert np.all(np.isfinite(x.numpy())) and np.all(np.isfinite(ildj.numpy()))
    # Worst case: every layer has collapsed statistics (variance ~ 0). The bound keeps the
    # stack finite; an effectively unbounded inverse std (only epsilon) overflows float32.
    for bn in bns:
        bn.moving_variance.assign(tf.fill([3], 1e-12))
    x = chain.inverse(fresh(ood))
    ildj = chain.inverse_log_det_jacobian(fresh(ood), event_ndims=1)
    assert np.all(np.isfinite(x.numpy())) and np.all(np.isfinite(ildj.numpy()))
    unbounded, ubns, _ = _deep_batch_norm_chain(max_inv_std=1e30)
    for bn in ubns:
        bn.moving_variance.assign(tf.fill([3], 1e-12))
    assert not np.all(np.isfinite(unbounded.inverse(fresh(ood)).numpy()))


def test_batch_norm_training_routes_through_chain_and_transformed_distribution() -> None:
    bn = BatchNorm.new(2, name="bn")
    chain = tfb.Chain([tfb.Shift([1.0, -1.0]), bn])
    y = normal([32, 2], seed=3, dtype=tf.float32) * 3.0 + 2.0
    before = variables_snapshot(bn)
    chain.inverse(fresh(y))  # no kwargs: evaluation, no update
    for a, b in zip(before, variables_snapshot(bn), strict=True):
        np.testing.assert_array_equal(a, b)
    chain.inverse(fresh(y), bn={"training": True})
    assert not np.allclose(bn.moving_mean.numpy(), before[2])
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), chain)
    mean_before = bn.moving_mean.numpy().copy()
    lp_train = dist.log_prob(fresh(y), bijector_kwargs={"bn": {"training": True}})
    assert not np.allclose(bn.moving_mean.numpy(), mean_before)
    lp_eval = dist.log_prob(fresh(y))
    assert np.all(np.isfinite(lp_train.numpy())) and np.all(np.isfinite(lp_eval.numpy()))


def test_batch_norm_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm.new(2, momentum=1.0)
    with pytest.raises(ValueError, match="moving_variance"):
        BatchNorm([0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0])
    bn = BatchNorm([0.0], [0.0], [0.0], [1.0])  # tensors: evaluation only
    with pytest.raises(TypeError, match="moving_mean"):
        bn.inverse(tf.zeros([3, 1]), training=True)


# ============================================================================ ActNorm


def test_act_norm_data_dependent_init_happens_once() -> None:
    an = ActNorm.new(3, dtype=tf.float64)
    y = normal([64, 3], seed=1, stddev=3.0) + [1.0, -2.0, 5.0]
    x = an.inverse(fresh(y), training=True).numpy()
    assert bool(an.initialized.numpy())
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1.0, rtol=1e-5)
    loc, log_scale = an.loc.numpy().copy(), an.log_scale.numpy().copy()
    an.inverse(fresh(2.0 * y + 7.0), training=True)  # second training call: no re-init
    np.testing.assert_array_equal(an.loc.numpy(), loc)
    np.testing.assert_array_equal(an.log_scale.numpy(), log_scale)
    ildj = an.inverse_log_det_jacobian(fresh(y), event_ndims=1).numpy()
    np.testing.assert_allclose(ildj, -np.sum(log_scale), rtol=1e-14)


def test_act_norm_evaluation_before_init_does_not_initialise() -> None:
    an = ActNorm.new(2)
    y = normal([8, 2], seed=2, dtype=tf.float32) + 4.0
    x = an.inverse(fresh(y))
    an.inverse_log_det_jacobian(fresh(y), event_ndims=1)
    an.forward(fresh(y), training=True)  # the forward never initialises
    assert not bool(an.initialized.numpy())
    np.testing.assert_array_equal(an.loc.numpy(), 0.0)
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_act_norm_init_when_the_log_det_is_asked_first() -> None:
    an = ActNorm.new(2, dtype=tf.float64)
    y = normal([32, 2], seed=5, stddev=2.0) - 3.0
    ildj = an.inverse_log_det_jacobian(fresh(y), event_ndims=1, training=True).numpy()
    assert bool(an.initialized.numpy())
    np.testing.assert_allclose(ildj, -np.sum(np.log(y.numpy().std(axis=0) + 1e-6)), rtol=1e-12)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)),
                                       ActNorm.new(2, dtype=tf.float64, name="an"))
    lp = dist.log_prob(fresh(y), bijector_kwargs={"training": True})
    np.testing.assert_allclose(
        lp.numpy(),
        tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)).log_prob(
            (y - np.mean(y, 0)) / (np.std(y, 0) + 1e-6)).numpy() + ildj,
        rtol=1e-10,
    )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_act_norm_init_under_tf_function(jit_compile) -> None:
    an = ActNorm.new(3)
    y1 = normal([64, 3], seed=3, dtype=tf.float32, stddev=2.0) + 1.0
    y2 = normal([64, 3], seed=4, dtype=tf.float32) - 5.0

    @tf.function(jit_compile=jit_compile)
    def step(y):
        with tf.GradientTape() as tape:
            x = an.inverse(y, training=True)
            loss = tf.reduce_sum(x**2) - tf.reduce_sum(
                an.inverse_log_det_jacobian(y, event_ndims=1, training=True))
        return x, tape.gradient(loss, an.trainable_variables)

    x1, grads = step(fresh(y1))
    assert bool(an.initialized.numpy())
    np.testing.assert_allclose(x1.numpy().mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x1.numpy().std(axis=0), 1.0, rtol=1e-4)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    loc = an.loc.numpy().copy()
    x2, _ = step(fresh(y2))
    np.testing.assert_array_equal(an.loc.numpy(), loc)
    np.testing.assert_allclose(
        x2.numpy(), (y2.numpy() - loc) * np.exp(-an.log_scale.numpy()), rtol=1e-5, atol=1e-5)


def test_act_norm_channels_last_images() -> None:
    an = ActNorm.new(2, dtype=tf.float64, event_ndims=3)
    assert an.forward_min_event_ndims == 3
    y = normal([16, 3, 4, 2], seed=6, stddev=2.0) + [3.0, -1.0]
    x = an.inverse(fresh(y), training=True).numpy()
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, rtol=1e-5)
    an.log_scale.assign_add([0.3, -0.2])
    xs = normal([2, 3, 4, 2], seed=7)
    fldj = an.forward_log_det_jacobian(fresh(xs), event_ndims=3)
    assert fldj.shape == (2,)
    np.testing.assert_allclose(fldj.numpy(), 12 * np.sum(an.log_scale.numpy()), rtol=1e-14)
    flat = tf.reshape(fresh(xs), [2, 24])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(flat)
        out = tf.reshape(an.forward(tf.reshape(flat, [2, 3, 4, 2])), [2, 24])
    jac = tape.batch_jacobian(out, flat, experimental_use_pfor=False)
    np.testing.assert_allclose(tf.linalg.slogdet(jac)[1].numpy(), fldj.numpy(), rtol=1e-12)
    np.testing.assert_allclose(an.inverse(an.forward(xs)).numpy(), xs.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="channels last"):
        an.forward(tf.zeros([2, 3, 4, 5], tf.float64))


# ============================================================================ TFP composition


@pytest.mark.parametrize("name", ["planar", "planar_leaky_relu", "radial"])
def test_transformed_distribution_integrates_to_one(name) -> None:
    bij = nf.bijectors.catalog()[name](2, dtype=tf.float64, seed=1)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)), bij)
    grid = np.linspace(-8.0, 8.0, 321)
    xx, yy = np.meshgrid(grid, grid)
    points = tf.constant(np.stack([xx.ravel(), yy.ravel()], axis=-1))
    density = np.exp(dist.log_prob(points).numpy())
    integral = density.sum() * (grid[1] - grid[0]) ** 2
    assert abs(integral - 1.0) < 5e-3, integral
    samples = dist.sample(100, seed=[1, 2])
    assert samples.shape == (100, 2) and np.all(np.isfinite(dist.log_prob(samples).numpy()))


@pytest.mark.parametrize("name", sorted(nf.bijectors.catalog()))
def test_invert_and_chain(name) -> None:
    bij = nf.bijectors.catalog()[name](3, dtype=tf.float64, seed=2)
    y = normal([5, 3], seed=9)
    inv = tfb.Invert(bij)
    np.testing.assert_allclose(inv.forward(fresh(y)).numpy(), bij.inverse(fresh(y)).numpy(),
                               rtol=1e-14)
    np.testing.assert_allclose(
        inv.forward_log_det_jacobian(fresh(y), event_ndims=1).numpy(),
        bij.inverse_log_det_jacobian(fresh(y), event_ndims=1).numpy(), rtol=1e-14)
    chain = tfb.Chain([bij, tfb.Shift(tf.constant([0.5, -0.5, 1.0], tf.float64)), inv])
    # bij o shift o bij^-1 is a bijection with log-det fldj_bij(shift(inv(y))) + ildj_bij(y).
    out = chain.forward(fresh(y))
    np.testing.assert_allclose(chain.inverse(fresh(out)).numpy(), y.numpy(), atol=1e-10)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)),
                                       inv)
    assert np.all(np.isfinite(dist.log_prob(fresh(y)).numpy()))


def test_values_after_a_variable_update_are_not_stale() -> None:
    for name in sorted(nf.bijectors.catalog()):
        bij = nf.bijectors.catalog()[name](2, dtype=tf.float64, seed=5)
        x = normal([4, 2], seed=10)
        y_before = bij.forward(fresh(x)).numpy()
        ldj_before = bij.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy()
        for var in bij.trainable_variables:
            var.assign_add(0.25 * tf.ones_like(var))
        y_after = bij.forward(fresh(x)).numpy()
        assert not np.allclose(y_after, y_before), name
        if name != "act_norm" and name != "batch_norm":  # their log-dets ignore shifts
            assert not np.allclose(
                bij.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy(), ldj_before)
        np.testing.assert_allclose(bij.inverse(fresh(y_after)).numpy(), x.numpy(), atol=1e-10)

    # Same thing under tf.function: a traced function reads the variables at each call.
    bij = nf.bijectors.catalog()["planar"](2, dtype=tf.float64, seed=5)
    x = normal([4, 2], seed=10)
    fn = tf.function(lambda t: bij.forward(t))
    first = fn(x).numpy()
    bij.w.assign_add([0.5, 0.5])
    assert not np.allclose(fn(x).numpy(), first)


def test_planar_is_well_conditioned_as_w_goes_to_zero() -> None:
    # Rezende's m(a) = -1 + softplus(a) would give |u_hat| ~ 0.3 / |w| here (3e4 at 1e-5).
    for w_scale in (1e-5, 1e-3, 1.0):
        w = tf.constant([w_scale, -0.5 * w_scale], tf.float32)
        u = tf.constant([1.2, 0.7], tf.float32)
        bij = Planar(w, u, 0.1)
        np.testing.assert_array_equal(bij.u_hat().numpy(), u.numpy())  # w.u >= -1/2: untouched
        y = normal([64, 2], seed=5, dtype=tf.float32, stddev=2.0)
        back = bij.forward(fresh(bij.inverse(fresh(y))))
        np.testing.assert_allclose(back.numpy(), y.numpy(), atol=1e-5)
    # Below -1/2 the constraint bites and w.u_hat = m(w.u) > -1.
    w = tf.constant([1.0, 0.0], tf.float32)
    bij = Planar(w, tf.constant([-3.0, 0.2], tf.float32), 0.0)
    dot = float(tf.reduce_sum(w * bij.u_hat()))
    assert -1.0 < dot < -0.5
    np.testing.assert_allclose(dot, -1.0 + 0.5 * np.exp(2 * -3.0 + 1.0), rtol=1e-6)


@pytest.mark.parametrize("family", ["normal", "logistic"])
def test_mixture_cdf_onto_uniform_and_its_tails(family) -> None:
    from normalizingflows.bijectors import MixtureCDF

    logits = tf.constant([0.3, -0.2, 0.0], tf.float64)
    locs = tf.constant([-2.0, 0.5, 3.0], tf.float64)
    scales = tf.constant([0.4, 1.0, 0.7], tf.float64)
    bij = MixtureCDF(logits, locs, scales, family=family)
    # Onto (0, 1) the inverse is as accurate as u resolves 1 - F: keep 1 - F above ~1e-7.
    x = tf.constant(np.linspace(-5, 6.5, 47), tf.float64)
    u = bij.forward(fresh(x))
    assert np.all((u.numpy() > 0) & (u.numpy() < 1)) and np.all(np.diff(u.numpy()) > 0)
    np.testing.assert_allclose(bij.inverse(fresh(u)).numpy(), x.numpy(), atol=1e-8)
    # The log-det is the mixture density: compare with TFP's own mixture.
    comp = (tfp.distributions.Normal(locs, scales) if family == "normal"
            else tfp.distributions.Logistic(locs, scales))
    mix = tfp.distributions.MixtureSameFamily(tfp.distributions.Categorical(logits=logits), comp)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(fresh(x), event_ndims=0).numpy(),
                               mix.log_prob(x).numpy(), rtol=1e-10)
    np.testing.assert_allclose(u.numpy(), mix.cdf(x).numpy(), rtol=1e-10)
    # Onto R (probit fused): finite far in both tails in float32, where F rounds to 0 or 1.
    far = MixtureCDF(tf.cast(logits, tf.float32), tf.cast(locs, tf.float32),
                     tf.cast(scales, tf.float32), family=family, to="normal")
    xf = tf.constant([-60.0, -20.0, 0.0, 25.0, 80.0])
    z = far.forward(fresh(xf))
    assert np.all(np.isfinite(z.numpy())) and np.all(np.diff(z.numpy()) > 0)
    assert np.all(np.isfinite(far.forward_log_det_jacobian(fresh(xf), event_ndims=0).numpy()))
    np.testing.assert_allclose(far.inverse(fresh(z)).numpy(), xf.numpy(), rtol=1e-4, atol=1e-5)
