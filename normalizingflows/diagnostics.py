"""Diagnostics: grid integrals of 2-D densities, parameter counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["grid_log_prob", "grid_integral", "count_parameters"]


def grid_log_prob(log_prob: Any, *, bound: float = 4.0, resolution: int = 200,
                  batch_size: int = 20_000, dtype: str = "float32"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D ``log_prob`` on a square grid over ``[-bound, bound]^2``.

    Args:
        log_prob: A Flow, a ``tfd.Distribution`` or a callable ``x [N, 2] -> [N]``.
        bound: Half-width of the square.
        resolution: Points per axis.
        batch_size: Points per call.
        dtype: Dtype of the grid points.

    Returns:
        ``(xs, ys, log_density)`` with ``log_density`` of shape ``(resolution, resolution)``,
        indexed ``[iy, ix]``.
    """
    fn = getattr(log_prob, "log_prob", log_prob)
    xs = np.linspace(-bound, bound, resolution)
    ys = np.linspace(-bound, bound, resolution)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(dtype)
    out = [np.asarray(fn(tf.constant(points[i:i + batch_size])))
           for i in range(0, len(points), batch_size)]
    return xs, ys, np.concatenate(out).reshape(resolution, resolution)


def grid_integral(log_prob: Any, *, bound: float = 4.0, resolution: int = 200, **kw: Any) -> float:
    """Riemann sum of ``exp(log_prob)`` over ``[-bound, bound]^2`` (about 1 for a 2-D density
    whose mass lies inside the square).

    Example:
        >>> import tensorflow_probability as tfp
        >>> d = tfp.distributions.MultivariateNormalDiag(loc=[0.0, 0.0])
        >>> round(grid_integral(d, bound=6.0, resolution=120), 3)
        1.0
    """
    xs, ys, logp = grid_log_prob(log_prob, bound=bound, resolution=resolution, **kw)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return float(np.exp(logp.astype(np.float64)).sum() * cell)


def count_parameters(model: Any) -> int:
    """Number of trainable scalars of a model, layer or module."""
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
