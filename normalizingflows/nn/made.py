"""MADE: the masked autoencoder that conditions every autoregressive flow in the catalog.

Masks are applied inside the forward pass (``kernel * mask``), never through a Keras kernel
constraint, so no update of any kind (a custom optimizer, ``assign_sub``, loaded weights) can
break the autoregressive property. Hidden units are sorted by degree, so each mask is
block-triangular.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

__all__ = ["MADE", "input_degrees", "hidden_degrees", "ORDERS"]

ORDERS = ("left-to-right", "right-to-left", "random")


def input_degrees(features: int, order: str | Sequence[int] = "left-to-right", *, seed: int = 0
                  ) -> np.ndarray:
    """Degrees 1..D of the inputs: input ``i`` may depend on inputs of smaller degree only.

    Args:
        features: Number of inputs ``D``.
        order: ``"left-to-right"`` (degrees 1..D), ``"right-to-left"`` (D..1), ``"random"``
            (a seeded permutation) or an explicit permutation of ``1..D``.
        seed: Seed of the random order.

    Returns:
        ``int`` array of shape ``(D,)`` holding a permutation of ``1..D``.

    Raises:
        ValueError: If ``order`` is unknown or not a permutation of ``1..D``.

    Example:
        >>> input_degrees(3, "right-to-left").tolist()
        [3, 2, 1]
    """
    if isinstance(order, str):
        if order == "left-to-right":
            return np.arange(1, features + 1)
        if order == "right-to-left":
            return np.arange(features, 0, -1)
        if order == "random":
            return np.random.default_rng(seed).permutation(features) + 1
        raise ValueError(f"order must be one of {ORDERS} or a permutation of 1..{features}; "
                         f"got {order!r}")
    degrees = np.asarray(order, dtype=np.int64)
    if sorted(degrees.tolist()) != list(range(1, features + 1)):
        raise ValueError(f"order must be a permutation of 1..{features}; got {list(order)}")
    return degrees


def hidden_degrees(units: int, features: int) -> np.ndarray:
    """Degrees of ``units`` hidden units, spread evenly over ``1..D-1`` and sorted.

    A hidden unit of degree ``k`` sees inputs of degree ``<= k``. With ``D = 1`` every hidden
    unit has degree 0 (it sees only the bias and the context).

    Example:
        >>> hidden_degrees(4, 3).tolist()
        [1, 1, 2, 2]
    """
    if features == 1:
        return np.zeros(units, dtype=np.int64)
    return 1 + (np.arange(units) * (features - 1)) // units


class MADE(tf_keras.layers.Layer):
    """Masked autoencoder for distribution estimation with an optional context input.

    Output ``params[..., i, :]`` depends only on inputs of smaller degree than input ``i``
    (and on the context): ``d out_i / d x_j = 0`` unless ``degree(j) < degree(i)``.

    Args:
        features: Number of inputs ``D``.
        params: Number of outputs per input (2 for shift and log-scale).
        hidden_units: Widths of the hidden layers.
        activation: Hidden activation (any ``tf_keras.activations`` name).
        order: Input order, see :func:`input_degrees`.
        context_features: Size of the context vector fed to every hidden layer, or ``None``.
        output_initializer: Initialiser of the output kernel (``"zeros"`` makes the flow start
            at the identity; mixtures need a random one to break symmetry).
        output_bias_initializer: Initialiser of the output bias (layout: unit ``i * params + p``
            is parameter ``p`` of input ``i``).
        seed: Seed of the initialisers and of a random order.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``).

    Example:
        >>> made = MADE(3, params=2, hidden_units=(8,))
        >>> made(tf.zeros([5, 3])).shape
        TensorShape([5, 3, 2])

    References:
        MADE: Masked Autoencoder for Distribution Estimation, Germain et al. 2015,
        https://arxiv.org/abs/1502.03509
    """

    def __init__(self, features: int, *, params: int = 2, hidden_units: Sequence[int] = (64, 64),
                 activation: str = "relu", order: str | Sequence[int] = "left-to-right",
                 context_features: int | None = None, output_initializer: Any = "zeros",
                 output_bias_initializer: Any = "zeros", seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.features = int(features)
        self.params = int(params)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = tf_keras.activations.get(activation)
        self.context_features = context_features
        self.degrees = input_degrees(self.features, order, seed=seed)
        degrees = [self.degrees] + [hidden_degrees(u, self.features) for u in self.hidden_units]
        out_degrees = np.repeat(self.degrees, self.params)
        masks = [d_out[None, :] >= d_in[:, None]
                 for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)]
        masks.append(out_degrees[None, :] > degrees[-1][:, None])
        self._masks = [m.astype(np.float32) for m in masks]
        self.kernels: list[tf.Variable | None] = []
        self.biases: list[tf.Variable] = []
        for i, mask in enumerate(self._masks):
            last = i == len(self._masks) - 1
            init = (tf_keras.initializers.get(output_initializer) if last
                    else tf_keras.initializers.GlorotUniform(seed=seed * 7919 + i))
            if hasattr(init, "seed") and init.seed is None:
                init.seed = seed * 7919 + i
            # A fully masked kernel would be a dead parameter: leave it out.
            self.kernels.append(self.add_weight(f"kernel_{i}", shape=mask.shape, initializer=init)
                                if mask.any() else None)
            self.biases.append(self.add_weight(
                f"bias_{i}", shape=mask.shape[1:],
                initializer=output_bias_initializer if last else "zeros"))
        self.context_kernel = None
        if context_features:
            self.context_kernel = self.add_weight(
                "context_kernel", shape=(int(context_features), degrees[1].size
                                         if self.hidden_units else out_degrees.size),
                initializer=tf_keras.initializers.GlorotUniform(seed=seed * 7919 + 997))
        self.built = True

    def masks(self) -> list[np.ndarray]:
        """The 0/1 masks of each layer, input to output (``float32`` arrays)."""
        return list(self._masks)

    def call(self, inputs: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        """Map ``inputs [..., D]`` (and ``context [..., C]``) to ``params [..., D, params]``."""
        x = tf.convert_to_tensor(inputs, dtype=self.dtype)
        batch_shape = tf.shape(x)[:-1]
        h = tf.reshape(x, [-1, self.features])
        if context is not None and self.context_kernel is None:
            raise ValueError("context was given but this MADE has context_features=None")
        if context is not None:
            context = tf.reshape(tf.cast(context, self.dtype), [-1, self.context_kernel.shape[0]])
        n = len(self._masks)
        layers = zip(self._masks, self.kernels, self.biases, strict=True)
        for i, (mask, kernel, bias) in enumerate(layers):
            if kernel is not None:
                pre = tf.matmul(h, kernel * tf.constant(mask, self.dtype)) + bias
            else:  # fully masked layer: only the bias (and the context) reach it
                pre = tf.broadcast_to(bias, [tf.shape(h)[0], bias.shape[0]])
            if i == 0 and context is not None:
                pre = pre + tf.matmul(context, self.context_kernel)
            h = pre if i == n - 1 else self.activation(pre)
        shape = tf.concat([batch_shape, [self.features, self.params]], axis=0)
        return tf.reshape(h, shape)
