"""``shapes``: small binary images of simple shapes, generated in-process (no files).

Each image is ``size x size`` pixels in ``{0, 1}`` holding one shape of a random size and
position: a square, circle or triangle (filled or as a one-pixel outline), a plus or a cross
(x). The class is the label. A seeded generator (``np.random.default_rng``) draws everything,
so the same seed gives the same images, labels and dequantisation noise. It is a quick image
benchmark for autoregressive image flows (PixelCNN) that needs no download.

Output form: ``form="dequantized"`` (the default) gives ``(k + u) / 2`` with ``u ~ U[0, 1)``,
values in ``[0, 1)``; ``form="uint8"`` the pixel levels ``0``/``1``. Bits/dim of a model of
the dequantised data: ``nll_nats / (D ln 2) + log2(2)``
(:func:`normalizingflows.data.preprocess.nats_to_bits_per_dim` with ``levels=2``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .preprocess import dequantize
from .registry import Splits, register

__all__ = ["CLASSES", "LEVELS", "draw_shape", "make_shapes", "load_shapes"]

#: Class names in label order.
CLASSES = ("square", "circle", "triangle", "plus", "cross")
#: Pixel levels of the data (binary).
LEVELS = 2
FORMS = ("dequantized", "uint8")
_MIN_SIZE = 8


def _erode(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` whose four neighbours are all in ``mask`` (outside counts as off)."""
    padded = np.pad(mask, 1)
    return (mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2]
            & padded[1:-1, 2:])


def draw_shape(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """One ``size x size`` binary image of shape class ``label`` (see :data:`CLASSES`).

    The half-extent ``r`` is drawn from ``[0.2 size, 0.4 size]`` and the centre so that the
    shape lies inside the image. Squares, circles and triangles are filled or outlined (a
    one-pixel border) with probability 1/2; pluses and crosses are strokes of half-width
    ``max(0.6, r / 4)``.

    Args:
        label: Class index, ``0 <= label < len(CLASSES)``.
        size: Image side (``>= 8``).
        rng: Generator that draws the size, position and style.

    Returns:
        ``(image uint8 [size, size], filled)``.

    Example:
        >>> img, _ = draw_shape(0, 10, np.random.default_rng(0))
        >>> img.shape, int(img.max())
        ((10, 10), 1)
    """
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in 0..{len(CLASSES) - 1}; got {label!r}")
    r = rng.uniform(0.2, 0.4) * size
    cy, cx = rng.uniform(r, size - r, size=2)
    filled = bool(rng.random() < 0.5)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    dy, dx = yy - cy, xx - cx
    name = CLASSES[label]
    if name == "square":
        mask = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    elif name == "circle":
        mask = dx ** 2 + dy ** 2 <= r ** 2
    elif name == "triangle":  # apex up, base 2r wide at the bottom
        mask = (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    else:
        w = max(0.6, r / 4)
        box = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        if name == "plus":
            mask = box & ((np.abs(dx) <= w) | (np.abs(dy) <= w))
        else:
            mask = box & ((np.abs(dx - dy) <= w * np.sqrt(2)) | (np.abs(dx + dy) <= w * np.sqrt(2)))
        filled = True
    if not filled:
        mask = mask & ~_erode(mask)
    return mask.astype(np.uint8), filled


def make_shapes(n: int, *, size: int = 20, rng: np.random.Generator | int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` shape images with balanced random classes.

    Args:
        n: Number of images.
        size: Image side (``>= 8``).
        rng: Generator or seed.

    Returns:
        ``(images uint8 [n, size, size], labels int64 [n])``.

    Raises:
        ValueError: If ``n < 0`` or ``size < 8``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0; got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ValueError(f"size must be an int >= {_MIN_SIZE}; got {size!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    labels = rng.integers(0, len(CLASSES), size=n).astype(np.int64)
    images = np.zeros((n, size, size), np.uint8)
    for i, label in enumerate(labels):
        images[i] = draw_shape(int(label), int(size), rng)[0]
    return images, labels


def load_shapes(*, seed: int = 0, n_train: int = 10_000, n_val: int = 1_000,
                n_test: int = 1_000, size: int = 20, form: str = "dequantized",
                flatten: bool = True) -> Splits:
    """The ``shapes`` dataset as :class:`Splits` with labels (the shape class).

    Args:
        seed: Seed of the images (one stream for all splits) and of the dequantisation noise
            (its own stream per split).
        n_train: Training images.
        n_val: Validation images.
        n_test: Test images.
        size: Image side in pixels (``>= 8``).
        form: ``"dequantized"`` (``(k + u) / 2`` in ``[0, 1)``, ``float32``) or ``"uint8"``
            (levels ``0``/``1``).
        flatten: ``[N, size * size]`` if true, else ``[N, size, size, 1]``.

    Returns:
        ``Splits(train, val, test, info, labels=(ytr, yva, yte))``.

    Raises:
        ValueError: If ``form`` is unknown or a count or ``size`` is out of range.

    Example:
        >>> s = load_shapes(n_train=4, n_val=2, n_test=2, size=8)
        >>> s.train.shape, s.info["levels"]
        ((4, 64), 2)
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}; got {form!r}")
    counts = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{key} must be an int >= 0; got {value!r}")
    streams = np.random.SeedSequence(seed).spawn(4)
    images, labels = make_shapes(n_train + n_val + n_test, size=size,
                                 rng=np.random.default_rng(streams[0]))
    cuts = np.cumsum([n_train, n_val])
    xs, ys = np.split(images, cuts), np.split(labels, cuts)
    if form == "dequantized":
        xs = [dequantize(x, seed=np.random.default_rng(s), levels=LEVELS, dtype=np.float32)
              for x, s in zip(xs, streams[1:], strict=True)]
    xs = [x.reshape(len(x), -1) if flatten else x[..., None] for x in xs]
    info: dict[str, Any] = {
        "name": "shapes", "features": size * size, "size": size, "image_shape": (size, size, 1),
        "sizes": {"train": len(xs[0]), "val": len(xs[1]), "test": len(xs[2])},
        "classes": list(CLASSES),
        "label_counts": {k: np.bincount(y, minlength=len(CLASSES)).tolist()
                         for k, y in zip(("train", "val", "test"), ys, strict=True)},
        "form": form, "levels": LEVELS, "dtype": str(xs[0].dtype), "seed": seed,
        "source": "generated in-process (normalizingflows.data.shapes)",
        "preprocessing": {"uint8": "pixel levels 0/1",
                          "dequantized": "(k + u)/2, u ~ U[0,1), seeded"}[form],
    }
    return Splits(xs[0], xs[1], xs[2], info, labels=tuple(ys))


@register("shapes")
def _load(*, data_dir: Any = None, seed: int = 0, **options: Any) -> Splits:
    # Generated in memory: data_dir is accepted (the registry passes it) and unused.
    return load_shapes(seed=seed, **options)
