"""Radial flows (Rezende & Mohamed 2015)."""

from __future__ import annotations

from ..bijectors import Radial
from .core import Flow
from .planar import residual_flow
from .registry import register

__all__ = ["radial"]


@register("radial", paper="Variational Inference with Normalizing Flows",
          arxiv="https://arxiv.org/abs/1505.05770", fast_direction="both",
          test_variants=({}, {"invert": True}))
def radial(features: int, *, layers: int = 16, invert: bool = False,
           context_features: int | None = None, seed: int = 0, dtype: str = "float32") -> Flow:
    """A stack of radial maps f(z) = z + beta (z - z0) / (alpha + ||z - z0||).

    alpha > 0 and beta >= -alpha are built in; the radius is per sample; both directions are
    closed-form (the inverse solves a scalar quadratic in the radius).

    Args:
        features: Data dimensions.
        layers: Number of radial maps.
        invert: Use the maps base -> data (variational form) instead of data -> base.
        context_features: Reserved for conditional flows (must be None).
        seed: Seed of the parameters.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; exact and one pass in both directions.

    Example:
        >>> radial(2, layers=4).fast_direction
        'both'

    References:
        Variational Inference with Normalizing Flows, Rezende & Mohamed 2015,
        https://arxiv.org/abs/1505.05770
    """
    maps = [Radial.new(features, dtype=dtype, seed=seed * 1000 + i, name=f"radial_{i}")
            for i in range(layers)]
    return residual_flow(maps, features=features, invert=invert, dtype=dtype, fast_map="both",
                         name="radial")
