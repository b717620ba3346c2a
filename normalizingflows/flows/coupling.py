"""Coupling flows: NICE (additive) and RealNVP (affine)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from ..bijectors import BatchNorm, Coupling, TanhShiftParameters
from ..nn import MLP
from ._parts import (
    accepts_kwargs,
    chain,
    context_embedding,
    coupling_permutations,
    lu_layer,
    normal_base,
    soft_clamp,
)
from .core import Flow
from .registry import hidden_units_tuple, register

tfb = tfp.bijectors

__all__ = ["nice", "realnvp", "coupling_stack"]

def coupling_stack(features: int, *, layers: int, hidden_units: tuple[int, ...], activation: str,
                   order: str, seed: int, dtype: str, params: int,
                   make_bijector: Callable[..., tfb.Bijector]
                   | Sequence[Callable[..., tfb.Bijector]], batch_norm: bool = False,
                   context: int | None = None, training: bool = False,
                   lu_layers: bool = False, residual: bool = False, dropout: float = 0.0
                   ) -> tuple[list[tfb.Bijector], list[MLP]]:
    """Coupling layers (:class:`~normalizingflows.bijectors.Coupling`, a ``tfb.RealNVP`` with
    one network pass per direction) with permutations between them, data -> base order.

    The first ``features // 2`` coordinates condition an elementwise bijector
    (``make_bijector(params [..., n, params])``) of the other ``n = features - features // 2``;
    a reversal (or a seeded random permutation) between layers lets every coordinate move.
    ``context`` is the width of the (embedded) context concatenated to every network's input.
    ``make_bijector`` may be one callable per layer; with ``training=True`` it is called as
    ``make_bijector(params, training=...)`` (for data-dependent initialisation).
    ``lu_layers`` replaces the permutations by learned LU linear maps (:func:`lu_layer`), one
    before every layer and one after the last, and ``residual`` makes the networks residual
    (the NSF paper's recipe). ``dropout`` is the networks' dropout rate under
    ``training=True`` (the flow then routes ``training`` to every layer).
    """
    makers = (list(make_bijector) if isinstance(make_bijector, Sequence)
              else [make_bijector] * layers)
    num_masked = features // 2
    transformed = features - num_masked
    perms = coupling_permutations(features, layers, order, seed)
    steps, nets = [], []
    for i in range(layers):
        if lu_layers:
            steps.append(lu_layer(features, i, seed=seed, dtype=dtype))
        net = MLP(num_masked, transformed * params, hidden_units=hidden_units,
                  activation=activation, seed=seed * 1000 + i, dtype=dtype,
                  context_features=context, residual=residual, dropout=dropout,
                  name=f"coupling_net_{i}")
        nets.append(net)

        def bijector_fn(x0: tf.Tensor, input_depth: int, _net: MLP = net, _make=makers[i],
                        **kwargs) -> tfb.Bijector:
            out = _net(x0, context=kwargs.get("context"),
                       training=bool(dropout) and kwargs.get("training", False))
            shape = tf.concat([tf.shape(out)[:-1], [input_depth, params]], axis=0)
            out = tf.reshape(out, shape)
            if training:
                return _make(out, training=kwargs.get("training", False))
            return _make(out)

        step = Coupling(num_masked=num_masked, bijector_fn=bijector_fn, name=f"coupling_{i}")
        names = ("context",) * bool(context) + ("training",) * (training or bool(dropout))
        steps.append(accepts_kwargs(step, *names) if names else step)
        if batch_norm:
            steps.append(BatchNorm.new(features, dtype=dtype, name=f"batch_norm_{i}"))
        if i < layers - 1 and not lu_layers:
            steps.append(tfb.Permute(perms[i].tolist(), name=f"permute_{i}"))
    if lu_layers:
        steps.append(lu_layer(features, layers, seed=seed, dtype=dtype))
    return steps, nets


def _shift(params: tf.Tensor) -> tfb.Bijector:
    return tfb.Shift(params[..., 0])


def _bounded_affine(params: tf.Tensor) -> tfb.Bijector:
    return tfb.Shift(params[..., 0])(tfb.Scale(log_scale=soft_clamp(params[..., 1], 3.0)))


SCALES = ("bounded", "tanh_shift")


def _tanh_shift(params: tf.Tensor, training: bool = False, *,
                parameters: TanhShiftParameters) -> tfb.Bijector:
    return parameters.bijector(params[..., 1], params[..., 0], training=training)


@register("nice", paper="NICE: Non-linear Independent Components Estimation",
          arxiv="https://arxiv.org/abs/1410.8516", fast_direction="both", min_features=2)
def nice(features: int, *, layers: int = 4, hidden_units: int | Sequence[int] = 64,
         activation: str = "relu", order: str = "alternating", batch_norm: bool = False,
         context_features: int | None = None, context_net: Any = None,
         seed: int = 0, dtype: str = "float32") -> Flow:
    """NICE: additive coupling layers y_b = x_b + m(x_a), then a learned diagonal scaling.

    Args:
        features: Data dimensions (at least 2).
        layers: Number of coupling layers.
        hidden_units: Coupling-network widths (an int means two hidden layers).
        activation: Coupling-network activation.
        order: ``"alternating"`` (reverse between layers) or ``"random"``.
        batch_norm: Batch normalisation after each coupling layer.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and permutation.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow` (both directions one pass).

    Example:
        >>> nice(2, layers=2, hidden_units=8).fast_direction
        'both'

    References:
        NICE: Non-linear Independent Components Estimation, Dinh et al. 2014,
        https://arxiv.org/abs/1410.8516
    """
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    steps, nets = coupling_stack(features, layers=layers,
                                 hidden_units=hidden_units_tuple(hidden_units),
                                 activation=activation, order=order, seed=seed, dtype=dtype,
                                 params=1, make_bijector=_shift, batch_norm=batch_norm,
                                 context=width)
    log_scale = tf.Variable(tf.zeros([features], dtype), name="nice_log_scale")
    steps.append(tfb.Scale(log_scale=log_scale, name="nice_scale"))
    return Flow(features=features, bijector=chain(steps), base=normal_base(features, dtype),
                nets=nets, context_features=context_features, context_net=embed,
                fast_direction="both", dtype=dtype, name="nice")


@register("realnvp", paper="Density estimation using Real NVP",
          arxiv="https://arxiv.org/abs/1605.08803", fast_direction="both", min_features=2,
          test_variants=({}, {"batch_norm": True, "order": "random"}, {"scale": "tanh_shift"}))
def realnvp(features: int, *, layers: int = 5, hidden_units: int | Sequence[int] = 64,
            activation: str = "relu", order: str = "alternating", batch_norm: bool = False,
            scale: str = "bounded",
            context_features: int | None = None, context_net: Any = None,
            seed: int = 0, dtype: str = "float32") -> Flow:
    """RealNVP: affine coupling layers y_b = x_b * exp(s(x_a)) + t(x_a).

    ``scale="bounded"``: the log-scale is bounded smoothly, s = 3 tanh(g / 3), so deep stacks
    stay stable. ``scale="tanh_shift"``: the paper's 2-D parameterisation s = scale * tanh(g) +
    scale_shift with learned per-coordinate ``scale`` and ``scale_shift`` (and a learned
    offset of t), initialised from the first training batch so every layer starts by
    standardising its coordinates (:class:`~normalizingflows.bijectors.TanhShiftAffine`).

    Args:
        features: Data dimensions (at least 2).
        layers: Number of coupling layers.
        hidden_units: Coupling-network widths (an int means two hidden layers).
        activation: Coupling-network activation.
        order: ``"alternating"`` (reverse between layers) or ``"random"``.
        batch_norm: Batch normalisation after each coupling layer (RealNVP paper).
        scale: ``"bounded"`` or ``"tanh_shift"`` (see above).
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and permutation.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow` (both directions one pass).

    Example:
        >>> realnvp(3, layers=2, hidden_units=8).sample(2, seed=1).shape
        TensorShape([2, 3])

    References:
        Density estimation using Real NVP, Dinh et al. 2016, https://arxiv.org/abs/1605.08803
    """
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    makers: Any = _bounded_affine
    heads: list[TanhShiftParameters] = []
    if scale == "tanh_shift":
        heads = [TanhShiftParameters(features - features // 2, dtype, name=f"tanh_shift_{i}")
                 for i in range(layers)]
        makers = [functools.partial(_tanh_shift, parameters=p) for p in heads]
    steps, nets = coupling_stack(features, layers=layers,
                                 hidden_units=hidden_units_tuple(hidden_units),
                                 activation=activation, order=order, seed=seed, dtype=dtype,
                                 params=2, make_bijector=makers, batch_norm=batch_norm,
                                 context=width, training=scale == "tanh_shift")
    return Flow(features=features, bijector=chain(steps), base=normal_base(features, dtype),
                nets=[*nets, *heads], context_features=context_features, context_net=embed,
                fast_direction="both", dtype=dtype, name="realnvp")
