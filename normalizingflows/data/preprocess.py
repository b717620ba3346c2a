"""Image preprocessing for flows: dequantisation, the logit transform and bits/dim.

Conventions (RealNVP, Dinh et al. 2017, https://arxiv.org/abs/1605.08803; MAF, Papamakarios et
al. 2017, appendix, https://arxiv.org/abs/1705.07057):

* pixels ``k in {0, ..., 255}`` are dequantised to ``x = (k + u) / 256`` with ``u ~ U[0, 1)``,
  so ``x`` lies in ``[0, 1)`` and the density of the 256-level data is ``p(k) >= p_x(x)/256^D``;
* the logit transform is ``y = logit(lam + (1 - 2 lam) x)`` with ``lam = 1e-6`` for MNIST and
  ``lam = 0.05`` for CIFAR-10/CelebA;
* a flow trained on ``y`` gives ``log p_y(y)`` in nats; the density of the pixels is
  ``log p_x(x) = log p_y(y) + sum_i log|dy_i/dx_i|`` with
  ``dy/dx = (1 - 2 lam) / (s (1 - s))``, ``s = lam + (1 - 2 lam) x``, and

      bits/dim = -(log p_y(y) + sum_i log|dy_i/dx_i| - D log 256) / (D log 2)
               = -(log p_x(x)) / (D log 2) + 8.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "LAMBDA_MNIST",
    "LAMBDA_CIFAR",
    "dequantize",
    "logit_transform",
    "inverse_logit_transform",
    "logit_log_det_jacobian",
    "bits_per_dim",
    "logit_space_log_prob",
    "nats_to_bits_per_dim",
    "bits_per_dim_to_nats",
    "to_flow_input",
]

LAMBDA_MNIST = 1e-6
LAMBDA_CIFAR = 0.05


def _check_lam(lam: float) -> None:
    if not 0.0 <= lam < 0.5:
        raise ValueError(f"lam={lam!r}: expected 0 <= lam < 0.5")


def dequantize(x: np.ndarray, *, seed: int | np.random.Generator = 0, levels: int = 256,
               dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Uniform dequantisation: ``(k + u) / levels`` with ``u ~ U[0, 1)``, values in ``[0, 1)``.

    Args:
        x: Integer pixel levels in ``[0, levels)`` (any shape, any integer or float dtype
            holding integers).
        seed: Seed or ``np.random.Generator`` of the noise.
        levels: Number of quantisation levels.
        dtype: Output float dtype.

    Returns:
        Array of ``x``'s shape.

    Raises:
        ValueError: If values fall outside ``[0, levels)``.

    Example:
        >>> v = dequantize(np.array([0, 255], dtype=np.uint8), seed=0)
        >>> bool(0 <= v[0] < 1 / 256 and 255 / 256 <= v[1] < 1)
        True
    """
    x = np.asarray(x)
    if x.size and (x.min() < 0 or x.max() >= levels):
        raise ValueError(f"x: expected pixel levels in [0, {levels}), got range "
                         f"[{x.min()}, {x.max()}]")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    u = rng.random(x.shape, dtype=np.float64)
    return ((x.astype(np.float64) + u) / levels).astype(dtype)


def logit_transform(x: np.ndarray, lam: float = LAMBDA_MNIST) -> np.ndarray:
    """``y = logit(lam + (1 - 2 lam) x)`` for ``x`` in ``[0, 1]``.

    Example:
        >>> float(logit_transform(np.array(0.5), 0.05))
        0.0
    """
    _check_lam(lam)
    x = np.asarray(x)
    s = lam + (1 - 2 * lam) * x
    return np.log(s) - np.log1p(-s)


def inverse_logit_transform(y: np.ndarray, lam: float = LAMBDA_MNIST) -> np.ndarray:
    """Inverse of :func:`logit_transform`: ``x = (sigmoid(y) - lam) / (1 - 2 lam)``."""
    _check_lam(lam)
    y = np.asarray(y)
    return (1.0 / (1.0 + np.exp(-y)) - lam) / (1 - 2 * lam)


