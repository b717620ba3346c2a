"""Elementwise mixture CDF: R -> (0, 1) (or R, through the probit) by a mixture's CDF."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ._common import as_parameter, infer_dtype

tfb = tfp.bijectors

__all__ = ["MixtureCDF", "FAMILIES", "TARGETS"]

FAMILIES = ("normal", "logistic")
TARGETS = ("uniform", "normal")
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


class MixtureCDF(tfb.Bijector):
    """u = F(x) = sum_k pi_k CDF((x - mu_k) / s_k): a monotone map from R onto (0, 1).

    With ``to="normal"`` the map is z = Phi^-1(F(x)) onto R instead (the probit fused in, so
    that it stays exact in the tails where F(x) rounds to 0 or 1: the lower tail works with
    log F, the upper with log(1 - F), both as log-sum-exps over the components).

    The log-det is the mixture density, log|dF/dx| = log sum_k pi_k pdf((x - mu_k) / s_k) / s_k
    (minus log phi(z) with ``to="normal"``). The inverse solves log F(x) = log u (or
    log(1 - F(x)) = log(1 - u) above the median) by a safeguarded Newton/bisection iteration
    in the bracket [min_k(mu_k + s_k Q(u)), max_k(mu_k + s_k Q(u))] (Q the component quantile:
    every component CDF is <= u below it and >= u above it, so the root is inside), in a
    fixed-iteration ``tf.while_loop`` that compiles under XLA. The iteration runs under
    ``tf.stop_gradient``; a last Newton step carries the implicit-function gradient, so
    derivatives of the inverse are exact.

    Elementwise (``forward_min_event_ndims = 0``): ``logits``, ``locs`` and ``scales`` have shape
    ``[..., K]`` and broadcast against ``x[..., None]``.

    Args:
        logits: Unnormalised log mixture weights, ``[..., K]``.
        locs: Component locations, ``[..., K]``.
        scales: Component scales (> 0), ``[..., K]``.
        family: ``"normal"`` or ``"logistic"`` components.
        to: ``"uniform"`` (onto (0, 1)) or ``"normal"`` (onto R through the probit).
        max_iterations: Cap of the inverse's root solve.
        validate_args: Passed to ``tfb.Bijector``.
        name: Bijector name.

    Raises:
        ValueError: If ``family`` or ``to`` is unknown.

    Example:
        >>> bij = MixtureCDF([0.0, 0.0], [-1.0, 1.0], [0.5, 0.5])
        >>> u = bij.forward(tf.constant([-1.0, 0.0, 2.0]))
        >>> [round(float(v), 3) for v in u]
        [0.25, 0.5, 0.989]
        >>> [round(float(v), 3) for v in bij.inverse(u)]
        [-1.0, 0.0, 2.0]

    References:
        Masked Autoregressive Flow for Density Estimation (MADE MoG conditionals), Papamakarios
        et al. 2017, https://arxiv.org/abs/1705.07057; Flow++ (mixture-of-logistics CDF
        couplings), Ho et al. 2019, https://arxiv.org/abs/1902.00275
    """

    def __init__(self, logits: Any, locs: Any, scales: Any, *, family: str = "normal",
                 to: str = "uniform", max_iterations: int = 100, validate_args: bool = False,
                 name: str = "mixture_cdf") -> None:
        parameters = dict(locals())
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
        if to not in TARGETS:
            raise ValueError(f"to must be one of {TARGETS}; got {to!r}")
        with tf.name_scope(name) as scope_name:
            dtype = infer_dtype(logits, locs, scales)
            self._logits = as_parameter(logits, "logits", dtype)
            self._locs = as_parameter(locs, "locs", dtype)
            self._scales = as_parameter(scales, "scales", dtype)
            self._family = family
            self._to = to
            self._max_iterations = int(max_iterations)
            super().__init__(forward_min_event_ndims=0, is_constant_jacobian=False,
                             validate_args=validate_args, dtype=dtype, parameters=parameters,
                             name=scope_name)

    @property
    def family(self) -> str:
        """``"normal"`` or ``"logistic"``."""
        return self._family

    @property
    def to(self) -> str:
        """``"uniform"`` or ``"normal"``."""
        return self._to

    # ------------------------------------------------------------------ standard pieces
    def _log_cdf(self, z: tf.Tensor) -> tf.Tensor:
        """log CDF of the standard component; log(1 - CDF(z)) is _log_cdf(-z) (symmetric)."""
        if self._family == "normal":
            # TFP's accurate log Phi (asymptotic series in the far left tail).
            return tfp.distributions.Normal(tf.zeros([], z.dtype), 1.0).log_cdf(z)
        return -tf.math.softplus(-z)

    def _log_pdf(self, z: tf.Tensor) -> tf.Tensor:
        if self._family == "normal":
            return -0.5 * tf.square(z) - tf.constant(_HALF_LOG_2PI, z.dtype)
        return -z - 2.0 * tf.math.softplus(-z)

    def _quantile(self, log_u: tf.Tensor, log_v: tf.Tensor) -> tf.Tensor:
        """Standard component quantile at u, given log u and log v = log(1 - u)."""
        if self._family == "logistic":
            return log_u - log_v
        probit = self._probit_of_log(tf.minimum(log_u, log_v))
        return tf.where(log_u < log_v, probit, -probit)

    @staticmethod
    def _std_normal_log_cdf(z: tf.Tensor) -> tf.Tensor:
        return tfp.distributions.Normal(tf.zeros([], z.dtype), 1.0).log_cdf(z)

    def _probit_of_log(self, log_u: tf.Tensor) -> tf.Tensor:
        """Phi^-1(exp(log_u)) for log_u <= log(1/2), also where exp(log_u) underflows.

        The start is ``ndtri`` above log u = -30 and the tail asymptote
        log Phi(z) ~ -z^2/2 - log(-z) - log(2 pi)/2 below it; Newton steps on
        log Phi(z) = log u then refine both (XLA's float32 ``ndtri`` is only good to ~1e-4).
        """
        dtype = log_u.dtype
        log_2pi = tf.constant(2.0 * _HALF_LOG_2PI, dtype)
        direct = tf.math.ndtri(tf.exp(tf.maximum(log_u, -30.0)))
        tail = tf.minimum(log_u, -30.0)
        z = -tf.sqrt(-2.0 * tail)
        for _ in range(3):  # fixed point of the asymptote
            z = -tf.sqrt(tf.maximum(-2.0 * tail - log_2pi - 2.0 * tf.math.log(-z), 1.0))
        z = tf.where(log_u > -30.0, direct, z)
        for _ in range(3):  # Newton on log Phi(z) - log u
            log_cdf = self._std_normal_log_cdf(z)
            slope = tf.exp(-0.5 * tf.square(z) - 0.5 * log_2pi - log_cdf)
            z = z - (log_cdf - log_u) / slope
        return z

    def _terms(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(log F(x), log(1 - F(x)), log f(x)), each a log-sum-exp over the components."""
        log_w = tf.math.log_softmax(tf.convert_to_tensor(self._logits), axis=-1)
        locs = tf.convert_to_tensor(self._locs)
        scales = tf.convert_to_tensor(self._scales)
        z = (x[..., None] - locs) / scales
        log_f = tf.reduce_logsumexp(log_w + self._log_cdf(z), axis=-1)
        log_s = tf.reduce_logsumexp(log_w + self._log_cdf(-z), axis=-1)
        log_density = tf.reduce_logsumexp(log_w + self._log_pdf(z) - tf.math.log(scales), axis=-1)
        return log_f, log_s, log_density

    # ------------------------------------------------------------------ bijector methods
    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        log_f, log_s, _ = self._terms(x)
        if self._to == "uniform":
            return tf.exp(log_f)
        probit = self._probit_of_log(tf.minimum(log_f, log_s))
        return tf.where(log_f < log_s, probit, -probit)

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        log_f, log_s, log_density = self._terms(x)
        if self._to == "uniform":
            return log_density
        z = self._forward(x)
        return log_density + 0.5 * tf.square(z) + tf.constant(_HALF_LOG_2PI, x.dtype)

    def _target(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(log u, log(1 - u)) of the point ``y`` of the output space."""
        if self._to == "normal":
            return self._std_normal_log_cdf(y), self._std_normal_log_cdf(-y)
        tiny = np.finfo(y.dtype.as_numpy_dtype).tiny
        return tf.math.log(tf.maximum(y, tiny)), tf.math.log(tf.maximum(1.0 - y, tiny))

    def _residual(self, x: tf.Tensor, log_u: tf.Tensor, log_v: tf.Tensor
                  ) -> tuple[tf.Tensor, tf.Tensor]:
        """r(x), increasing in x and 0 at the root, and its slope r'(x)."""
        log_f, log_s, log_density = self._terms(x)
        lower = log_u < log_v
        r = tf.where(lower, log_f - log_u, log_v - log_s)
        slope = tf.exp(log_density - tf.where(lower, log_f, log_s))
        return r, slope

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        log_u, log_v = self._target(y)
        locs = tf.convert_to_tensor(self._locs)
        scales = tf.convert_to_tensor(self._scales)
        edges = locs + scales * self._quantile(log_u, log_v)[..., None]
        lo, hi = tf.reduce_min(edges, axis=-1), tf.reduce_max(edges, axis=-1)
        x = self._solve(tf.stop_gradient(log_u), tf.stop_gradient(log_v), tf.stop_gradient(lo),
                        tf.stop_gradient(hi))
        # One Newton step whose value is (numerically) zero at the root and whose gradient is
        # the implicit-function derivative dx = -dr / r'.
        r, slope = self._residual(x, log_u, log_v)
        return x - (r - tf.stop_gradient(r)) / tf.stop_gradient(slope)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        return -self._forward_log_det_jacobian(self._inverse(y))

    def _solve(self, log_u: tf.Tensor, log_v: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor
               ) -> tf.Tensor:
        """Safeguarded Newton on the increasing residual in [lo, hi]; bisection as fallback."""
        dtype = log_u.dtype
        eps = tf.constant(np.finfo(dtype.as_numpy_dtype).eps, dtype)
        tiny = tf.constant(np.finfo(dtype.as_numpy_dtype).tiny, dtype)

        def body(i, x, lo, hi, _):
            r, slope = self._residual(x, log_u, log_v)
            lo = tf.where(r <= 0, x, lo)
            hi = tf.where(r >= 0, x, hi)
            newton = x - r / tf.maximum(slope, tiny)
            inside = (newton > lo) & (newton < hi)
            x_new = tf.where(inside | tf.equal(r, 0.0), newton, 0.5 * (lo + hi))
            moving = tf.abs(x_new - x) > 4.0 * eps * (1.0 + tf.abs(x_new))
            return i + 1, x_new, lo, hi, tf.reduce_any(moving)

        def cond(i, x, lo, hi, running):
            return (i < self._max_iterations) & running

        x0 = 0.5 * (lo + hi)
        _, x, _, _, _ = tf.while_loop(cond, body, (tf.constant(0), x0, lo, hi, tf.constant(True)))
        return tf.stop_gradient(x)
