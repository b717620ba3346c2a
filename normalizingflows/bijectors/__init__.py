"""Bijectors that TensorFlow Probability lacks (math only; no Keras).

Each class is a `tfp.bijectors.Bijector` whose parameters come in as tensors or
`tf.Variable`s, with a classmethod `new(features, *, dtype, seed, name)` that creates its own
Variables. `Conditional` instead builds its bijector from a context at call time (the maps of
conditional planar and radial flows, with batched parameters from hyper-networks). `catalog()`
maps names to factories with non-trivial parameters, for the registry-driven tests.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_probability as tfp

from .act_norm import ActNorm
from .batch_norm import BatchNorm
from .conditional import Conditional
from .coupling import Coupling
from .image import ChannelSplit, ImageCoupling, Squeeze, invertible_1x1_conv
from .linear import lu_linear
from .masked_autoregressive import MaskedAutoregressive
from .mixture_cdf import MixtureCDF
from .planar import Planar
from .radial import Radial
from .tanh_shift import TanhShiftAffine, TanhShiftParameters

tfb = tfp.bijectors

__all__ = ["ActNorm", "BatchNorm", "ChannelSplit", "Conditional", "Coupling", "ImageCoupling",
           "Squeeze", "invertible_1x1_conv", "lu_linear", "MaskedAutoregressive", "MixtureCDF",
           "Planar", "Radial", "TanhShiftAffine", "TanhShiftParameters", "catalog"]


def _planar(features: int, *, dtype: tf.DType = tf.float32, seed: int = 0) -> tfb.Bijector:
    return Planar.new(features, dtype=dtype, seed=seed)


def _planar_leaky_relu(
    features: int, *, dtype: tf.DType = tf.float32, seed: int = 0
) -> tfb.Bijector:
    return Planar.new(features, dtype=dtype, seed=seed, nonlinearity="leaky_relu")


def _radial(features: int, *, dtype: tf.DType = tf.float32, seed: int = 0) -> tfb.Bijector:
    return Radial.new(features, dtype=dtype, seed=seed)


def _batch_norm(features: int, *, dtype: tf.DType = tf.float32, seed: int = 0) -> tfb.Bijector:
    """A `BatchNorm` with non-trivial scale, shift and moving statistics."""
    dtype = tf.as_dtype(dtype)
    normal = lambda k, stddev: tf.random.stateless_normal(
        [features], seed=[seed, k], stddev=stddev, dtype=dtype
    )
    return BatchNorm(
        tf.Variable(normal(0, 0.3), name="log_scale"),
        tf.Variable(normal(1, 0.5), name="shift"),
        tf.Variable(normal(2, 1.0), trainable=False, name="moving_mean"),
        tf.Variable(tf.exp(normal(3, 0.7)), trainable=False, name="moving_variance"),
    )


def _act_norm(features: int, *, dtype: tf.DType = tf.float32, seed: int = 0) -> tfb.Bijector:
    """An already initialised `ActNorm` with non-zero `loc` and `log_scale`."""
    dtype = tf.as_dtype(dtype)
    normal = lambda k, stddev: tf.random.stateless_normal(
        [features], seed=[seed, k], stddev=stddev, dtype=dtype
    )
    return ActNorm(
        tf.Variable(normal(0, 0.5), name="loc"),
        tf.Variable(normal(1, 0.3), name="log_scale"),
        tf.Variable(True, trainable=False, name="initialized"),
    )


def _lu_linear(features: int, *, dtype: tf.DType = tf.float32, seed: int = 0) -> tfb.Bijector:
    """An `lu_linear` map moved off its initial rotation, so that log|det W| is not zero."""
    bij = lu_linear(features, dtype=dtype, seed=seed)
    (lower_upper,) = bij.trainable_variables
    lower_upper.assign_add(tf.random.stateless_normal(
        [features, features], seed=[seed, 7], stddev=0.3, dtype=lower_upper.dtype))
    return bij


def _mixture_cdf(family: str) -> Callable[..., tfb.Bijector]:
    def factory(features: int, *, dtype: tf.DType = tf.float32, seed: int = 0) -> tfb.Bijector:
        """A 4-component `MixtureCDF` per feature onto R (``to="normal"``, the probit fused in),
        which is how `ar_mixture_cdf` stacks it; the harness tests it on R^D."""
        dtype = tf.as_dtype(dtype)
        normal = lambda k, stddev: tf.random.stateless_normal(
            [features, 4], seed=[seed, k], stddev=stddev, dtype=dtype
        )
        return MixtureCDF(
            tf.Variable(normal(0, 1.0), name="logits"),
            tf.Variable(normal(1, 1.5), name="locs"),
            tf.Variable(tf.exp(normal(2, 0.4)), name="scales"),
            family=family,
            to="normal",
            name=f"mixture_cdf_{family}",
        )

    return factory


def catalog() -> dict[str, Callable[..., tfb.Bijector]]:
    """Returns the bijector catalog: name -> factory.

    Each factory is `fn(features: int, *, dtype=tf.float32, seed: int = 0) -> tfb.Bijector`
    and returns a bijector over events of shape `[features]` with non-trivial parameters
    (random, seeded; normalisation layers carry non-trivial statistics and are initialised),
    used by the registry-driven tests in `tests/test_bijectors.py`.

    Returns:
        A new dict mapping `"planar"`, `"planar_leaky_relu"`, `"radial"`, `"batch_norm"`,
        `"act_norm"`, `"lu_linear"`, `"mixture_cdf_normal"` and `"mixture_cdf_logistic"` to
        their factories.

    Example:
        >>> from normalizingflows.bijectors import catalog
        >>> sorted(catalog())
        ['act_norm', 'batch_norm', 'lu_linear', 'mixture_cdf_logistic', 'mixture_cdf_normal',
         'planar', 'planar_leaky_relu', 'radial']
        >>> catalog()["radial"](3, seed=1).forward([[0.0, 1.0, 2.0]]).shape
        TensorShape([1, 3])
    """
    return {
        "planar": _planar,
        "planar_leaky_relu": _planar_leaky_relu,
        "radial": _radial,
        "batch_norm": _batch_norm,
        "act_norm": _act_norm,
        "lu_linear": _lu_linear,
        "mixture_cdf_normal": _mixture_cdf("normal"),
        "mixture_cdf_logistic": _mixture_cdf("logistic"),
    }
