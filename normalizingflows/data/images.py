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

Those rows carry one draw of dequantisation noise, fixed by the seed. For long training on few
images, :func:`augmented_dataset` feeds a flow from the integer pixel levels instead: fresh
noise every epoch, and optionally random shifts and horizontal flips.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import tensorflow as tf

from . import registry
from .pipeline import as_dataset
from .preprocess import bits_per_dim as _logit_bits_per_dim
from .preprocess import inverse_logit_transform, to_flow_input
from .registry import Splits

__all__ = ["IMAGE_SETS", "load_image_rows", "augmented_dataset", "bits_per_dim",
           "bits_per_dim_summary", "to_pixels"]

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


def augmented_dataset(pixels: Any, info: str | dict, *, batch_size: int, seed: int = 0,
                      context: Any = None, max_shift: int = 0, flip: bool = False
                      ) -> tf.data.Dataset:
    """Training batches of flow-ready rows drawn afresh every epoch from integer pixel levels.

    Each epoch reshuffles the images and, per image, (1) shifts it by a random whole number of
    pixels in ``[-max_shift, max_shift]`` along each axis, filling with level 0 (MNIST's
    background), (2) mirrors it left-right with probability 1/2 if ``flip``, and (3) dequantises
    it with new uniform noise, ``(k + u) / levels``, followed by the dataset's logit transform.
    The rows of :func:`load_image_rows` keep one draw of noise for good, which a flow trained
    for many epochs on a few thousand images can learn; here every epoch sees new rows.

    Args:
        pixels: Integer levels ``[N, H * W * C]`` (or ``[N, H, W, C]``), e.g.
            ``nf.data.load("mnist", form="uint8").train``.
        info: A key of :data:`IMAGE_SETS` or a dict with ``image_shape``, ``lam`` (``None``:
            no logit) and ``levels`` (as ``load_image_rows(...).info``).
        batch_size: Images per batch.
        seed: Seed of the shuffles, shifts, flips and noise (the sequence of epochs repeats
            for a seed).
        context: Optional ``[N, K]`` rows (e.g. one-hot labels); batches are then
            ``(x, context)`` pairs, which a conditional flow's ``fit`` takes.
        max_shift: Largest shift in pixels (0: none).
        flip: Mirror half the images left-right (faces; not digits).

    Returns:
        A ``tf.data.Dataset`` of float32 ``[B, H * W * C]`` rows (or ``(rows, context)``).

    Raises:
        ValueError: On an unknown dataset name, a negative ``max_shift``, or a shift not
            smaller than the image.

    Example:
        >>> ds = augmented_dataset(np.zeros((3, 4), np.uint8), {"image_shape": (2, 2, 1),
        ...                        "lam": None, "levels": 2}, batch_size=3)
        >>> x = next(iter(ds)).numpy()
        >>> bool(x.shape == (3, 4) and (0 <= x).all() and (x < 0.5).all())
        True
    """
    if isinstance(info, str):
        if info not in IMAGE_SETS:
            raise ValueError(f"unknown image dataset {info!r}; expected one of "
                             f"{sorted(IMAGE_SETS)}")
        _, _, shape, lam, levels = IMAGE_SETS[info]
    else:
        shape, lam, levels = tuple(info["image_shape"]), info["lam"], int(info["levels"])
    height, width, _ = shape
    if not 0 <= max_shift < min(height, width):
        raise ValueError(f"max_shift={max_shift!r}: expected 0 <= max_shift < {min(height, width)}")
    pixels = np.asarray(pixels).reshape((-1, int(np.prod(shape))))
    data = pixels if context is None else (pixels, np.asarray(context, np.float32))
    batches = as_dataset(data, batch_size, shuffle=True, seed=seed)
    keys = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)

    def rows(batch: Any, key: tf.Tensor) -> Any:
        x, c = (batch, None) if context is None else batch
        shift_seed, flip_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.stack([key, tf.constant(seed, tf.int64)]), 3))
        x = tf.reshape(tf.cast(x, tf.float64), (-1,) + shape)
        n = tf.shape(x)[0]
        if max_shift:
            x = _shift(x, max_shift, n, shift_seed)
        if flip:
            mirror = tf.random.stateless_uniform([n, 1, 1, 1], flip_seed) < 0.5
            x = tf.where(mirror, tf.reverse(x, axis=[2]), x)
        v = (x + tf.random.stateless_uniform(tf.shape(x), noise_seed, dtype=tf.float64)) / levels
        if lam is not None:
            # logit(s) with s = lam + (1 - 2 lam) v, and 1 - s written out so that pixels near 1
            # keep their precision.
            v = tf.math.log(lam + (1 - 2 * lam) * v) - tf.math.log(lam + (1 - 2 * lam) * (1 - v))
        v = tf.cast(tf.reshape(v, (n, -1)), tf.float32)
        return v if context is None else (v, c)

    ds = tf.data.Dataset.zip((batches, keys)).map(rows, num_parallel_calls=tf.data.AUTOTUNE,
                                                  deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _shift(x: tf.Tensor, m: int, n: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Each image of ``x [n, H, W, C]`` shifted by its own random offsets in ``[-m, m]``, with
    zeros coming in from the border."""
    height, width = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [m, m], [m, m], [0, 0]])
    offsets = tf.random.stateless_uniform([n, 2], seed, 0, 2 * m + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None]
    cols = offsets[:, 1:] + tf.range(width)[None]
    x = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


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
