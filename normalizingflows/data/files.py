"""File helpers shared by the loaders: errors, checksums, atomic writes, guarded reading.

Every loader reports a missing or corrupt file with an error that names the file and the fix,
and writes nothing under a final name until the content is complete (temporary file + rename).
Files that can only be read by unpickling are read only when their checksum is known and
matches (or the user opts in with ``trust_pickle=True``), and even then through an unpickler
that resolves only the NumPy/pandas names those files need.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DataError",
    "MissingDataError",
    "ChecksumError",
    "DataFormatError",
    "UnsafeArchiveError",
    "PickleRefusedError",
    "file_digest",
    "verify_checksum",
    "atomic_write",
    "save_npz_atomic",
    "load_npy",
    "require_files",
    "MANIFEST_NAME",
    "read_manifest",
    "record_verified",
    "load_guarded_pickle",
]

MANIFEST_NAME = ".nf-verified.json"


class DataError(Exception):
    """Base class of every data-loading error in :mod:`normalizingflows.data`."""


class MissingDataError(DataError, FileNotFoundError):
    """Required files are absent; the message lists each path to place and where to get it."""


class ChecksumError(DataError, ValueError):
    """A file's checksum differs from the known one (corrupt or different download)."""


class DataFormatError(DataError, ValueError):
    """A file exists but its content is not what the loader expects (truncated, wrong shape)."""


class UnsafeArchiveError(DataError, ValueError):
    """An archive member would be written outside the target folder, or is not a plain file."""


class PickleRefusedError(DataError, ValueError):
    """A pickle was not read because its checksum is unknown or does not match."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Args:
        path: The file.
        algorithm: Any :mod:`hashlib` name (``"sha256"``, ``"md5"``).

    Returns:
        The lowercase hex digest.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_checksum(checksum: str) -> tuple[str, str]:
    algo, sep, digest = checksum.partition(":")
    if not sep:
        algo, digest = "sha256", checksum
    algo = algo.lower()
    if algo not in ("sha256", "md5", "sha1", "sha512"):
        raise ValueError(f"checksum={checksum!r}: expected 'sha256:<hex>' or 'md5:<hex>'")
    return algo, digest.lower()


def verify_checksum(path: str | os.PathLike, checksum: str) -> bool:
    """Whether ``path`` has ``checksum`` (``"sha256:<hex>"``, ``"md5:<hex>"`` or bare sha256)."""
    algo, digest = _split_checksum(checksum)
    return file_digest(path, algo) == digest


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only on success.

    Args:
        path: Final file name.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and
        ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez`` to ``path`` through a temporary file (never a half-written cache)."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def load_npy(path: str | os.PathLike, *, columns: int | None = None,
             what: str = "file") -> np.ndarray:
    """Load a ``.npy`` array with clear errors for missing, truncated or misshaped files.

    Args:
        path: The ``.npy`` file.
        columns: If given, the required size of the last axis of a 2-D array.
        what: Words naming the file in error messages (e.g. ``"MAF POWER data.npy"``).

    Returns:
        The array (not memory-mapped). Pickled object arrays are never loaded.

    Raises:
        MissingDataError: If the file does not exist.
        DataFormatError: If it is truncated, not a ``.npy`` file, or has the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{what} not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        size = path.stat().st_size
        raise DataFormatError(
            f"{what} {path} ({size:,} bytes) cannot be read as .npy ({e}); it is truncated or "
            "corrupt: delete it and download or copy it again") from e
    if columns is not None and (arr.ndim != 2 or arr.shape[1] != columns):
        raise DataFormatError(
            f"{what} {path} has shape {arr.shape}; expected (N, {columns}): is it the right file?")
    return arr


def require_files(dataset: str, root: Path, files: Iterable[str], *, hint: str = "") -> None:
    """Raise :class:`MissingDataError` listing every one of ``files`` absent under ``root``.

    Args:
        dataset: Dataset name for the message.
        root: The data folder.
        files: Paths relative to ``root``.
        hint: Where to obtain them (appended to the message).
    """
    files = list(files)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        lines = "\n".join(f"  {root / f}" for f in missing)
        raise MissingDataError(
            f"{dataset}: {len(missing)} required file(s) missing. Place these files:\n{lines}\n"
            f"(data folder: {root}; set it with data_dir=... or $NF_DATA_DIR)"
            + (f"\n{hint}" if hint else ""))


