"""Heatmaps of unnormalised target densities exp(-U) of 2-D energies."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..diagnostics import grid_log_prob  # noqa: E402

__all__ = ["energy_heatmap"]


def energy_heatmap(energy: Any, *, bound: float | None = None, resolution: int = 200,
                   title: str | None = None, cmap: str = "viridis") -> Figure:
    """Heatmap of exp(-U(x)) on ``[-bound, bound]^2`` (scaled so its maximum is 1).

    Args:
        energy: An Energy (``nf.data.energy.get(name)``: ``.energy(x)``, ``.bound``) or a callable
            ``U: x [N, 2] -> [N]``.
        bound: Half-width of the square; defaults to ``energy.bound``, else 4.
        resolution: Grid points per axis.
        title: Axes title; defaults to the energy's name.
        cmap: Colormap.

    Returns:
        The Figure.

    Example:
        >>> import normalizingflows as nf
        >>> fig = energy_heatmap(nf.data.energy.get("u1"), resolution=20)
        >>> fig.axes[0].get_title()
        'exp(-U), u1'
    """
    u = getattr(energy, "energy", energy)
    if bound is None:
        bound = float(getattr(energy, "bound", 4.0))
    xs, ys, neg_u = grid_log_prob(lambda x: -u(tf.cast(x, tf.float64)), bound=bound,
                                  resolution=resolution, dtype="float64")
    neg_u = np.where(np.isfinite(neg_u), neg_u, -np.inf)
    dens = np.exp(neg_u - neg_u.max())
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.imshow(dens, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap=cmap,
              aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    name = getattr(energy, "name", None)
    ax.set_title(title if title is not None else ("exp(-U)" + (f", {name}" if name else "")))
    fig.tight_layout()
    return fig
