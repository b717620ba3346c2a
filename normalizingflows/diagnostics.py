"""Diagnostics: grid integrals of 2-D densities, base-space normality tests, parameter counts."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["grid_log_prob", "grid_integral", "count_parameters", "NormalityResult",
           "normality_test", "ks_normal", "standard_normal_cdf"]


def grid_log_prob(log_prob: Any, *, bound: float = 4.0, resolution: int = 200,
                  batch_size: int = 20_000, dtype: str = "float32", context: Any = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D ``log_prob`` on a square grid over ``[-bound, bound]^2``.

    Args:
        log_prob: A Flow, a ``tfd.Distribution`` or a callable ``x [N, 2] -> [N]``.
        bound: Half-width of the square.
        resolution: Points per axis.
        batch_size: Points per call.
        dtype: Dtype of the grid points.
        context: For a conditional flow, one context ``[C]`` used at every grid point.

    Returns:
        ``(xs, ys, log_density)`` with ``log_density`` of shape ``(resolution, resolution)``,
        indexed ``[iy, ix]``.
    """
    fn = getattr(log_prob, "log_prob", log_prob)
    xs = np.linspace(-bound, bound, resolution)
    ys = np.linspace(-bound, bound, resolution)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(dtype)
    kwargs = {} if context is None else {"context": np.reshape(np.asarray(context, dtype),
                                                                 (1, -1))}
    out = [np.asarray(fn(tf.constant(points[i:i + batch_size]), **kwargs))
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


def standard_normal_cdf(z: Any) -> np.ndarray:
    """Phi(z) = erfc(-z / sqrt(2)) / 2, elementwise, in float64.

    Example:
        >>> standard_normal_cdf([0.0, 1.96]).round(3).tolist()
        [0.5, 0.975]
    """
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * tf.math.erfc(tf.constant(-z / np.sqrt(2.0), tf.float64)).numpy()


def _kolmogorov_sf(lam: np.ndarray) -> np.ndarray:
    """P(K > lam) for the Kolmogorov distribution: 2 sum_k (-1)^(k-1) exp(-2 k^2 lam^2)."""
    lam = np.asarray(lam, dtype=np.float64)
    k = np.arange(1, 101, dtype=np.float64)
    terms = (-1.0) ** (k - 1) * np.exp(-2.0 * k ** 2 * lam[..., None] ** 2)
    p = 2.0 * terms.sum(axis=-1)
    # The alternating series converges slowly for tiny lam, where the survival function is 1.
    return np.clip(np.where(lam < 0.2, 1.0, p), 0.0, 1.0)


def ks_normal(z: Any) -> tuple[np.ndarray, np.ndarray]:
    """One-sample Kolmogorov-Smirnov test of every column of ``z`` against N(0, 1).

    D = sup_x |F_n(x) - Phi(x)|; the p-value is the asymptotic Kolmogorov tail
    Q(lam) with Stephens' small-sample correction lam = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D.

    Args:
        z: Samples, shape ``[N]`` or ``[N, D]``.

    Returns:
        ``(statistic, p_value)``, each of shape ``[D]`` (``[1]`` for 1-D input).

    Raises:
        ValueError: If ``z`` is empty or holds NaN/Inf.

    Example:
        >>> import numpy as np
        >>> d, p = ks_normal(np.random.default_rng(0).normal(size=(500, 2)))
        >>> bool((d < 0.1).all() and (p > 0.01).all())
        True
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"z must have shape [N] or [N, D] with N > 0, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("z holds NaN or Inf values")
    n = z.shape[0]
    cdf = standard_normal_cdf(np.sort(z, axis=0))
    i = np.arange(1, n + 1, dtype=np.float64)[:, None]
    d_plus = (i / n - cdf).max(axis=0)
    d_minus = (cdf - (i - 1) / n).max(axis=0)
    stat = np.maximum(d_plus, d_minus)
    sqrt_n = np.sqrt(n)
    return stat, _kolmogorov_sf((sqrt_n + 0.12 + 0.11 / sqrt_n) * stat)


@dataclasses.dataclass(frozen=True)
class NormalityResult:
    """How close latent codes are to N(0, I).

    Attributes:
        ks_statistic: Per-dimension Kolmogorov-Smirnov statistic against N(0, 1), shape ``[D]``.
        p_value: Its asymptotic p-value, shape ``[D]``.
        mean: Latent mean vector, shape ``[D]``.
        cov: Latent covariance matrix, shape ``[D, D]``.
        max_cov_error: ``max |cov - I|``.
    """

    ks_statistic: np.ndarray
    p_value: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    max_cov_error: float

    @property
    def min_p_value(self) -> float:
        """The smallest per-dimension p-value (no multiple-testing correction)."""
        return float(self.p_value.min())


def normality_test(flow_or_latent: Any, x: Any = None) -> NormalityResult:
    """Test whether a flow maps data to its N(0, I) base: per-dimension KS tests and moments.

    Args:
        flow_or_latent: A Flow (then ``x`` is required and ``flow.to_base(x)`` is tested), or
            latent codes ``[N, D]`` themselves (then ``x`` must be ``None``).
        x: Data, shape ``[N, D]``, when a Flow is given.

    Returns:
        A :class:`NormalityResult`.

    Raises:
        ValueError: If a Flow comes without ``x``, or ``x`` comes with an array.

    Example:
        >>> import numpy as np
        >>> r = normality_test(np.random.default_rng(1).normal(size=(1000, 2)))
        >>> bool(r.min_p_value > 0.01 and r.max_cov_error < 0.2)
        True
    """
    if hasattr(flow_or_latent, "to_base"):
        if x is None:
            raise ValueError("x (the data to map to the latent space) is required with a flow")
        z = flow_or_latent.to_base(x)
    else:
        if x is not None:
            raise ValueError("x must be None when flow_or_latent is an array of latent codes, "
                             f"got x of type {type(x).__name__}")
        z = flow_or_latent
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    stat, p = ks_normal(z)
    mean = z.mean(axis=0)
    cov = np.atleast_2d(np.cov(z, rowvar=False)) if len(z) > 1 else np.zeros((z.shape[1],) * 2)
    max_err = float(np.abs(cov - np.eye(z.shape[1])).max())
    return NormalityResult(ks_statistic=stat, p_value=p, mean=mean, cov=cov, max_cov_error=max_err)
