"""Heatmaps of 2-D densities next to the data they were fitted to."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..diagnostics import grid_log_prob  # noqa: E402

__all__ = ["density_heatmap", "density_vs_data"]


def density_heatmap(log_prob: Any, *, bound: float = 3.0, resolution: int = 200, ax: Any = None,
                    title: str | None = None, cmap: str = "viridis", context: Any = None
                    ) -> Figure:
    """Heatmap of exp(log_prob) on ``[-bound, bound]^2`` (given ``context`` for a conditional
    flow).

    Args:
        log_prob: A Flow, a TFP distribution or a callable ``x [N, 2] -> [N]``.
        bound: Half-width of the square shown.
        resolution: Grid points per axis.
        ax: Axes to draw on (a new figure when ``None``).
        title: Axes title.
        cmap: Colormap.
        context: One context ``[C]`` of a conditional flow, used at every grid point.

    Returns:
        The Figure holding the axes.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    fig = ax.figure
    xs, ys, logp = grid_log_prob(log_prob, bound=bound, resolution=resolution, context=context)
    ax.imshow(np.exp(logp), origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap=cmap,
              aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def density_vs_data(log_prob: Any, data: np.ndarray, *, samples: np.ndarray | None = None,
                    bound: float = 3.0, resolution: int = 200, title: str = "") -> Figure:
    """Ground truth (a 2-D histogram of ``data``) next to the model density (and its samples).

    Args:
        log_prob: A Flow, a TFP distribution or a callable ``x [N, 2] -> [N]``.
        data: Points of the true distribution, shape ``[N, 2]``.
        samples: Optional model samples, shown in a third panel.
        bound: Half-width of the square shown.
        resolution: Grid points (and histogram bins) per axis.
        title: Figure title.

    Returns:
        The Figure.
    """
    panels = 3 if samples is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.2))
    edges = np.linspace(-bound, bound, resolution // 2 + 1)
    hist, _, _ = np.histogram2d(data[:, 0], data[:, 1], bins=[edges, edges], density=True)
    axes[0].imshow(hist.T, origin="lower", extent=(-bound, bound, -bound, bound), cmap="viridis")
    axes[0].set_title("data (ground truth)")
    density_heatmap(log_prob, bound=bound, resolution=resolution, ax=axes[1], title="model density")
    if samples is not None:
        axes[2].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5)
        axes[2].set_xlim(-bound, bound)
        axes[2].set_ylim(-bound, bound)
        axes[2].set_aspect("equal")
        axes[2].set_title("model samples")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
