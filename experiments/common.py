"""Pieces the experiment scripts share: batched, compiled log-densities; a time limit."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
import tf_keras


def batched_log_prob(flow, x: np.ndarray, context: np.ndarray | None = None, *,
                     batch: int = 500, jit: bool = True) -> np.ndarray:
    """``flow.log_prob(x [, context])`` in batches of ``batch`` rows, compiled once."""
    if context is None:
        fn = tf.function(lambda v: flow.log_prob(v), jit_compile=jit, reduce_retracing=True)
        return np.concatenate([fn(tf.constant(x[i:i + batch])).numpy()
                               for i in range(0, len(x), batch)])
    fn = tf.function(lambda v, c: flow.log_prob(v, c), jit_compile=jit, reduce_retracing=True)
    return np.concatenate([fn(tf.constant(x[i:i + batch]), tf.constant(context[i:i + batch]))
                           .numpy() for i in range(0, len(x), batch)])


class TimeLimit(tf_keras.callbacks.Callback):
    """Stops training after ``minutes`` of wall time (at the end of an epoch)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.time() + 60 * minutes

    def on_epoch_end(self, epoch, logs=None):
        if time.time() > self.deadline:
            self.model.stop_training = True


def add_temperature_argument(parser, default: float = 0.7) -> None:
    """``--temperature T [T ...]``: the sampling temperatures of a figure."""
    parser.add_argument("--temperature", type=float, nargs="+", default=[default],
                        help="sampling temperatures of the figure (T = 1.0 is always added)")


def figure_temperatures(values) -> list[float]:
    """The temperatures given, in order and once each, then 1.0 unless given."""
    return list(dict.fromkeys([*values, 1.0]))
