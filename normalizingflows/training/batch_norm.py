"""Batch norm with full-training-set statistics at test time (MAF paper, section 3.4).

In training a :class:`~normalizingflows.bijectors.BatchNorm` normalises with the statistics of
its batch; at test time the MAF paper uses the mean and variance of each batch-norm layer's
input over the *whole training set*, computed layer by layer in the data -> base direction
(each layer sees the training set as the layers before it, with their final statistics, map
it). Moving averages are a cheaper stand-in: they mix statistics of the networks of many
steps ago, so they lag the final network.

:func:`set_batch_norm_statistics` does the exact pass; :class:`BatchNormStatistics` runs it
before every validation and at the end of training (``fit(..., batch_norm="train")``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from ..bijectors import BatchNorm
from ..bijectors._common import route_kwargs as _route
from .callbacks import leaf_bijectors

__all__ = ["set_batch_norm_statistics", "BatchNormStatistics", "batch_norm_layers"]


def batch_norm_layers(flow: Any) -> list[BatchNorm]:
    """The :class:`~normalizingflows.bijectors.BatchNorm` steps of ``flow``, data -> base."""
    return [b for b in leaf_bijectors(flow.bijector) if isinstance(b, BatchNorm)]


class _StepwisePass:
    """Compiled ``inverse`` of each leaf step of a flow (data -> base), evaluation mode."""

    def __init__(self, flow: Any) -> None:
        self.flow = flow
        self.leaves = leaf_bijectors(flow.bijector)
        norms = [i for i, b in enumerate(self.leaves) if isinstance(b, BatchNorm)]
        self.last = norms[-1] if norms else -1
        self._fns: dict[int, Any] = {}
        self._embed = tf.function(flow._as_context)

    def step(self, i: int) -> Any:
        if i not in self._fns:
            leaf = self.leaves[i]

            def push(z: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
                kwargs = {"training": False}
                if context is not None:
                    kwargs["context"] = context
                return leaf.inverse(z, **_route(leaf, kwargs))

            self._fns[i] = tf.function(push, reduce_retracing=True)
        return self._fns[i]

    def __call__(self, x: Any, context: Any, batch_size: int) -> int:
        """Set the statistics from ``x`` (or an ``(x, context)`` pair); return how many."""
        if self.last < 0:
            return 0
        if isinstance(x, (tuple, list)):
            x, context = x
        dtype = self.flow.dtype
        z = np.array(x, dtype=dtype, copy=True)
        context = None if context is None else np.asarray(context)
        starts = range(0, len(z), batch_size)
        embedded = None
        if context is not None:
            embedded = [self._embed(tf.constant(context[s:s + batch_size], dtype))
                        for s in starts]
        done = 0
        for i in range(self.last + 1):
            leaf = self.leaves[i]
            if isinstance(leaf, BatchNorm):
                # Two passes in float64: the exact mean, then the biased variance around it
                # (what the layer computes on a batch in training).
                mean = np.zeros(z.shape[1], np.float64)
                for s in starts:
                    mean += z[s:s + batch_size].sum(0, dtype=np.float64)
                mean /= len(z)
                var = np.zeros_like(mean)
                for s in starts:
                    var += np.square(z[s:s + batch_size] - mean).sum(0)
                var /= len(z)
                leaf.moving_mean.assign(mean.astype(dtype))
                leaf.moving_variance.assign(var.astype(dtype))
                done += 1
            if i < self.last:
                fn = self.step(i)
                for b, s in enumerate(starts):
                    out = fn(tf.constant(z[s:s + batch_size]),
                             None if embedded is None else embedded[b])
                    z[s:s + batch_size] = out.numpy()
        return done


def set_batch_norm_statistics(flow: Any, data: Any, *, context: Any = None,
                              batch_size: int = 10_000) -> int:
    """Set every batch-norm layer's stored statistics to those of its input over ``data``.

    Layer by layer in the data -> base direction: the statistics of a layer are the exact mean
    and (biased) variance, over all of ``data``, of what the steps before it output in
    evaluation mode with their statistics already set. Afterwards ``flow.log_prob(x)`` (which
    evaluates batch norm with the stored statistics) is the MAF paper's test-time density.

    Args:
        flow: A :class:`~normalizingflows.flows.core.Flow`.
        data: The training set, ``[N, D]`` (or ``(x, context)`` for a conditional flow).
        context: Its context ``[N, C]`` (conditional flows).
        batch_size: Rows per compiled call.

    Returns:
        The number of batch-norm layers set (0 for a flow without batch norm; nothing runs).

    Example:
        >>> import numpy as np
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=8, batch_norm=True)
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, (500, 2)).astype("float32")
        >>> set_batch_norm_statistics(flow, x)
        2
        >>> first = nf.training.batch_norm_layers(flow)[0]  # after a fresh (identity) MAF layer
        >>> bool(np.allclose(first.moving_mean.numpy(), x.mean(0), atol=1e-5))
        True
    """
    return _StepwisePass(flow)(data, context, int(batch_size))


class BatchNormStatistics(tf_keras.callbacks.Callback):
    """Keras callback: full-training-set batch-norm statistics before every validation and at
    the end of training, so validation losses (and early stopping) see the test-time flow.

    Costs one evaluation-mode (forward only) pass over the training set per validation.
    ``nf.training.fit(..., batch_norm="train")`` adds it.

    Args:
        data: The training set, ``[N, D]`` or ``(x, context)``.
        batch_size: Rows per compiled call.
        at_end: Also set them when training ends (``fit`` does not need it: the best epoch's
            weights it puts back hold the statistics set before that epoch's validation).
    """

    def __init__(self, data: Any, *, batch_size: int = 10_000, at_end: bool = True) -> None:
        super().__init__()
        self.data = data
        self.batch_size = int(batch_size)
        self.at_end = bool(at_end)
        self._pass: _StepwisePass | None = None
        self._in_fit = False

    def run(self) -> int:
        """Set the statistics now; return the number of layers set."""
        if self._pass is None:
            self._pass = _StepwisePass(self.model)
        return self._pass(self.data, None, self.batch_size)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._in_fit = True

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._in_fit:  # validation inside fit; a separate evaluate() is left alone
            self.run()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        if self.at_end:
            self.run()
