"""Dense conditioners for coupling layers."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras

__all__ = ["MLP"]


class MLP(tf_keras.layers.Layer):
    """A fully connected network whose last layer starts at zero (the flow starts at identity).

    Args:
        in_features: Size of the input.
        out_features: Size of the output.
        hidden_units: Widths of the hidden layers.
        activation: Hidden activation.
        context_features: Size of an optional context concatenated to the input.
        seed: Seed of the hidden initialisers.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``).

    Example:
        >>> net = MLP(2, 6, hidden_units=(8,))
        >>> float(tf.reduce_sum(tf.abs(net(tf.ones([3, 2])))))
        0.0
    """

    def __init__(self, in_features: int, out_features: int, *,
                 hidden_units: Sequence[int] = (64, 64), activation: str = "relu",
                 context_features: int | None = None, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.context_features = context_features
        self.hidden = [
            tf_keras.layers.Dense(
                units, activation=activation, dtype=self.dtype, name=f"hidden_{i}",
                kernel_initializer=tf_keras.initializers.GlorotUniform(seed=seed * 7919 + i))
            for i, units in enumerate(hidden_units)
        ]
        self.out = tf_keras.layers.Dense(out_features, kernel_initializer="zeros", dtype=self.dtype,
                                         name="output")
        width = self.in_features + int(context_features or 0)
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.out.build((None, width))
        self.built = True

    def call(self, inputs: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        """Map ``inputs [..., in_features]`` to ``[..., out_features]``."""
        h = tf.convert_to_tensor(inputs, dtype=self.dtype)
        if context is not None:
            if not self.context_features:
                raise ValueError("context was given but this MLP has context_features=None")
            context = tf.cast(context, self.dtype)
            context = tf.broadcast_to(context, tf.concat([tf.shape(h)[:-1],
                                                          tf.shape(context)[-1:]], 0))
            h = tf.concat([h, context], axis=-1)
        batch_shape = tf.shape(h)[:-1]
        # Dense wants a matrix; any batch shape works. The width is known from construction
        # (inside tfb.RealNVP under Keras fit the static last dimension is not).
        h = tf.reshape(h, [-1, self.in_features + int(self.context_features or 0)])
        for layer in self.hidden:
            h = layer(h)
        out = self.out(h)
        return tf.reshape(out, tf.concat([batch_shape, [self.out_features]], axis=0))
