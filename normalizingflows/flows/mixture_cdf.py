"""Autoregressive flow whose conditionals are mixture CDFs (latent uniform, or normal)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ..bijectors import MixtureCDF
from ..bijectors.mixture_cdf import FAMILIES
from ._parts import autoregressive_stack, chain, context_embedding, normal_base
from .core import Flow
from .registry import hidden_units_tuple, register

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["ar_mixture_cdf"]

_MIN_SCALE = 1e-3
LATENTS = ("normal", "uniform")


def initial_mixture_bias(components: int) -> np.ndarray:
    """Output bias of a conditioner of mixture parameters ``[logits, means, raw scales]``:
    equal weights, means spread over the bulk of N(0, 1) so the components start distinct,
    scales 0.5 (softplus(-0.433) = 0.5)."""
    k = int(components)
    return np.concatenate([np.zeros(k), np.linspace(-1.5, 1.5, k) if k > 1 else [0.0],
                           np.full(k, np.log(np.expm1(0.5)))])


def _quantile_map(params: tf.Tensor, components: int, family: str, to: str) -> tfb.Bijector:
    """Base -> data step of one layer: the inverse of the conditional mixture CDF."""
    k = components
    scales = tf.math.softplus(params[..., 2 * k:]) + _MIN_SCALE
    return tfb.Invert(MixtureCDF(params[..., :k], params[..., k:2 * k], scales, family=family,
                                 to=to))


@register("ar_mixture_cdf", paper="Masked Autoregressive Flow for Density Estimation "
          "(mixture conditionals) / Flow++ (mixture CDF)",
          arxiv="https://arxiv.org/abs/1705.07057", fast_direction="density",
          test_variants=({}, {"family": "logistic", "order": "random"}))
def ar_mixture_cdf(features: int, *, layers: int = 1, components: int = 10,
                   hidden_units: int | Sequence[int] = 64, activation: str = "relu",
                   family: str = "normal", latent: str = "normal", order: str = "alternating",
                   context_features: int | None = None, context_net: Any = None, seed: int = 0,
                   dtype: str = "float32") -> Flow:
    """Autoregressive flow with mixture-CDF conditionals: u_i = F_i(x_i | x_<i).

    Each layer maps x to u in (0, 1)^D through the CDF of a mixture of ``components`` Gaussians
    or logistics whose weights, locations and scales come from a MADE on x_<i; with one layer
    and a uniform latent this is exactly an autoregressive mixture density,
    p(x) = prod_i sum_k pi_ik N(x_i | mu_ik, s_ik^2). Layers are joined by the probit
    Phi^-1 (u -> R, fused into the mixture CDF so the tails stay exact); ``latent="normal"``
    applies it after the last layer too (base N(0, I)), ``latent="uniform"`` keeps the base
    uniform on [0, 1]^D. Density: one MADE pass per layer;
    sampling: D passes per layer, each inverting a mixture CDF by a monotone root solve.

    Args:
        features: Data dimensions.
        layers: Number of mixture-CDF layers.
        components: Mixture components per conditional (K).
        hidden_units: MADE widths (an int means two hidden layers).
        activation: MADE activation.
        family: ``"normal"`` or ``"logistic"`` components.
        latent: ``"normal"`` (probit after the last layer) or ``"uniform"``.
        order: ``"alternating"``, ``"sequential"`` or ``"random"``.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`.

    Raises:
        ValueError: If ``family`` or ``latent`` is unknown.

    Example:
        >>> flow = ar_mixture_cdf(2, components=3, hidden_units=8)
        >>> flow.log_prob([[0.0, 1.0]]).shape
        TensorShape([1])

    References:
        Masked Autoregressive Flow for Density Estimation, Papamakarios et al. 2017,
        https://arxiv.org/abs/1705.07057; Flow++, Ho et al. 2019,
        https://arxiv.org/abs/1902.00275
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if latent not in LATENTS:
        raise ValueError(f"latent must be one of {LATENTS}; got {latent!r}")
    k = components
    bias = initial_mixture_bias(k)

    # Every layer maps onto R (the probit fused in) except a last one with a uniform latent.
    makers = [functools.partial(_quantile_map, components=k, family=family,
                                to="uniform" if i == layers - 1 and latent == "uniform"
                                else "normal") for i in range(layers)]
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    steps, nets = autoregressive_stack(
        features, layers=layers, hidden_units=hidden_units_tuple(hidden_units),
        activation=activation, order=order, seed=seed, dtype=dtype, params=3 * k,
        make_bijector=makers, output_bias=bias, context=width)
    if latent == "normal":
        base = normal_base(features, dtype)
    else:
        base = tfd.Sample(tfd.Uniform(tf.zeros([], dtype), tf.ones([], dtype)),
                          sample_shape=[features], name="base")
    return Flow(features=features, bijector=chain(steps), base=base, nets=nets,
                context_features=context_features, context_net=embed,
                fast_direction="density", dtype=dtype, name="ar_mixture_cdf")
