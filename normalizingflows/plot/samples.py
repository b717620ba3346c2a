"""Scatter plots of samples and training-loss curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["samples_scatter", "loss_curves"]


def _points(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must have shape [N, D] with D >= 2, got shape {arr.shape}")
    return arr[:, :2]


def samples_scatter(samples: Any, *, data: Any = None, bound: float | None = None,
                    title: str | None = None) -> Figure:
    """Scatter of model samples (first two coordinates), optionally over the data in grey.

    Args:
        samples: Model samples, shape ``[N, D]`` with ``D >= 2`` (array or tensor).
        data: Optional data points ``[M, D]``, drawn underneath in grey.
        bound: Half-width of the square shown; ``None`` lets matplotlib choose.
        title: Axes title.

    Returns:
        The Figure.

    Raises:
        ValueError: If ``samples`` or ``data`` is not ``[N, D]`` with ``D >= 2``.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(100, 2))
        >>> fig = samples_scatter(x, data=x + 1.0, bound=4.0, title="samples")
        >>> len(fig.axes)
        1
    """
    s = _points(samples, "samples")
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    if data is not None:
        d = _points(data, "data")
        ax.scatter(d[:, 0], d[:, 1], s=1, c="0.6", alpha=0.5, label="data")
    ax.scatter(s[:, 0], s[:, 1], s=1, c="C0", alpha=0.6, label="samples")
    if bound is not None:
        ax.set_xlim(-bound, bound)
        ax.set_ylim(-bound, bound)
    ax.set_aspect("equal")
    if data is not None:
        ax.legend(loc="upper right", markerscale=8, fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def loss_curves(history: Any) -> Figure:
    """Training curves: every series of a Keras ``History`` (or of a dict of lists) per epoch.

    Series whose name contains ``"loss"`` share the left panel; any other metrics share a second
    panel.

    Args:
        history: A ``tf_keras.callbacks.History`` (its ``.history`` is used) or a mapping such as
            ``{"loss": [...], "val_loss": [...]}``.

    Returns:
        The Figure.

    Raises:
        ValueError: If there is no non-empty series.

    Example:
        >>> fig = loss_curves({"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9]})
        >>> [line.get_label() for line in fig.axes[0].lines]
        ['loss', 'val_loss']
    """
    series = getattr(history, "history", history)
    if not isinstance(series, Mapping):
        raise ValueError("history must be a Keras History or a mapping of lists, "
                         f"got {type(history).__name__}")
    series = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in series.items()
              if np.size(v) > 0}
    if not series:
        raise ValueError("history holds no non-empty series")
    losses = {k: v for k, v in series.items() if "loss" in k}
    others = {k: v for k, v in series.items() if "loss" not in k}
    groups = [g for g in (losses, others) if g]
    fig = Figure(figsize=(5 * len(groups), 3.5))
    for i, group in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), i + 1)
        for name, values in group.items():
            ax.plot(np.arange(1, len(values) + 1), values, label=name,
                    marker="o" if len(values) < 30 else None, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if group is losses else "metric")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
