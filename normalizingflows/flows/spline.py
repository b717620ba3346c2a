"""Neural Spline Flows: rational-quadratic splines in coupling and autoregressive form."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ._parts import (
    autoregressive_stack,
    chain,
    context_embedding,
    normal_base,
    spline,
    spline_param_count,
)
from .core import Flow
from .coupling import coupling_stack
from .registry import hidden_units_tuple, register

__all__ = ["nsf_coupling", "nsf_autoregressive"]

_NSF = ("Neural Spline Flows", "https://arxiv.org/abs/1906.04032")


@register("nsf_coupling", paper=_NSF[0], arxiv=_NSF[1], fast_direction="both", min_features=2,
          test_variants=({}, {"bins": 3, "bound": 2.0, "order": "random"},
                         {"lu_layers": True, "residual": True, "dropout": 0.2}))
def nsf_coupling(features: int, *, layers: int = 4, hidden_units: int | Sequence[int] = 64,
                 activation: str = "relu", bins: int = 8, bound: float = 3.0,
                 order: str = "alternating", batch_norm: bool = False,
                 lu_layers: bool = False, residual: bool = False, dropout: float = 0.0,
                 context_features: int | None = None, context_net: Any = None, seed: int = 0,
                 dtype: str = "float32") -> Flow:
    """RQ-NSF (C): coupling layers whose transformer is a monotone rational-quadratic spline.

    On [-bound, bound] each coordinate goes through a spline with ``bins`` bins whose widths,
    heights and interior slopes come from the coupling network; outside it is the identity
    (linear tails of slope 1, as in the paper).

    Args:
        features: Data dimensions (at least 2).
        layers: Number of coupling layers.
        hidden_units: Coupling-network widths (an int means two hidden layers).
        activation: Coupling-network activation.
        bins: Number of spline bins (K).
        bound: Half-width B of the spline interval.
        order: ``"alternating"`` (reverse between layers) or ``"random"``.
        batch_norm: Batch normalisation after each layer.
        lu_layers: Learned LU-parameterised linear maps instead of the permutations, one
            before every layer and one after the last (the paper's recipe; starts at random
            rotations).
        residual: Residual coupling networks (the paper's: one pre-activation residual block
            per entry of ``hidden_units``, which must share one width).
        dropout: Dropout rate of the coupling networks while training (``fit``, or
            ``log_prob(..., training=True)``); the paper uses 0 to 0.2 on the tabular sets.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and permutation.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow` (both directions one pass).

    Example:
        >>> nsf_coupling(2, layers=2, hidden_units=8, bins=4).fast_direction
        'both'

    References:
        Neural Spline Flows, Durkan et al. 2019, https://arxiv.org/abs/1906.04032
    """
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    steps, nets = coupling_stack(
        features, layers=layers, hidden_units=hidden_units_tuple(hidden_units),
        activation=activation, order=order, seed=seed, dtype=dtype,
        params=spline_param_count(bins),
        make_bijector=functools.partial(spline, bins=bins, bound=float(bound)),
        batch_norm=batch_norm, context=width, lu_layers=lu_layers, residual=residual,
        dropout=dropout)
    return Flow(features=features, bijector=chain(steps), base=normal_base(features, dtype),
                nets=nets, context_features=context_features, context_net=embed,
                fast_direction="both", dtype=dtype, name="nsf_coupling")


@register("nsf_autoregressive", paper=_NSF[0], arxiv=_NSF[1], fast_direction="density",
          test_variants=({}, {"bins": 3, "bound": 2.0, "order": "random", "lu_layers": True},
                         {"residual": True, "dropout": 0.2}))
def nsf_autoregressive(features: int, *, layers: int = 4, hidden_units: int | Sequence[int] = 64,
                       activation: str = "relu", bins: int = 8, bound: float = 3.0,
                       order: str = "alternating", batch_norm: bool = False,
                       lu_layers: bool = False, residual: bool = False, dropout: float = 0.0,
                       context_features: int | None = None, context_net: Any = None, seed: int = 0,
                       dtype: str = "float32") -> Flow:
    """RQ-NSF (AR): autoregressive layers (MADE) whose transformer is a rational-quadratic spline.

    Args:
        features: Data dimensions.
        layers: Number of autoregressive layers.
        hidden_units: MADE widths (an int means two hidden layers).
        activation: MADE activation.
        bins: Number of spline bins (K).
        bound: Half-width B of the spline interval (identity outside).
        order: ``"alternating"``, ``"sequential"`` or ``"random"``.
        batch_norm: Batch normalisation after each layer.
        lu_layers: A learned LU-parameterised linear map before every layer and after the last
            (the paper's recipe; starts at random rotations).
        residual: Residual MADEs (ResMADE, the paper's conditioner): one masked
            pre-activation residual block per entry of ``hidden_units`` (one common width).
        dropout: Dropout rate of the MADEs while training (``fit``, or
            ``log_prob(..., training=True)``); sampling never drops units.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; density in one pass per layer, sampling in D.

    Example:
        >>> nsf_autoregressive(3, layers=1, hidden_units=8, bins=4).fast_direction
        'density'

    References:
        Neural Spline Flows, Durkan et al. 2019, https://arxiv.org/abs/1906.04032
    """
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    steps, nets = autoregressive_stack(
        features, layers=layers, hidden_units=hidden_units_tuple(hidden_units),
        activation=activation, order=order, seed=seed, dtype=dtype,
        params=spline_param_count(bins),
        make_bijector=functools.partial(spline, bins=bins, bound=float(bound)),
        batch_norm=batch_norm, context=width, lu_layers=lu_layers, residual=residual,
        dropout=dropout)
    return Flow(features=features, bijector=chain(steps), base=normal_base(features, dtype),
                nets=nets, context_features=context_features, context_net=embed,
                fast_direction="density", dtype=dtype, name="nsf_autoregressive")
