"""Image datasets as flow inputs: flattened, dequantised (and logit-transformed) rows.

``load_image_rows("mnist" | "celeba64" | "celeba32" | "shapes")`` returns :class:`Splits` whose
arrays are ``[N, H * W * C]`` float32 rows ready for an image flow built with
``image_shape=info["image_shape"]``; :func:`bits_per_dim` turns a flow's ``log_prob`` on those
rows into bits per dimension of the quantised pixels, and :func:`to_pixels` turns rows (data or
samples) back into ``[N, H, W, C]`` images in ``[0, 1]``.

* ``mnist``: 256 levels, dequantised, logit with ``lam = 1e-6`` (MAF paper);
* ``celeba64`` / ``celeba32``: 256 levels, central 148x148 crop resized, dequantised, logit with
  ``lam = 0.05`` (RealNVP);
* ``shapes``: 2 levels (binary 20x20 shapes), dequantised to ``[0, 1)``, no logit.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from . import registry
from .preprocess import bits_per_dim as _logit_bits_per_dim
from .preprocess import inverse_logit_transform, to_flow_input
from .registry import Splits

__all__ = ["IMAGE_SETS", "load_image_rows", "bits_per_dim", "bits_per_dim_summary", "to_pixels"]

# name -> (registered loader, its options, image shape, logit lambda or None, levels)
IMAGE_SETS: dict[str, tuple[str, dict[str, Any], tuple[int, int, int], float | None, int]] = {
    "mnist": ("mnist", {"form": "uint8", "flatten": True}, (28, 28, 1), 1e-6, 256),
    "celeba64": ("celeba", {"size": 64, "as_numpy": True}, (64, 64, 3), 0.05, 256),
    "celeba32": ("celeba", {"size": 32, "as_numpy": True}, (32, 32, 3), 0.05, 256),
    "shapes": ("shapes", {"form": "uint8", "flatten": True}, (20, 20, 1), None, 2),
}


def load_image_rows(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
                    limit: int | None = None) -> Splits:
    """Load an image dataset as flow-ready rows.

    Args:
        name: A key of :data:`IMAGE_SETS`.
        data_dir: Data folder (as for :func:`nf.data.load`).
        seed: Seed of the split, the shuffles and the dequantisation noise.
        limit: Keep at most this many images per split (quick runs).

    Returns:
        ``Splits(train, val, test, info)`` of float32 ``[N, H * W * C]`` rows (with the labels
        where the dataset has them); ``info`` adds ``image_shape``, ``lam`` (``None``: no logit),
        ``levels`` and ``flow_input``.

    Raises:
        ValueError: If ``name`` is not an image dataset.
    """
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown image dataset {name!r}; expected one of {sorted(IMAGE_SETS)}")
    loader, options, shape, lam, levels = IMAGE_SETS[name]
    splits = registry.load(loader, data_dir=data_dir, seed=seed, **options)
    rows = []
    for i, part in enumerate(splits[:3]):
        x = np.asarray(part)[:limit].reshape(-1, int(np.prod(shape)))
        form = "logit" if lam is not None else "dequantized"
        rows.append(to_flow_input(x, form=form, lam=lam if lam is not None else 0.0,
                                  seed=seed + 101 * i, levels=levels))
    info = dict(splits.info)
    info.update({"name": name, "image_shape": shape, "lam": lam, "levels": levels,
                 "features": int(np.prod(shape)),
                 "sizes": {k: len(r) for k, r in zip(("train", "val", "test"), rows,
                                                      strict=True)},
                 "flow_input": (f"dequantised (k + u)/{levels}, logit with lam={lam}"
                                if lam is not None else f"dequantised (k + u)/{levels}")})
    labels = getattr(splits, "labels", None)
    if labels is not None:
        labels = tuple(np.asarray(y)[:limit] for y in labels)
    return Splits(rows[0], rows[1], rows[2], info, labels=labels)


def bits_per_dim(log_prob: Any, rows: np.ndarray, info: dict) -> np.ndarray:
    """Bits/dim of the quantised pixels from a flow's ``log_prob`` on ``rows`` (one per row).

    With a logit transform the log-Jacobian of the logit is added back
    (:func:`nf.data.preprocess.bits_per_dim`); without one the rows are ``(k + u)/levels`` and
    ``bpd = -log_prob / (D log 2) + log2(levels)``.
    """
    lp = np.asarray(log_prob, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    levels = int(info["levels"])
    if info.get("lam") is None:
        return -lp / (rows.shape[-1] * math.log(2.0)) + math.log2(levels)
    x = inverse_logit_transform(rows, info["lam"])
    return _logit_bits_per_dim(lp, x, info["lam"], levels=levels)


def bits_per_dim_summary(bpd: Any, prefix: str = "bits_per_dim") -> dict[str, Any]:
    """Mean and standard error of per-image bits/dim, with the median and the worst image.

    A flow fitted to few images can put one unusual test image at an astronomically low density
    (ink where no training image has any), and then that one image is the mean; the median and
    the worst image (its index and value) show when that happened.

    Example:
        >>> bits_per_dim_summary([1.0, 1.2, 9.0])["bits_per_dim_worst_index"]
        2
    """
    b = np.asarray(bpd, dtype=np.float64)
    worst = int(np.argmax(b))
    return {prefix: float(b.mean()), f"{prefix}_se": float(b.std() / math.sqrt(len(b))),
            f"{prefix}_median": float(np.median(b)), f"{prefix}_worst": float(b[worst]),
            f"{prefix}_worst_index": worst}


def to_pixels(rows: Any, info: dict) -> np.ndarray:
    """Rows (data or samples) as ``[N, H, W, C]`` images in ``[0, 1]``."""
    rows = np.asarray(rows, dtype=np.float64)
    if info.get("lam") is not None:
        rows = inverse_logit_transform(np.clip(rows, -30, 30), info["lam"])
    return np.clip(rows, 0, 1).reshape((-1,) + tuple(info["image_shape"]))
