"""Uncertainty metrics of classifiers: expected calibration error and predictive entropy."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["expected_calibration_error", "predictive_entropy", "accuracy"]


def _probs(probs: Any) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must have shape [N >= 1, classes]; got {list(p.shape)}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be finite and non-negative")
    return p


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be {n} integer class labels; got shape {list(y.shape)} "
                         f"and dtype {y.dtype}")
    return y


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of rows whose most probable class is the label.

    Example:
        >>> accuracy([[0.9, 0.1], [0.2, 0.8]], [0, 0])
        0.5
    """
    p = _probs(probs)
    return float(np.mean(p.argmax(axis=1) == _labels(labels, len(p))))


def expected_calibration_error(probs: Any, labels: Any, bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ECE = sum_b (|B_b| / N) |accuracy(B_b) - confidence(B_b)|, where the confidence of a row is
    its largest probability and bin ``b`` holds confidences in ``((b - 1) / bins, b / bins]``.

    Args:
        probs: Predicted probabilities ``[N, classes]``.
        labels: Integer labels ``[N]``.
        bins: Number of bins.

    Returns:
        The ECE in ``[0, 1]``.

    Raises:
        ValueError: On mismatched shapes or ``bins < 1``.

    Example:
        >>> expected_calibration_error([[0.9, 0.1], [0.9, 0.1]], [0, 1], bins=15)
        0.4
    """
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1; got {bins!r}")
    p = _probs(probs)
    y = _labels(labels, len(p))
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, int(bins) - 1)
    ece = 0.0
    for b in range(int(bins)):
        mask = index == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return round(float(ece), 12)


def predictive_entropy(probs: Any) -> np.ndarray:
    """Entropy (nats) of each row of predicted probabilities: -sum_c p_c log p_c.

    Example:
        >>> predictive_entropy([[0.5, 0.5], [1.0, 0.0]]).round(4).tolist()
        [0.6931, 0.0]
    """
    p = _probs(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return 0.0 - terms.sum(axis=1)
