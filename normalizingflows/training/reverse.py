"""``fit_reverse_kl``: fit a flow to an unnormalised density exp(-U) from its own samples."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from .callbacks import NonFiniteGuard
from .forward import _positive_int, make_optimizer

__all__ = ["ReverseKLResult", "fit_reverse_kl", "importance_estimates"]


@dataclass
class ReverseKLResult:
    """What :func:`fit_reverse_kl` returns.

    Attributes:
        history: ``{"loss": [...]}``, the mean loss E_q[log q + U] of each logging interval.
        loss: Mean loss of the last interval (``log Z`` + KL(q || p) in expectation).
        log_z_estimate: Importance-sampled log Z: log mean exp(-U(x) - log q(x)), x ~ q.
        log_z_se: Its standard error (delta method).
        elbo: mean(-U(x) - log q(x)), a lower bound on log Z.
        ess: Effective sample size (sum w)^2 / sum w^2 of the importance weights.
        ess_fraction: ``ess`` divided by the number of samples.
        log_z_reference: The energy's reference log Z, when it has one.
        nonfinite: The non-finite guard's report if it stopped the run.
        steps: Optimisation steps run.
        seconds: Wall time.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    loss: float = math.nan
    log_z_estimate: float = math.nan
    log_z_se: float = math.nan
    elbo: float = math.nan
    ess: float = math.nan
    ess_fraction: float = math.nan
    log_z_reference: float | None = None
    nonfinite: dict | None = None
    steps: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return asdict(self)


def _energy_fn(energy: Any) -> Any:
    fn = getattr(energy, "energy", None)
    if fn is None:
        if not callable(energy):
            raise TypeError(f"energy must have an .energy(x) method or be callable; got "
                            f"{type(energy).__name__}")
        fn = energy
    return fn


class _ReverseKL(tf_keras.Model):
    """Keras wrapper whose train step samples the flow and minimises E_q[log q(x) + U(x)]."""

    def __init__(self, flow: Any, energy_fn: Any, batch_size: int, seed: int) -> None:
        super().__init__()
        self.flow = flow
        self._energy = energy_fn
        self._batch_size = batch_size
        self._seed_value = int(seed)
        self._tracker = tf_keras.metrics.Mean(name="loss")

    @property
    def metrics(self) -> list:
        return [self._tracker]

    def call(self, inputs: Any, training: bool | None = None) -> tf.Tensor:
        return self.flow(inputs)

    def train_step(self, step: tf.Tensor) -> dict[str, tf.Tensor]:
        seed = tf.stack([tf.constant(self._seed_value, tf.int64), tf.cast(step, tf.int64)])
        seed = tf.cast(seed % (2**31 - 1), tf.int32)
        with tf.GradientTape() as tape:
            x, log_q = self.flow.sample_and_log_prob(self._batch_size, seed=seed)
            loss = tf.reduce_mean(log_q + tf.cast(self._energy(x), log_q.dtype))
        self.optimizer.minimize(loss, self.flow.trainable_variables, tape=tape)
        self._tracker.update_state(loss)
        return {"loss": self._tracker.result()}


def importance_estimates(flow: Any, energy: Any, *, n: int = 10_000, batch_size: int = 5_000,
                         seed: int = 0) -> dict[str, float]:
    """log Z, its standard error, the ELBO and the ESS from ``n`` samples of ``flow``.

    With log-weights l = -U(x) - log q(x), x ~ q: log Z ~ logsumexp(l) - log n and
    ESS = exp(2 logsumexp(l) - logsumexp(2 l)).

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("realnvp", 2, layers=1, hidden_units=4)
        >>> gauss = lambda x: 0.5 * tf.reduce_sum(x**2, -1)    # log Z = log(2 pi)
        >>> est = importance_estimates(flow, gauss, n=1000)
        >>> abs(est["log_z_estimate"] - math.log(2 * math.pi)) < 1e-4
        True
    """
    energy_fn = _energy_fn(energy)
    parts = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        x, log_q = flow.sample_and_log_prob(m, seed=tf.constant([seed, 1_000_003 + i], tf.int32))
        parts.append(-np.asarray(energy_fn(x), np.float64) - np.asarray(log_q, np.float64))
    lw = np.concatenate(parts)
    if not np.isfinite(lw).all():
        return {"log_z_estimate": math.nan, "log_z_se": math.nan, "elbo": math.nan,
                "ess": 0.0, "ess_fraction": 0.0}
    top = lw.max()
    w = np.exp(lw - top)
    log_z = float(top + np.log(w.mean()))
    ess = float(w.sum() ** 2 / (w**2).sum())
    se = float(w.std() / (w.mean() * math.sqrt(len(w))))
    return {"log_z_estimate": log_z, "log_z_se": se, "elbo": float(lw.mean()), "ess": ess,
            "ess_fraction": ess / len(w)}


