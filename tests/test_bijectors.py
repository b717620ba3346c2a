"""Registry-driven harness: every bijector case passes the same checks.

Cases come from `bijector_cases()`: `nf.bijectors.catalog()` x features x dtype, and the
composed bijector (`flow.bijector`, base -> data) of every catalog flow x test variant x
features (`flow_cases.py`), in float64, plus float32 with XLA at 3 features. The per-case
checks are plain functions (`check_bijector` and the `check_*` helpers it calls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from flow_cases import flow_cases, make_flow

import normalizingflows as nf

tfb = tfp.bijectors

__all__ = [
    "BijectorCase",
    "bijector_cases",
    "check_bijector",
    "check_compiled_matches_eager",
    "check_gradients_reach_variables",
    "check_log_det_against_autodiff",
    "check_roundtrip",
    "fresh",
    "tolerance",
]

FEATURES = (1, 2, 3, 5)
DTYPES = (tf.float32, tf.float64)
JIT_FEATURES = 3  # XLA is compiled for float32 at this feature count only (keeps the run fast)


@dataclasses.dataclass(frozen=True)
class BijectorCase:
    """One bijector to check: `make()` returns a fresh bijector over events `[features]`."""

    id: str
    make: Callable[[], tfb.Bijector]
    features: int
    dtype: tf.DType
    jit: bool = False
    # Conditioner weights of a flow live in Keras layers that the bijector reaches through
    # closures, so gradients are checked on the Flow (tests/test_flows.py) instead.
    check_gradients: bool = True


def bijector_cases() -> list[BijectorCase]:
    """All cases of the harness (add further sources here)."""
    cases = []
    for name, factory in sorted(nf.bijectors.catalog().items()):
        for features in FEATURES:
            for dtype in DTYPES:
                cases.append(
                    BijectorCase(
                        id=f"{name}-d{features}-{dtype.name}",
                        make=lambda f=factory, d=features, t=dtype: f(d, dtype=t, seed=7),
                        features=features,
                        dtype=dtype,
                        jit=dtype == tf.float32 and features == JIT_FEATURES,
                    )
                )
    for case_id, name, features, kwargs in flow_cases():
        dtypes = DTYPES if features == JIT_FEATURES else (tf.float64,)
        for dtype in dtypes:
            cases.append(
                BijectorCase(
                    id=f"flow-{case_id}-{dtype.name}",
                    make=lambda n=name, d=features, k=kwargs, t=dtype: make_flow(
                        n, d, k, dtype=t.name).bijector,
                    features=features,
                    dtype=dtype,
                    jit=dtype == tf.float32,
                    check_gradients=False,
                )
            )
    return cases


# ----------------------------------------------------------------------------- helpers


def tolerance(dtype: tf.DType) -> float:
    """Comparison tolerance: 1e-4 in float32, 1e-8 in float64."""
    return 1e-4 if tf.as_dtype(dtype) == tf.float32 else 1e-8


def fresh(t) -> tf.Tensor:
    """A new tensor with the same value (TFP caches bijector results by tensor identity)."""
    return tf.constant(np.asarray(t))


def _inputs(features: int, dtype: tf.DType, batch: int = 4, seed: int = 0) -> tf.Tensor:
    return 1.5 * tf.random.stateless_normal([batch, features], seed=[seed, 11], dtype=dtype)


def _assert_close(actual, expected, tol: float, what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol,
                               err_msg=what)


def _assert_finite(value, what: str) -> None:
    assert np.all(np.isfinite(np.asarray(value))), f"{what} is not finite: {value}"


def _event_ndims(bij: tfb.Bijector) -> int:
    # Every case has events [..., D]; an elementwise bijector (Identity) reduces over them.
    return max(1, bij.forward_min_event_ndims)


def _assert_batch_shape(ldj: tf.Tensor, batch_shape, bij: tfb.Bijector, what: str) -> None:
    # TFP may return a log-det that does not depend on the input (Identity, additive coupling
    # with a diagonal scale) unbroadcast; it must broadcast to the batch shape. Our own
    # bijectors (and any input-dependent one) return the full batch shape.
    if ldj.shape.rank == 0 and (bij.is_constant_jacobian or isinstance(bij, tfb.Composition)):
        return
    assert ldj.shape == batch_shape, f"{what} shape {ldj.shape} != batch {batch_shape}"


def check_roundtrip(bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor) -> None:
    """inverse(forward(x)) = x and forward(inverse(y)) = y, all finite."""
    tol = tolerance(x.dtype)
    fx = bij.forward(fresh(x))
    _assert_finite(fx, "forward(x)")
    _assert_close(bij.inverse(fresh(fx)), x, tol, "inverse(forward(x)) != x")
    iy = bij.inverse(fresh(y))
    _assert_finite(iy, "inverse(y)")
    _assert_close(bij.forward(fresh(iy)), y, tol, "forward(inverse(y)) != y")


def _slogdet_of(fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> np.ndarray:
    x = fresh(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = fn(x)
    jac = tape.batch_jacobian(out, x, experimental_use_pfor=False)
    sign, logabsdet = tf.linalg.slogdet(jac)
    assert np.all(np.asarray(sign) != 0), "singular Jacobian"
    return logabsdet.numpy()


def check_log_det_against_autodiff(bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor) -> None:
    """Both log-dets match log|det J| of the autodiff Jacobians and each other."""
    tol = tolerance(x.dtype)
    nd = _event_ndims(bij)
    fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=nd)
    _assert_finite(fldj, "forward_log_det_jacobian")
    _assert_batch_shape(fldj, x.shape[:-1], bij, "fldj")
    _assert_close(fldj, _slogdet_of(bij.forward, x), tol, "fldj != log|det dforward/dx|")

    fx = bij.forward(fresh(x))
    ildj_at_fx = bij.inverse_log_det_jacobian(fresh(fx), event_ndims=nd)
    _assert_close(ildj_at_fx, -fldj.numpy(), tol, "ildj(forward(x)) != -fldj(x)")

    ildj = bij.inverse_log_det_jacobian(fresh(y), event_ndims=nd)
    _assert_finite(ildj, "inverse_log_det_jacobian")
    _assert_batch_shape(ildj, y.shape[:-1], bij, "ildj")
    _assert_close(ildj, _slogdet_of(bij.inverse, y), tol, "ildj != log|det dinverse/dy|")
    iy = bij.inverse(fresh(y))
    fldj_at_iy = bij.forward_log_det_jacobian(fresh(iy), event_ndims=nd)
    _assert_close(ildj, -fldj_at_iy.numpy(), tol, "ildj(y) != -fldj(inverse(y))")


def _all_outputs(bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
    nd = _event_ndims(bij)
    return (
        bij.forward(x),
        bij.inverse(y),
        bij.forward_log_det_jacobian(x, event_ndims=nd),
        bij.inverse_log_det_jacobian(y, event_ndims=nd),
    )


def check_compiled_matches_eager(
    bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor, *, jit: bool = False
) -> None:
    """tf.function (and, with `jit`, XLA) give the eager numbers for all four methods."""
    tol = tolerance(x.dtype)
    eager = _all_outputs(bij, fresh(x), fresh(y))
    modes = [("tf.function", False)] + ([("jit_compile", True)] if jit else [])
    for mode, jit_compile in modes:
        fn = tf.function(lambda a, b: _all_outputs(bij, a, b), jit_compile=jit_compile)
        compiled = fn(fresh(x), fresh(y))
        for name, e, c in zip(("forward", "inverse", "fldj", "ildj"), eager, compiled,
                              strict=True):
            _assert_close(c, e, tol, f"{mode} {name} != eager")


def check_gradients_reach_variables(bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor) -> None:
    """Every trainable Variable gets a finite, non-zero gradient from outputs and log-dets."""
    variables = bij.trainable_variables
    assert variables, "bijector has no trainable variables"
    weights = 1.0 + tf.random.stateless_uniform(tf.shape(x), seed=[3, 4], dtype=x.dtype)
    with tf.GradientTape() as tape:
        out = _all_outputs(bij, fresh(x), fresh(y))
        loss = (tf.reduce_sum(out[0] * weights) + tf.reduce_sum(out[1] * weights)
                + tf.reduce_sum(out[2]) + tf.reduce_sum(out[3]))
    grads = tape.gradient(loss, variables)
    for var, grad in zip(variables, grads, strict=True):
        assert grad is not None, f"no gradient reaches {var.name}"
        grad = tf.convert_to_tensor(grad).numpy()
        _assert_finite(grad, f"gradient of {var.name}")
        assert np.any(grad != 0), f"zero gradient for {var.name}"


def check_bijector(
    bij: tfb.Bijector, x: tf.Tensor, y: tf.Tensor | None = None, *, jit: bool = False,
    gradients: bool = True,
) -> None:
    """All harness checks for one bijector at inputs `x` (base side) and `y` (data side)."""
    if y is None:
        y = 1.2 * tf.random.stateless_normal(tf.shape(x), seed=[5, 6], dtype=x.dtype)
    check_roundtrip(bij, x, y)
    check_log_det_against_autodiff(bij, x, y)
    check_compiled_matches_eager(bij, x, y, jit=jit)
    if gradients:
        check_gradients_reach_variables(bij, x, y)


# ----------------------------------------------------------------------------- tests

CASES = bijector_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bijector_case(case: BijectorCase) -> None:
    bij = case.make()
    assert isinstance(bij, tfb.Bijector)
    assert bij.dtype in (None, case.dtype)  # a Chain of dtype-agnostic parts reports None
    check_bijector(bij, _inputs(case.features, case.dtype), jit=case.jit,
                   gradients=case.check_gradients)


@pytest.mark.parametrize("case", CASES[::2], ids=[c.id for c in CASES[::2]])
def test_bijector_batch_size_one_and_batch_shapes(case: BijectorCase) -> None:
    bij = case.make()
    tol = tolerance(case.dtype)
    x1 = _inputs(case.features, case.dtype, batch=1, seed=1)
    check_roundtrip(bij, x1, 0.7 * x1 + 0.1)
    check_log_det_against_autodiff(bij, x1, 0.7 * x1 + 0.1)
    # A rank-3 batch [2, 3, D] gives log-dets of shape [2, 3] equal to the flattened ones.
    x = tf.reshape(_inputs(case.features, case.dtype, batch=6, seed=2), [2, 3, case.features])
    fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=1)
    _assert_batch_shape(fldj, (2, 3), bij, "fldj")
    flat = bij.forward_log_det_jacobian(fresh(tf.reshape(x, [6, case.features])), event_ndims=1)
    _assert_close(tf.reshape(fldj, [-1]), flat, tol, "fldj of a rank-3 batch")
    y = bij.forward(fresh(x))
    assert y.shape == x.shape
    _assert_close(bij.inverse(fresh(y)), x, tol, "inverse of a rank-3 batch")
    # Unbatched single event.
    assert bij.forward(fresh(x[0, 0])).shape == (case.features,)


def test_catalog_entries() -> None:
    cat = nf.bijectors.catalog()
    assert set(cat) == {"planar", "planar_leaky_relu", "radial", "batch_norm", "act_norm",
                        "lu_linear", "mixture_cdf_normal", "mixture_cdf_logistic"}
    for name, factory in cat.items():
        a = factory(3, seed=1)
        b = factory(3, seed=1)
        assert all(v.dtype == tf.float32 for v in a.trainable_variables)
        assert all(v.dtype == tf.float64 for v in factory(3, dtype=tf.float64).trainable_variables)
        for va, vb in zip(a.variables, b.variables, strict=True):
            np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=f"{name} not seeded")
        # Non-trivial: the map is not the identity.
        x = _inputs(3, tf.float32)
        assert np.max(np.abs(a.forward(x) - x)) > 1e-2, f"{name} is trivially the identity"


def test_new_classmethods_share_one_signature() -> None:
    for cls in (nf.bijectors.Planar, nf.bijectors.Radial, nf.bijectors.BatchNorm,
                nf.bijectors.ActNorm):
        bij = cls.new(4, dtype=tf.float64, seed=3, name=f"my_{cls.__name__.lower()}")
        assert bij.dtype == tf.float64
        assert bij.name == f"my_{cls.__name__.lower()}"
        assert all(v.dtype == tf.float64 for v in bij.trainable_variables)
        with pytest.raises(ValueError, match="features"):
            cls.new(0)


# MixtureCDF is elementwise (forward_min_event_ndims = 0): its parameters broadcast as in TFP.
@pytest.mark.parametrize("name", sorted(n for n in nf.bijectors.catalog()
                                        if not n.startswith("mixture_cdf")))
def test_wrong_feature_count_is_a_clear_error(name: str) -> None:
    bij = nf.bijectors.catalog()[name](3)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        bij.forward(tf.zeros([2, 4]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        bij.inverse(tf.zeros([2, 4]))


@pytest.mark.parametrize("shape", [[5, 4], [4], [2, 3, 3, 4]])
def test_lu_linear_batched_path_matches_stock_tfp(shape: list[int]) -> None:
    """`lu_linear` maps a batch as one matrix (one product, one pair of triangular solves);
    values and gradients equal stock `tfb.ScaleMatvecLU` on the same factors, for rows, a
    single vector and images (the Glow 1x1 convolution), in graph mode with static shapes."""
    ours = nf.bijectors.lu_linear(4, dtype=tf.float64, seed=3)
    ours.lower_upper.assign(ours.lower_upper + tf.linalg.band_part(
        tf.random.stateless_normal([4, 4], seed=[1, 2], dtype=tf.float64), 0, -1) * 0.3)
    stock = tfb.ScaleMatvecLU(ours.lower_upper, ours.permutation)
    x = tf.random.stateless_normal(shape, seed=[3, 4], dtype=tf.float64)

    def both(bij, fn):
        with tf.GradientTape() as tape:
            value = fn(bij)
            loss = tf.reduce_sum(tf.sin(value))
        return value, tape.gradient(loss, ours.lower_upper)

    for fn in (lambda b: b.forward(x), lambda b: b.inverse(x)):
        (a, ga), (b, gb) = both(ours, fn), both(stock, fn)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-9, atol=1e-12)
    graph = tf.function(lambda t: ours.inverse(ours.forward(t)))
    out = graph.get_concrete_function(tf.TensorSpec([None, *shape[1:]], tf.float64))
    assert out.structured_outputs.shape.as_list() == [None, *shape[1:]]
    np.testing.assert_allclose(graph(x).numpy(), x.numpy(), atol=1e-10)
