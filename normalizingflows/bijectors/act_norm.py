"""Activation normalisation bijector (Glow) with data-dependent initialisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ._common import as_parameter, infer_dtype, static_bool

tfb = tfp.bijectors

__all__ = ["ActNorm"]


class ActNorm(tfb.Bijector):
    """Per-channel affine normalisation with data-dependent initialisation (Glow).

    Direction convention: `forward` maps base -> data and `inverse` maps data -> base::

        forward: y = x * exp(log_scale) + loc,   inverse: x = (y - loc) * exp(-log_scale)
        log|det J_forward| = (H * W) * sum(log_scale)   (H * W = 1 for event shape [D])

    Data-dependent initialisation: the first time `inverse` (or `inverse_log_det_jacobian`)
    is called with `training=True` while the non-trainable bool Variable `initialized` is
    False, the layer sets `loc` to the batch mean and `log_scale` to `log(batch std + epsilon)`
    per channel (statistics over all batch and spatial axes), so that batch comes out with
    zero mean and unit variance per channel, and sets `initialized = True`. This is a
    `tf.cond` on the variable, so it works eagerly, under `tf.function` and under XLA.
    `training=False` (the default) never initialises or mutates anything. The outputs of the
    initialising call already use the new values, and gradients reach `loc` and `log_scale`.

    Args:
        loc: Float tensor or `tf.Variable` of shape `[C]`.
        log_scale: Float tensor or `tf.Variable` of shape `[C]`.
        initialized: Bool `tf.Variable` (non-trainable) or Python bool; a Python bool is
            wrapped in a new non-trainable Variable.
        event_ndims: 1 for events of shape `[D]` (default); 3 for channels-last images
            `[H, W, C]` with per-channel parameters (any event rank >= 1 works).
        epsilon: Added to the batch std in the initialisation (> 0).
        validate_args: Passed to `tfb.Bijector`.
        name: Name of the bijector.

    Raises:
        ValueError: On wrong parameter shapes, `event_ndims < 1`, `epsilon <= 0`, or a
            `training` that is not a static bool.
        TypeError: If the parameters do not share one floating dtype, or if the layer is not
            initialised and `loc`/`log_scale` are not Variables (nothing to initialise).

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> from normalizingflows.bijectors import ActNorm
        >>> an = ActNorm.new(2)
        >>> y = tf.constant([[1.0, 10.0], [3.0, 14.0], [5.0, 18.0]])
        >>> x = an.inverse(y, training=True)  # first training call: data-dependent init
        >>> bool(an.initialized.numpy())
        True
        >>> np.round(x.numpy().mean(axis=0), 5) + 0.0, np.round(x.numpy().std(axis=0), 4)
        (array([0., 0.], dtype=float32), array([1., 1.], dtype=float32))

    References:
        Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions",
        https://arxiv.org/abs/1807.03039 (actnorm, section 3.1).
    """

    def __init__(
        self,
        loc: Any,
        log_scale: Any,
        initialized: Any,
        *,
        event_ndims: int = 1,
        epsilon: float = 1e-6,
        validate_args: bool = False,
        name: str = "act_norm",
    ) -> None:
        parameters = dict(locals())
        event_ndims = int(event_ndims)
        if event_ndims < 1:
            raise ValueError(f"`event_ndims` must be >= 1, got {event_ndims}.")
        if not float(epsilon) > 0.0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon}.")
        with tf.name_scope(name) as scope_name:
            dtype = infer_dtype(loc, log_scale)
            self._loc = as_parameter(loc, "loc", dtype)
            self._log_scale = as_parameter(log_scale, "log_scale", dtype)
            if isinstance(initialized, tf.Variable):
                if initialized.dtype != tf.bool or initialized.shape.rank != 0:
                    raise TypeError(
                        "`initialized` must be a scalar bool tf.Variable, got dtype "
                        f"{initialized.dtype.name} and shape {initialized.shape}."
                    )
                self._initialized = initialized
            else:
                self._initialized = tf.Variable(
                    static_bool(initialized, "initialized"), trainable=False, name="initialized"
                )
            for arg, value in (("loc", self._loc), ("log_scale", self._log_scale)):
                if value.shape.rank != 1 or not value.shape.is_compatible_with(self._loc.shape):
                    raise ValueError(
                        f"`{arg}` must have shape [C] = {self._loc.shape}, got {value.shape}."
                    )
            known = tf.executing_eagerly() and bool(self._initialized.numpy())
            if not known and not (
                isinstance(self._loc, tf.Variable) and isinstance(self._log_scale, tf.Variable)
            ):
                raise TypeError(
                    "`loc` and `log_scale` must be tf.Variables unless `initialized` is True "
                    "(the data-dependent initialisation assigns them)."
                )
            self._channels = self._loc.shape[0]
            self._event_ndims = event_ndims
            self._epsilon = float(epsilon)
            super().__init__(
                forward_min_event_ndims=event_ndims,
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
        event_ndims: int = 1,
        epsilon: float = 1e-6,
    ) -> ActNorm:
        """Creates an uninitialised `ActNorm` that owns its `tf.Variable`s.

        `loc = log_scale = 0` (trainable) and `initialized = False` (non-trainable): the first
        `inverse(..., training=True)` call sets them from the data. The initialisation is
        deterministic; `seed` is accepted for a uniform factory signature.

        Args:
            features: Number of features (or channels `C` when `event_ndims = 3`), >= 1.
            dtype: Floating dtype of the variables.
            seed: Unused (deterministic initialisation).
            name: Name of the bijector (default `"act_norm"`).
            event_ndims: 1 for `[D]` events, 3 for `[H, W, C]` images.
            epsilon: Added to the batch std in the initialisation.

        Returns:
            An `ActNorm` whose `trainable_variables` are `loc` and `log_scale`.

        Raises:
            ValueError: If `features < 1`.
        """
        del seed
        features = int(features)
        if features < 1:
            raise ValueError(f"`features` must be >= 1, got {features}.")
        dtype = tf.as_dtype(dtype)
        return cls(
            tf.Variable(tf.zeros([features], dtype), name="loc"),
            tf.Variable(tf.zeros([features], dtype), name="log_scale"),
            tf.Variable(False, trainable=False, name="initialized"),
            event_ndims=event_ndims,
            epsilon=epsilon,
            name=name or "act_norm",
        )

    @property
    def loc(self) -> Any:
        """The per-channel shift (shape `[C]`)."""
        return self._loc

    @property
    def log_scale(self) -> Any:
        """The per-channel log scale (shape `[C]`)."""
        return self._log_scale

    @property
    def initialized(self) -> tf.Variable:
        """The non-trainable bool Variable that records the data-dependent initialisation."""
        return self._initialized

    @property
    def event_ndims(self) -> int:
        """The event rank (1 for `[D]`, 3 for `[H, W, C]`)."""
        return self._event_ndims

    def _check_event(self, x: tf.Tensor, arg: str) -> None:
        rank = x.shape.rank
        last = x.shape[-1] if rank else None
        if (rank is not None and rank < self._event_ndims) or (
            last is not None and self._channels is not None and last != self._channels
        ):
            expected = ["..."] + ["?"] * (self._event_ndims - 1) + [str(self._channels)]
            raise ValueError(
                f"`{arg}` must have shape [{', '.join(expected)}] (channels last), "
                f"got shape {x.shape}."
            )

    def _maybe_initialize(self, y: tf.Tensor, training: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the data-dependent initialisation if needed; returns fresh `(loc, log_scale)`."""
        if static_bool(training, "training"):

            def initialize() -> tf.Tensor:
                rank = y.shape.rank
                axes = list(range(rank - 1)) if rank is not None else tf.range(tf.rank(y) - 1)
                mean = tf.reduce_mean(y, axis=axes)
                std = tf.sqrt(tf.reduce_mean(tf.square(y - mean), axis=axes))
                updates = [
                    self._loc.assign(tf.stop_gradient(mean)),
                    self._log_scale.assign(tf.stop_gradient(tf.math.log(std + self._epsilon))),
                    self._initialized.assign(True),
                ]
                with tf.control_dependencies(updates):
                    return tf.constant(True)

            done = tf.cond(
                tf.convert_to_tensor(self._initialized),
                lambda: tf.constant(False),
                initialize,
            )
            with tf.control_dependencies([done]):
                return tf.identity(self._loc), tf.identity(self._log_scale)
        return tf.convert_to_tensor(self._loc), tf.convert_to_tensor(self._log_scale)

    def _spatial_size(self, x: tf.Tensor) -> tf.Tensor:
        if self._event_ndims == 1:
            return tf.constant(1.0, x.dtype)
        inner = x.shape[-self._event_ndims:-1]
        if inner.is_fully_defined():
            return tf.constant(float(np.prod(inner.as_list())), x.dtype)
        return tf.cast(tf.reduce_prod(tf.shape(x)[-self._event_ndims:-1]), x.dtype)

    def _ldj(self, log_scale: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        ldj = self._spatial_size(x) * tf.reduce_sum(log_scale)
        batch_like = x[(Ellipsis,) + (0,) * self._event_ndims]
        return ldj + tf.zeros_like(batch_like)

    def _forward(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        del training  # the forward never initialises
        self._check_event(x, "x")
        loc = tf.convert_to_tensor(self._loc)
        log_scale = tf.convert_to_tensor(self._log_scale)
        return x * tf.exp(log_scale) + loc

    def _forward_log_det_jacobian(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        del training
        self._check_event(x, "x")
        return self._ldj(tf.convert_to_tensor(self._log_scale), x)

    def _inverse(self, y: tf.Tensor, training: bool = False) -> tf.Tensor:
        self._check_event(y, "y")
        loc, log_scale = self._maybe_initialize(y, training)
        return (y - loc) * tf.exp(-log_scale)

    def _inverse_log_det_jacobian(self, y: tf.Tensor, training: bool = False) -> tf.Tensor:
        self._check_event(y, "y")
        _, log_scale = self._maybe_initialize(y, training)
        return -self._ldj(log_scale, y)
