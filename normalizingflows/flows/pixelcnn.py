"""PixelCNN flow: autoregressive mixture-CDF conditionals over the pixels of an image."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from ..bijectors import MaskedAutoregressive
from ..bijectors.mixture_cdf import FAMILIES
from ..nn import PixelCNN
from ._parts import chain, context_embedding, normal_base
from .core import Flow
from .mixture_cdf import _quantile_map, initial_mixture_bias
from .registry import image_shape_tuple, register

__all__ = ["pixelcnn_flow", "FlatImageConditioner", "PIXELCNN_ORDERS"]

PIXELCNN_ORDERS = ("alternating", "sequential")


class FlatImageConditioner:
    """A PixelCNN seen as a conditioner of flat rows: ``[..., D] -> [..., D, P]``.

    Rows are images flattened row-major with channels last (``D = H * W * C``), the layout of
    the image loaders' ``flatten=True``. With ``reverse=True`` the row is reversed before it
    is reshaped (and the parameters reversed back): the PixelCNN then sees the image in the
    opposite raster and channel order, so output ``i`` depends on inputs ``> i``. Either order
    is autoregressive, which is all :class:`~normalizingflows.bijectors.MaskedAutoregressive`
    needs; its sequential direction runs :meth:`solve`.

    Args:
        net: The :class:`~normalizingflows.nn.PixelCNN`.
        image_shape: ``(H, W, C)``.
        reverse: Run the PixelCNN on the reversed row.
    """

    def __init__(self, net: PixelCNN, image_shape: Sequence[int], *, reverse: bool = False
                 ) -> None:
        self.net = net
        self.image_shape = tuple(int(s) for s in image_shape)
        self.features = int(np.prod(self.image_shape))
        self.reverse = bool(reverse)
        self._traced: dict[tuple, tuple[Callable, tuple]] = {}

    def __call__(self, y: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        y = tf.convert_to_tensor(y)
        batch_shape = tf.shape(y)[:-1]
        if self.reverse:
            y = tf.reverse(y, axis=[-1])
        images = tf.reshape(y, tf.concat([batch_shape, self.image_shape], axis=0))
        params = self.net(images, context=context)
        params = tf.reshape(params, tf.concat([batch_shape, [self.features, self.net.params]],
                                              axis=0))
        return tf.reverse(params, axis=[-2]) if self.reverse else params

    def solve(self, step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], z: tf.Tensor,
              context: tf.Tensor | None = None, *, return_params: bool = False
              ) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """Solve ``x_i = step(params_i(x), z_i)`` for every ``i`` in the autoregressive order.

        ``D`` PixelCNN passes in one ``tf.while_loop``; pass ``k`` transforms only the value
        that just became computable (one mixture-CDF inversion per row, not ``D``), which
        :class:`~normalizingflows.bijectors.MaskedAutoregressive` calls for its forward.
        The result equals ``D`` full passes that each update every value.

        Args:
            step: ``fn(params [N, 1, P], z_i [N, 1]) -> x_i [N, 1]``.
            z: ``[..., D]`` values the transformer is applied to.
            context: ``[..., E]`` context (same batch shape as ``z``) or ``None``.
            return_params: Also return the parameters the steps used, ``[..., D, P]``
                (equal to ``self(x, context)``), kept from the passes of the loop.

        Returns:
            ``x`` with the shape of ``z``, and the parameters if ``return_params``.
        """
        z = tf.convert_to_tensor(z, dtype=self.net.dtype)
        rows = tf.reshape(z, [-1, self.features])
        if context is not None:
            context = tf.convert_to_tensor(context)
        if tf.executing_eagerly():
            # Op by op, the D passes are slow, and a tape would record every op of every pass;
            # one traced graph (reused while ``step`` is the same function) runs fast and
            # differentiates as one call.
            x, params = self._traced_loop(step)(rows, context)
        else:
            x, params = self._loop(step, rows, context)
        x = tf.reshape(x, tf.shape(z))
        if not return_params:
            return x
        return x, tf.reshape(params, tf.concat([tf.shape(z), [self.net.params]], axis=0))

    def _loop(self, step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], rows: tf.Tensor,
              context: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        d = self.features

        def body(k: tf.Tensor, x: tf.Tensor, kept: tf.Tensor
                 ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            i = d - 1 - k if self.reverse else k
            params = tf.gather(self(x, context=context), [i], axis=1)  # [N, 1, P]
            x_i = step(params, tf.gather(rows, [i], axis=1))  # [N, 1]
            kept = kept + params * tf.one_hot(i, d, dtype=params.dtype)[:, None]
            return k + 1, x + x_i * tf.one_hot(i, d, dtype=x.dtype), kept

        kept = tf.zeros(tf.concat([tf.shape(rows), [self.net.params]], axis=0),
                        self.net.dtype)
        loop = tf.while_loop(lambda k, *_: k < d, body,
                             (tf.constant(0), tf.zeros_like(rows), kept),
                             maximum_iterations=d)
        return loop[1], loop[2]

    def _traced_loop(self, step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> Callable:
        """A ``tf.function`` of :meth:`_loop` with ``step`` fixed, cached per function.

        ``MaskedAutoregressive`` passes a new closure on every call; two closures of the same
        code over the same objects are the same function, so the key is the code and the
        identities of the closed-over objects (kept alive by the cache, so no identity is
        reused).
        """
        cells = tuple(c.cell_contents for c in (getattr(step, "__closure__", None) or ()))
        key = (getattr(step, "__code__", step), tuple(id(c) for c in cells))
        if key not in self._traced:
            fn = tf.function(lambda rows, context: self._loop(step, rows, context),
                             autograph=False, reduce_retracing=True)
            self._traced[key] = (fn, cells)
        return self._traced[key][0]


@register("pixelcnn_flow", paper="Pixel Recurrent Neural Networks (PixelCNN) with mixture-CDF "
          "conditionals (Flow++)", arxiv="https://arxiv.org/abs/1601.06759",
          fast_direction="density", image_shapes=((4, 4, 1), (3, 3, 3)))
def pixelcnn_flow(features: int, *, image_shape: Sequence[int], layers: int = 1,
                  hidden_units: int = 64, blocks: int = 2, components: int = 8,
                  activation: str = "relu", family: str = "logistic", order: str = "alternating",
                  context_features: int | None = None, context_net: Any = None, seed: int = 0,
                  dtype: str = "float32") -> Flow:
    """Autoregressive flow over image pixels with a PixelCNN conditioner:
    z_i = Phi^-1(F_i(x_i | x_<i)).

    Each layer maps the flattened image ``x [N, H * W * C]`` to ``z`` elementwise through the
    CDF of a mixture of ``components`` logistics (or Gaussians) whose weights, locations and
    scales a :class:`~normalizingflows.nn.PixelCNN` computes from the pixels before ``i`` in
    raster order (and the channels before it within the pixel), followed by the probit
    Phi^-1. With one layer, log p(x) = sum_i log sum_k pi_ik f((x_i - mu_ik) / s_ik) / s_ik:
    exactly the PixelCNN density with continuous mixture conditionals (as in PixelCNN++).
    Density: one PixelCNN pass per layer; sampling: ``D = H * W * C`` passes per layer,
    each inverting a mixture CDF by a monotone root solve. ``order="alternating"`` runs every
    second layer in the reversed raster order.

    Args:
        features: ``H * W * C``; rows are images flattened row-major, channels last.
        image_shape: ``(H, W, C)``.
        layers: Number of PixelCNN layers.
        hidden_units: Feature maps of every convolution.
        blocks: Residual blocks of each PixelCNN (depth; the receptive field grows by
            ``kernel_size - 1`` per block).
        components: Mixture components per conditional (K).
        activation: Hidden activation.
        family: ``"logistic"`` or ``"normal"`` components.
        order: ``"alternating"`` (reverse the raster order every second layer) or
            ``"sequential"``.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); it enters every hidden convolution as a bias.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow` (``flow.image_shape == (H, W, C)``).

    Raises:
        ValueError: If ``image_shape`` does not match ``features``, or ``family`` or ``order``
            is unknown.

    Example:
        >>> flow = pixelcnn_flow(16, image_shape=(4, 4, 1), hidden_units=8, components=3)
        >>> flow.log_prob(tf.zeros([2, 16])).shape
        TensorShape([2])
        >>> flow.as_images(flow.sample(3, seed=1)).shape
        TensorShape([3, 4, 4, 1])

    References:
        Pixel Recurrent Neural Networks, van den Oord et al. 2016,
        https://arxiv.org/abs/1601.06759; Flow++, Ho et al. 2019,
        https://arxiv.org/abs/1902.00275; PixelCNN++, Salimans et al. 2017,
        https://arxiv.org/abs/1701.05517
    """
    shape = image_shape_tuple(features, image_shape)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if order not in PIXELCNN_ORDERS:
        raise ValueError(f"order must be one of {PIXELCNN_ORDERS}; got {order!r}")
    k = components
    # Output map c * P + p is parameter p of channel c; each layer maps R onto R (probit fused).
    bias = initial_mixture_bias(k)
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    make = functools.partial(_quantile_map, components=k, family=family, to="normal")
    steps, nets = [], []
    for i in range(layers):
        net = PixelCNN(shape[-1], params=3 * k, hidden_units=hidden_units, blocks=blocks,
                       activation=activation, context_features=width,
                       output_bias_initializer=tf_keras.initializers.Constant(
                           np.tile(bias, shape[-1])),
                       seed=seed * 1000 + i, dtype=dtype, name=f"pixelcnn_{i}")
        nets.append(net)
        conditioner = FlatImageConditioner(net, shape,
                                           reverse=order == "alternating" and i % 2 == 1)
        steps.append(MaskedAutoregressive(conditioner, make, name=f"pixelcnn_maf_{i}"))
    return Flow(features=features, bijector=chain(steps), base=normal_base(features, dtype),
                nets=nets, context_features=context_features, context_net=embed,
                fast_direction="density", image_shape=shape, dtype=dtype, name="pixelcnn_flow")
