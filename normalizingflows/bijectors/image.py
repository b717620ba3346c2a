"""Bijectors on channels-last images ``[..., H, W, C]``: squeeze, multiscale split, coupling.

These are the pieces of the image flows of RealNVP (Dinh et al. 2017) and Glow (Kingma &
Dhariwal 2018); the per-channel ActNorm is :class:`~normalizingflows.bijectors.ActNorm` with
``event_ndims=3`` and the invertible 1x1 convolution is TFP's ``tfb.ScaleMatvecLU`` acting on
the channel axis of every pixel (see :func:`invertible_1x1_conv`).

Why not ``tfb.Glow``: its coupling networks are called with the input alone, so no context
(class-conditional digits) and no ``training`` flag reach them, and its activation
normalisation initialises itself on whichever call comes first, a sampling call included.
Here every step receives ``context``/``training`` through TFP's bijector kwargs, and ActNorm
initialises only on ``inverse(..., training=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ._common import route_kwargs
from .linear import lu_linear

tfb = tfp.bijectors

__all__ = ["Squeeze", "ChannelSplit", "ImageCoupling", "invertible_1x1_conv", "MASKS",
           "SCALES"]

MASKS = ("checkerboard", "channel")
SCALES = ("tanh", "sigmoid")


def _split_event(x: tf.Tensor, what: str) -> tuple[tf.Tensor, int, int, int]:
    """The batch shape (a tensor) and the static ``H, W, C`` of ``x [..., H, W, C]``."""
    if x.shape.rank is None or x.shape.rank < 3 or None in x.shape[-3:].as_list():
        raise ValueError(f"{what} must have shape [..., height, width, channels] with known "
                         f"height, width and channels; got shape {x.shape}")
    h, w, c = x.shape[-3:].as_list()
    return tf.shape(x)[:-3], h, w, c


class Squeeze(tfb.Bijector):
    """Space to depth: ``forward`` maps ``[..., H, W, C]`` to ``[..., H/f, W/f, f*f*C]``.

    Each ``f x f`` block of pixels becomes one pixel with ``f*f*C`` channels (RealNVP's
    squeezing operation, section 3.6); a permutation, so log|det J| = 0.

    Args:
        factor: Block size ``f`` (2 in RealNVP and Glow).
        validate_args: Passed to ``tfb.Bijector``.
        name: Name of the bijector.

    Example:
        >>> x = tf.reshape(tf.range(16.0), [1, 4, 4, 1])
        >>> Squeeze().forward(x).shape
        TensorShape([1, 2, 2, 4])
        >>> bool(tf.reduce_all(Squeeze().inverse(Squeeze().forward(x)) == x))
        True

    References:
        Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP",
        https://arxiv.org/abs/1605.08803.
    """

    def __init__(self, factor: int = 2, validate_args: bool = False, name: str = "squeeze"
                 ) -> None:
        parameters = dict(locals())
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be an int >= 1; got {factor!r}")
        self._factor = factor
        super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=3,
                         is_constant_jacobian=True, validate_args=validate_args,
                         parameters=parameters, name=name)

    @property
    def factor(self) -> int:
        """The block size ``f``."""
        return self._factor

    @classmethod
    def _parameter_properties(cls, dtype: Any = None, num_classes: Any = None) -> dict:
        return {}

    def _check(self, h: int, w: int) -> None:
        if h % self._factor or w % self._factor:
            raise ValueError(f"Squeeze(factor={self._factor}) needs height and width divisible "
                             f"by {self._factor}; got {h}x{w}")

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        batch, h, w, c = _split_event(x, "x")
        self._check(h, w)
        f, b = self._factor, x.shape.rank - 3
        y = tf.reshape(x, tf.concat([batch, [h // f, f, w // f, f, c]], 0))
        y = tf.transpose(y, list(range(b)) + [b, b + 2, b + 1, b + 3, b + 4])
        y = tf.reshape(y, tf.concat([batch, [h // f, w // f, f * f * c]], 0))
        # Keep the event shape static (graph-mode shape inference loses it in the transpose).
        return tf.ensure_shape(y, x.shape[:-3].concatenate([h // f, w // f, f * f * c]))

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        batch, h, w, c = _split_event(y, "y")
        f, b = self._factor, y.shape.rank - 3
        if c % (f * f):
            raise ValueError(f"Squeeze(factor={f}).inverse needs channels divisible by {f * f}; "
                             f"got {c}")
        x = tf.reshape(y, tf.concat([batch, [h, w, f, f, c // (f * f)]], 0))
        x = tf.transpose(x, list(range(b)) + [b, b + 2, b + 1, b + 3, b + 4])
        x = tf.reshape(x, tf.concat([batch, [h * f, w * f, c // (f * f)]], 0))
        return tf.ensure_shape(x, y.shape[:-3].concatenate([h * f, w * f, c // (f * f)]))

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return tf.zeros([], x.dtype)

    def _forward_event_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        h, w, c = input_shape[-3:]
        f = self._factor
        return input_shape[:-3].concatenate([None if h is None else h // f,
                                             None if w is None else w // f,
                                             None if c is None else c * f * f])

    def _inverse_event_shape(self, output_shape: tf.TensorShape) -> tf.TensorShape:
        h, w, c = output_shape[-3:]
        f = self._factor
        return output_shape[:-3].concatenate([None if h is None else h * f,
                                              None if w is None else w * f,
                                              None if c is None else c // (f * f)])

    def _forward_event_shape_tensor(self, input_shape: tf.Tensor) -> tf.Tensor:
        f = self._factor
        return tf.concat([input_shape[:-3], input_shape[-3:-1] // f, input_shape[-1:] * f * f],
                         0)

    def _inverse_event_shape_tensor(self, output_shape: tf.Tensor) -> tf.Tensor:
        f = self._factor
        return tf.concat([output_shape[:-3], output_shape[-3:-1] * f,
                          output_shape[-1:] // (f * f)], 0)


class ChannelSplit(tfb.Bijector):
    """Apply ``bijector`` to the first ``channels`` channels and pass the rest through.

    This is the multiscale "factor out" of RealNVP and Glow written as one bijector: in the
    data -> base direction, the channels past ``channels`` leave the flow here (they are
    latent variables from now on) and only the first ``channels`` go on to ``bijector``, the
    deeper levels. ``log|det J|`` is that of ``bijector`` on its part. Keyword arguments
    (``context``, ``training``) are passed on to every leaf of ``bijector`` that takes them.

    Args:
        bijector: Bijector on ``[..., H, W, channels]`` images (shape-preserving overall).
        channels: How many leading channels go through ``bijector``.
        name: Name of the bijector.

    Example:
        >>> split = ChannelSplit(tfb.Scale(2.0), channels=1)
        >>> split.forward(tf.ones([1, 2, 2, 2]))[0, 0, 0].numpy()
        array([2., 1.], dtype=float32)
    """

    def __init__(self, bijector: tfb.Bijector, channels: int, name: str = "channel_split"
                 ) -> None:
        parameters = dict(locals())
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an int >= 1; got {channels!r}")
        self._bijector = bijector
        self._channels = channels
        # Flow routes context/training here; _kw passes each leaf of `bijector` its share.
        self._nf_kwargs = ("context", "training")
        super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=3,
                         is_constant_jacobian=bijector.is_constant_jacobian,
                         parameters=parameters, name=name)

    @property
    def bijector(self) -> tfb.Bijector:
        """The bijector applied to the leading channels."""
        return self._bijector

    @property
    def channels(self) -> int:
        """How many leading channels go through :attr:`bijector`."""
        return self._channels

    @classmethod
    def _parameter_properties(cls, dtype: Any = None, num_classes: Any = None) -> dict:
        return {}

    def _parts(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        _, _, _, c = _split_event(x, "x")
        if c <= self._channels:
            raise ValueError(f"ChannelSplit(channels={self._channels}) needs more than "
                             f"{self._channels} channels; got {c}")
        return x[..., :self._channels], x[..., self._channels:]

    def _kw(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return route_kwargs(self._bijector, kwargs)

    def _forward(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        a, b = self._parts(x)
        return tf.concat([self._bijector.forward(a, **self._kw(kwargs)), b], axis=-1)

    def _inverse(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        a, b = self._parts(y)
        return tf.concat([self._bijector.inverse(a, **self._kw(kwargs)), b], axis=-1)

    def _forward_log_det_jacobian(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        a, _ = self._parts(x)
        return self._bijector.forward_log_det_jacobian(a, event_ndims=3, **self._kw(kwargs))

    def _inverse_log_det_jacobian(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        a, _ = self._parts(y)
        return self._bijector.inverse_log_det_jacobian(a, event_ndims=3, **self._kw(kwargs))


Conditioner = Callable[..., tf.Tensor]


class ImageCoupling(tfb.Bijector):
    """Affine coupling on images with a checkerboard or a channel mask (RealNVP, Glow).

    The kept part ``x_a`` passes unchanged and parameterises an elementwise affine map of the
    rest (``forward`` = base -> data)::

        y_a = x_a,   y_b = x_b * exp(s) + t,   (t, r) = net(x_a),
        s = B tanh(r / B)            (scale="tanh", RealNVP-style)
        s = -log sigmoid(r + 2)      (scale="sigmoid", Glow's parameterisation)
        log|det J_forward| = sum over the changed entries of s

    ``mask="channel"``: ``x_a`` is the first ``C // 2`` channels (``parity=0``) or the last
    ``C - C // 2`` (``parity=1``); the net sees only ``x_a`` and returns ``2 * |x_b|``
    channels. ``mask="checkerboard"``: ``x_a`` is the pixels with ``(i + j) % 2 == parity``;
    the net sees ``x * m`` with the mask ``m`` as an extra channel and returns ``2 * C``
    channels, used at the other pixels only. ``scale="tanh"``: the soft bound ``B`` on the
    log-scale keeps one layer's scale within ``exp(+-B)``; with a zero-initialised last layer
    the coupling starts as the identity. ``scale="sigmoid"`` (Glow): the data -> base map
    multiplies ``x_b - t`` by ``sigmoid(r + 2)`` in (0, 1), so evaluating a density never
    amplifies an input through a scale; an input unlike the training data cannot be blown up
    layer after layer (with ``"tanh"`` each coupling may multiply it by up to ``exp(B)``). A
    zero-initialised net starts at the scale ``sigmoid(2) = 0.88``.

    Args:
        conditioner: ``net(h [N, H, W, C_in], context=None) -> [N, H, W, C_out]`` (a
            ``tf_keras`` layer such as :class:`~normalizingflows.nn.ConvNet`).
        mask: ``"checkerboard"`` or ``"channel"``.
        parity: 0 or 1, which half is kept.
        log_scale_bound: ``B`` above (> 0; used by ``scale="tanh"``).
        scale: ``"tanh"`` or ``"sigmoid"``, the parameterisation of the scale above.
        validate_args: Passed to ``tfb.Bijector``.
        name: Name of the bijector.

    Raises:
        ValueError: On an unknown mask or scale, a parity other than 0/1, a bound <= 0, or (at
            call time) a channel mask on a single channel.

    References:
        Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP",
        https://arxiv.org/abs/1605.08803 (section 3.4, masked convolution).
        Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions",
        https://arxiv.org/abs/1807.03039 (affine coupling layer).
    """

    def __init__(self, conditioner: Conditioner, *, mask: str = "channel", parity: int = 0,
                 log_scale_bound: float = 3.0, scale: str = "tanh",
                 validate_args: bool = False, name: str = "image_coupling") -> None:
        parameters = dict(locals())
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}; got {mask!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1; got {parity!r}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
        if not float(log_scale_bound) > 0:
            raise ValueError(f"log_scale_bound must be > 0; got {log_scale_bound!r}")
        self._conditioner = conditioner
        self._mask = mask
        self._parity = int(parity)
        self._bound = float(log_scale_bound)
        self._scale = scale
        super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=3,
                         validate_args=validate_args, parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype: Any = None, num_classes: Any = None) -> dict:
        return {}

    @property
    def mask(self) -> str:
        """``"checkerboard"`` or ``"channel"``."""
        return self._mask

    @property
    def scale(self) -> str:
        """``"tanh"`` or ``"sigmoid"``: how the net's output becomes the scale."""
        return self._scale

    def _channel_cut(self, c: int) -> int:
        if c < 2:
            raise ValueError(f"a channel mask needs at least 2 channels; got {c} (squeeze "
                             "first, or use mask='checkerboard')")
        return c // 2

    def _checkerboard(self, h: int, w: int, dtype: tf.DType) -> tf.Tensor:
        ij = np.add.outer(np.arange(h), np.arange(w))
        return tf.constant(((ij % 2) == self._parity)[..., None], dtype)  # [H, W, 1], 1 = kept

    def _params(self, kept: tf.Tensor, batch: tf.Tensor, context: Any
                ) -> tuple[tf.Tensor, tf.Tensor]:
        """``(shift, log_scale)`` from the net, batch flattened for the convolutions."""
        h, w, c = kept.shape[-3:].as_list()
        flat = tf.reshape(kept, [-1, h, w, c])
        if context is None:
            out = self._conditioner(flat)
        else:
            context = tf.cast(context, kept.dtype)
            context = tf.broadcast_to(context, tf.concat([batch, tf.shape(context)[-1:]], 0))
            out = self._conditioner(flat, context=tf.reshape(context, [-1, context.shape[-1]]))
        out = tf.cast(out, kept.dtype)
        k = out.shape[-1] // 2
        out = tf.reshape(out, tf.concat([batch, [h, w, 2 * k]], 0))
        raw = out[..., k:]
        if self._scale == "sigmoid":  # -log sigmoid(r + 2), computed without overflow
            return out[..., :k], tf.nn.softplus(-(raw + 2.0))
        return out[..., :k], self._bound * tf.tanh(raw / self._bound)

    def _transform(self, x: tf.Tensor, context: Any, sign: float
                   ) -> tuple[tf.Tensor, tf.Tensor]:
        """``(output, log|det|)`` of the forward (``sign=1``) or inverse (``sign=-1``) map."""
        batch, h, w, c = _split_event(x, "x")
        if self._mask == "channel":
            cut = self._channel_cut(c)
            a, b = ((x[..., :cut], x[..., cut:]) if self._parity == 0
                    else (x[..., c - cut:], x[..., :c - cut]))
            shift, log_scale = self._params(a, batch, context)
            b = b * tf.exp(log_scale) + shift if sign > 0 else (b - shift) * tf.exp(-log_scale)
            y = tf.concat([a, b] if self._parity == 0 else [b, a], axis=-1)
            return y, sign * tf.reduce_sum(log_scale, axis=[-3, -2, -1])
        m = self._checkerboard(h, w, x.dtype)
        inputs = tf.concat([x * m, tf.broadcast_to(m, tf.concat([batch, [h, w, 1]], 0))], -1)
        shift, log_scale = self._params(inputs, batch, context)
        log_scale = log_scale * (1 - m)
        shift = shift * (1 - m)
        y = x * tf.exp(log_scale) + shift if sign > 0 else (x - shift) * tf.exp(-log_scale)
        return y, sign * tf.reduce_sum(log_scale, axis=[-3, -2, -1])

    def _forward(self, x: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self._transform(x, context, 1.0)[0]

    def _inverse(self, y: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self._transform(y, context, -1.0)[0]

    def _forward_log_det_jacobian(self, x: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self._transform(x, context, 1.0)[1]

    def _inverse_log_det_jacobian(self, y: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self._transform(y, context, -1.0)[1]


def invertible_1x1_conv(channels: int, *, dtype: tf.DType = tf.float32, seed: int = 0,
                        name: str = "conv1x1") -> tfb.Bijector:
    """Glow's invertible 1x1 convolution: :func:`~normalizingflows.bijectors.lu_linear` on the
    ``channels`` axis of every pixel (``W = P L U``, a seeded random rotation at the start).

    On ``[..., H, W, C]`` images TFP reduces the per-pixel log|det W| over the pixels:
    ``H * W * sum(log|diag U|)``. The arguments are :func:`lu_linear`'s, with ``channels`` as
    its ``features``.

    Example:
        >>> conv = invertible_1x1_conv(3, seed=1)
        >>> x = tf.random.stateless_normal([2, 4, 4, 3], seed=[0, 1])
        >>> float(tf.reduce_max(tf.abs(conv.inverse(conv.forward(x)) - x))) < 1e-5
        True
    """
    return lu_linear(channels, dtype=dtype, seed=seed, name=name)
