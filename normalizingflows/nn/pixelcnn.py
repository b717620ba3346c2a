"""PixelCNN: masked 2-D convolutions that condition an autoregressive flow on images.

Pixels are ordered row by row (raster order) and, within a pixel, channel by channel: the
parameters of channel ``c`` at pixel ``(i, j)`` depend on every channel of the pixels above
and to the left of it, and on channels ``< c`` of the pixel itself. The masks are applied in
the forward pass (``kernel * mask``), never through a Keras kernel constraint, so no update of
any kind (a custom optimizer, ``assign_add``, loaded weights) can break that property.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from ._init import seeded
from .precision import layer_dtype

__all__ = ["PixelCNN", "pixelcnn_mask", "channel_groups", "MASK_TYPES"]

MASK_TYPES = ("A", "B")


def channel_groups(units: int, channels: int) -> np.ndarray:
    """The image channel each of ``units`` feature maps belongs to: ``C`` contiguous groups.

    As in the PixelCNN paper (section 3.4), the feature maps of every layer are split into one
    group per image channel; group ``c`` may see image channels ``< c`` of the current pixel.
    Groups differ in size by at most one when ``C`` does not divide ``units``.

    Example:
        >>> channel_groups(8, 3).tolist()
        [0, 0, 0, 1, 1, 1, 2, 2]
    """
    return (np.arange(int(units)) * int(channels)) // int(units)


def pixelcnn_mask(kernel_size: int | Sequence[int], in_groups: np.ndarray, out_groups: np.ndarray,
                  mask_type: str) -> np.ndarray:
    """The 0/1 mask of a ``[kh, kw, in, out]`` convolution kernel (PixelCNN, section 3.4).

    Taps above the centre row, and left of the centre in the centre row, connect every input
    to every output; taps after the centre connect nothing. At the centre tap, input map ``a``
    reaches output map ``b`` iff ``group(a) < group(b)`` (type ``"A"``, the first layer, which
    must not see the pixel's own value) or ``group(a) <= group(b)`` (type ``"B"``, later layers).

    Args:
        kernel_size: Odd ``k`` or ``(kh, kw)``.
        in_groups: Channel group of each input map (see :func:`channel_groups`).
        out_groups: Channel group of each output map.
        mask_type: ``"A"`` or ``"B"``.

    Returns:
        ``float32`` array of shape ``(kh, kw, len(in_groups), len(out_groups))``.

    Raises:
        ValueError: If ``mask_type`` is unknown or a kernel side is even.

    Example:
        >>> m = pixelcnn_mask(3, np.zeros(1, int), np.zeros(1, int), "A")
        >>> m[..., 0, 0].tolist()
        [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}; got {mask_type!r}")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if kh % 2 == 0 or kw % 2 == 0 or kh < 1 or kw < 1:
        raise ValueError(f"kernel_size must be odd and positive; got {kernel_size!r}")
    in_groups, out_groups = np.asarray(in_groups), np.asarray(out_groups)
    mask = np.zeros((kh, kw, in_groups.size, out_groups.size), np.float32)
    ch, cw = kh // 2, kw // 2
    mask[:ch] = 1.0
    mask[ch, :cw] = 1.0
    if mask_type == "A":
        mask[ch, cw] = in_groups[:, None] < out_groups[None, :]
    else:
        mask[ch, cw] = in_groups[:, None] <= out_groups[None, :]
    return mask


class PixelCNN(tf_keras.layers.Layer):
    """Masked-convolution network: images ``[..., H, W, C]`` -> parameters ``[..., H, W, C, P]``.

    ``out[..., i, j, c, :]`` depends only on pixels before ``(i, j)`` in raster order (all their
    channels), on channels ``< c`` of pixel ``(i, j)``, and on the context:
    ``d out[i, j, c] / d x[k, l, e] = 0`` unless ``(k, l) < (i, j)`` in raster order, or
    ``(k, l) = (i, j)`` and ``e < c``.

    Layout: a ``first_kernel_size`` convolution with mask A (``C -> hidden_units``), then
    ``blocks`` residual blocks ``h + conv1x1_B(act(conv_B(act(h))))`` with ``kernel_size``
    convolutions, then the head ``conv1x1_B(act(conv1x1_B(act(h))))`` to ``C * P`` maps (output
    map ``c * P + p`` is parameter ``p`` of channel ``c``). Feature maps are split into ``C``
    channel groups in every layer (paper, section 3.4). A context ``[..., E]`` enters every
    hidden convolution as a bias through its own dense projection (``E -> hidden_units``), so a
    class-conditional model is possible. Like any stack of masked ``3 x 3`` convolutions it has
    the PixelCNN's blind spot (pixels up and to the right beyond the receptive field's edge).

    Args:
        channels: Image channels ``C``.
        params: Outputs per pixel and channel ``P``.
        hidden_units: Feature maps of every hidden convolution (split into ``C`` groups).
        blocks: Residual blocks after the first layer.
        kernel_size: Kernel side of the residual blocks' masked convolutions (odd).
        first_kernel_size: Kernel side of the first (mask A) convolution (odd; 7 in the paper).
        activation: Hidden activation (any ``tf_keras.activations`` name).
        context_features: Width ``E`` of a context vector, or ``None``.
        output_initializer: Initialiser of the output kernel (``"zeros"`` makes a flow start
            from its output bias; a random one breaks symmetry).
        output_bias_initializer: Initialiser of the output bias, ``[C * P]``.
        seed: Seed of every initialiser.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``; a mixed policy
            such as ``"mixed_bfloat16"`` computes in bfloat16 and returns float32).

    Raises:
        ValueError: If a size is not positive or a kernel side is even.

    Example:
        >>> net = PixelCNN(3, params=2, hidden_units=6, blocks=1,
        ...                output_initializer="glorot_uniform")
        >>> net(tf.zeros([5, 4, 4, 3])).shape
        TensorShape([5, 4, 4, 3, 2])

    References:
        Pixel Recurrent Neural Networks, van den Oord et al. 2016,
        https://arxiv.org/abs/1601.06759
    """

    def __init__(self, channels: int, *, params: int = 2, hidden_units: int = 64,
                 blocks: int = 2, kernel_size: int = 3, first_kernel_size: int = 7,
                 activation: str = "relu", context_features: int | None = None,
                 output_initializer: Any = "zeros", output_bias_initializer: Any = "zeros",
                 seed: int = 0, **kwargs) -> None:
        kwargs["dtype"] = layer_dtype(kwargs.get("dtype"))
        super().__init__(**kwargs)
        for key, value, low in (("channels", channels, 1), ("params", params, 1),
                                ("hidden_units", hidden_units, 1), ("blocks", blocks, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{key} must be an int >= {low}; got {value!r}")
        self.channels = int(channels)
        self.params = int(params)
        self.hidden_units = int(hidden_units)
        self.blocks = int(blocks)
        self.kernel_size = int(kernel_size)
        self.first_kernel_size = int(first_kernel_size)
        self.activation = tf_keras.activations.get(activation)
        self.context_features = None if context_features is None else int(context_features)
        c, h = self.channels, self.hidden_units
        image = np.arange(c)
        hidden = channel_groups(h, c)
        out = np.repeat(image, self.params)
        # (name, kernel side, input groups, output groups, mask type, gets a context bias)
        specs = [("conv_in", self.first_kernel_size, image, hidden, "A", True)]
        for b in range(self.blocks):
            specs += [(f"block_{b}_conv", self.kernel_size, hidden, hidden, "B", True),
                      (f"block_{b}_mix", 1, hidden, hidden, "B", True)]
        specs += [("head", 1, hidden, hidden, "B", True), ("conv_out", 1, hidden, out, "B", False)]
        self._masks: list[np.ndarray] = []
        self.kernels: list[tf.Variable] = []
        self.biases: list[tf.Variable] = []
        self.context_kernels: list[tf.Variable | None] = []
        for i, (name, size, g_in, g_out, mask_type, contextual) in enumerate(specs):
            last = i == len(specs) - 1
            mask = pixelcnn_mask(size, g_in, g_out, mask_type)
            self._masks.append(mask)
            init = seeded(output_initializer if last else "glorot_uniform", seed * 7919 + i)
            self.kernels.append(self.add_weight(f"{name}_kernel", shape=mask.shape,
                                                initializer=init))
            self.biases.append(self.add_weight(
                f"{name}_bias", shape=(mask.shape[-1],),
                initializer=seeded(output_bias_initializer, seed * 7919 + 503) if last
                else "zeros"))
            self.context_kernels.append(
                self.add_weight(f"{name}_context_kernel", shape=(self.context_features, h),
                                initializer=seeded("glorot_uniform", seed * 7919 + 997 + i))
                if contextual and self.context_features else None)
        self._specs = specs
        self.built = True

    def masks(self) -> list[np.ndarray]:
        """The 0/1 masks of every convolution, input to output (``[kh, kw, in, out]`` arrays)."""
        return list(self._masks)

    def _conv(self, i: int, h: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
        cd = self.compute_dtype
        kernel = tf.cast(self.kernels[i], cd) * tf.constant(self._masks[i], cd)
        out = tf.nn.conv2d(h, kernel, strides=1, padding="SAME") + tf.cast(self.biases[i], cd)
        if context is not None and self.context_kernels[i] is not None:
            out = out + tf.matmul(context, tf.cast(self.context_kernels[i], cd))[:, None, None, :]
        return out

    def call(self, inputs: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        """Map images ``[..., H, W, C]`` (and ``context [..., E]``) to ``[..., H, W, C, P]``."""
        x = tf.cast(tf.convert_to_tensor(inputs), self.compute_dtype)
        if x.shape.rank is not None and x.shape.rank < 3:
            raise ValueError(f"inputs must have shape [..., H, W, {self.channels}]; got shape "
                             f"{x.shape.as_list()}")
        shape = tf.shape(x)
        batch_shape, spatial = shape[:-3], shape[-3:-1]
        x = tf.reshape(x, tf.concat([[-1], spatial, [self.channels]], axis=0))
        if context is not None:
            if not self.context_features:
                raise ValueError("context was given but this PixelCNN has "
                                 "context_features=None")
            context = tf.reshape(tf.cast(context, self.compute_dtype), [-1, self.context_features])
        n = len(self._specs)
        h = self._conv(0, x, context)
        for b in range(self.blocks):
            r = self._conv(1 + 2 * b, self.activation(h), context)
            h = h + self._conv(2 + 2 * b, self.activation(r), context)
        h = self._conv(n - 2, self.activation(h), context)
        out = tf.cast(self._conv(n - 1, self.activation(h), context), self.dtype)
        return tf.reshape(out, tf.concat([batch_shape, spatial, [self.channels, self.params]],
                                         axis=0))
