"""Radial flow bijector (Rezende & Mohamed, 2015) with a closed-form inverse."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ._common import as_parameter, check_features, infer_dtype

tfb = tfp.bijectors

__all__ = ["Radial"]


def _safe_norm(v: tf.Tensor) -> tf.Tensor:
    """Euclidean norm over the last axis (keepdims) with a zero (not NaN) gradient at 0."""
    sq = tf.reduce_sum(tf.square(v), axis=-1, keepdims=True)
    positive = sq > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, sq, tf.ones_like(sq))), tf.zeros_like(sq))


class Radial(tfb.Bijector):
    """Radial flow `f(z) = z + beta h(r) (z - z0)`, `h = 1 / (alpha + r)`, exact both ways.

    Here `r = ||z - z0||` is computed per sample over the event axis. The raw scalars are
    reparameterised as `alpha = softplus(alpha_raw) > 0` and
    `beta = -alpha + softplus(beta_raw) >= -alpha`, which makes the map invertible for every
    value of the raw parameters.

    Formula (one event of D features)::

        y = z + beta (z - z0) / (alpha + r),
        log|det J| = (D - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)

    Both factors are evaluated without cancellation, using `alpha + beta = softplus(beta_raw)`:
    `1 + beta h = (softplus(beta_raw) + r) / (alpha + r)` and
    `1 + beta h + beta h' r = (alpha softplus(beta_raw) + 2 alpha r + r^2) / (alpha + r)^2`.

    Inverse (closed form): with `s = ||y - z0||`, taking norms of `y - z0 = (z - z0)(1 + beta h)`
    gives `r^2 + (alpha + beta - s) r - alpha s = 0`; its positive root is computed in the
    numerically stable form (no subtraction of nearly equal terms), and then
    `z = z0 + (y - z0) / (1 + beta / (alpha + r))`. Values and gradients are finite at
    `z = z0` (the radius uses a guarded square root).

    Args:
        z0: Float tensor or `tf.Variable` of shape `[D]`, the centre.
        alpha_raw: Float scalar (raw; `alpha = softplus(alpha_raw)`).
        beta_raw: Float scalar (raw; `beta = -alpha + softplus(beta_raw)`).
        validate_args: Passed to `tfb.Bijector`.
        name: Name of the bijector.

    Raises:
        ValueError: If `z0` is not of shape `[D]` or `alpha_raw`/`beta_raw` are not scalars.
        TypeError: If the parameters do not share one floating dtype.

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> from normalizingflows.bijectors import Radial
        >>> bij = Radial(z0=[0.0, 1.0], alpha_raw=0.0, beta_raw=1.0)
        >>> x = tf.constant([[0.5, -1.0], [0.0, 1.0]])  # the second row is z0 itself
        >>> y = bij.forward(x)
        >>> bool(np.allclose(bij.inverse(tf.constant(y.numpy())), x, atol=1e-6))
        True
        >>> bool(np.all(np.isfinite(bij.forward_log_det_jacobian(x, event_ndims=1))))
        True

    References:
        Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows",
        https://arxiv.org/abs/1505.05770 (radial flow, appendix A.2).
    """

    def __init__(
        self,
        z0: Any,
        alpha_raw: Any,
        beta_raw: Any,
        *,
        validate_args: bool = False,
        name: str = "radial",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as scope_name:
            dtype = infer_dtype(z0, alpha_raw, beta_raw)
            self._z0 = as_parameter(z0, "z0", dtype)
            self._alpha_raw = as_parameter(alpha_raw, "alpha_raw", dtype)
            self._beta_raw = as_parameter(beta_raw, "beta_raw", dtype)
            if self._z0.shape.rank != 1:
                raise ValueError(f"`z0` must have shape [D], got shape {self._z0.shape}.")
            for arg, value in (("alpha_raw", self._alpha_raw), ("beta_raw", self._beta_raw)):
                if value.shape.rank != 0:
                    raise ValueError(f"`{arg}` must be a scalar (shape []), got {value.shape}.")
            self._features = self._z0.shape[0]
            super().__init__(
                forward_min_event_ndims=1,
                is_constant_jacobian=False,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=scope_name,
            )

    @classmethod
    def new(
        cls,
        features: int,
        *,
        dtype: tf.DType = tf.float32,
        seed: int = 0,
        name: str | None = None,
    ) -> Radial:
        """Creates a `Radial` bijector that owns freshly initialised `tf.Variable`s.

        `z0 ~ N(0, 1)`, `alpha_raw ~ N(0, 0.25)` and `beta_raw ~ N(0.5, 0.25)` (stateless
        draws), so the map is clearly non-trivial but well conditioned.

        Args:
            features: Number of features `D` (>= 1).
            dtype: Floating dtype of the variables.
            seed: Integer seed; the same seed gives the same parameters.
            name: Name of the bijector (default `"radial"`).

        Returns:
            A `Radial` bijector whose `trainable_variables` are `z0`, `alpha_raw`, `beta_raw`.

        Raises:
            ValueError: If `features < 1`.
        """
        features = int(features)
        if features < 1:
            raise ValueError(f"`features` must be >= 1, got {features}.")
        dtype = tf.as_dtype(dtype)
        z0 = tf.random.stateless_normal([features], seed=[seed, 0], dtype=dtype)
        alpha_raw = tf.random.stateless_normal([], seed=[seed, 1], stddev=0.5, dtype=dtype)
        beta_raw = tf.random.stateless_normal([], seed=[seed, 2], mean=0.5, stddev=0.5,
                                              dtype=dtype)
        return cls(
            tf.Variable(z0, name="z0"),
            tf.Variable(alpha_raw, name="alpha_raw"),
            tf.Variable(beta_raw, name="beta_raw"),
            name=name or "radial",
        )

    @property
    def z0(self) -> Any:
        """The centre `z0` (shape `[D]`)."""
        return self._z0

    @property
    def alpha_raw(self) -> Any:
        """The raw scalar with `alpha = softplus(alpha_raw)`."""
        return self._alpha_raw

    @property
    def beta_raw(self) -> Any:
        """The raw scalar with `beta = -alpha + softplus(beta_raw)`."""
        return self._beta_raw

    def alpha(self) -> tf.Tensor:
        """Returns the constrained `alpha > 0`."""
        return self._params()[1]

    def beta(self) -> tf.Tensor:
        """Returns the constrained `beta >= -alpha`."""
        return self._params()[2]

    def _params(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Reads the parameters fresh: returns `(z0, alpha, beta, alpha + beta)`."""
        z0 = tf.convert_to_tensor(self._z0)
        alpha = tf.math.softplus(tf.convert_to_tensor(self._alpha_raw))
        alpha_plus_beta = tf.math.softplus(tf.convert_to_tensor(self._beta_raw))
        return z0, alpha, alpha_plus_beta - alpha, alpha_plus_beta

    def _check_event(self, x: tf.Tensor, arg: str) -> None:
        check_features(x, self._features, arg)

    def _log_det(self, r: tf.Tensor, alpha: tf.Tensor, alpha_plus_beta: tf.Tensor,
                 features: tf.Tensor) -> tf.Tensor:
        """Forward log-det as a function of the radius `r` (shape [..., 1] -> [...])."""
        r = r[..., 0]
        ar = alpha + r
        log_one_plus_bh = tf.math.log(alpha_plus_beta + r) - tf.math.log(ar)
        log_second = (tf.math.log(alpha * alpha_plus_beta + 2.0 * alpha * r + tf.square(r))
                      - 2.0 * tf.math.log(ar))
        return (features - 1.0) * log_one_plus_bh + log_second

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        self._check_event(x, "x")
        z0, alpha, _, alpha_plus_beta = self._params()
        d = x - z0
        r = _safe_norm(d)
        # z + beta d / (alpha + r) = z0 + d (alpha + beta + r) / (alpha + r), cancellation-free.
        return z0 + d * ((alpha_plus_beta + r) / (alpha + r))

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        self._check_event(x, "x")
        z0, alpha, _, alpha_plus_beta = self._params()
        r = _safe_norm(x - z0)
        features = tf.cast(tf.shape(x)[-1], x.dtype)
        return self._log_det(r, alpha, alpha_plus_beta, features)

    def _radius_from_output(self, s: tf.Tensor, alpha: tf.Tensor,
                            alpha_plus_beta: tf.Tensor) -> tf.Tensor:
        """Positive root of `r^2 + (alpha + beta - s) r - alpha s = 0`, stable for all signs."""
        p = alpha_plus_beta - s
        q = tf.abs(p) + tf.sqrt(tf.square(p) + 4.0 * alpha * s)  # > 0 since alpha + beta > 0
        return tf.where(p > 0, 2.0 * alpha * s / q, 0.5 * q)

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        self._check_event(y, "y")
        z0, alpha, _, alpha_plus_beta = self._params()
        d = y - z0
        r = self._radius_from_output(_safe_norm(d), alpha, alpha_plus_beta)
        # The floor only matters where softplus(beta_raw) underflows and y = z0 exactly.
        tiny = np.finfo(y.dtype.as_numpy_dtype).tiny
        return z0 + d * ((alpha + r) / tf.maximum(alpha_plus_beta + r, tiny))

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        self._check_event(y, "y")
        z0, alpha, _, alpha_plus_beta = self._params()
        r = self._radius_from_output(_safe_norm(y - z0), alpha, alpha_plus_beta)
        features = tf.cast(tf.shape(y)[-1], y.dtype)
        return -self._log_det(r, alpha, alpha_plus_beta, features)
