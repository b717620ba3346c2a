"""Convolutional conditioners for image coupling layers (RealNVP, Glow)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras

from .precision import layer_dtype

__all__ = ["ConvNet"]


class ConvNet(tf_keras.layers.Layer):
    """A residual convolutional network whose last convolution starts at zero.

    ``conv kxk (in -> hidden)``, then ``blocks`` residual blocks
    ``h + conv1x1(act(conv kxk(act(h))))``, then ``act`` and a zero-initialised
    ``conv kxk (hidden -> out)``: a coupling layer built on it starts as the identity (Glow,
    section 3.3). A context vector ``[N, E]`` enters every block as a learned per-channel bias
    (class-conditional image flows).

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        hidden_channels: Width of the hidden convolutions.
        blocks: Number of residual blocks (0: input conv, activation, output conv).
        activation: Hidden activation.
        kernel_size: Spatial size of the input, block and output kernels.
        context_features: Width ``E`` of an optional context, else ``None``.
        seed: Seed of the initialisers.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``; a mixed policy
            such as ``"mixed_bfloat16"`` computes in bfloat16 and returns float32).

    Example:
        >>> net = ConvNet(2, 4, hidden_channels=8, blocks=1)
        >>> net(tf.ones([3, 5, 5, 2])).shape
        TensorShape([3, 5, 5, 4])
        >>> float(tf.reduce_sum(tf.abs(net(tf.ones([3, 5, 5, 2])))))
        0.0
    """

    def __init__(self, in_channels: int, out_channels: int, *, hidden_channels: int = 64,
                 blocks: int = 1, activation: str = "relu", kernel_size: int = 3,
                 context_features: int | None = None, seed: int = 0, **kwargs: Any) -> None:
        kwargs["dtype"] = layer_dtype(kwargs.get("dtype"))
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.context_features = None if context_features is None else int(context_features)
        self.activation = tf_keras.activations.get(activation)

        def conv(width: int, size: int, i: int, init: Any = None) -> tf_keras.layers.Conv2D:
            init = init or tf_keras.initializers.GlorotUniform(seed=seed * 7919 + i)
            return tf_keras.layers.Conv2D(width, size, padding="same", kernel_initializer=init,
                                          dtype=self.dtype_policy, name=f"conv_{i}")

        hidden = int(hidden_channels)
        self.first = conv(hidden, kernel_size, 0)
        self.first.build((None, None, None, self.in_channels))
        self.blocks = []
        for b in range(int(blocks)):
            pair = (conv(hidden, kernel_size, 2 * b + 1), conv(hidden, 1, 2 * b + 2))
            for layer in pair:
                layer.build((None, None, None, hidden))
            self.blocks.append(pair)
        self.last = conv(self.out_channels, kernel_size, 999, init="zeros")
        self.last.build((None, None, None, hidden))
        self.context = []
        if self.context_features:
            for b in range(int(blocks) + 1):
                dense = tf_keras.layers.Dense(
                    hidden, dtype=self.dtype_policy, name=f"context_{b}",
                    kernel_initializer=tf_keras.initializers.GlorotUniform(seed=seed * 7919
                                                                           + 500 + b))
                dense.build((None, self.context_features))
                self.context.append(dense)
        self.built = True

    def call(self, inputs: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        """Map ``inputs [N, H, W, in_channels]`` (and ``context [N, E]``) to
        ``[N, H, W, out_channels]``."""
        if context is not None and not self.context_features:
            raise ValueError("context was given but this ConvNet has context_features=None")
        h = self.first(tf.cast(tf.convert_to_tensor(inputs), self.compute_dtype))
        bias = ([tf.cast(d(context), self.compute_dtype)[:, None, None, :] for d in self.context]
                if context is not None else [])
        if bias:
            h = h + bias[0]
        for i, (conv_a, conv_b) in enumerate(self.blocks):
            r = conv_b(self.activation(conv_a(self.activation(h))))
            if bias:
                r = r + bias[i + 1]
            h = h + r
        return tf.cast(self.last(self.activation(h)), self.dtype)  # float32 when mixed
