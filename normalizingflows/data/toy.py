"""Seeded 2-D toy datasets with train/validation/test splits, exact densities where known.

The FFJORD toy sets (``swissroll``, ``circles``, ``rings``, ``half_moons`` (FFJORD's "moons"),
``2spirals``, ``pinwheel``, ``checkerboard``, ``8gaussians``, ``line``, ``cos``) follow the
definitions of Grathwohl et al. (2018); ``moons`` keeps this package's earlier, centred
scikit-learn definition (the demo relies on it). Added here: ``4gaussians``, ``smiley``, the MAF
paper's ``banana`` and ``raster`` (points drawn from an image or rendered text, ``"TFP"`` by
default).

Differences from FFJORD, all chosen so that every set is an i.i.d. sample of a density:

- ``circles`` and ``rings`` draw their angles uniformly at random (FFJORD spaces them evenly).
- ``line`` and ``cos`` add Gaussian noise of std ``noise`` (default 0.1) to the second
  coordinate: FFJORD's versions lie on a curve and have no density (an infinite likelihood).

Exact log-densities (:func:`log_prob`) exist for ``8gaussians``, ``4gaussians``,
``checkerboard``, ``banana``, ``line`` and ``cos``; :func:`best_log_likelihood` returns minus
the differential entropy ``E_p[log p(x)]``, the best expected test log-likelihood any model can
reach (exact in closed form, or by numerical quadrature of the exact density; see
:data:`BEST_LOG_LIKELIHOOD`).

References:
    FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models,
    https://arxiv.org/abs/1810.01367 (toy sets).
    Masked Autoregressive Flow for Density Estimation, https://arxiv.org/abs/1705.07057
    (figure 1: the banana target).

Example:
    >>> import normalizingflows as nf
    >>> splits = nf.data.load("checkerboard", n=1000, seed=0)
    >>> splits.train.shape, round(splits.info["best_log_likelihood"], 3)
    ((800, 2), -3.466)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .registry import Splits, register

__all__ = [
    "moons", "half_moons", "swissroll", "circles", "rings", "two_spirals", "pinwheel",
    "checkerboard", "eight_gaussians", "four_gaussians", "line", "cos", "smiley", "banana",
    "raster", "render_text", "sample", "names", "log_prob", "best_log_likelihood",
    "BEST_LOG_LIKELIHOOD",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _finish(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(x).astype(np.float32)


def _check_n(n: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer; received n={n!r}")


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


def half_moons(n: int, *, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """FFJORD's "moons": ``make_moons(noise=0.1)``, scaled by 2 and shifted by ``(-1, -0.2)``.

    Example:
        >>> half_moons(6, seed=1).shape
        (6, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    n_out = n // 2
    t_out = np.pi * rng.random(n_out)
    t_in = np.pi * rng.random(n - n_out)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)
    x = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    return _finish(2.0 * x + np.array([-1.0, -0.2]), rng)


