"""BSDS300 8x8 natural-image patches (63 dims), the MAF/RNADE benchmark.

Two sources under ``<data_dir>/BSDS300/`` (``source="auto"`` prefers the first):

* ``BSDS300.hdf5`` (MAF archive): datasets ``train`` (1,000,000 x 63), ``validation``
  (50,000 x 63) and ``test`` (250,000 x 63), read with h5py.
* the raw images of ``BSDS300-images.tgz``: ``images/train/*.jpg``, ``images/test/*.jpg`` and
  ``iids_train.txt``/``iids_test.txt``. Patches are made here by the recipe of Uria et al.
  (RNADE, https://arxiv.org/abs/1306.0186) used by MAF: the image is made monochrome (ITU-R
  601 luma, rounded to 0..255); a random image and a random 8x8 window are drawn for each
  patch; the pixels are dequantised and scaled to [0, 1] as ``(k + u)/256``; the patch mean is
  subtracted; the bottom-right pixel (linearly dependent on the others) is dropped. Train and
  validation come from the training images (1,000,000 + 50,000), test from the test images
  (250,000). The result is seeded and cached atomically in ``BSDS300/patches_*.npz``. Patches
  follow the distribution of the MAF file but are not bit-identical to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .download import fetch_maf
from .files import DataFormatError, MissingDataError, save_npz_atomic
from .registry import Splits, register

__all__ = ["read_gray_images", "extract_patches", "load_bsds300"]


def _iids(folder: Path, part: str) -> list[str]:
    listing = folder / f"iids_{part}.txt"
    img_dir = folder / "images" / part
    if listing.is_file():
        ids = [t for t in listing.read_text().split() if t.strip()]
    elif img_dir.is_dir():
        ids = sorted(p.stem for p in img_dir.glob("*.jpg"))
    else:
        ids = []
    missing = [i for i in ids if not (img_dir / f"{i}.jpg").is_file()]
    if not ids or missing:
        shown = "\n".join(f"  {img_dir / (i + '.jpg')}" for i in missing[:5])
        raise MissingDataError(
            f"BSDS300: {part} images missing in {img_dir}"
            + (f" ({len(missing)} of {len(ids)} listed in {listing.name}):\n{shown}" if missing
               else "") +
            "\nPlace BSDS300-images.tgz's images/{train,test}/*.jpg and iids_{train,test}.txt "
            f"under {folder}, or BSDS300.hdf5 (download=True fetches the MAF archive).")
    return ids


def read_gray_images(paths: list[Path]) -> list[np.ndarray]:
    """Decode JPEGs to monochrome ``uint8`` arrays (luma 0.299 R + 0.587 G + 0.114 B, rounded)."""
    import tensorflow as tf

    out = []
    for p in paths:
        try:
            rgb = tf.io.decode_jpeg(tf.io.read_file(str(p)), channels=3).numpy()
        except Exception as e:  # tf raises InvalidArgumentError for corrupt files
            raise DataFormatError(f"{p} is not a decodable JPEG ({e}); replace it") from e
        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        out.append(np.clip(np.rint(luma), 0, 255).astype(np.uint8))
    return out


def extract_patches(images: list[np.ndarray], n: int, rng: np.random.Generator,
                    size: int = 8, dtype: Any = np.float32) -> np.ndarray:
    """Random ``size x size`` patches, dequantised to [0, 1], mean removed, last pixel dropped.

    Each patch picks an image uniformly at random, then a window uniformly among the valid
    positions of that image.

    Args:
        images: Monochrome ``uint8`` images.
        n: Number of patches.
        rng: Generator (seeded by the caller).
        size: Patch side.
        dtype: Output dtype.

    Returns:
        ``(n, size * size - 1)`` array; each row's ``size * size`` pixels sum to 0 before the
        last one is dropped.
    """
    d = size * size
    out = np.empty((n, d - 1), dtype=dtype)
    which = rng.integers(0, len(images), size=n)
    for i, img in enumerate(images):
        rows = np.flatnonzero(which == i)
        if rows.size == 0:
            continue
        h, w = img.shape
        r = rng.integers(0, h - size + 1, size=rows.size)
        c = rng.integers(0, w - size + 1, size=rows.size)
        win = np.lib.stride_tricks.sliding_window_view(img, (size, size))
        p = win[r, c].reshape(rows.size, d).astype(np.float64)
        p = (p + rng.random(p.shape)) / 256.0
        p -= p.mean(axis=1, keepdims=True)
        out[rows] = p[:, :-1]
    return out


def _from_hdf5(path: Path) -> tuple[list[np.ndarray], dict]:
    try:
        import h5py
    except ImportError as e:
        raise MissingDataError(f"reading {path} needs h5py (pip install h5py)") from e
    try:
        with h5py.File(path, "r") as f:
            arrays = [np.asarray(f[k]) for k in ("train", "validation", "test")]
    except (OSError, KeyError) as e:
        raise DataFormatError(f"{path} is not a BSDS300 HDF5 with train/validation/test "
                              f"({e}); delete it and fetch it again") from e
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != 63:
            raise DataFormatError(f"{path}: dataset shape {a.shape}; expected (N, 63)")
    return arrays, {"source": "hdf5", "files": [str(path)],
                    "preprocessing": "as stored in the MAF archive"}


def load_bsds300(*, data_dir: str | os.PathLike | None = None, seed: int = 0,
                 source: str = "auto", n_train: int = 1_000_000, n_val: int = 50_000,
                 n_test: int = 250_000, cache: bool = True, download: bool = False,
                 dtype: Any = np.float32, progress: bool = True) -> Splits:
    """Load BSDS300 patches as :class:`Splits` of ``(N, 63)`` arrays.

    Args:
        data_dir: Data folder (files in ``<data_dir>/BSDS300/``).
        seed: Seed of patch positions and dequantisation noise (images source).
        source: ``"auto"``, ``"hdf5"`` or ``"images"``.
        n_train: Training patches (images source; fewer for quick use).
        n_val: Validation patches.
        n_test: Test patches.
        cache: Read/write ``BSDS300/patches_s{seed}_{n_train}_{n_val}_{n_test}.npz``.
        download: Fetch ``BSDS300.hdf5`` from the MAF archive if nothing is present.
        dtype: Output dtype.
        progress: Progress bar while downloading.

    Returns:
        :class:`Splits`; ``info`` has sizes, source and the recipe.

    Raises:
        MissingDataError: If neither the HDF5 nor the images are present.
    """
    root = registry.data_dir(data_dir)
    folder = root / "BSDS300"
    hdf5 = folder / "BSDS300.hdf5"
    if source not in ("auto", "hdf5", "images"):
        raise ValueError(f"source={source!r}: expected 'auto', 'hdf5' or 'images'")
    for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"{k}={v!r}: expected a non-negative int")
    have_images = (folder / "images" / "train").is_dir()
    if source == "auto":
        if hdf5.is_file():
            source = "hdf5"
        elif have_images:
            source = "images"
        elif download:
            fetch_maf(root, ["bsds300"], progress=progress)
            source = "hdf5"
        else:
            source = "images"
    elif source == "hdf5" and not hdf5.is_file() and download:
        fetch_maf(root, ["bsds300"], progress=progress)
    if source == "hdf5":
        if not hdf5.is_file():
            raise MissingDataError(f"BSDS300: {hdf5} not found; place it (MAF archive "
                                   "data/BSDS300/BSDS300.hdf5) or pass download=True")
        arrays, info = _from_hdf5(hdf5)
    else:
        cache_file = folder / f"patches_s{seed}_{n_train}_{n_val}_{n_test}.npz"
        arrays = None
        if cache and cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    arrays = [z["train"], z["val"], z["test"]]
            except (OSError, ValueError, KeyError):
                arrays = None  # corrupt cache: regenerate and overwrite atomically
        if arrays is None:
            rng = np.random.default_rng(seed)
            paths = {p: [folder / "images" / p / f"{i}.jpg" for i in _iids(folder, p)]
                     for p in ("train", "test")}
            train_imgs = read_gray_images(paths["train"])
            trval = extract_patches(train_imgs, n_train + n_val, rng)
            del train_imgs
            test = extract_patches(read_gray_images(paths["test"]), n_test, rng)
            arrays = [trval[:n_train], trval[n_train:], test]
            if cache:
                save_npz_atomic(cache_file, train=arrays[0], val=arrays[1], test=arrays[2])
        info = {"source": "images", "cache": str(cache_file) if cache else None,
                "images": {"train": len(_iids(folder, "train")),
                           "test": len(_iids(folder, "test"))},
                "preprocessing": [
                    "monochrome: rint(0.299 R + 0.587 G + 0.114 B)",
                    "random image, random 8x8 window per patch (seeded)",
                    "dequantise and scale: (k + u)/256, u ~ U[0,1)",
                    "subtract the patch mean", "drop the bottom-right pixel -> 63 dims",
                    "train+validation from train images, test from test images"]}
    arrays = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
    info.update({"name": "bsds300", "features": 63, "seed": seed, "data_dir": str(root),
                 "sizes": {"train": len(arrays[0]), "val": len(arrays[1]),
                           "test": len(arrays[2])},
                 "published_sizes": {"train": 1_000_000, "val": 50_000, "test": 250_000}})
    return Splits(arrays[0], arrays[1], arrays[2], info)


@register("bsds300")
def _load(*, data_dir=None, seed: int = 0, **options: Any) -> Splits:
    return load_bsds300(data_dir=data_dir, seed=seed, **options)
