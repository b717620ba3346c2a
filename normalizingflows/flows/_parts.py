"""Shared pieces the flow constructors wire together (bases, parameter maps, layer stacks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..bijectors import BatchNorm, MaskedAutoregressive, lu_linear
from ..nn import MADE, MLP

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["context_embedding", "accepts_kwargs", "normal_base", "layer_orders", "affine",
           "soft_clamp", "spline_param_count", "spline",
           "autoregressive_stack", "coupling_permutations", "lu_layer", "chain"]

AR_ORDERS = ("sequential", "alternating", "random")
COUPLING_ORDERS = ("alternating", "random")


def normal_base(features: int, dtype: str) -> tfd.Distribution:
    """Standard normal base with event shape ``[features]``."""
    return tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)), sample_shape=[features],
                      name="base")


def context_embedding(context_features: int | None, context_net: Any, *, activation: str,
                      seed: int, dtype: str) -> tuple[tf_keras.layers.Layer | None, int | None]:
    """The context embedding network of a conditional flow and the width it feeds the layers.

    Args:
        context_features: Width ``C`` of the context, or ``None`` for an unconditional flow.
        context_net: ``None`` (the raw context goes to every layer), a sequence of widths
            (an MLP ``C -> widths[0] -> ... -> widths[-1]`` trained with the flow, its last
            layer linear) or any ``tf_keras`` layer mapping ``[N, C]`` to ``[N, E]``.
        activation: Hidden activation of a built embedding.
        seed: Seed of a built embedding.
        dtype: Its dtype.

    Returns:
        ``(net, width)``: the embedding (or ``None``) and the context width the conditioners see
        (``None`` for an unconditional flow).

    Raises:
        ValueError: If ``context_net`` is given without ``context_features`` or its widths are
            not positive.
    """
    if context_features is None:
        if context_net is not None:
            raise ValueError("context_net needs context_features (the width of the context)")
        return None, None
    if context_net is None:
        return None, int(context_features)
    if isinstance(context_net, tf_keras.layers.Layer):
        out = context_net(tf.zeros([1, int(context_features)], dtype))
        return context_net, int(out.shape[-1])
    widths = [context_net] if isinstance(context_net, int) else list(context_net)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError("context_net must be None, a tf_keras layer or a list of positive "
                         f"widths; got {context_net!r}")
    net = MLP(int(context_features), widths[-1], hidden_units=widths[:-1], activation=activation,
              output_initializer="glorot_uniform", seed=seed * 1000 + 991, dtype=dtype,
              name="context_net")
    return net, widths[-1]


def accepts_kwargs(step: tfb.Bijector, *names: str) -> tfb.Bijector:
    """Mark ``step`` as taking the keyword arguments ``names`` (e.g. ``"context"``).

    ``tfb.RealNVP`` takes ``**kwargs`` for its conditioner, so ``Flow`` cannot read from its
    signature which ones it uses; it reads this mark.
    """
    step._nf_kwargs = tuple(names)
    return step


def layer_orders(order: str, layers: int) -> list[str]:
    """MADE input order of each layer: ``sequential`` keeps left-to-right, ``alternating``
    reverses between layers (MAF paper), ``random`` draws a seeded order per layer."""
    if order == "sequential":
        return ["left-to-right"] * layers
    if order == "alternating":
        return ["left-to-right" if i % 2 == 0 else "right-to-left" for i in range(layers)]
    if order == "random":
        return ["random"] * layers
    raise ValueError(f"order must be one of {AR_ORDERS}; got {order!r}")


LOG_SCALE_BOUND = 5.0


def soft_clamp(x: tf.Tensor, bound: float = LOG_SCALE_BOUND) -> tf.Tensor:
    """bound * tanh(x / bound): the identity near 0, smoothly limited to (-bound, bound)."""
    return bound * tf.tanh(x / bound)


def affine(params: tf.Tensor) -> tfb.Bijector:
    """Elementwise affine map from ``params[..., 0]`` (shift) and ``params[..., 1]`` (raw
    log-scale): y = x * exp(s) + shift with s = 5 tanh(raw / 5).

    Unbounded log-scales overflow far from the data (a ReLU network grows linearly there), which
    turns densities into NaN; the bound keeps one layer's scale within exp(+-5).
    """
    return tfb.Shift(params[..., 0])(tfb.Scale(log_scale=soft_clamp(params[..., 1])))


def spline_param_count(bins: int) -> int:
    """Raw parameters of one rational-quadratic spline: widths, heights, interior slopes."""
    return 3 * bins - 1


_MIN_WIDTH = 1e-3
_MIN_SLOPE = 1e-3


def spline(params: tf.Tensor, bins: int, bound: float) -> tfb.Bijector:
    """Rational-quadratic spline on ``[-bound, bound]`` with identity tails (NSF paper).

    Zero ``params`` give equal bins and unit slopes, i.e. the identity map.
    """
    dtype = params.dtype
    width = 2.0 * bound
    w, h, d = params[..., :bins], params[..., bins:2 * bins], params[..., 2 * bins:]
    widths = tf.math.softmax(w, axis=-1) * (width - bins * _MIN_WIDTH) + _MIN_WIDTH
    heights = tf.math.softmax(h, axis=-1) * (width - bins * _MIN_WIDTH) + _MIN_WIDTH
    shift = tf.constant(np.log(np.expm1(1.0 - _MIN_SLOPE)), dtype)
    slopes = tf.math.softplus(d + shift) + _MIN_SLOPE
    return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-bound)


def chain(steps: list[tfb.Bijector], name: str = "flow") -> tfb.Bijector:
    """``tfb.Chain`` of ``steps`` (the first step is applied last in the forward direction)."""
    return tfb.Chain(steps, name=name)


def lu_layer(features: int, index: int, *, seed: int, dtype: str) -> tfb.Bijector:
    """The NSF paper's linear layer number ``index`` of a stack (``lu_layers=True``): a learned
    :func:`~normalizingflows.bijectors.lu_linear` map, seeded apart from the stack's nets."""
    return lu_linear(features, dtype=dtype, seed=seed * 1000 + 500 + index, name=f"lu_{index}")


