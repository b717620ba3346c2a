"""MNIST from IDX files, a pixels+label CSV, the MAF pickle or TFDS.

Output form: images are returned as ``uint8`` pixel levels ``0..255`` of shape ``(N, 784)``
(``flatten=False``: ``(N, 28, 28, 1)``) by default, so that no randomness is baked in; pass
``form="dequantized"`` for ``(k + u)/256`` in ``[0, 1)`` or ``form="logit"`` for the MAF/RealNVP
logit space (``lam=1e-6``), see :mod:`normalizingflows.data.preprocess`. Labels (``int64``) are
in ``Splits.labels`` for conditional models.

Sources (``<data_dir>/mnist/``), ``source="auto"`` takes the first that is present:

* ``"idx"``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``): train = first 50,000 training images,
  validation = last 10,000, test = the 10,000 test images (the split of the MAF pickle).
* ``"pickle"``: MAF's ``mnist.pkl.gz`` (50k/10k/10k floats in [0, 1]); read only when its MD5
  matches the published ``a02cd19f81d51c426d7ca14024243ce9`` (or ``trust_pickle=True``).
* ``"partial"``: a CSV of training digits (``mnist_5k.csv.gz``: 784 pixels then the label) plus
  the test IDX files: train/validation = a seeded shuffle of the CSV rows split 5:1,
  test = the 10,000 test images. ``info["partial"]`` is true.
* ``"tfds"``: ``tensorflow_datasets``' prepared ``mnist`` (never downloaded by us).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .download import download as _download
from .files import DataFormatError, MissingDataError, load_guarded_pickle, verify_checksum
from .preprocess import LAMBDA_MNIST, to_flow_input
from .registry import Splits, register

__all__ = ["read_idx", "write_idx", "read_pixel_csv", "load_mnist", "IDX_FILES", "MIRROR"]

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
#: Published MD5 of the official gzip files (LeCun), and SHA256 where measured (data/README.md).
IDX_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz":
        "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
PICKLE_CHECKSUM = "md5:a02cd19f81d51c426d7ca14024243ce9"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's format; ``.gz`` is decompressed).

    Raises:
        MissingDataError: If absent.
        DataFormatError: On a bad magic number or a truncated body.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path} cannot be read ({e}); it is truncated or not gzip: "
                              "delete it and fetch it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFormatError(f"{path} is not an IDX file (magic bytes {raw[:4]!r})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    start = 4 + 4 * ndim
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - start != need:
        raise DataFormatError(f"{path}: header says shape {dims} ({need:,} bytes) but the body "
                              f"has {len(raw) - start:,} bytes; the file is truncated or corrupt")
    out = np.frombuffer(raw, dtype=dtype, offset=start).reshape(dims)
    return out.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a ``uint8`` array as an IDX file (gzip when ``path`` ends in ``.gz``)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + a.tobytes())


def read_pixel_csv(path: str | os.PathLike, pixels: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV of ``pixels`` values (0..255) then the label in the last column.

    Returns:
        ``(images uint8 (N, pixels), labels int64 (N,))``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"CSV not found: {path}")
    try:
        a = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError) as e:
        raise DataFormatError(f"{path} is not an integer CSV with a constant column count "
                              f"({e})") from e
    if a.shape[1] != pixels + 1:
        raise DataFormatError(f"{path} has {a.shape[1]} columns; expected {pixels + 1} "
                              f"({pixels} pixels then the label)")
    x, y = a[:, :-1], a[:, -1]
    if x.min() < 0 or x.max() > 255:
        raise DataFormatError(f"{path}: pixel values outside 0..255")
    return x.astype(np.uint8), y


def _find(folder: Path, name: str) -> Path | None:
    for cand in (folder / name, folder / (name + ".gz")):
        if cand.is_file():
            return cand
    return None


def _idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    img = _find(folder, f"{prefix}-images-idx3-ubyte")
    lab = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if img is None or lab is None:
        return None
    x, y = read_idx(img), read_idx(lab)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
        raise DataFormatError(f"{img}: shape {x.shape} with {len(y)} labels; expected "
                              "(N, 28, 28) and N labels")
    return x.reshape(len(x), -1), y.astype(np.int64)


def _fetch_idx(folder: Path, base_url: str, progress: bool) -> None:
    for name, checksum in IDX_FILES.items():
        if _find(folder, name[:-3]) is None:
            _download(base_url + name, folder / name, checksum=checksum, progress=progress)


def _from_tfds(data_dir: Any) -> tuple[list, list, dict]:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise MissingDataError("source='tfds' needs tensorflow_datasets (pip install "
                               "tensorflow-datasets) with 'mnist' prepared") from e
    try:
        tr, te = tfds.load("mnist", split=["train", "test"], batch_size=-1, as_supervised=True,
                           download=False, data_dir=data_dir)
    except Exception as e:  # tfds raises assorted errors when not prepared
        raise MissingDataError(f"TFDS mnist is not prepared ({e}); run tfds.load('mnist') once "
                               "with download=True, or use the IDX files") from e
    (xtr, ytr), (xte, yte) = [(np.asarray(x).reshape(len(x), -1), np.asarray(y).astype(np.int64))
                              for x, y in (tfds.as_numpy(tr), tfds.as_numpy(te))]
    return ([xtr[:50_000], xtr[50_000:], xte], [ytr[:50_000], ytr[50_000:], yte],
            {"source": "tfds", "partial": False})


def load_mnist(*, data_dir: str | os.PathLike | None = None, seed: int = 0,
               source: str = "auto", form: str = "uint8", lam: float = LAMBDA_MNIST,
               flatten: bool = True, classes: tuple[int, ...] | None = None,
               csv: str = "mnist_5k.csv.gz", download: bool = False,
               trust_pickle: bool = False, mirror: str = MIRROR, progress: bool = True,
               tfds_data_dir: str | None = None) -> Splits:
    """Load MNIST as :class:`Splits` with labels.

    Args:
        data_dir: Data folder; files live in ``<data_dir>/mnist/``.
        seed: Seeds the shuffle of the partial (CSV) layout and the dequantisation noise.
        source: ``"auto"``, ``"idx"``, ``"pickle"``, ``"partial"`` or ``"tfds"``.
        form: ``"uint8"`` (pixel levels), ``"dequantized"`` or ``"logit"``.
        lam: Logit ``lambda`` (``1e-6`` for MNIST, as in MAF).
        flatten: ``(N, 784)`` if true, else ``(N, 28, 28, 1)``.
        classes: Keep only these digits, e.g. ``(2, 4, 7, 8)``.
        csv: File name of the pixels+label CSV used by the partial layout.
        download: Fetch missing IDX files (MD5/SHA256 verified) from ``mirror``.
        trust_pickle: Read ``mnist.pkl.gz`` even if its checksum differs.
        mirror: Base URL of the IDX files.
        progress: Progress bar while downloading.
        tfds_data_dir: ``data_dir`` passed to TFDS.

    Returns:
        ``Splits(train, val, test, info, labels=(ytr, yva, yte))``.

    Raises:
        MissingDataError: If no source is present (the message lists the files).
        DataFormatError: On truncated or malformed files.
    """
    root = registry.data_dir(data_dir)
    folder = root / "mnist"
    if source not in ("auto", "idx", "pickle", "partial", "tfds"):
        raise ValueError(f"source={source!r}: expected auto, idx, pickle, partial or tfds")
    if download and source in ("auto", "idx"):
        _fetch_idx(folder, mirror, progress)
    full = _find(folder, "train-images-idx3-ubyte") is not None
    if source == "auto":
        if full:
            source = "idx"
        elif (folder / "mnist.pkl.gz").is_file():
            source = "pickle"
        elif (folder / csv).is_file():
            source = "partial"
        else:
            lines = "\n".join(f"  {folder / n}" for n in IDX_FILES)
            raise MissingDataError(
                f"mnist: no data in {folder}. Place the IDX files:\n{lines}\n(or mnist.pkl.gz, "
                f"or {csv} plus the t10k files), or pass download=True.")
    if source == "tfds":
        xs, ys, info = _from_tfds(tfds_data_dir)
    elif source == "pickle":
        obj = load_guarded_pickle(folder / "mnist.pkl.gz", root=root,
                                  relative="mnist/mnist.pkl.gz", known_checksum=PICKLE_CHECKSUM,
                                  trust_pickle=trust_pickle)
        try:
            parts = [(np.asarray(p[0]), np.asarray(p[1])) for p in obj]
            assert len(parts) == 3 and all(x.shape[1:] == (784,) for x, _ in parts)
        except Exception as e:
            raise DataFormatError(f"{folder / 'mnist.pkl.gz'} is not (train, valid, test) "
                                  "pairs of (N, 784) images and labels") from e
        xs = [np.rint(x * 255).astype(np.uint8) for x, _ in parts]
        ys = [y.astype(np.int64) for _, y in parts]
        info = {"source": "pickle", "partial": False, "files": [str(folder / "mnist.pkl.gz")]}
    else:
        test = _idx_pair(folder, "t10k")
        if test is None:
            raise MissingDataError(f"mnist: test IDX files missing in {folder}: place "
                                   "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
        if source == "idx":
            train = _idx_pair(folder, "train")
            if train is None:
                raise MissingDataError(
                    f"mnist: {folder / 'train-images-idx3-ubyte.gz'} and the train labels are "
                    f"needed for source='idx'; place them, pass download=True, or use "
                    f"source='partial' with {csv}")
            (x, y) = train
            xs, ys = [x[:50_000], x[50_000:], test[0]], [y[:50_000], y[50_000:], test[1]]
            info = {"source": "idx", "partial": len(x) != 60_000}
        else:
            x, y = read_pixel_csv(folder / csv)
            perm = np.random.default_rng(seed).permutation(len(x))
            n_val = int(round(len(x) / 6))
            tr, va = perm[:len(x) - n_val], perm[len(x) - n_val:]
            xs, ys = [x[tr], x[va], test[0]], [y[tr], y[va], test[1]]
            info = {"source": "partial", "partial": True, "csv": str(folder / csv),
                    "split_note": f"train/val = seeded (seed={seed}) 5:1 split of the "
                                  f"{len(x)} CSV digits; test = the 10,000 IDX test digits"}
    if classes is not None:
        keep = np.asarray(sorted(set(int(c) for c in classes)))
        if keep.size == 0 or keep.min() < 0 or keep.max() > 9:
            raise ValueError(f"classes={classes!r}: expected digits 0..9")
        masks = [np.isin(y, keep) for y in ys]
        xs = [x[m] for x, m in zip(xs, masks, strict=False)]
        ys = [y[m] for y, m in zip(ys, masks, strict=False)]
    xs = [to_flow_input(x, form=form, lam=lam, seed=seed + i) for i, x in enumerate(xs)]
    if not flatten:
        xs = [x.reshape(-1, 28, 28, 1) for x in xs]
    info.update({
        "name": "mnist", "features": 784, "data_dir": str(root),
        "sizes": {"train": len(xs[0]), "val": len(xs[1]), "test": len(xs[2])},
        "classes": None if classes is None else sorted(set(int(c) for c in classes)),
        "label_counts": {k: np.bincount(y, minlength=10).tolist()
                         for k, y in zip(("train", "val", "test"), ys, strict=False)},
        "form": form, "lam": lam if form == "logit" else None,
        "dtype": str(xs[0].dtype),
        "preprocessing": {"uint8": "pixel levels 0..255",
                          "dequantized": "(k + u)/256, u ~ U[0,1), seeded",
                          "logit": f"logit(lam + (1-2 lam)(k + u)/256), lam={lam}"}[form]})
    return Splits(xs[0], xs[1], xs[2], info, labels=tuple(ys))


@register("mnist")
def _load(*, data_dir=None, seed: int = 0, **options: Any) -> Splits:
    return load_mnist(data_dir=data_dir, seed=seed, **options)


def _verify_idx(folder: Path) -> dict[str, bool]:
    """Which of the known IDX files in ``folder`` match their published checksum."""
    return {n: verify_checksum(folder / n, c) for n, c in IDX_FILES.items()
            if (folder / n).is_file()}
