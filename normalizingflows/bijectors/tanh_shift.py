"""Elementwise affine map with the RealNVP 2-D log-scale ``scale * tanh(g) + scale_shift``."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from ._common import static_bool

tfb = tfp.bijectors

__all__ = ["TanhShiftAffine", "TanhShiftParameters"]


class TanhShiftParameters(tf.Module):
    """The learned per-coordinate parameters of :class:`TanhShiftAffine` (one coupling layer).

    ``scale`` starts at 1, ``scale_shift`` and ``loc`` at 0 (with a zero-initialised conditioner
    the layer starts as the identity); ``initialized`` (non-trainable) records whether the
    data-dependent initialisation has run.

    Args:
        features: Number of transformed coordinates.
        dtype: Float dtype of the variables.
        name: Module name.
    """

    def __init__(self, features: int, dtype: Any = tf.float32, name: str = "tanh_shift") -> None:
        super().__init__(name=name)
        with self.name_scope:
            self.scale = tf.Variable(tf.ones([features], dtype), name="scale")
            self.scale_shift = tf.Variable(tf.zeros([features], dtype), name="scale_shift")
            self.loc = tf.Variable(tf.zeros([features], dtype), name="loc")
            self.initialized = tf.Variable(False, trainable=False, name="initialized")

    def bijector(self, raw: tf.Tensor, shift: tf.Tensor, training: bool = False
                 ) -> TanhShiftAffine:
        """The layer's map for conditioner outputs ``raw`` (g) and ``shift`` (t)."""
        return TanhShiftAffine(raw, shift, self, training=training)


class TanhShiftAffine(tfb.Bijector):
    """y = x * exp(s) + t + loc with s = scale * tanh(g) + scale_shift (elementwise).

    The log-scale parameterisation of the RealNVP paper's 2-D experiments: the conditioner
    output ``g`` is squashed by tanh and rescaled by a learned per-coordinate ``scale``, and a
    learned ``scale_shift`` sets each coordinate's overall scale, so |s - scale_shift| <=
    |scale| however large ``g`` gets. ``log|det J_forward| = s`` per coordinate.

    Data-dependent initialisation: the first ``inverse`` with ``training=True`` while
    ``parameters.initialized`` is False sets ``loc`` to the batch mean of ``y - t`` and
    ``scale_shift`` to the log of the batch std of ``(y - t - loc) exp(-scale tanh(g))``, so the
    layer maps that batch to zero mean and unit variance per coordinate (as ActNorm does for a
    whole layer); a ``tf.cond`` on the variable, so it works under ``tf.function`` and XLA.

    Args:
        raw: The conditioner's log-scale output g, shape ``[..., n]``.
        shift: The conditioner's shift output t, shape ``[..., n]``.
        parameters: The layer's :class:`TanhShiftParameters`.
        training: Allow the data-dependent initialisation (a static bool).
        epsilon: Added to the batch std in the initialisation.
        name: Name of the bijector.

    Example:
        >>> params = TanhShiftParameters(2)
        >>> y = tf.constant([[1.0, 10.0], [3.0, 14.0], [5.0, 18.0]])
        >>> x = params.bijector(tf.zeros([3, 2]), tf.zeros([3, 2]), training=True).inverse(y)
        >>> [round(float(v), 3) for v in tf.math.reduce_std(x, axis=0)]
        [1.0, 1.0]

    References:
        Density estimation using Real NVP, Dinh et al. 2016, https://arxiv.org/abs/1605.08803
    """

    def __init__(self, raw: tf.Tensor, shift: tf.Tensor, parameters: TanhShiftParameters, *,
                 training: bool = False, epsilon: float = 1e-6, name: str = "tanh_shift_affine"
                 ) -> None:
        bijector_parameters = dict(locals())
        self._raw = tf.convert_to_tensor(raw)
        self._shift = tf.convert_to_tensor(shift, dtype=self._raw.dtype)
        self._params = parameters
        self._training = static_bool(training, "training")
        self._epsilon = float(epsilon)
        super().__init__(forward_min_event_ndims=0, dtype=self._raw.dtype,
                         parameters=bijector_parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict:
        return {}

    def _squashed(self) -> tf.Tensor:
        return tf.convert_to_tensor(self._params.scale) * tf.tanh(self._raw)

    def _maybe_initialize(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        p = self._params
        if not self._training:
            return tf.convert_to_tensor(p.loc), tf.convert_to_tensor(p.scale_shift)

        def initialize() -> tf.Tensor:
            axes = list(range(y.shape.rank - 1))
            r = tf.stop_gradient(y - self._shift)
            loc = tf.reduce_mean(r, axis=axes)
            u = (r - loc) * tf.exp(-tf.stop_gradient(self._squashed()))
            std = tf.sqrt(tf.reduce_mean(tf.square(u - tf.reduce_mean(u, axis=axes)), axis=axes))
            updates = [p.loc.assign(loc), p.scale_shift.assign(tf.math.log(std + self._epsilon)),
                       p.initialized.assign(True)]
            with tf.control_dependencies(updates):
                return tf.constant(True)

        done = tf.cond(tf.convert_to_tensor(p.initialized), lambda: tf.constant(False),
                       initialize)
        with tf.control_dependencies([done]):
            return tf.identity(p.loc), tf.identity(p.scale_shift)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        p = self._params
        s = self._squashed() + p.scale_shift
        return x * tf.exp(s) + self._shift + p.loc

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        loc, scale_shift = self._maybe_initialize(y)
        return (y - self._shift - loc) * tf.exp(-(self._squashed() + scale_shift))

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return self._squashed() + self._params.scale_shift + tf.zeros_like(x)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        _, scale_shift = self._maybe_initialize(y)
        return -(self._squashed() + scale_shift) + tf.zeros_like(y)
