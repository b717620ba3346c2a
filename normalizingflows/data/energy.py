"""Unnormalised 2-D target densities ``exp(-U(z))``: Rezende & Mohamed's U1-U4 and U8.

``get(name)`` returns an :class:`Energy` (``.energy(x)``, ``.log_prob_unnormalized(x)``,
``.log_z``, ``.bound``); :func:`fit_gmm` fits a Gaussian mixture to ``exp(-U)`` by reverse KL,
and the datasets ``energy_u1`` ... ``energy_u8`` (samples of that mixture) are registered with
``nf.data.load``.

The potentials (Table 1 of the paper), with ``w1 = sin(2 pi z1 / 4)``,
``w2 = 3 exp(-((z1 - 1) / 0.6)^2 / 2)``, ``w3 = 3 sigmoid((z1 - 1) / 0.3)``::

    U1 = ((|z| - 2) / 0.4)^2 / 2 - log(exp(-((z1 - 2) / 0.6)^2 / 2) + exp(-((z1 + 2) / 0.6)^2 / 2))
    U2 = ((z2 - w1) / 0.4)^2 / 2
    U3 = -log(exp(-((z2 - w1) / 0.35)^2 / 2) + exp(-((z2 - w1 + w2) / 0.35)^2 / 2))
    U4 = -log(exp(-((z2 - w1) / 0.4)^2 / 2) + exp(-((z2 - w1 + w3) / 0.35)^2 / 2))

U8 is the "sum" of four U1-type potentials with ring radius 3 and modes at distance 3 along
the directions ``theta_k = k pi / 4`` (k = 0..3), taken as a sum of densities, not of energies::

    exp(-U8(z)) = sum_k exp(-U1_k(z)),
    U1_k(z) = ((|z| - 3) / 0.4)^2 / 2 - log(exp(-((u_k - 3) / 0.6)^2 / 2)
                                            + exp(-((u_k + 3) / 0.6)^2 / 2)),
    u_k = z1 cos(theta_k) + z2 sin(theta_k).

Each ``exp(-U1_k)`` is a rotation of the same density, so all four have the same normaliser and
``exp(-U8) / Z8`` is the equal-weight mixture of the four rotated U1-type densities. (Adding
the energies would multiply the densities; no point lies near a mode in all four directions, so
that product is not a ring of eight modes.) With the U1 widths (0.4 across the ring, 0.6 along
the mode direction) the eight bumps at ``k pi / 4`` overlap: the result is a ring of radius 3
whose density varies by about 10% around it.

Taper: U2-U4 depend on ``z1`` only through bounded functions, so ``exp(-U)`` is not integrable
over R^2 (it is confined in ``z2`` by its Gaussian factors but not in ``z1``). ``taper=b`` adds
the penalty ``((|z1| - b)_+ / 0.1)^2 / 2`` (a Gaussian fall-off of std 0.1 outside the strip
``|z1| <= b``), which makes them normalisable; ``get`` uses ``b = 4`` for U2-U4 by default (the
square shown in the paper) and no taper for U1 and U8, which are normalisable as they are.

Reference log-normalisers ``log Z = log integral exp(-U)`` were computed in float64 by a
Riemann sum on a 2801 x 2801 grid over ``[-7, 7]^2`` (spacing 0.005); see
:func:`reference_log_z` and :data:`LOG_Z`.

References:
    Variational Inference with Normalizing Flows, https://arxiv.org/abs/1505.05770 (Table 1).

Example:
    >>> import tensorflow as tf
    >>> u1 = get("u1")
    >>> u = u1.energy(tf.constant([[2.0, 0.0], [0.0, 2.0]]))  # a mode, then between the modes
    >>> bool(u[0] < u[1])
    True
    >>> round(u1.log_z, 3)
    1.878
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from .registry import Splits, register

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["Energy", "get", "names", "fit_gmm", "fitted_gmm", "reverse_kl", "reference_log_z",
           "LOG_Z", "TAPER_WIDTH"]

TAPER_WIDTH = 0.1  # std of the Gaussian fall-off outside the taper strip
_DEFAULT_TAPER = {"u1": None, "u2": 4.0, "u3": 4.0, "u4": 4.0, "u8": None}
_BOUND = {"u1": 4.0, "u2": 4.5, "u3": 4.5, "u4": 5.0, "u8": 5.0}

# log Z for get(name) with its default taper; float64 Riemann sum, 2801^2 grid over [-7, 7]^2
LOG_Z: dict[str, float] = {
    "u1": 1.877502,
    "u2": 2.112941,
    "u3": 2.672557,
    "u4": 2.741550,
    "u8": 3.444165,
}


def _sq(t: tf.Tensor) -> tf.Tensor:
    return 0.5 * tf.square(t)


def _lse2(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.reduce_logsumexp(tf.stack([a, b], axis=-1), axis=-1)


def _radius(z: tf.Tensor) -> tf.Tensor:
    s = tf.reduce_sum(tf.square(z), axis=-1)
    # maximum keeps the gradient finite at the origin (sqrt'(0) = inf)
    return tf.sqrt(tf.maximum(s, np.finfo(z.dtype.as_numpy_dtype).tiny))


def _u1(z: tf.Tensor) -> tf.Tensor:
    z1 = z[:, 0]
    return _sq((_radius(z) - 2.0) / 0.4) - _lse2(-_sq((z1 - 2.0) / 0.6), -_sq((z1 + 2.0) / 0.6))


def _w1(z1: tf.Tensor) -> tf.Tensor:
    return tf.sin(2.0 * math.pi * z1 / 4.0)


def _u2(z: tf.Tensor) -> tf.Tensor:
    return _sq((z[:, 1] - _w1(z[:, 0])) / 0.4)


def _u3(z: tf.Tensor) -> tf.Tensor:
    z1, z2 = z[:, 0], z[:, 1]
    w1 = _w1(z1)
    w2 = 3.0 * tf.exp(-_sq((z1 - 1.0) / 0.6))
    return -_lse2(-_sq((z2 - w1) / 0.35), -_sq((z2 - w1 + w2) / 0.35))


def _u4(z: tf.Tensor) -> tf.Tensor:
    z1, z2 = z[:, 0], z[:, 1]
    w1 = _w1(z1)
    w3 = 3.0 * tf.sigmoid((z1 - 1.0) / 0.3)
    return -_lse2(-_sq((z2 - w1) / 0.4), -_sq((z2 - w1 + w3) / 0.35))


def _u8(z: tf.Tensor) -> tf.Tensor:
    ring = _sq((_radius(z) - 3.0) / 0.4)
    theta = np.arange(4) * math.pi / 4.0
    directions = tf.constant(np.stack([np.cos(theta), np.sin(theta)]), dtype=z.dtype)  # [2, 4]
    u = tf.matmul(z, directions)  # [N, 4]
    modes = tf.concat([-_sq((u - 3.0) / 0.6), -_sq((u + 3.0) / 0.6)], axis=-1)  # [N, 8]
    return ring - tf.reduce_logsumexp(modes, axis=-1)


_POTENTIALS = {"u1": _u1, "u2": _u2, "u3": _u3, "u4": _u4, "u8": _u8}


class Energy:
    """A 2-D potential ``U``: the target density is ``exp(-U(z)) / Z``.

    Built by :func:`get`; see the module docstring for the formulas and the taper.

    Attributes:
        name: ``"u1"``, ``"u2"``, ``"u3"``, ``"u4"`` or ``"u8"``.
        taper: Half-width of the strip ``|z1| <= taper`` outside which the taper penalty acts,
            or ``None`` for no taper.
        bound: Half-width of a square ``[-bound, bound]^2`` that holds (nearly) all the mass;
            for plots and grids.

    Example:
        >>> import tensorflow as tf
        >>> e = get("u2")
        >>> e.energy(tf.constant([[0.0, 0.0]], tf.float64)).dtype
        tf.float64
    """

    def __init__(self, name: str, *, taper: float | None, bound: float) -> None:
        self.name = name
        self.taper = taper
        self.bound = bound
        self._potential = _POTENTIALS[name]

    def __repr__(self) -> str:
        return f"Energy(name={self.name!r}, taper={self.taper}, bound={self.bound})"

    def energy(self, x: Any) -> tf.Tensor:
        """``U(x)`` for points ``x [N, 2]``: a tensor ``[N]`` of ``x``'s float dtype.

        Differentiable, and works eagerly, in ``tf.function`` and under XLA.

        Raises:
            ValueError: If ``x`` does not have shape ``[N, 2]``.
        """
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            x = tf.cast(x, tf.float32)
        if x.shape.rank != 2 or (x.shape[-1] is not None and x.shape[-1] != 2):
            raise ValueError(f"x must have shape [N, 2]; received {x.shape}")
        u = self._potential(x)
        if self.taper is not None:
            out = tf.nn.relu(tf.abs(x[:, 0]) - tf.cast(self.taper, x.dtype))
            u = u + _sq(out / TAPER_WIDTH)
        return u

    __call__ = energy

    def log_prob_unnormalized(self, x: Any) -> tf.Tensor:
        """``-U(x)``, the unnormalised log-density."""
        return -self.energy(x)

    def log_prob(self, x: Any) -> tf.Tensor:
        """The normalised log-density ``-U(x) - log Z`` (with the reference :attr:`log_z`)."""
        lp = self.log_prob_unnormalized(x)
        return lp - tf.cast(self.log_z, lp.dtype)

    @property
    def log_z(self) -> float:
        """Reference ``log Z`` (cached constant for the default taper, else a grid sum);
        ``inf`` where ``exp(-U)`` is not integrable (U2-U4 without taper)."""
        if self.taper is None and self.name in ("u2", "u3", "u4"):
            return math.inf
        if self.taper == _DEFAULT_TAPER[self.name]:
            return LOG_Z[self.name]
        return reference_log_z(self.name, taper=self.taper)


def names() -> list[str]:
    """Names accepted by :func:`get`.

    Example:
        >>> names()
        ['u1', 'u2', 'u3', 'u4', 'u8']
    """
    return sorted(_POTENTIALS)


def get(name: str, *, taper: float | bool | None = None) -> Energy:
    """The potential ``name`` as an :class:`Energy`.

    Args:
        name: One of :func:`names` (``"U1"`` or ``"energy_u1"`` are accepted too).
        taper: ``None`` for the default (strip half-width 4 for U2-U4, none for U1 and U8),
            ``False`` for no taper, or a positive strip half-width.

    Returns:
        The :class:`Energy`.

    Raises:
        ValueError: If ``name`` is unknown or ``taper`` is not positive.

    Example:
        >>> get("u3").taper, get("u3", taper=False).log_z
        (4.0, inf)
    """
    key = str(name).lower().removeprefix("energy_")
    if key not in _POTENTIALS:
        raise ValueError(f"unknown energy name={name!r}; expected one of {names()}")
    if taper is None:
        t = _DEFAULT_TAPER[key]
    elif taper is False:
        t = None
    elif taper is True:
        t = 4.0
    else:
        t = float(taper)
        if not t > 0:
            raise ValueError(f"taper must be a positive half-width, None or False; "
                             f"received taper={taper!r}")
    bound = _BOUND[key] if t is None else max(_BOUND[key], t + 0.5)
    return Energy(key, taper=t, bound=bound)


@functools.lru_cache(maxsize=32)
def reference_log_z(name: str, *, taper: float | None = None, half_width: float = 7.0,
                    resolution: int = 2801) -> float:
    """``log Z`` by a float64 Riemann sum of ``exp(-U)`` on a ``resolution^2`` grid over
    ``[-half_width, half_width]^2`` (``taper`` as stored on the :class:`Energy`, ``None`` for
    none).

    Example:
        >>> round(reference_log_z("u1", resolution=401), 2)
        1.88
    """
    energy = Energy(name, taper=taper, bound=_BOUND[name])
    xs = np.linspace(-half_width, half_width, resolution)
    cell = (xs[1] - xs[0]) ** 2
    parts = []
    rows = max(1, 2_000_000 // resolution)
    for i in range(0, resolution, rows):
        gx, gy = np.meshgrid(xs, xs[i:i + rows])
        points = tf.constant(np.stack([gx.ravel(), gy.ravel()], axis=1))
        parts.append(float(tf.reduce_logsumexp(-energy.energy(points))))
    return float(np.logaddexp.reduce(parts) + math.log(cell))


def _gmm(logits: Any, loc: Any, scale_tril: Any) -> tfd.MixtureSameFamily:
    return tfd.MixtureSameFamily(tfd.Categorical(logits=logits),
                                 tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril))


def fit_gmm(energy: Energy | str, components: int = 50, steps: int = 1500, *,
            samples_per_component: int = 16, learning_rate: float = 0.02, seed: int = 0,
            dtype: str = "float32") -> tfd.MixtureSameFamily:
    """Fit a Gaussian mixture ``q`` to ``exp(-U)`` by reverse KL with Adam.

    Minimises ``E_q[log q(x) + U(x)] = KL(q || p) - log Z``. The expectation is taken
    component by component, which needs no reparameterised sample of the mixture itself:
    ``E_q[f] = sum_k pi_k E_{q_k}[f]`` with ``x = mu_k + L_k eps`` (``samples_per_component``
    draws per component and step), so gradients reach the weights through ``pi_k`` exactly and
    the means and Cholesky factors through the reparameterised draws. Initial means are uniform
    in ``[-0.8 bound, 0.8 bound]^2``, scales ``bound / 8``, weights equal.

    Args:
        energy: An :class:`Energy` or a name for :func:`get`.
        components: Number of mixture components.
        steps: Adam steps.
        samples_per_component: Draws per component and step.
        learning_rate: Adam learning rate.
        seed: Seed of the initial means and of every draw.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        ``tfd.MixtureSameFamily`` of ``MultivariateNormalTriL`` whose parameters are
        ``tf.Variable`` s (the Cholesky factor a ``tfp.util.TransformedVariable``).

    Example:
        >>> q = fit_gmm("u1", components=3, steps=5, samples_per_component=4)
        >>> q.sample(2, seed=1).shape
        TensorShape([2, 2])
    """
    energy = get(energy) if isinstance(energy, str) else energy
    if components < 1 or steps < 0:
        raise ValueError(f"components must be >= 1 and steps >= 0; received "
                         f"components={components}, steps={steps}")
    rng = np.random.default_rng(seed)
    b = energy.bound
    logits = tf.Variable(np.zeros(components), dtype=dtype, name="logits")
    loc = tf.Variable(rng.uniform(-0.8 * b, 0.8 * b, (components, 2)), dtype=dtype, name="loc")
    tril = tfp.util.TransformedVariable(np.tile(np.eye(2) * b / 8.0, (components, 1, 1)),
                                        tfb.FillScaleTriL(diag_shift=1e-5), dtype=dtype,
                                        name="scale_tril")
    q = _gmm(logits, loc, tril)
    variables = q.trainable_variables
    opt = _adam(learning_rate)
    opt.build(variables)
    m = samples_per_component

    @tf.function(jit_compile=True)
    def step(i: tf.Tensor) -> tf.Tensor:
        eps = tf.random.stateless_normal([components, m, 2], seed=tf.stack([seed, i]), dtype=dtype)
        with tf.GradientTape() as tape:
            scale = tf.convert_to_tensor(tril)
            x = loc[:, None, :] + tf.einsum("kij,kmj->kmi", scale, eps)  # [K, m, 2]
            flat = tf.reshape(x, [-1, 2])
            f = tf.reshape(q.log_prob(flat) + energy.energy(flat), [components, m])
            loss = tf.reduce_sum(tf.nn.softmax(logits) * tf.reduce_mean(f, axis=1))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    for i in range(steps):
        step(tf.constant(i, tf.int32))
    return q


def _adam(learning_rate: float) -> Any:
    import tf_keras

    return tf_keras.optimizers.Adam(learning_rate)


def reverse_kl(q: tfd.Distribution, energy: Energy | str, n: int = 100_000, *,
               seed: int = 0) -> tuple[float, float]:
    """Monte Carlo estimate of ``E_q[log q(x) + U(x)]`` and its standard error.

    The estimate is ``KL(q || p) - log Z >= -log Z``.

    Example:
        >>> import tensorflow_probability as tfp
        >>> q = tfp.distributions.MultivariateNormalDiag(loc=[2.0, 0.0], scale_diag=[0.4, 0.4])
        >>> loss, err = reverse_kl(q, "u1", 1000)
        >>> loss > -get("u1").log_z
        True
    """
    energy = get(energy) if isinstance(energy, str) else energy
    x = q.sample(n, seed=tf.constant([seed, 0], tf.int32))
    f = (q.log_prob(x) + energy.energy(x)).numpy().astype(np.float64)
    return float(f.mean()), float(f.std() / math.sqrt(n))


@functools.lru_cache(maxsize=16)
def _fitted(name: str, taper: float | None, components: int, steps: int, seed: int
            ) -> dict[str, Any]:
    energy = get(name, taper=False if taper is None else taper)
    q = fit_gmm(energy, components, steps, seed=seed)
    loss, err = reverse_kl(q, energy, 100_000, seed=seed)
    x = q.sample(100_000, seed=tf.constant([seed, 1], tf.int32))
    lq = q.log_prob(x).numpy().astype(np.float64)
    return {
        "weights": tf.nn.softmax(q.mixture_distribution.logits).numpy().astype(np.float64),
        "loc": q.components_distribution.loc.numpy().astype(np.float64),
        "scale_tril": q.components_distribution.scale_tril.numpy().astype(np.float64),
        "reverse_kl_loss": loss, "reverse_kl_loss_se": err,
        "neg_entropy": float(lq.mean()), "neg_entropy_se": float(lq.std() / math.sqrt(len(lq))),
    }


def fitted_gmm(name: str, *, taper: float | bool | None = None, components: int = 50,
               steps: int = 1500, seed: int = 0) -> tuple[tfd.MixtureSameFamily, dict[str, float]]:
    """The mixture behind dataset ``energy_<name>`` (fitted once per process, then cached).

    Returns:
        ``(q, facts)``: ``q`` a ``float32`` ``tfd.MixtureSameFamily`` with constant parameters,
        ``facts`` its reverse-KL loss ``E_q[log q + U]`` and minus its entropy (Monte Carlo,
        100000 samples, with standard errors).

    Example:
        >>> q, facts = fitted_gmm("u1", components=2, steps=3)
        >>> sorted(facts)[:2]
        ['neg_entropy', 'neg_entropy_se']
    """
    key = get(name, taper=taper)
    params = _fitted(key.name, key.taper, components, steps, seed)
    q = _gmm(tf.math.log(params["weights"].astype(np.float32)),
             params["loc"].astype(np.float32), params["scale_tril"].astype(np.float32))
    return q, {k: v for k, v in params.items() if isinstance(v, float)}


def _sample_params(params: dict[str, Any], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = rng.choice(len(params["weights"]), size=n, p=params["weights"] / params["weights"].sum())
    eps = rng.standard_normal((n, 2))
    x = params["loc"][k] + np.einsum("nij,nj->ni", params["scale_tril"][k], eps)
    return x.astype(np.float32)


def _register(name: str) -> None:
    @register(f"energy_{name}")
    def _load(*, data_dir: Any = None, seed: int = 0, n: int = 10_000,
              val_fraction: float = 0.1, test_fraction: float = 0.1, components: int = 50,
              steps: int = 1500, taper: float | bool | None = None) -> Splits:
        del data_dir  # generated in-process
        energy = get(name, taper=taper)
        params = _fitted(name, energy.taper, components, steps, seed)
        x = _sample_params(params, n, seed)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        test, val, train = x[:n_test], x[n_test:n_test + n_val], x[n_test + n_val:]
        info = {
            "name": f"energy_{name}", "features": 2, "sizes": (len(train), len(val), len(test)),
            "source": f"samples of a {components}-component Gaussian mixture fitted to "
                      f"exp(-U) by reverse KL ({steps} Adam steps)",
            "seed": seed, "energy": name, "taper": energy.taper, "bound": energy.bound,
            "log_z": energy.log_z,
            "gmm_reverse_kl_loss": params["reverse_kl_loss"],
            "gmm_kl": params["reverse_kl_loss"] + energy.log_z,
            "best_log_likelihood": params["neg_entropy"],
            "best_log_likelihood_method": "Monte Carlo, 100000 samples of the fitted mixture "
                                          f"(standard error {params['neg_entropy_se']:.4f})",
        }
        return Splits(train, val, test, info)


for _name in _POTENTIALS:
    _register(_name)