def swissroll(n: int, *, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """FFJORD's swiss roll: ``t = 1.5 pi (1 + 2u)``, ``(t cos t, t sin t) / 5`` plus noise.

    ``noise`` is the std before the division by 5 (scikit-learn's ``make_swiss_roll``).

    Example:
        >>> swissroll(3, seed=0).shape
        (3, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + noise * rng.standard_normal((n, 2))
    return _finish(x / 5.0, rng)


def circles(n: int, *, noise: float = 0.08, factor: float = 0.5, seed: int = 0) -> np.ndarray:
    """FFJORD's circles: unit and ``factor`` circles plus noise ``noise``, all scaled by 3.

    Example:
        >>> circles(5, seed=0).shape
        (5, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    radius = np.where(np.arange(n) < n // 2, 1.0, factor)
    t = 2.0 * np.pi * rng.random(n)
    x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    x = x + noise * rng.standard_normal((n, 2))
    return _finish(3.0 * x, rng)


def rings(n: int, *, noise: float = 0.08, seed: int = 0) -> np.ndarray:
    """FFJORD's rings: circles of radius 3, 2.25, 1.5, 0.75 (n/4 points each) plus noise.

    Example:
        >>> rings(8, seed=0).shape
        (8, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    q = n // 4
    radius = 3.0 * np.concatenate([np.full(n - 3 * q, 0.25), np.full(q, 0.5), np.full(q, 0.75),
                                   np.full(q, 1.0)])
    t = 2.0 * np.pi * rng.random(n)
    x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    return _finish(x + noise * rng.standard_normal((n, 2)), rng)


def two_spirals(n: int, *, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """FFJORD's "2spirals": ``r = sqrt(u) 3 pi``, ``(-r cos r, r sin r)`` and its mirror, / 3.

    Example:
        >>> two_spirals(4, seed=0).shape
        (4, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    half = n // 2
    r = np.sqrt(rng.random(half)) * 540.0 * (2.0 * np.pi) / 360.0
    d1 = np.stack([-np.cos(r) * r + 0.5 * rng.random(half), np.sin(r) * r + 0.5 * rng.random(half)],
                  axis=1)
    x = np.concatenate([d1, -d1]) / 3.0
    if n - 2 * half:
        x = np.concatenate([x, x[:1]])
    return _finish(x + noise * rng.standard_normal((n, 2)), rng)


def pinwheel(n: int, *, classes: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1,
             rate: float = 0.25, seed: int = 0) -> np.ndarray:
    """FFJORD's pinwheel: ``classes`` arms, each a Gaussian blob bent by ``rate exp(r)``.

    A point ``f = (1 + radial_std e1, tangential_std e2)`` of arm ``k`` is rotated by
    ``-(2 pi k / classes + rate exp(f1))`` and scaled by 2.

    Example:
        >>> pinwheel(10, seed=0).shape
        (10, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    f = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    f[:, 0] += 1.0
    angle = 2.0 * np.pi * labels / classes + rate * np.exp(f[:, 0])
    c, s = np.cos(angle), np.sin(angle)
    x = np.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], axis=1)
    return _finish(2.0 * x, rng)


def checkerboard(n: int, *, seed: int = 0) -> np.ndarray:
    """FFJORD's checkerboard: uniform on 8 of the 16 2x2 squares of ``[-4, 4]^2``.

    A square ``[2i, 2i+2) x [2j, 2j+2)`` is filled when ``i + j`` is even; density 1/32.

    Example:
        >>> checkerboard(3, seed=0).shape
        (3, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    x1 = 4.0 * rng.random(n) - 2.0
    x2 = rng.random(n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return _finish(2.0 * np.stack([x1, x2], axis=1), rng)


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_DIRECTIONS_8 = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (_SQRT_HALF, _SQRT_HALF),
                          (_SQRT_HALF, -_SQRT_HALF), (-_SQRT_HALF, _SQRT_HALF),
                          (-_SQRT_HALF, -_SQRT_HALF)])
_MIXTURES = {  # name -> (centres, std): FFJORD scale 4, then everything divided by 1.414
    "8gaussians": (4.0 * _DIRECTIONS_8 / 1.414, 0.5 / 1.414),
    "4gaussians": (4.0 * _DIRECTIONS_8[:4] / 1.414, 0.5 / 1.414),
}


def _mixture_sample(name: str, n: int, seed: int) -> np.ndarray:
    _check_n(n)
    centres, std = _MIXTURES[name]
    rng = np.random.default_rng(seed)
    k = rng.integers(0, len(centres), n)
    return _finish(centres[k] + std * rng.standard_normal((n, 2)), rng)


def eight_gaussians(n: int, *, seed: int = 0) -> np.ndarray:
    """FFJORD's "8gaussians": equal mixture, centres ``4 (cos, sin)(k pi/4) / 1.414``, std
    ``0.5 / 1.414``.

    Example:
        >>> eight_gaussians(3, seed=0).shape
        (3, 2)
    """
    return _mixture_sample("8gaussians", n, seed)


def four_gaussians(n: int, *, seed: int = 0) -> np.ndarray:
    """"4gaussians": the axis-aligned half of ``8gaussians`` (centres ``(+-4, 0)/1.414``,
    ``(0, +-4)/1.414``, std ``0.5/1.414``), equal weights.

    Example:
        >>> four_gaussians(3, seed=0).shape
        (3, 2)
    """
    return _mixture_sample("4gaussians", n, seed)


def _curve(n: int, fn: Callable[[np.ndarray], np.ndarray], noise: float, seed: int) -> np.ndarray:
    _check_n(n)
    rng = np.random.default_rng(seed)
    x1 = 5.0 * rng.random(n) - 2.5
    x2 = fn(x1) + noise * rng.standard_normal(n)
    return _finish(np.stack([x1, x2], axis=1), rng)


def line(n: int, *, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """``x1 ~ U(-2.5, 2.5)``, ``x2 = x1 + noise * N(0, 1)`` (FFJORD's "line" with noise).

    Example:
        >>> line(3, seed=0).shape
        (3, 2)
    """
    return _curve(n, lambda t: t, noise, seed)


def cos(n: int, *, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """``x1 ~ U(-2.5, 2.5)``, ``x2 = 2.5 sin(x1) + noise * N(0, 1)`` (FFJORD's "cos"; FFJORD
    draws a sine under that name).

    Example:
        >>> cos(3, seed=0).shape
        (3, 2)
    """
    return _curve(n, lambda t: 2.5 * np.sin(t), noise, seed)


def smiley(n: int, *, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """A smiling face: outline (40%, circle of radius 3), mouth (30%, lower arc of radius 1.8
    from 210 to 330 degrees, centred at ``(0, 0.2)``) and two eyes (15% each, Gaussians of std
    0.2 at ``(+-1.1, 1.1)``); ``noise`` is the std across the curves.

    Example:
        >>> smiley(5, seed=0).shape
        (5, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    part = rng.choice(4, size=n, p=[0.4, 0.3, 0.15, 0.15])
    t = np.where(part == 0, 2.0 * np.pi * rng.random(n),
                 np.deg2rad(210.0 + 120.0 * rng.random(n)))
    radius = np.where(part == 0, 3.0, 1.8)
    x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    x[part == 1, 1] += 0.2
    x = x + noise * rng.standard_normal((n, 2))
    eyes = part >= 2
    centre = np.stack([np.where(part == 2, -1.1, 1.1), np.full(n, 1.1)], axis=1)
    x[eyes] = centre[eyes] + 0.2 * rng.standard_normal((int(eyes.sum()), 2))
    return _finish(x, rng)


def banana(n: int, *, seed: int = 0) -> np.ndarray:
    """The MAF paper's figure-1 target ``p(x1, x2) = N(x2 | 0, 4) N(x1 | x2^2 / 4, 1)``.

    ``N(. | mean, variance)``: ``x2`` has std 2 and ``x1`` given ``x2`` has mean ``x2^2/4`` and
    std 1, so the banana opens towards positive ``x1`` (mass mostly in ``x1`` in [-2, 10],
    ``x2`` in [-6, 6]).

    Example:
        >>> banana(3, seed=0).shape
        (3, 2)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    x2 = 2.0 * rng.standard_normal(n)
    x1 = x2 ** 2 / 4.0 + rng.standard_normal(n)
    return _finish(np.stack([x1, x2], axis=1), rng)


@functools.lru_cache(maxsize=8)
def render_text(text: str = "TFP", *, height: int = 120) -> np.ndarray:
    """Render ``text`` in bold DejaVu Sans with matplotlib, ``height`` pixels high before
    cropping to the ink (plus a 2-pixel margin); returns ink in ``[0, 1]``, row 0 at the top.

    Example:
        >>> render_text("A", height=40).shape[0] < 40
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    width = max(1, int(round(0.75 * height * max(len(text), 1))))
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, ha="center", va="center", color="white", weight="bold",
             family="DejaVu Sans", fontsize=0.8 * height * 72 / dpi)
    canvas.draw()
    ink = np.asarray(canvas.buffer_rgba())[..., 0].astype(np.float64) / 255.0
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if len(rows):  # crop to the ink, keeping a 2-pixel margin
        ink = np.pad(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 2)
    ink.setflags(write=False)
    return ink


def raster(n: int, *, image: np.ndarray | None = None, text: str = "TFP", bound: float = 4.0,
           seed: int = 0) -> np.ndarray:
    """Points drawn from an image: pixel ``(r, c)`` is chosen with probability proportional to
    its value, then the point is uniform inside that pixel.

    The image fills ``[-bound, bound]`` along its longer side (aspect kept, row 0 at the top).

    Args:
        n: Number of points.
        image: Non-negative array ``(H, W)`` or ``(H, W, C)`` (channels are averaged; more value
            means more mass). When ``None``, ``text`` rendered with :func:`render_text`.
        text: Text to render when ``image`` is ``None``.
        bound: Half-width of the longer side.
        seed: Seed of the generator.

    Returns:
        ``float32`` array of shape ``(n, 2)``.

    Raises:
        ValueError: If ``image`` has negative values, NaN, no mass or a wrong shape.

    Example:
        >>> raster(5, text="NF", seed=0).shape
        (5, 2)
    """
    _check_n(n)
    img = render_text(text) if image is None else np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    if img.ndim != 2:
        raise ValueError(f"image must have shape (H, W) or (H, W, C); received {img.shape}")
    if not np.all(np.isfinite(img)) or np.any(img < 0) or img.sum() <= 0:
        raise ValueError("image must be finite, non-negative and have positive total mass")
    rng = np.random.default_rng(seed)
    h, w = img.shape
    p = img.ravel() / img.sum()
    idx = rng.choice(h * w, size=n, p=p)
    row, col = np.divmod(idx, w)
    pixel = 2.0 * bound / max(h, w)
    x1 = (col + rng.random(n) - w / 2.0) * pixel
    x2 = (h / 2.0 - row - rng.random(n)) * pixel
    return _finish(np.stack([x1, x2], axis=1), rng)


_GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "moons": moons, "half_moons": half_moons, "swissroll": swissroll, "circles": circles,
    "rings": rings, "2spirals": two_spirals, "pinwheel": pinwheel, "checkerboard": checkerboard,
    "8gaussians": eight_gaussians, "4gaussians": four_gaussians, "line": line, "cos": cos,
    "smiley": smiley, "banana": banana, "raster": raster,
}


def names() -> list[str]:
    """Names of the toy sets, sorted.

    Example:
        >>> "checkerboard" in names()
        True
    """
    return sorted(_GENERATORS)


def sample(name: str, n: int, *, seed: int = 0, **options: Any) -> np.ndarray:
    """Draw ``n`` points of toy set ``name`` (``options`` go to its generator).

    Example:
        >>> sample("8gaussians", 4, seed=0).shape
        (4, 2)
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy dataset name={name!r}; "
                         f"expected one of {sorted(_GENERATORS)}")
    return _GENERATORS[name](n, seed=seed, **options)


def _normal_logpdf(z: np.ndarray, std: float) -> np.ndarray:
    return -0.5 * (z / std) ** 2 - math.log(std) - 0.5 * _LOG_2PI


def _mixture_log_prob(name: str, x: np.ndarray) -> np.ndarray:
    centres, std = _MIXTURES[name]
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1) / std ** 2
    a = -0.5 * d2
    m = a.max(axis=1)
    lse = m + np.log(np.exp(a - m[:, None]).sum(axis=1))
    return lse - math.log(len(centres)) - 2.0 * math.log(std) - _LOG_2PI


def log_prob(name: str, x: Any, **options: Any) -> np.ndarray:
    """Exact log-density of toy set ``name`` at points ``x [N, 2]`` (``float64``).

    Known for ``8gaussians``, ``4gaussians``, ``checkerboard`` (``log(1/32)`` on the filled
    squares, ``-inf`` elsewhere), ``banana``, ``line`` and ``cos`` (``noise`` option as for
    the generator; ``-inf`` outside ``|x1| <= 2.5``).

    Raises:
        ValueError: If the density of ``name`` is not known in closed form.

    Example:
        >>> import numpy as np
        >>> float(np.round(log_prob("checkerboard", [[0.5, 0.5], [-0.5, 0.5]]), 3)[0])
        -3.466
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape [N, 2]; received {x.shape}")
    if name in _MIXTURES:
        return _mixture_log_prob(name, x)
    if name == "checkerboard":
        inside = np.all(np.abs(x) <= 4.0, axis=1)
        even = (np.floor(x[:, 0] / 2.0) + np.floor(x[:, 1] / 2.0)) % 2 == 0
        return np.where(inside & even, -math.log(32.0), -np.inf)
    if name == "banana":
        return _normal_logpdf(x[:, 1], 2.0) + _normal_logpdf(x[:, 0] - x[:, 1] ** 2 / 4.0, 1.0)
    if name in ("line", "cos"):
        noise = float(options.get("noise", 0.1))
        mean = x[:, 0] if name == "line" else 2.5 * np.sin(x[:, 0])
        lp = _normal_logpdf(x[:, 1] - mean, noise) - math.log(5.0)
        return np.where(np.abs(x[:, 0]) <= 2.5, lp, -np.inf)
    raise ValueError(f"no closed-form density for toy set name={name!r}; known for "
                     f"{sorted(BEST_LOG_LIKELIHOOD)}")


# minus the differential entropy, E_p[log p], in nats; (value, how it was computed)
BEST_LOG_LIKELIHOOD: dict[str, tuple[float, str]] = {
    "checkerboard": (-math.log(32.0), "exact: -log 32"),
    "banana": (-(_LOG_2PI + 1.0 + math.log(2.0)), "exact: -(log(2 pi e) + log 2)"),
    "line": (-(math.log(5.0) + 0.5 * (_LOG_2PI + 1.0) + math.log(0.1)),
             "exact for noise=0.1: -(log 5 + log(0.1 sqrt(2 pi e)))"),
    "cos": (-(math.log(5.0) + 0.5 * (_LOG_2PI + 1.0) + math.log(0.1)),
            "exact for noise=0.1: -(log 5 + log(0.1 sqrt(2 pi e)))"),
    "8gaussians": (-2.831880, "quadrature of the exact density on a 4001^2 grid over [-5, 5]^2"),
    "4gaussians": (-2.145032, "quadrature of the exact density on a 4001^2 grid over [-5, 5]^2"),
}


def best_log_likelihood(name: str) -> float | None:
    """Minus the differential entropy of toy set ``name`` (nats), ``None`` where unknown.

    This is ``E_p[log p(x)]``: no model's expected test log-likelihood can exceed it.

    Example:
        >>> round(best_log_likelihood("checkerboard"), 3)
        -3.466
    """
    entry = BEST_LOG_LIKELIHOOD.get(name)
    return None if entry is None else entry[0]


def _register(name: str) -> None:
    @register(name)
    def _load(*, data_dir: Any = None, seed: int = 0, n: int = 10_000,
              val_fraction: float = 0.1, test_fraction: float = 0.1, **options: Any) -> Splits:
        del data_dir  # generated in-process
        x = sample(name, n, seed=seed, **options)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        test, val, train = x[:n_test], x[n_test:n_test + n_val], x[n_test + n_val:]
        best = BEST_LOG_LIKELIHOOD.get(name) if not options else None
        info = {"name": name, "features": 2, "sizes": (len(train), len(val), len(test)),
                "source": "generated in-process", "seed": seed, "options": dict(options),
                "best_log_likelihood": None if best is None else best[0],
                "best_log_likelihood_method": None if best is None else best[1]}
        return Splits(train, val, test, info)


for _name in _GENERATORS:
    _register(_name)