def read_manifest(root: Path) -> dict:
    """The ``{relative_path: sha256}`` map of files extracted from verified archives."""
    p = Path(root) / MANIFEST_NAME
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (ValueError, OSError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) else {}


def record_verified(root: Path, entries: dict[str, str], source: str) -> None:
    """Add ``entries`` (``{relative_path: sha256}``) to the manifest, atomically."""
    root = Path(root)
    files = read_manifest(root)
    files.update(entries)
    payload = {"note": "sha256 of files extracted from archives whose checksum verified",
               "source": source, "files": files}
    with atomic_write(root / MANIFEST_NAME, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)


_SAFE_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "slice", "bytearray", "object",
                  "complex", "float", "int", "str", "bytes", "range"}


class _GuardedUnpickler(pickle.Unpickler):
    """Resolves only NumPy (and optionally pandas) names plus harmless builtins."""

    def __init__(self, file: Any, allow_pandas: bool, **kw: Any) -> None:
        super().__init__(file, **kw)
        self._allow_pandas = allow_pandas

    def find_class(self, module: str, name: str) -> Any:
        top = module.split(".")[0]
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return super().find_class("builtins", name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return super().find_class("copyreg", name)
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            return super().find_class(module, name)
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        if top == "numpy":
            if module.startswith("numpy.core"):  # pickles written by NumPy < 2
                module = "numpy._core" + module[len("numpy.core"):]
            return super().find_class(module, name)
        if top == "pandas" and self._allow_pandas:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a pickle")


def load_guarded_pickle(path: str | os.PathLike, *, root: Path, relative: str,
                        known_checksum: str | None, trust_pickle: bool = False,
                        allow_pandas: bool = False) -> Any:
    """Unpickle a data file only if its checksum is known to be good.

    A pickle is read when (a) ``known_checksum`` is given and matches, or (b) the file was
    extracted by :func:`normalizingflows.data.download.fetch_maf` from an archive whose
    checksum verified and its sha256 still matches the manifest, or (c) ``trust_pickle`` is
    true. Even then only NumPy/pandas globals are resolved.

    Args:
        path: The pickle (``.gz`` is decompressed).
        root: The data folder (holds the manifest).
        relative: ``path`` relative to ``root`` (the manifest key).
        known_checksum: Published checksum of the file, or ``None`` when none is known.
        trust_pickle: Skip the checksum gate (the user vouches for the file).
        allow_pandas: Also resolve ``pandas`` globals (needed for DataFrame pickles).

    Returns:
        The unpickled object.

    Raises:
        MissingDataError: If the file does not exist.
        PickleRefusedError: If the checksum is unknown or does not match and ``trust_pickle``
            is false.
        DataFormatError: If unpickling fails.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"pickle not found: {path}")
    if not trust_pickle:
        ok = False
        reason = "no checksum is known for it"
        if known_checksum is not None:
            ok = verify_checksum(path, known_checksum)
            reason = f"its checksum differs from the known {known_checksum}"
        if not ok:
            manifest = read_manifest(root)
            if relative in manifest:
                ok = file_digest(path) == manifest[relative]
                if not ok:
                    reason = "its sha256 differs from the one recorded at verified extraction"
        if not ok:
            raise PickleRefusedError(
                f"refusing to unpickle {path}: {reason}. Unpickling runs code, so only files "
                "with a verified checksum are read. Fetch it with download=True (the archive is "
                "checksum-verified), or pass trust_pickle=True if you trust this file.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return _GuardedUnpickler(f, allow_pandas, encoding="latin1").load()
    except ModuleNotFoundError as e:
        raise DataFormatError(f"reading {path} needs the module {e.name!r}: pip install "
                              f"{e.name}") from e
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, AttributeError) as e:
        raise DataFormatError(f"cannot unpickle {path}: {e}. Delete it and fetch it again.") from e
