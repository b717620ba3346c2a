"""Radial flows (Rezende & Mohamed 2015), unconditional or conditional through hyper-networks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from ..bijectors import Radial
from ._parts import context_embedding
from .core import Flow
from .planar import hyper_maps, residual_flow
from .registry import register

tfb = tfp.bijectors

__all__ = ["radial"]


@register("radial", paper="Variational Inference with Normalizing Flows",
          arxiv="https://arxiv.org/abs/1505.05770", fast_direction="both",
          test_variants=({}, {"invert": True}))
def radial(features: int, *, layers: int = 16, invert: bool = False,
           hidden_units: int | Sequence[int] = 32, activation: str = "relu",
           context_features: int | None = None, context_net: Any = None, seed: int = 0,
           dtype: str = "float32") -> Flow:
    """A stack of radial maps f(z) = z + beta (z - z0) / (alpha + ||z - z0||).

    alpha > 0 and beta >= -alpha are built in; the radius is per sample; both directions are
    closed-form (the inverse solves a scalar quadratic in the radius).

    Args:
        features: Data dimensions.
        layers: Number of radial maps.
        invert: Use the maps base -> data (variational form) instead of data -> base.
        hidden_units: Widths of each map's hyper-network in a conditional flow (an int means
            two hidden layers of that width); unused when unconditional.
        activation: Hidden activation of the hyper-networks (and of a built ``context_net``).
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every map's parameters come from a hyper-network of the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of the parameters.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; exact and one pass in both directions.

    Example:
        >>> radial(2, layers=4).fast_direction
        'both'
        >>> flow = radial(2, layers=2, hidden_units=8, context_features=1)
        >>> flow.sample(4, context=[[0.5]], seed=0).shape
        TensorShape([4, 2])

    References:
        Variational Inference with Normalizing Flows, Rezende & Mohamed 2015,
        https://arxiv.org/abs/1505.05770
    """
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    if width is None:
        maps = [Radial.new(features, dtype=dtype, seed=seed * 1000 + i, name=f"radial_{i}")
                for i in range(layers)]
        return residual_flow(maps, features=features, invert=invert, dtype=dtype,
                             fast_map="both", name="radial")
    initial = [Radial.initial_parameters(features, dtype=dtype, seed=seed * 1000 + i)
               for i in range(layers)]

    def make_map(z0: tf.Tensor, alpha_raw: tf.Tensor, beta_raw: tf.Tensor,
                 name: str) -> tfb.Bijector:
        return Radial(z0, alpha_raw, beta_raw, name=name)

    maps, nets = hyper_maps(initial, make_map, width=width, hidden_units=hidden_units,
                            activation=activation, seed=seed, dtype=dtype, name="radial")
    return residual_flow(maps, features=features, invert=invert, dtype=dtype, fast_map="both",
                         name="radial", nets=nets, context_features=context_features,
                         context_net=embed)
