"""CelebA aligned faces as a streaming ``tf.data`` pipeline (64x64 or 32x32 RGB).

Layout under ``<data_dir>/celeba/``: ``img_align_celeba/NNNNNN.jpg`` (178 x 218) and the official
``list_eval_partition.txt`` (``NNNNNN.jpg P`` with P = 0 train, 1 validation, 2 test). Each image
is decoded, cropped to the central 148 x 148 square (the RealNVP/Glow convention), resized to
``size x size`` (bilinear with antialiasing, rounded back to ``uint8``), optionally cached, and
the training split is shuffled with a seed; everything is prefetched. Elements are ``uint8``
tensors ``(size, size, 3)``; dequantise and logit-transform with
:mod:`normalizingflows.data.preprocess` conventions (``lam = 0.05`` for CelebA).

With ``source="tfds"`` the prepared TFDS ``celeb_a`` is used instead (only when
``tensorflow_datasets`` is importable; it is never required).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from . import registry
from .files import DataFormatError, MissingDataError
from .registry import Splits, register

__all__ = ["CROP", "read_partition", "preprocess_image", "load_celeba"]

CROP = 148
_PARTS = ("train", "val", "test")


def read_partition(path: str | os.PathLike) -> dict[str, list[str]]:
    """Parse ``list_eval_partition.txt`` into ``{"train": [...], "val": [...], "test": [...]}``."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"CelebA partition file not found: {path}; place the official "
                               "list_eval_partition.txt there")
    out: dict[str, list[str]] = {p: [] for p in _PARTS}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataFormatError(f"{path}:{n}: expected 'NNNNNN.jpg 0|1|2', got {line!r}")
        out[_PARTS[int(fields[1])]].append(fields[0])
    return out


def preprocess_image(image: tf.Tensor, size: int = 64, crop: int = CROP) -> tf.Tensor:
    """Central ``crop x crop`` square, resized to ``size x size``, as ``uint8``."""
    shape = tf.shape(image)
    top = (shape[0] - crop) // 2
    left = (shape[1] - crop) // 2
    x = tf.image.crop_to_bounding_box(image, top, left, crop, crop)
    x = tf.image.resize(tf.cast(x, tf.float32), (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _decode(path: tf.Tensor, size: int) -> tf.Tensor:
    img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    return preprocess_image(img, size)


def _finish(ds: tf.data.Dataset, *, cache: Any, cache_path: Path, shuffle: bool, seed: int,
            buffer: int, batch_size: int | None) -> tf.data.Dataset:
    if cache == "memory" or cache is True:
        ds = ds.cache()
    elif cache == "disk":
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_path))
    elif cache not in (None, False):
        raise ValueError(f"cache={cache!r}: expected 'memory', 'disk' or None")
    if shuffle:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_celeba(*, data_dir: str | os.PathLike | None = None, seed: int = 0, size: int = 64,
                source: str = "folder", cache: Any = "memory", shuffle_buffer: int = 10_000,
                batch_size: int | None = None, as_numpy: bool = False,
                limit: int | None = None, tfds_data_dir: str | None = None) -> Splits:
    """Load CelebA as :class:`Splits` of ``tf.data.Dataset`` (or arrays with ``as_numpy``).

    Args:
        data_dir: Data folder (files in ``<data_dir>/celeba/``).
        seed: Shuffle seed of the training split.
        size: Output side, 64 (default) or 32.
        source: ``"folder"`` or ``"tfds"``.
        cache: ``"memory"``, ``"disk"`` (``celeba/cache_{size}_{split}*`` files) or ``None``.
        shuffle_buffer: Shuffle buffer of the training split.
        batch_size: Batch the datasets (``None``: one image per element).
        as_numpy: Return ``uint8`` arrays ``(N, size, size, 3)`` instead of datasets.
        limit: Use at most this many images per split (quick runs).
        tfds_data_dir: ``data_dir`` passed to TFDS.

    Returns:
        :class:`Splits`; ``info`` has ``sizes``, ``shape``, ``crop`` and the file counts.

    Raises:
        MissingDataError: If the folder, the partition file or listed images are missing.
    """
    if size not in (32, 64):
        raise ValueError(f"size={size!r}: expected 64 or 32")
    root = registry.data_dir(data_dir)
    folder = root / "celeba"
    info: dict[str, Any] = {"name": "celeba", "shape": (size, size, 3), "crop": CROP,
                            "features": size * size * 3, "data_dir": str(root), "dtype": "uint8",
                            "lam": 0.05, "source": source,
                            "preprocessing": [f"central {CROP}x{CROP} crop",
                                              f"resize to {size}x{size} (bilinear, antialias)",
                                              "round to uint8", "cache, shuffle (train), "
                                              "prefetch"]}
    datasets = []
    if source == "tfds":
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:
            raise MissingDataError("source='tfds' needs tensorflow_datasets with celeb_a "
                                   "prepared") from e
        sizes = {}
        for part, split in zip(_PARTS, ("train", "validation", "test"), strict=False):
            try:
                ds = tfds.load("celeb_a", split=split, download=False, data_dir=tfds_data_dir)
            except Exception as e:  # not prepared
                raise MissingDataError(f"TFDS celeb_a is not prepared ({e})") from e
            if limit:
                ds = ds.take(limit)
            sizes[part] = int(ds.cardinality())
            ds = ds.map(lambda ex: preprocess_image(ex["image"], size),
                        num_parallel_calls=tf.data.AUTOTUNE)
            datasets.append(ds)
    elif source == "folder":
        img_dir = folder / "img_align_celeba"
        if not img_dir.is_dir():
            raise MissingDataError(
                f"CelebA: folder {img_dir} not found. Place the aligned images "
                f"(img_align_celeba/NNNNNN.jpg) and {folder / 'list_eval_partition.txt'} there "
                "(official site: mmlab.ie.cuhk.edu.hk/projects/CelebA.html), or use "
                "source='tfds'.")
        parts = read_partition(folder / "list_eval_partition.txt")
        missing = [n for p in _PARTS for n in parts[p] if not (img_dir / n).is_file()]
        if missing:
            raise MissingDataError(f"CelebA: {len(missing)} images listed in "
                                   f"list_eval_partition.txt are missing from {img_dir}, e.g. "
                                   f"{missing[:3]}")
        sizes = {}
        for part in _PARTS:
            names = parts[part][:limit] if limit else parts[part]
            sizes[part] = len(names)
            paths = [str(img_dir / n) for n in names]
            ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
            ds = ds.map(lambda p: _decode(p, size), num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
            datasets.append(ds)
    else:
        raise ValueError(f"source={source!r}: expected 'folder' or 'tfds'")
    info["sizes"] = sizes
    out = []
    for part, ds in zip(_PARTS, datasets, strict=False):
        if as_numpy:
            arrs = [b.numpy() for b in ds.batch(512).prefetch(tf.data.AUTOTUNE)]
            x = np.concatenate(arrs) if arrs else np.zeros((0, size, size, 3), np.uint8)
            if part == "train":
                x = x[np.random.default_rng(seed).permutation(len(x))]
            out.append(x)
        else:
            out.append(_finish(ds, cache=cache, cache_path=folder / f"cache_{size}_{part}",
                               shuffle=part == "train", seed=seed,
                               buffer=max(1, min(shuffle_buffer, sizes[part])),
                               batch_size=batch_size))
    return Splits(out[0], out[1], out[2], info)


@register("celeba")
def _load(*, data_dir=None, seed: int = 0, **options: Any) -> Splits:
    return load_celeba(data_dir=data_dir, seed=seed, **options)
