"""Keras callbacks for flows: the non-finite guard and the probe that names the failing step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..bijectors._common import is_chain as _is_chain
from ..bijectors._common import route_kwargs as _route

tfb = tfp.bijectors

__all__ = ["NonFiniteGuard", "first_nonfinite_step", "leaf_bijectors"]


def leaf_bijectors(bijector: tfb.Bijector) -> list[tfb.Bijector]:
    """The leaves of nested ``tfb.Chain``s, in the order their inverses run (data -> base).

    Example:
        >>> chain = tfb.Chain([tfb.Shift(1.0, name="a"), tfb.Chain([tfb.Scale(2.0, name="b")])])
        >>> [b.name for b in leaf_bijectors(chain)]
        ['a', 'b']
    """
    if _is_chain(bijector):  # also TFP's private _Chain, which tfb.Chain(...) builds
        return [leaf for sub in bijector.bijectors for leaf in leaf_bijectors(sub)]
    return [bijector]


def _finite(t: tf.Tensor) -> bool:
    return bool(tf.reduce_all(tf.math.is_finite(t)).numpy())


def first_nonfinite_step(flow: Any, x: Any, *, context: Any = None, training: bool = True
                         ) -> str | None:
    """Run ``x`` through the flow step by step (data -> base) and name what first goes non-finite.

    Checks each leaf bijector's output and log-determinant, then the base log-density, then
    the gradient of the mean negative log-likelihood with respect to every variable.

    Args:
        flow: A :class:`~normalizingflows.flows.core.Flow`.
        x: The batch, shape ``[N, D]``, or an ``(x, context)`` pair.
        context: The batch's context, for a conditional flow.
        training: Evaluate as in a training step (batch statistics in batch norm).

    Returns:
        A sentence naming the step (bijector name or variable name), or ``None`` if everything
        is finite.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=8)
        >>> first_nonfinite_step(flow, np.zeros((4, 2), np.float32)) is None
        True
    """
    if isinstance(x, (tuple, list)):
        x, context = x
    x = tf.identity(tf.cast(np.asarray(x), flow.dtype))
    if not _finite(x):
        return "the input batch itself holds NaN/Inf"
    embedded = flow._as_context(context)
    z, embedded = flow._broadcast(x, embedded)
    leaf = {"training": bool(training)}
    if embedded is not None:
        if not _finite(embedded):
            return "the context (after the context network) holds NaN/Inf"
        leaf["context"] = embedded
    for step in leaf_bijectors(flow.bijector):
        kwargs = _route(step, leaf)
        z_new = step.inverse(tf.identity(z), **kwargs)
        if not _finite(z_new):
            return f"bijector {step.name!r} (its output, data -> base) went non-finite"
        ildj = step.inverse_log_det_jacobian(tf.identity(z), event_ndims=1, **kwargs)
        if not _finite(ildj):
            return f"bijector {step.name!r} (its log-determinant) went non-finite"
        z = z_new
    base_kwargs = flow._condition(embedded).get("distribution_kwargs", {})
    if not _finite(flow.base.log_prob(z, **base_kwargs)):
        return "the base distribution's log-density went non-finite"
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x, context, training=training))
    if not _finite(loss):
        return "the log-density went non-finite (no single step did)"
    variables = flow.trainable_variables
    grads = tape.gradient(loss, variables)
    bad = [v.name for v, g in zip(variables, grads, strict=True)
           if g is not None and not _finite(g)]
    if bad:
        return f"the gradient went non-finite first in variable(s) {bad[:3]} (Keras layer names)"
    return None


class NonFiniteGuard(tf_keras.callbacks.Callback):
    """Stop training on the first non-finite loss or weight, restore the last good weights and
    name the batch and the step that failed.

    After every batch whose loss and weights are finite the weights are copied; on a
    non-finite loss (or non-finite weights after an update) the copy is restored, training
    stops, and, if ``batch_fn`` can rebuild the offending batch, the flow is probed step by step
    on it (:func:`first_nonfinite_step`). The finding is in :attr:`report` (``None`` while all
    is well) and is printed unless ``verbose=0``.

    Args:
        batch_fn: ``(epoch, batch) -> x`` giving the batch Keras trained on at that index.
        verbose: Print the report when the guard trips.

    Example:
        >>> guard = NonFiniteGuard()
        >>> guard.report is None
        True
    """

    def __init__(self, batch_fn: Callable[[int, int], Any] | None = None, verbose: int = 1
                 ) -> None:
        super().__init__()
        self.batch_fn = batch_fn
        self.verbose = verbose
        self.report: dict | None = None
        self._epoch = 0
        self._snapshot: list[tf.Variable] | None = None
        self._save = None

    @property
    def tripped(self) -> bool:
        """Whether the guard stopped the run."""
        return self.report is not None

    def on_train_begin(self, logs: dict | None = None) -> None:
        weights = self.model.weights
        self._snapshot = [tf.Variable(v, trainable=False) for v in weights]

        @tf.function
        def save() -> tf.Tensor:
            # Only float weights can go non-finite (ActNorm's `initialized` flag is a bool).
            ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in weights
                                if v.dtype.is_floating])
            if ok:
                for src, dst in zip(weights, self._snapshot, strict=True):
                    dst.assign(src)
            return ok

        self._save = save
        save()  # trace now, not inside the first batch (Keras times batch callbacks)

    def restore(self) -> None:
        """Put the last good weights back."""
        for dst, src in zip(self.model.weights, self._snapshot, strict=True):
            dst.assign(src)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if np.isfinite(loss) and bool(self._save()):
            return
        what = "loss" if not np.isfinite(loss) else "weights after the update"
        self.restore()
        self.model.stop_training = True
        step = None
        if self.batch_fn is not None:
            step = first_nonfinite_step(self.model, self.batch_fn(self._epoch, batch))
            self.restore()  # the probe may have touched batch-norm statistics
        where = step or "no step could be named (the batch was not available or all finite)"
        message = (f"non-finite {what} at epoch {self._epoch + 1}, batch {batch}: {where}. "
                   "Training stopped; the weights from before that batch were restored.")
        self.report = {"epoch": self._epoch + 1, "batch": int(batch), "what": what,
                       "step": step, "message": message}
        if self.verbose:
            print(message)