def logit_log_det_jacobian(x: np.ndarray, lam: float = LAMBDA_MNIST, *,
                           event_ndims: int = 1) -> np.ndarray:
    """``sum log|dy/dx|`` of :func:`logit_transform` over the last ``event_ndims`` axes.

    ``log|dy/dx| = log(1 - 2 lam) - log s - log(1 - s)``, ``s = lam + (1 - 2 lam) x``.
    """
    _check_lam(lam)
    x = np.asarray(x, dtype=np.float64)
    s = lam + (1 - 2 * lam) * x
    ld = math.log1p(-2 * lam) - np.log(s) - np.log1p(-s)
    return ld.sum(axis=tuple(range(-event_ndims, 0))) if event_ndims else ld


def _dims(x: np.ndarray, event_ndims: int) -> int:
    return int(np.prod(np.shape(x)[-event_ndims:])) if event_ndims else 1


def bits_per_dim(log_prob_logit: np.ndarray, x: np.ndarray, lam: float = LAMBDA_MNIST, *,
                 levels: int = 256, event_ndims: int = 1) -> np.ndarray:
    """Bits/dim of 256-level pixels from a log density (nats) measured in logit space.

    ``bpd = -(log p_y(y) + sum log|dy/dx| - D log(levels)) / (D log 2)``

    Args:
        log_prob_logit: ``log p_y(y)`` per example (nats).
        x: The dequantised ``[0, 1)`` inputs that were transformed to ``y``.
        lam: The logit ``lambda`` used.
        levels: Quantisation levels (256 for 8-bit images).
        event_ndims: Trailing axes of ``x`` forming one example.

    Returns:
        Bits per dimension per example.
    """
    d = _dims(x, event_ndims)
    log_px = np.asarray(log_prob_logit) + logit_log_det_jacobian(x, lam, event_ndims=event_ndims)
    return -(log_px - d * math.log(levels)) / (d * math.log(2.0))


def logit_space_log_prob(bpd: np.ndarray, x: np.ndarray, lam: float = LAMBDA_MNIST, *,
                         levels: int = 256, event_ndims: int = 1) -> np.ndarray:
    """Inverse of :func:`bits_per_dim`: the logit-space log density (nats) giving ``bpd``."""
    d = _dims(x, event_ndims)
    log_px = -np.asarray(bpd) * d * math.log(2.0) + d * math.log(levels)
    return log_px - logit_log_det_jacobian(x, lam, event_ndims=event_ndims)


def nats_to_bits_per_dim(nll_nats: np.ndarray, dims: int, *, levels: int | None = None
                         ) -> np.ndarray:
    """Negative log-likelihood in nats (of ``[0,1)``-scaled data) to bits/dim.

    With ``levels`` set, adds ``log2(levels)`` (the rescaling from ``[0, 1)`` to pixel
    levels): ``bpd = nll / (D log 2) + log2(levels)``.
    """
    out = np.asarray(nll_nats) / (dims * math.log(2.0))
    return out + math.log2(levels) if levels else out


def bits_per_dim_to_nats(bpd: np.ndarray, dims: int, *, levels: int | None = None) -> np.ndarray:
    """Inverse of :func:`nats_to_bits_per_dim`."""
    b = np.asarray(bpd) - (math.log2(levels) if levels else 0.0)
    return b * dims * math.log(2.0)


def to_flow_input(x: np.ndarray, *, form: str = "logit", lam: float = LAMBDA_MNIST,
                  seed: int = 0, levels: int = 256, dtype: np.dtype | type = np.float32
                  ) -> np.ndarray:
    """Turn integer pixel levels into a flow's input.

    Args:
        x: Pixel levels ``0..levels-1``.
        form: ``"uint8"`` (unchanged), ``"dequantized"`` (``(k + u)/levels``), or ``"logit"``
            (dequantised, then :func:`logit_transform`).
        lam: Logit ``lambda``.
        seed: Seed of the dequantisation noise.
        levels: Quantisation levels.
        dtype: Float output dtype.

    Returns:
        The transformed array.
    """
    if form == "uint8":
        return np.asarray(x)
    if form not in ("dequantized", "logit"):
        raise ValueError(f"form={form!r}: expected 'uint8', 'dequantized' or 'logit'")
    v = dequantize(x, seed=seed, levels=levels, dtype=np.float64)
    if form == "logit":
        v = logit_transform(v, lam)
    return v.astype(dtype)
