"""Grids of images (samples of image flows, data next to them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["image_grid"]


def image_grid(panels: Sequence[Any], *, titles: Sequence[str] | None = None, columns: int = 8,
               row_labels: Sequence[Sequence[str]] | None = None, scale: float = 1.0) -> Figure:
    """One grid of images per panel, side by side (e.g. samples next to real data).

    Args:
        panels: Each a batch of images ``[N, H, W]``, ``[N, H, W, 1]`` or ``[N, H, W, 3]``
            with values in ``[0, 1]`` (clipped); ``N`` is filled row by row, ``columns`` per row.
        titles: One title per panel.
        columns: Images per row.
        row_labels: Optional label of each row, per panel (e.g. the class of a conditional row).
        scale: Inches per image.

    Returns:
        A matplotlib Figure.

    Raises:
        ValueError: If a panel is not a batch of images.

    Example:
        >>> fig = image_grid([np.zeros((16, 4, 4)), np.ones((16, 4, 4, 3))], titles=["a", "b"])
        >>> len(fig.axes)
        2
    """
    grids = []
    for k, batch in enumerate(panels):
        arr = np.asarray(batch, dtype=np.float64)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3) or len(arr) == 0:
            raise ValueError(f"panel {k} must have shape [N, H, W], [N, H, W, 1] or "
                             f"[N, H, W, 3]; got {arr.shape}")
        n, h, w = arr.shape[:3]
        rows = -(-n // columns)
        pad = rows * columns - n
        if pad:
            arr = np.concatenate([arr, np.ones((pad,) + arr.shape[1:])])
        tiles = arr.reshape((rows, columns) + arr.shape[1:])
        # One pixel of white between images.
        grid = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1) + arr.shape[3:])
        for r in range(rows):
            for c in range(columns):
                grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[r, c]
        grids.append((np.clip(grid, 0, 1), rows, h))
    fig = Figure(figsize=(scale * columns * len(grids) + 0.5, scale * max(g[1] for g in grids)
                          + 0.6))
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    for k, (ax, (grid, rows, h)) in enumerate(zip(axes, grids, strict=True)):
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        if row_labels is not None and row_labels[k]:
            ax.set_yticks([r * (h + 1) + h / 2 for r in range(rows)][:len(row_labels[k])])
            ax.set_yticklabels(row_labels[k])
        else:
            ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    return fig