def _chunk(steps: int, log_every: int) -> int:
    return max(d for d in range(1, min(log_every, steps) + 1) if steps % d == 0)


def fit_reverse_kl(flow: Any, energy: Any, *, steps: int, batch_size: int = 256,
                   lr: float = 1e-3, seed: int = 0, schedule: str | None = "cosine",
                   clipnorm: float | None = None, eval_samples: int = 10_000,
                   log_every: int = 100, verbose: int = 1, jit_compile: bool = True,
                   callbacks: list | tuple = ()) -> ReverseKLResult:
    """Fit ``flow`` to p(x) = exp(-U(x)) / Z by reverse KL, with Keras ``fit``.

    Loss: E_q[log q(x) + U(x)] = KL(q || p) - log Z, estimated on ``batch_size``
    reparameterised samples per step (``flow.sample_and_log_prob``; use a flow that samples
    cheaply: ``realnvp``, ``nsf_coupling``, ``iaf``, or ``planar``/``radial`` with
    ``invert=True``). Step ``t`` draws with the stateless seed ``(seed, t)``. Afterwards log Z
    and the effective sample size are estimated by importance sampling.

    Args:
        flow: A :class:`~normalizingflows.flows.core.Flow`.
        energy: An object with ``.energy(x) -> U(x)`` (``nf.data.energy``), its name, or a
            callable ``U``.
        steps: Optimisation steps.
        batch_size: Samples per step.
        lr: Peak learning rate (Adam).
        seed: Seed of every sample drawn.
        schedule: ``"cosine"`` (default) or ``None``.
        clipnorm: Gradient clipping norm.
        eval_samples: Samples for the importance estimates.
        log_every: Steps per Keras "epoch" (one history entry and progress line each).
        verbose: Keras verbosity.
        jit_compile: Compile the step with XLA.
        callbacks: Extra Keras callbacks.

    Returns:
        :class:`ReverseKLResult`.

    Raises:
        ValueError: On ``steps < 1``, a bad schedule or an unknown energy name.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("realnvp", 2, layers=1, hidden_units=4)
        >>> gauss = lambda x: 0.5 * tf.reduce_sum(x**2, -1)
        >>> r = fit_reverse_kl(flow, gauss, steps=2, batch_size=8, eval_samples=100, verbose=0,
        ...                    jit_compile=False)
        >>> len(r.history["loss"]) >= 1
        True
    """
    start = time.perf_counter()
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    if schedule not in (None, "cosine"):
        raise ValueError(f"schedule must be None or 'cosine' for reverse KL; got {schedule!r}")
    if isinstance(energy, str):
        from ..data import energy as energies  # noqa: PLC0415 (written alongside)

        energy = energies.get(energy)
    energy_fn = _energy_fn(energy)
    chunk = _chunk(steps, _positive_int(log_every, "log_every"))
    model = _ReverseKL(flow, energy_fn, batch_size, seed)
    optimizer = make_optimizer(lr, schedule=schedule, decay_steps=steps, clipnorm=clipnorm)
    model.compile(optimizer, jit_compile=jit_compile)
    guard = NonFiniteGuard(verbose=verbose)
    history = model.fit(tf.data.Dataset.range(steps), epochs=steps // chunk,
                        steps_per_epoch=chunk, verbose=verbose, callbacks=[guard, *callbacks])
    losses = [float(v) for v in history.history.get("loss", [])]
    est = importance_estimates(flow, energy_fn, n=_positive_int(eval_samples, "eval_samples"),
                               seed=seed)
    reference = getattr(energy, "log_z", None)
    return ReverseKLResult(history={"loss": losses}, loss=losses[-1] if losses else math.nan,
                           log_z_reference=None if reference is None else float(reference),
                           nonfinite=guard.report, steps=int(model.optimizer.iterations.numpy()),
                           seconds=time.perf_counter() - start, **est)
