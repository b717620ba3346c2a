"""Layer-by-layer views of a flow: base samples carried through every step of its bijector."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from matplotlib.animation import PillowWriter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..bijectors._common import is_chain, is_invert  # noqa: E402

tfb = tfp.bijectors


__all__ = ["bijector_steps", "layer_outputs", "layer_by_layer", "layer_by_layer_gif"]


def bijector_steps(bijector: tfb.Bijector) -> list[tfb.Bijector]:
    """The ordered steps of a bijector in its forward (base -> data) direction.

    A ``tfb.Chain`` applies its list last-first, so its steps are its (flattened) members in
    reverse; ``tfb.Invert(b)`` runs the inverses of ``b``'s steps in reverse order, each wrapped
    in ``tfb.Invert`` (a doubly inverted step is unwrapped). Any other bijector is one step.

    Args:
        bijector: The bijector, e.g. ``flow.bijector``.

    Returns:
        A list of bijectors whose forwards, applied first to last, equal ``bijector.forward``.

    Example:
        >>> import tensorflow_probability as tfp
        >>> tfb = tfp.bijectors
        >>> steps = bijector_steps(tfb.Invert(tfb.Chain([tfb.Exp(), tfb.Shift(1.0)])))
        >>> all(isinstance(s, tfb.Invert) for s in steps)
        True
        >>> [s.bijector.name for s in steps]
        ['exp', 'shift']
    """
    if is_chain(bijector):
        return [s for sub in reversed(bijector.bijectors) for s in bijector_steps(sub)]
    if is_invert(bijector):
        inner = bijector_steps(bijector.bijector)
        return [s.bijector if is_invert(s) else tfb.Invert(s)
                for s in reversed(inner)]
    return [bijector]


def _step_kwargs(step: tfb.Bijector) -> dict[str, Any]:
    """``training=False`` for steps (batch norm) that take it: evaluation mode."""
    inverted = is_invert(step)
    leaf = step.bijector if inverted else step
    method = getattr(leaf, "_inverse" if inverted else "_forward", None)
    try:
        takes = method is not None and "training" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes = False
    return {"training": False} if takes else {}


def _step_label(step: tfb.Bijector) -> str:
    if is_invert(step):
        return f"inv {step.bijector.name}"
    return step.name


def layer_outputs(flow: Any, n: int = 2000, *, seed: int = 0
                  ) -> tuple[list[str], list[np.ndarray]]:
    """Base samples and their images after every step of ``flow.bijector``.

    Args:
        flow: A Flow (``.base`` and ``.bijector``).
        n: Number of base samples.
        seed: Seed of the (stateless) base draw.

    Returns:
        ``(labels, points)``: ``len(steps) + 1`` labels (``"base"`` first) and arrays ``[n, D]``;
        ``points[-1]`` equals ``flow.bijector.forward(points[0])``.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=4)
        >>> labels, points = layer_outputs(flow, 50)
        >>> len(labels), points[-1].shape
        (3, (50, 2))
    """
    x = flow.base.sample(int(n), seed=tf.constant([int(seed), 0], tf.int32))
    labels, points = ["base"], [np.asarray(x)]
    for i, step in enumerate(bijector_steps(flow.bijector)):
        x = step.forward(tf.identity(x), **_step_kwargs(step))
        labels.append(f"{i + 1}: {_step_label(step)}")
        points.append(np.asarray(x))
    return labels, points


def _limits(points: list[np.ndarray], bound: float | None) -> float:
    if bound is not None:
        return float(bound)
    finite = np.concatenate([np.abs(p[:, :2][np.isfinite(p[:, :2]).all(axis=1)]).ravel()
                             for p in points])
    return float(np.quantile(finite, 0.995)) * 1.05 if finite.size else 1.0


def _base_colors(base: np.ndarray) -> np.ndarray | None:
    """Angle of each base point: a colour that follows the point through every panel."""
    return np.arctan2(base[:, 1], base[:, 0]) if base.shape[1] > 1 else None


def _draw(ax: Any, pts: np.ndarray, label: str, lim: float, colors: np.ndarray | None) -> None:
    y = pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts))
    if colors is None:
        ax.scatter(pts[:, 0], y, s=1, alpha=0.6)
    else:
        ax.scatter(pts[:, 0], y, s=1, c=colors, cmap="hsv", alpha=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(label, fontsize="small")


def layer_by_layer(flow: Any, n: int = 2000, *, seed: int = 0, bound: float | None = None,
                   columns: int = 5) -> Figure:
    """One scatter panel per stage: the base samples, then their image after each step.

    Points are coloured by their angle in the base sample, so one can follow them. For
    ``D > 2`` the first two coordinates are shown.

    Args:
        flow: A Flow (``.base`` and ``.bijector``).
        n: Number of base samples.
        seed: Seed of the base draw.
        bound: Half-width of every panel; ``None`` fits the 99.5% quantile of all stages.
        columns: Panels per row.

    Returns:
        The Figure, with ``len(bijector_steps(flow.bijector)) + 1`` axes in order.

    Example:
        >>> import normalizingflows as nf
        >>> fig = layer_by_layer(nf.flows.build("maf", 2, layers=2, hidden_units=4), 50)
        >>> len(fig.axes)
        3
    """
    labels, points = layer_outputs(flow, n, seed=seed)
    colors = _base_colors(points[0])
    lim = _limits(points, bound)
    cols = min(columns, len(points))
    rows = -(-len(points) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.7 * rows))
    for i, (label, pts) in enumerate(zip(labels, points, strict=True)):
        _draw(fig.add_subplot(rows, cols, i + 1), pts, label, lim, colors)
    fig.tight_layout()
    return fig


def layer_by_layer_gif(flow: Any, path: str | os.PathLike, n: int = 2000, *, seed: int = 0,
                       fps: int = 2, bound: float | None = None) -> Path:
    """Write an animated GIF with one frame per stage (the base, then each step of the flow).

    The file is written to a temporary name in the same folder and renamed, so nothing
    half-written is left behind.

    Args:
        flow: A Flow (``.base`` and ``.bijector``).
        path: Output file (``.gif``); its folder is created.
        n: Number of base samples.
        seed: Seed of the base draw.
        fps: Frames per second.
        bound: Half-width of the frame; ``None`` fits all stages.

    Returns:
        The path written.

    Example:
        >>> import tempfile, os
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=4)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     out = layer_by_layer_gif(flow, os.path.join(d, "flow.gif"), 50)
        ...     out.stat().st_size > 0
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels, points = layer_outputs(flow, n, seed=seed)
    lim = _limits(points, bound)
    colors = _base_colors(points[0])
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    fd, tmp = tempfile.mkstemp(suffix=".gif", prefix=f".{path.stem}-", dir=path.parent)
    os.close(fd)
    try:
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, tmp, dpi=80):
            for label, pts in zip(labels, points, strict=True):
                ax.clear()
                _draw(ax, pts, label, lim, colors)
                writer.grab_frame()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