def autoregressive_stack(features: int, *, layers: int, hidden_units: tuple[int, ...],
                         activation: str, order: str, seed: int, dtype: str, params: int,
                         make_bijector: Callable[[tf.Tensor], tfb.Bijector]
                         | Sequence[Callable[[tf.Tensor], tfb.Bijector]],
                         invert: bool = False, batch_norm: bool = False,
                         output_bias: np.ndarray | None = None, context: int | None = None,
                         lu_layers: bool = False, residual: bool = False, dropout: float = 0.0
                         ) -> tuple[list[tfb.Bijector], list[MADE]]:
    """Layers of a MAF-type flow, in data -> base order of the normalising direction.

    Each layer is a :class:`~normalizingflows.bijectors.MaskedAutoregressive` whose transformer
    (``make_bijector``) takes its parameters from a :class:`~normalizingflows.nn.MADE`; its
    inverse (one MADE pass) maps data towards the base, its forward runs the MADE's
    degree-blocked incremental solve (one pass of multiply-adds, not ``D``). ``invert=True``
    wraps each
    in ``tfb.Invert`` (IAF: one pass to sample). ``batch_norm`` adds a
    :class:`~normalizingflows.bijectors.BatchNorm` after each layer in the normalising
    direction (MAF paper). ``make_bijector`` may be one callable per
    layer. ``output_bias`` (one value per MADE output of one input) initialises the MADE
    output bias. ``lu_layers`` puts a learned LU linear map (:func:`lu_layer`) before every
    layer and after the last (NSF paper). ``residual`` makes each MADE a ResMADE and
    ``dropout`` is its dropout rate under ``training=True`` (NSF paper; see
    :class:`~normalizingflows.nn.MADE`).

    Returns:
        ``(steps, nets)``: pass ``steps`` to :func:`chain` for the base -> data bijector.
    """
    makers = (list(make_bijector) if isinstance(make_bijector, Sequence)
              else [make_bijector] * layers)
    steps, nets = [], []
    for i, layer_order in enumerate(layer_orders(order, layers)):
        if lu_layers:
            steps.append(lu_layer(features, i, seed=seed, dtype=dtype))
        bias = "zeros" if output_bias is None else tf_keras.initializers.Constant(
            np.tile(np.asarray(output_bias, dtype=np.float64), features))
        made = MADE(features, params=params, hidden_units=hidden_units, activation=activation,
                    order=layer_order, seed=seed * 1000 + i, dtype=dtype, name=f"made_{i}",
                    output_bias_initializer=bias, context_features=context,
                    residual=residual, dropout=dropout)
        nets.append(made)
        step = MaskedAutoregressive(made, makers[i], name=f"maf_{i}")
        steps.append(tfb.Invert(step, name=f"iaf_{i}") if invert else step)
        if batch_norm:
            steps.append(BatchNorm.new(features, dtype=dtype, name=f"batch_norm_{i}"))
    if lu_layers:
        steps.append(lu_layer(features, layers, seed=seed, dtype=dtype))
    return steps, nets


def coupling_permutations(features: int, layers: int, order: str, seed: int) -> list[np.ndarray]:
    """Permutation applied after each coupling layer: reversal, or a seeded random one."""
    if order == "alternating":
        return [np.arange(features)[::-1] for _ in range(layers)]
    if order == "random":
        rng = np.random.default_rng(seed)
        return [rng.permutation(features) for _ in range(layers)]
    raise ValueError(f"order must be one of {COUPLING_ORDERS} for coupling flows; got {order!r}")
