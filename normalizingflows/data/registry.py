"""The dataset registry: ``load(name)`` -> :class:`Splits`, ``names()`` and ``data_dir()``.

Every loader module registers its datasets here with :func:`register`; ``nf.data.load`` is the
one entry point users call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Splits", "register", "load", "names", "data_dir"]


class Splits(NamedTuple):
    """Train/validation/test splits of one dataset.

    Attributes:
        train: Training examples (``np.ndarray``, or a ``tf.data.Dataset`` for streamed images).
        val: Validation examples, same kind as ``train``.
        test: Test examples, same kind as ``train``.
        info: Facts about the data: ``name``, ``features``, split sizes, preprocessing, source.
        labels: ``(train_labels, val_labels, test_labels)`` for labelled data, else ``None``.
    """

    train: Any
    val: Any
    test: Any
    info: dict
    labels: tuple | None = None


_LOADERS: dict[str, Callable[..., Splits]] = {}


def register(name: str) -> Callable[[Callable[..., Splits]], Callable[..., Splits]]:
    """Decorator that registers ``fn(*, data_dir, seed, **options) -> Splits`` under ``name``."""

    def deco(fn: Callable[..., Splits]) -> Callable[..., Splits]:
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = fn
        return fn

    return deco


def _checkout_data_dir() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    if (root / "setup.py").is_file() and (root / "data" / "README.md").is_file():
        return root / "data"
    return None


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Resolve the data folder: ``path``, else ``$NF_DATA_DIR``, else the default.

    The default is the ``data/`` folder of a source checkout when the package runs from one,
    otherwise ``~/.cache/normalizingflows/data``.
    """
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("NF_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return _checkout_data_dir() or Path.home() / ".cache" / "normalizingflows" / "data"


def names() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(_LOADERS)


def load(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
         **options: Any) -> Splits:
    """Load dataset ``name`` as :class:`Splits`.

    Args:
        name: One of :func:`names`.
        data_dir: Folder holding the files; default ``$NF_DATA_DIR`` or the documented default.
        seed: Seed for every random choice the loader makes (sampling, dequantisation, splits).
        **options: Loader-specific options (for example ``n`` for toy sets).

    Returns:
        The :class:`Splits` of the dataset.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset name={name!r}; expected one of {names()}")
    return _LOADERS[name](data_dir=data_dir, seed=seed, **options)
