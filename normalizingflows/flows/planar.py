"""Planar flows (Rezende & Mohamed 2015)."""

from __future__ import annotations

import tensorflow_probability as tfp

from ..bijectors import Planar
from ._parts import chain, normal_base
from .core import Flow
from .registry import register

tfb = tfp.bijectors

__all__ = ["planar", "residual_flow"]


def residual_flow(maps: list[tfb.Bijector], *, features: int, invert: bool, dtype: str,
                  fast_map: str, name: str) -> Flow:
    """A flow of residual maps f(z) = z + ... (planar, radial).

    By default the maps run in the normalising direction (data -> base), so ``log_prob`` on data
    is exact and cheap and sampling uses the maps' exact inverses. ``invert=True`` makes the maps
    generative (base -> data), the variational-inference form of the paper.

    Args:
        maps: The residual bijectors, applied to data in list order when ``invert`` is False.
        features: Data dimensions.
        invert: Use the maps in the generative direction.
        dtype: ``"float32"`` or ``"float64"``.
        fast_map: The cost profile of the maps themselves: ``"both"`` when their inverse is
            closed-form, ``"forward"`` when it is a root solve.
        name: Model name.
    """
    normalising = chain(list(reversed(maps)), name="normalising")
    bijector = normalising if invert else tfb.Invert(normalising, name="generative")
    if fast_map == "both":
        fast = "both"
    else:
        fast = "sampling" if invert else "density"
    return Flow(features=features, bijector=bijector, base=normal_base(features, dtype),
                fast_direction=fast, dtype=dtype, name=name)


@register("planar", paper="Variational Inference with Normalizing Flows",
          arxiv="https://arxiv.org/abs/1505.05770", fast_direction="density",
          test_variants=({}, {"nonlinearity": "leaky_relu"}, {"invert": True}))
def planar(features: int, *, layers: int = 16, nonlinearity: str = "tanh", invert: bool = False,
           context_features: int | None = None, seed: int = 0, dtype: str = "float32") -> Flow:
    """A stack of planar maps f(z) = z + u_hat h(w^T z + b), with w^T u_hat >= -1 built in.

    Args:
        features: Data dimensions.
        layers: Number of planar maps.
        nonlinearity: ``"tanh"`` (inverse by a scalar root solve that always converges) or
            ``"leaky_relu"`` (closed-form inverse).
        invert: Use the maps base -> data (variational form) instead of data -> base.
        context_features: Reserved for conditional flows (must be None).
        seed: Seed of the parameters.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; exact in both directions.

    Example:
        >>> planar(2, layers=4).fast_direction
        'density'

    References:
        Variational Inference with Normalizing Flows, Rezende & Mohamed 2015,
        https://arxiv.org/abs/1505.05770
    """
    maps = [Planar.new(features, dtype=dtype, seed=seed * 1000 + i, name=f"planar_{i}",
                       nonlinearity=nonlinearity) for i in range(layers)]
    return residual_flow(maps, features=features, invert=invert, dtype=dtype,
                         fast_map="both" if nonlinearity == "leaky_relu" else "forward",
                         name="planar")
