"""Dense conditioners for coupling layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from ._init import check_residual_widths, dropout_layer, seeded
from .precision import layer_dtype

__all__ = ["MLP"]


class MLP(tf_keras.layers.Layer):
    """A fully connected network whose last layer starts at zero (the flow starts at identity).

    ``output_initializer`` / ``output_bias_initializer`` change that start: a context embedding
    wants a random last layer, a hyper-network a random output bias (its base parameters).

    ``residual=True`` makes it the Neural Spline Flows' residual network: a linear map to the
    common width of ``hidden_units``, then one pre-activation residual block per entry,
    ``h <- h + W2 act(W1 act(h))``, and the output layer on ``act(h)``.

    ``dropout`` drops hidden activations when called with ``training=True``: after each
    hidden layer of a plain net, and between ``act`` and ``W2`` in each residual block (the
    NSF paper's placement).

    Args:
        in_features: Size of the input.
        out_features: Size of the output.
        hidden_units: Widths of the hidden layers.
        activation: Hidden activation.
        context_features: Size of an optional context concatenated to the input.
        residual: Residual blocks instead of a plain stack (all ``hidden_units`` equal).
        dropout: Dropout rate on the hidden activations under ``training=True``.
        output_initializer: Initialiser of the last kernel (``"zeros"`` by default).
        output_bias_initializer: Initialiser of the last bias (``"zeros"`` by default).
        seed: Seed of the initialisers.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``; a mixed policy
            such as ``"mixed_bfloat16"`` computes in bfloat16 and returns float32).

    Example:
        >>> net = MLP(2, 6, hidden_units=(8,))
        >>> float(tf.reduce_sum(tf.abs(net(tf.ones([3, 2])))))
        0.0
    """

    def __init__(self, in_features: int, out_features: int, *,
                 hidden_units: Sequence[int] = (64, 64), activation: str = "relu",
                 context_features: int | None = None, residual: bool = False,
                 output_initializer: Any = "zeros", output_bias_initializer: Any = "zeros",
                 seed: int = 0, dropout: float = 0.0, **kwargs) -> None:
        kwargs["dtype"] = layer_dtype(kwargs.get("dtype"))
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.context_features = context_features
        self.residual = bool(residual)
        hidden_units = [int(u) for u in hidden_units]
        check_residual_widths(self.residual, hidden_units)
        self.dropout = float(dropout)
        self._dropout = dropout_layer(self.dropout, seed, self.dtype_policy)
        # A residual net: the input map (linear), then W1 (with the activation) and W2 (linear)
        # of each block. A plain net: one Dense with the activation per hidden width.
        units_acts = ([(hidden_units[0], None)]
                      + [(u, a) for u in hidden_units for a in (activation, None)]
                      if self.residual else [(u, activation) for u in hidden_units])
        self._activation = tf_keras.activations.get(activation)
        self.hidden = [
            tf_keras.layers.Dense(
                units, activation=act, dtype=self.dtype_policy, name=f"hidden_{i}",
                kernel_initializer=tf_keras.initializers.GlorotUniform(seed=seed * 7919 + i))
            for i, (units, act) in enumerate(units_acts)
        ]
        out_init = seeded(output_initializer, seed * 7919 + 997)
        self.out = tf_keras.layers.Dense(out_features, kernel_initializer=out_init,
                                         bias_initializer=output_bias_initializer,
                                         dtype=self.dtype_policy, name="output")
        width = self.in_features + int(context_features or 0)
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.out.build((None, width))
        self.built = True

    def _drop(self, h: tf.Tensor, training: bool | None) -> tf.Tensor:
        return h if self._dropout is None else self._dropout(h, training=training)

    def call(self, inputs: tf.Tensor, context: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        """Map ``inputs [..., in_features]`` to ``[..., out_features]`` (``training=True``
        applies the dropout)."""
        h = tf.cast(tf.convert_to_tensor(inputs), self.compute_dtype)
        if context is not None:
            if not self.context_features:
                raise ValueError("context was given but this MLP has context_features=None")
            context = tf.cast(context, self.compute_dtype)
            context = tf.broadcast_to(context, tf.concat([tf.shape(h)[:-1],
                                                          tf.shape(context)[-1:]], 0))
            h = tf.concat([h, context], axis=-1)
        batch_shape = tf.shape(h)[:-1]
        # Dense wants a matrix; any batch shape works. The width is known from construction
        # (inside tfb.RealNVP under Keras fit the static last dimension is not).
        h = tf.reshape(h, [-1, self.in_features + int(self.context_features or 0)])
        if self.residual:
            h = self.hidden[0](h)
            for w1, w2 in zip(self.hidden[1::2], self.hidden[2::2], strict=True):
                h = h + w2(self._drop(w1(self._activation(h)), training))  # w1 activates
            h = self._activation(h)
        else:
            for layer in self.hidden:
                h = self._drop(layer(h), training)
        out = tf.cast(self.out(h), self.dtype)  # float32 under a mixed policy
        return tf.reshape(out, tf.concat([batch_shape, [self.out_features]], axis=0))
