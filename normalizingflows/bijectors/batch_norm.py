"""Batch normalisation bijector in the MAF/RealNVP sense, with a bounded scale."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from ._common import as_parameter, check_features, infer_dtype, static_bool

tfb = tfp.bijectors

__all__ = ["BatchNorm"]


class BatchNorm(tfb.Bijector):
    """Batch normalisation as a bijector (MAF paper), with a smoothly bounded inverse std.

    Direction convention as `tfb.BatchNormalization`: `forward` maps base -> data
    (de-normalises) and `inverse` maps data -> base (normalises)::

        inverse: x = (y - mean) * inv_std * exp(log_scale) + shift
        forward: y = (x - shift) * exp(-log_scale) / inv_std + mean
        inv_std = max_inv_std * tanh(1 / sqrt(var + epsilon) / max_inv_std)

    `log|det J_inverse| = sum(log_scale + log(inv_std))` per event.

    Every method takes the keyword `training` (a Python bool, default `False`); TFP passes it
    through `**kwargs` (in a `tfb.Chain` or `tfd.TransformedDistribution` route it with
    `bijector_kwargs={name: {"training": True}}`).

    * `training=True`: the inverse and its log-det use the mean and (biased) variance of `y`
      over all batch axes, and gradients flow through them. `inverse` (only it, once per call)
      updates the moving averages, `moving = momentum * moving + (1 - momentum) * batch`.
    * `training=False`: both directions use the stored moving statistics and nothing is
      mutated; the layer is then an exact bijection.
    * `forward` always uses the stored statistics.

    The bound: `tanh` is a rescaled sigmoid, so `inv_std < max_inv_std` for any variance,
    while `inv_std ~ 1 / sqrt(var + epsilon)` when that is well below `max_inv_std`. A stack of
    such layers therefore amplifies by at most `max_inv_std * exp(log_scale)` per layer, even
    on out-of-distribution inputs or with collapsed (near-zero) variances; with the plain
    `epsilon` bound alone a degenerate feature gives a factor `1/sqrt(epsilon) ~ 316` per layer,
    and 20 layers overflow float32.

    Why not `tfb.BatchNormalization`: its `training` mode is fixed when it is constructed (one
    bijector per mode, or rebuilding the flow to switch), it wraps a Keras layer (which is
    invisible to `trainable_variables` if it is a Keras 3 layer) and its scale is unbounded.

    Args:
        log_scale: Float tensor or `tf.Variable` of shape `[D]` (trainable).
        shift: Float tensor or `tf.Variable` of shape `[D]` (trainable).
        moving_mean: Float `tf.Variable` of shape `[D]` (non-trainable; a tensor works only in
            evaluation, since training updates it).
        moving_variance: Float `tf.Variable` of shape `[D]`, positive.
        momentum: Moving-average momentum in `[0, 1)`.
        epsilon: Added to the variance before the inverse square root (> 0).
        max_inv_std: Upper bound of the inverse standard deviation (> 0).
        validate_args: Passed to `tfb.Bijector`.
        name: Name of the bijector.

    Raises:
        ValueError: If the parameter shapes differ from `[D]` or a scalar option is out of range,
            or `training` is not a static bool.
        TypeError: If the parameters do not share one floating dtype, or training is requested
            while `moving_mean`/`moving_variance` are not Variables.

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> from normalizingflows.bijectors import BatchNorm
        >>> bn = BatchNorm.new(2)
        >>> y = tf.constant([[1.0, 10.0], [3.0, 14.0], [5.0, 18.0]])
        >>> x = bn.inverse(y, training=True)  # batch statistics; moving averages updated
        >>> np.round(bn.moving_mean.numpy(), 3)
        array([0.3, 1.4], dtype=float32)
        >>> before = bn.moving_mean.numpy().copy()
        >>> _ = bn.inverse(tf.constant(y.numpy()))  # evaluation: stored statistics only
        >>> bool(np.array_equal(before, bn.moving_mean.numpy()))
        True

    References:
        Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive Flow for Density
        Estimation", https://arxiv.org/abs/1705.07057 (batch normalisation, section 3.4);
        Dinh, Sohl-Dickstein & Bengio (2016), "Density estimation using Real NVP",
        https://arxiv.org/abs/1605.08803.
    """

    def __init__(
        self,
        log_scale: Any,
        shift: Any,
        moving_mean: Any,
        moving_variance: Any,
        *,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        max_inv_std: float = 10.0,
        validate_args: bool = False,
        name: str = "batch_norm",
    ) -> None:
        parameters = dict(locals())
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"`momentum` must lie in [0, 1), got {momentum}.")
        if not float(epsilon) > 0.0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon}.")
        if not float(max_inv_std) > 0.0:
            raise ValueError(f"`max_inv_std` must be > 0, got {max_inv_std}.")
        with tf.name_scope(name) as scope_name:
            dtype = infer_dtype(log_scale, shift, moving_mean, moving_variance)
            self._log_scale = as_parameter(log_scale, "log_scale", dtype)
            self._shift = as_parameter(shift, "shift", dtype)
            self._moving_mean = as_parameter(moving_mean, "moving_mean", dtype)
            self._moving_variance = as_parameter(moving_variance, "moving_variance", dtype)
            shapes = {
                "log_scale": self._log_scale.shape,
                "shift": self._shift.shape,
                "moving_mean": self._moving_mean.shape,
                "moving_variance": self._moving_variance.shape,
            }
            first = shapes["log_scale"]
            for arg, shape in shapes.items():
                if shape.rank != 1 or not shape.is_compatible_with(first):
                    raise ValueError(
                        f"`{arg}` must have shape [D] = {first} like `log_scale`, got {shape}."
                    )
            self._features = first[0]
            self._momentum = float(momentum)
            self._epsilon = float(epsilon)
            self._max_inv_std = float(max_inv_std)
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
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        max_inv_std: float = 10.0,
    ) -> BatchNorm:
        """Creates a `BatchNorm` bijector that owns its `tf.Variable`s.

        `log_scale = shift = 0` (trainable), `moving_mean = 0` and `moving_variance = 1`
        (non-trainable). The initialisation is deterministic; `seed` is accepted for a uniform
        factory signature.

        Args:
            features: Number of features `D` (>= 1).
            dtype: Floating dtype of the variables.
            seed: Unused (deterministic initialisation).
            name: Name of the bijector (default `"batch_norm"`).
            momentum: Moving-average momentum.
            epsilon: Variance offset.
            max_inv_std: Bound of the inverse standard deviation.

        Returns:
            A `BatchNorm` whose `trainable_variables` are `log_scale` and `shift`.

        Raises:
            ValueError: If `features < 1`.
        """
        del seed
        features = int(features)
        if features < 1:
            raise ValueError(f"`features` must be >= 1, got {features}.")
        dtype = tf.as_dtype(dtype)
        return cls(
            tf.Variable(tf.zeros([features], dtype), name="log_scale"),
            tf.Variable(tf.zeros([features], dtype), name="shift"),
            tf.Variable(tf.zeros([features], dtype), trainable=False, name="moving_mean"),
            tf.Variable(tf.ones([features], dtype), trainable=False, name="moving_variance"),
            momentum=momentum,
            epsilon=epsilon,
            max_inv_std=max_inv_std,
            name=name or "batch_norm",
        )

    @property
    def log_scale(self) -> Any:
        """The trainable log scale (shape `[D]`)."""
        return self._log_scale

    @property
    def shift(self) -> Any:
        """The trainable shift (shape `[D]`)."""
        return self._shift

    @property
    def moving_mean(self) -> Any:
        """The moving mean of the data (shape `[D]`)."""
        return self._moving_mean

    @property
    def moving_variance(self) -> Any:
        """The moving variance of the data (shape `[D]`)."""
        return self._moving_variance

    @property
    def momentum(self) -> float:
        """The moving-average momentum."""
        return self._momentum

    def inv_std(self, variance: tf.Tensor) -> tf.Tensor:
        """The bounded inverse std, `max_inv_std * tanh(rsqrt(variance + eps) / max_inv_std)`."""
        m = tf.constant(self._max_inv_std, variance.dtype)
        return m * tf.tanh(tf.math.rsqrt(variance + self._epsilon) / m)

    def _check_event(self, x: tf.Tensor, arg: str) -> None:
        check_features(x, self._features, arg)

    def _batch_stats(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rank = y.shape.rank
        axes = list(range(rank - 1)) if rank is not None else tf.range(tf.rank(y) - 1)
        mean = tf.reduce_mean(y, axis=axes)
        variance = tf.reduce_mean(tf.square(y - mean), axis=axes)
        return mean, variance

    def _stats(self, y: tf.Tensor, training: Any) -> tuple[tf.Tensor, tf.Tensor]:
        if static_bool(training, "training"):
            return self._batch_stats(y)
        return tf.convert_to_tensor(self._moving_mean), tf.convert_to_tensor(
            self._moving_variance
        )

    def _update_moving_stats(self, mean: tf.Tensor, variance: tf.Tensor) -> list[Any]:
        for arg, value in (("moving_mean", self._moving_mean),
                           ("moving_variance", self._moving_variance)):
            if not isinstance(value, tf.Variable):
                raise TypeError(
                    f"`{arg}` must be a tf.Variable to be updated with training=True, "
                    f"got {type(value).__name__}."
                )
        m = self._momentum
        mean = tf.stop_gradient(mean)
        variance = tf.stop_gradient(variance)
        return [
            self._moving_mean.assign(m * self._moving_mean + (1.0 - m) * mean),
            self._moving_variance.assign(m * self._moving_variance + (1.0 - m) * variance),
        ]

    def _ldj_inverse(self, variance: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
        log_scale = tf.convert_to_tensor(self._log_scale)
        ldj = tf.reduce_sum(log_scale + tf.math.log(self.inv_std(variance)))
        return ldj + tf.zeros_like(like[..., 0])

    def _forward(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        del training  # the forward always uses the stored statistics
        self._check_event(x, "x")
        mean = tf.convert_to_tensor(self._moving_mean)
        variance = tf.convert_to_tensor(self._moving_variance)
        log_scale = tf.convert_to_tensor(self._log_scale)
        shift = tf.convert_to_tensor(self._shift)
        return (x - shift) * tf.exp(-log_scale) / self.inv_std(variance) + mean

    def _forward_log_det_jacobian(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        del training
        self._check_event(x, "x")
        return -self._ldj_inverse(tf.convert_to_tensor(self._moving_variance), x)

    def _inverse(self, y: tf.Tensor, training: bool = False) -> tf.Tensor:
        self._check_event(y, "y")
        mean, variance = self._stats(y, training)
        log_scale = tf.convert_to_tensor(self._log_scale)
        shift = tf.convert_to_tensor(self._shift)
        x = (y - mean) * (self.inv_std(variance) * tf.exp(log_scale)) + shift
        if static_bool(training, "training"):
            with tf.control_dependencies(self._update_moving_stats(mean, variance)):
                x = tf.identity(x)
            # TFP's TransformedDistribution.log_prob takes the log-det as -fldj(x) at the base
            # point x, and a forward pass knows only the stored statistics. Put the batch
            # statistics' log-det in the cache entry of this (y, x) pair, where TFP looks first;
            # without it a training step optimised an objective whose log-det came from the
            # moving averages while the map used the batch (MAF with batch norm then diverged).
            self._cache.inverse_attributes(y, training=training)["ildj"] = (
                self._ldj_inverse(variance, y))
        return x

    def _inverse_log_det_jacobian(self, y: tf.Tensor, training: bool = False) -> tf.Tensor:
        self._check_event(y, "y")
        _, variance = self._stats(y, training)
        return self._ldj_inverse(variance, y)
