"""Seeded 2-D toy datasets with train/validation/test splits."""

from __future__ import annotations

import numpy as np

from .registry import Splits, register

__all__ = ["moons", "sample"]


def moons(n: int, *, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Two interleaving half circles (scikit-learn's ``make_moons`` definition), centred.

    Args:
        n: Number of points.
        noise: Standard deviation of the Gaussian noise added to each coordinate.
        seed: Seed of the generator.

    Returns:
        ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> moons(4, seed=0).shape
        (4, 2)
    """
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.pi * rng.random(n_out)
    t_in = np.pi * rng.random(n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)
    x = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    x = x - np.array([0.5, 0.25])
    return rng.permutation(x).astype(np.float32)


_GENERATORS = {"moons": moons}


def sample(name: str, n: int, *, seed: int = 0) -> np.ndarray:
    """Draw ``n`` points of toy set ``name``."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy dataset name={name!r}; "
                         f"expected one of {sorted(_GENERATORS)}")
    return _GENERATORS[name](n, seed=seed)


def _register(name: str) -> None:
    @register(name)
    def _load(*, data_dir=None, seed: int = 0, n: int = 10_000, val_fraction: float = 0.1,
              test_fraction: float = 0.1) -> Splits:
        del data_dir  # generated in-process
        x = sample(name, n, seed=seed)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        test, val, train = x[:n_test], x[n_test:n_test + n_val], x[n_test + n_val:]
        info = {"name": name, "features": 2, "sizes": (len(train), len(val), len(test)),
                "source": "generated in-process", "seed": seed}
        return Splits(train, val, test, info)


for _name in _GENERATORS:
    _register(_name)
