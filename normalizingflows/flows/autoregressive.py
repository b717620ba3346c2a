"""Affine autoregressive flows: MADE (one layer), MAF and IAF."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._parts import affine, autoregressive_stack, chain, context_embedding, normal_base
from .core import Flow
from .registry import hidden_units_tuple, register

__all__ = ["maf", "iaf", "made"]

_MAF_PAPER = ("Masked Autoregressive Flow for Density Estimation",
              "https://arxiv.org/abs/1705.07057")


def _affine_autoregressive(features: int, *, layers: int, hidden_units: int | Sequence[int],
                           activation: str, order: str, batch_norm: bool, seed: int, dtype: str,
                           invert: bool, fast_direction: str, name: str,
                           context_features: int | None, context_net: Any) -> Flow:
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    steps, nets = autoregressive_stack(
        features, layers=layers, hidden_units=hidden_units_tuple(hidden_units),
        activation=activation, order=order, seed=seed, dtype=dtype, params=2,
        make_bijector=affine, invert=invert, batch_norm=batch_norm, context=width)
    return Flow(features=features, bijector=chain(steps), base=normal_base(features, dtype),
                nets=nets, context_features=context_features, context_net=embed,
                fast_direction=fast_direction, dtype=dtype, name=name)


@register("maf", paper=_MAF_PAPER[0], arxiv=_MAF_PAPER[1], fast_direction="density",
          test_variants=({}, {"batch_norm": True, "order": "random"}))
def maf(features: int, *, layers: int = 5, hidden_units: int | Sequence[int] = 64,
        activation: str = "relu", order: str = "alternating", batch_norm: bool = False,
        context_features: int | None = None, context_net: Any = None,
        seed: int = 0, dtype: str = "float32") -> Flow:
    """Masked Autoregressive Flow: a stack of MADE-conditioned affine autoregressive layers.

    x_i = u_i * exp(alpha_i(x_<i)) + mu_i(x_<i); density in one pass per layer, sampling in D.

    Args:
        features: Data dimensions.
        layers: Number of autoregressive layers.
        hidden_units: MADE widths (an int means two hidden layers of that width).
        activation: MADE activation.
        order: ``"alternating"`` (reversed between layers, as in the paper), ``"sequential"``
            or ``"random"`` (seeded).
        batch_norm: Batch normalisation after each layer (MAF paper).
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; ``fast_direction == "density"``.

    Example:
        >>> flow = maf(2, layers=2, hidden_units=8)
        >>> flow.sample(3, seed=0).shape
        TensorShape([3, 2])

    References:
        Masked Autoregressive Flow for Density Estimation, Papamakarios et al. 2017,
        https://arxiv.org/abs/1705.07057
    """
    return _affine_autoregressive(features, layers=layers, hidden_units=hidden_units,
                                  activation=activation, order=order, batch_norm=batch_norm,
                                  seed=seed, dtype=dtype, invert=False, fast_direction="density",
                                  name="maf", context_features=context_features,
                                  context_net=context_net)


@register("iaf", paper="Improved Variational Inference with Inverse Autoregressive Flow",
          arxiv="https://arxiv.org/abs/1606.04934", fast_direction="sampling")
def iaf(features: int, *, layers: int = 5, hidden_units: int | Sequence[int] = 64,
        activation: str = "relu", order: str = "alternating", batch_norm: bool = False,
        context_features: int | None = None, context_net: Any = None,
        seed: int = 0, dtype: str = "float32") -> Flow:
    """Inverse Autoregressive Flow: the inverse of MAF (one pass to sample, D for density).

    x_i = z_i * exp(alpha_i(z_<i)) + mu_i(z_<i).

    Args:
        features: Data dimensions.
        layers: Number of autoregressive layers.
        hidden_units: MADE widths (an int means two hidden layers of that width).
        activation: MADE activation.
        order: ``"alternating"``, ``"sequential"`` or ``"random"``.
        batch_norm: Batch normalisation after each layer.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; ``fast_direction == "sampling"``.

    Example:
        >>> iaf(3, layers=1, hidden_units=8).fast_direction
        'sampling'

    References:
        Improved Variational Inference with Inverse Autoregressive Flow, Kingma et al. 2016,
        https://arxiv.org/abs/1606.04934
    """
    return _affine_autoregressive(features, layers=layers, hidden_units=hidden_units,
                                  activation=activation, order=order, batch_norm=batch_norm,
                                  seed=seed, dtype=dtype, invert=True, fast_direction="sampling",
                                  name="iaf", context_features=context_features,
                                  context_net=context_net)


@register("made", paper="MADE: Masked Autoencoder for Distribution Estimation",
          arxiv="https://arxiv.org/abs/1502.03509", fast_direction="density")
def made(features: int, *, hidden_units: int | Sequence[int] = 64, activation: str = "relu",
         order: str = "sequential", context_features: int | None = None, context_net: Any = None,
         seed: int = 0,
         dtype: str = "float32") -> Flow:
    """MADE with Gaussian conditionals: p(x) = prod_i N(x_i | mu_i(x_<i), exp(alpha_i(x_<i))^2).

    This is a one-layer MAF (MAF paper, section 3).

    Args:
        features: Data dimensions.
        hidden_units: MADE widths (an int means two hidden layers of that width).
        activation: MADE activation.
        order: ``"sequential"`` (left to right) or ``"random"`` (seeded).
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of the weights and of a random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`.

    Example:
        >>> made(2, hidden_units=8).log_prob([[0.0, 0.0]]).shape
        TensorShape([1])

    References:
        MADE: Masked Autoencoder for Distribution Estimation, Germain et al. 2015,
        https://arxiv.org/abs/1502.03509
    """
    return _affine_autoregressive(features, layers=1, hidden_units=hidden_units,
                                  activation=activation, order=order, batch_norm=False, seed=seed,
                                  dtype=dtype, invert=False, fast_direction="density", name="made",
                                  context_features=context_features, context_net=context_net)
