"""Radial flow bijector (Rezende & Mohamed, 2015) with a closed-form inverse."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ._common import as_parameter, batch_shape_of, check_features, infer_dtype

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

    Batched parameters: `z0` may have shape `[..., D]` and `alpha_raw`, `beta_raw` shape `[...]`
    (one map per batch member, e.g. made by a hyper-network from a context); they broadcast
    against the batch of the input `x [..., D]`, and every formula above holds per member.

    Args:
        z0: Float tensor or `tf.Variable` of shape `[D]` (or `[..., D]`), the centre.
        alpha_raw: Float scalar, or of the batch shape `[...]` (raw;
            `alpha = softplus(alpha_raw)`).
        beta_raw: Float scalar, or of the batch shape `[...]` (raw;
            `beta = -alpha + softplus(beta_raw)`).
        validate_args: Passed to `tfb.Bijector`.
        name: Name of the bijector.

    Raises:
        ValueError: If `z0` is not of shape `[..., D]`, or `alpha_raw`/`beta_raw` are neither
            scalars nor of a batch shape that broadcasts with that of `z0` (and of no higher
            rank).
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
        >>> batched = Radial(z0=tf.zeros([2, 2]), alpha_raw=[0.0, 1.0], beta_raw=[1.0, -1.0])
        >>> batched.forward_log_det_jacobian(x, event_ndims=1).shape  # map i acts on row i
        TensorShape([2])

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
            if self._z0.shape.rank == 0:
                raise ValueError(f"`z0` must have shape [..., D], got shape {self._z0.shape}.")
            batch = self._z0.shape[:-1]
            for arg, value in (("alpha_raw", self._alpha_raw), ("beta_raw", self._beta_raw)):
                batch_shape_of({"z0": self._z0.shape[:-1], arg: value.shape}, f"`{arg}`")
                if batch.rank is not None and (value.shape.rank or 0) > batch.rank:
                    raise ValueError(f"`{arg}` must be a scalar or have the batch shape of `z0` "
                                     f"({batch}), got {value.shape}.")
            batch_shape_of({"alpha_raw": self._alpha_raw.shape,
                            "beta_raw": self._beta_raw.shape}, "`alpha_raw` and `beta_raw`")
            self._features = self._z0.shape[-1] if self._z0.shape.rank is not None else None
            super().__init__(
                forward_min_event_ndims=1,
                is_constant_jacobian=False,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=scope_name,
            )

    @classmethod
    def _parameter_properties(cls, dtype: tf.DType) -> dict[str, Any]:
        return {
            "z0": tfp.util.ParameterProperties(event_ndims=1),
            "alpha_raw": tfp.util.ParameterProperties(event_ndims=0),
            "beta_raw": tfp.util.ParameterProperties(event_ndims=0),
        }

    @staticmethod
    def initial_parameters(
        features: int, *, dtype: tf.DType = tf.float32, seed: int = 0
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The seeded initial raw parameters `(z0 [D], alpha_raw [], beta_raw [])` of `new`.

        `z0 ~ N(0, 1)`, `alpha_raw ~ N(0, 0.25)` and `beta_raw ~ N(0.5, 0.25)` (stateless
        draws), so the map is clearly non-trivial but well conditioned. A hyper-network can
        start its output bias here, so that a conditional flow starts where the unconditional
        one does.

        Args:
            features: Number of features `D` (>= 1).
            dtype: Floating dtype.
            seed: Integer seed; the same seed gives the same parameters.

        Returns:
            The tensors `(z0, alpha_raw, beta_raw)`.

        Raises:
            ValueError: If `features < 1`.

        Example:
            >>> z0, alpha_raw, beta_raw = Radial.initial_parameters(3, seed=2)
            >>> z0.shape, alpha_raw.shape, beta_raw.shape
            (TensorShape([3]), TensorShape([]), TensorShape([]))
        """
        features = int(features)
        if features < 1:
            raise ValueError(f"`features` must be >= 1, got {features}.")
        dtype = tf.as_dtype(dtype)
        z0 = tf.random.stateless_normal([features], seed=[seed, 0], dtype=dtype)
        alpha_raw = tf.random.stateless_normal([], seed=[seed, 1], stddev=0.5, dtype=dtype)
        beta_raw = tf.random.stateless_normal([], seed=[seed, 2], mean=0.5, stddev=0.5,
                                              dtype=dtype)
        return z0, alpha_raw, beta_raw

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

        The initial values are those of `initial_parameters`: `z0 ~ N(0, 1)`,
        `alpha_raw ~ N(0, 0.25)` and `beta_raw ~ N(0.5, 0.25)` (stateless draws).

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
        z0, alpha_raw, beta_raw = cls.initial_parameters(features, dtype=dtype, seed=seed)
        return cls(
            tf.Variable(z0, name="z0"),
            tf.Variable(alpha_raw, name="alpha_raw"),
            tf.Variable(beta_raw, name="beta_raw"),
            name=name or "radial",
        )

    @property
    def z0(self) -> Any:
        """The centre `z0` (shape `[D]`, or `[..., D]` when batched)."""
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
        """Reads the parameters fresh: returns `(z0, alpha, beta, alpha + beta)`.

        `z0` has shape `[..., D]`, the others the batch shape `[...]`.
        """
        z0 = tf.convert_to_tensor(self._z0)
        alpha = tf.math.softplus(tf.convert_to_tensor(self._alpha_raw))
        alpha_plus_beta = tf.math.softplus(tf.convert_to_tensor(self._beta_raw))
        return z0, alpha, alpha_plus_beta - alpha, alpha_plus_beta

    def _check_event(self, x: tf.Tensor, arg: str) -> None:
        check_features(x, self._features, arg)

    def _expanded(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`(z0, alpha, alpha + beta)` with the scalars as `[..., 1]`, to meet `r [..., 1]`."""
        z0, alpha, _, alpha_plus_beta = self._params()
        return z0, alpha[..., tf.newaxis], alpha_plus_beta[..., tf.newaxis]

    def _log_det(self, r: tf.Tensor, alpha: tf.Tensor, alpha_plus_beta: tf.Tensor,
                 features: tf.Tensor) -> tf.Tensor:
        """Forward log-det as a function of the radius `r` (all `[..., 1]`; returns [...])."""
        ar = alpha + r
        log_one_plus_bh = tf.math.log(alpha_plus_beta + r) - tf.math.log(ar)
        log_second = (tf.math.log(alpha * alpha_plus_beta + 2.0 * alpha * r + tf.square(r))
                      - 2.0 * tf.math.log(ar))
        return ((features - 1.0) * log_one_plus_bh + log_second)[..., 0]

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        self._check_event(x, "x")
        z0, alpha, alpha_plus_beta = self._expanded()
        d = x - z0
        r = _safe_norm(d)
        # z + beta d / (alpha + r) = z0 + d (alpha + beta + r) / (alpha + r), cancellation-free.
        return z0 + d * ((alpha_plus_beta + r) / (alpha + r))

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        self._check_event(x, "x")
        z0, alpha, alpha_plus_beta = self._expanded()
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
        z0, alpha, alpha_plus_beta = self._expanded()
        d = y - z0
        r = self._radius_from_output(_safe_norm(d), alpha, alpha_plus_beta)
        # The floor only matters where softplus(beta_raw) underflows and y = z0 exactly.
        tiny = np.finfo(y.dtype.as_numpy_dtype).tiny
        return z0 + d * ((alpha + r) / tf.maximum(alpha_plus_beta + r, tiny))

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        self._check_event(y, "y")
        z0, alpha, alpha_plus_beta = self._expanded()
        r = self._radius_from_output(_safe_norm(y - z0), alpha, alpha_plus_beta)
        features = tf.cast(tf.shape(y)[-1], y.dtype)
        return -self._log_det(r, alpha, alpha_plus_beta, features)
