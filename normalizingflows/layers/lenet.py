"""LeNet-5 classifiers: a plain one and its MNF (Bayesian) twin, with vectorised posterior
predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from ..diagnostics import count_parameters
from .mnf import MNFConv2D, MNFDense, split_seed

__all__ = ["LeNet", "MNFLeNet", "parameter_counts"]


def _check_widths(filters: Sequence[int], hidden_units: int, classes: int,
                  kernel_size: int) -> tuple[int, int]:
    filters = tuple(int(f) for f in filters)
    if len(filters) != 2 or min(filters) < 1:
        raise ValueError(f"filters must be two positive widths (conv1, conv2); got {filters!r}")
    for name, value in (("hidden_units", hidden_units), ("classes", classes),
                        ("kernel_size", kernel_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1; got {value!r}")
    return filters  # type: ignore[return-value]


class _Classifier(tf_keras.Model):
    """Shared predictions of the two LeNets (logits out of ``call``)."""

    input_shape_: tuple[int, int, int]
    stochastic = False

    def _check_images(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x must be floating-point images; got dtype {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != self.input_shape_:
            raise ValueError(f"x must have shape [N, {', '.join(map(str, self.input_shape_))}]; "
                             f"got {list(x.shape)}")
        return x

    def predict_samples(self, x: Any, samples: int = 100, *, seed: int = 0,
                        batch_rows: int = 4096) -> np.ndarray:
        """Class probabilities of ``samples`` posterior draws, shape ``[samples, N, classes]``.

        Vectorised: each compiled call runs ``batch_rows`` rows = ``samples`` copies of a
        chunk of ``max(1, batch_rows // samples)`` images, every copy with its own noise (one
        posterior draw per row, as in training). A deterministic network returns its one
        softmax, broadcast to ``samples`` copies. The same ``seed`` and ``batch_rows`` give the
        same numbers.

        Raises:
            ValueError: If ``samples < 1`` or the images have the wrong shape.
        """
        if int(samples) < 1:
            raise ValueError(f"samples must be >= 1; got {samples!r}")
        samples = int(samples)
        x = self._check_images(x).astype(self.dtype, copy=False)
        if not self.stochastic:
            probs = self._predict_chunks(x, 1, seed, batch_rows)
            return np.broadcast_to(probs, (samples, *probs.shape[1:]))
        return self._predict_chunks(x, samples, seed, batch_rows)

    def predict_proba(self, x: Any, samples: int = 100, *, seed: int = 0,
                      batch_rows: int = 4096) -> np.ndarray:
        """Posterior predictive probabilities ``[N, classes]``: the mean of
        :meth:`predict_samples`."""
        return self.predict_samples(x, samples, seed=seed, batch_rows=batch_rows).mean(axis=0)

    def _predict_chunks(self, x: np.ndarray, samples: int, seed: int,
                        batch_rows: int) -> np.ndarray:
        if getattr(self, "_probs_fn", None) is None:
            spec = tf.TensorSpec([None, *self.input_shape_], self.dtype)
            self._probs_fn = tf.function(self._tiled_probs, input_signature=[
                spec, tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)],
                reduce_retracing=True)
        per_chunk = max(1, int(batch_rows) // samples)
        base = tf.constant([int(seed), 0], tf.int64)
        out = []
        for i, start in enumerate(range(0, len(x), per_chunk)):
            chunk_seed = tf.cast(tf.random.experimental.stateless_fold_in(base, i), tf.int64)
            out.append(self._probs_fn(tf.constant(x[start:start + per_chunk]),
                                      tf.constant(samples, tf.int32), chunk_seed).numpy())
        return np.concatenate(out, axis=1)

    def _tiled_probs(self, x: tf.Tensor, samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        n = tf.shape(x)[0]
        tiled = tf.tile(x, tf.concat([[samples], tf.ones([3], tf.int32)], 0))
        logits = self(tiled, training=False, seed=seed)
        return tf.reshape(tf.nn.softmax(logits), [samples, n, -1])


class LeNet(_Classifier):
    """LeNet-5 as in the MNF paper: conv(20, 5x5)-pool-conv(50, 5x5)-pool-dense(500)-dense(10),
    ReLU, 2x2 max pooling, logits out.

    Args:
        filters: Filters of the two conv layers.
        hidden_units: Width of the hidden dense layer.
        classes: Number of outputs.
        kernel_size: Conv kernel size.
        input_shape: ``(H, W, C)`` of the images.
        seed: Seed of the initial weights.

    Example:
        >>> net = LeNet(filters=(2, 3), hidden_units=8)
        >>> net.predict_samples(np.zeros((4, 28, 28, 1), np.float32), samples=2).shape
        (2, 4, 10)
        >>> count_parameters(LeNet())
        431080
    """

    def __init__(self, *, filters: Sequence[int] = (20, 50), hidden_units: int = 500,
                 classes: int = 10, kernel_size: int = 5,
                 input_shape: Sequence[int] = (28, 28, 1), seed: int = 0,
                 name: str = "lenet") -> None:
        super().__init__(name=name)
        f1, f2 = _check_widths(filters, hidden_units, classes, kernel_size)
        self.input_shape_ = tuple(int(s) for s in input_shape)
        init = lambda i: tf_keras.initializers.GlorotUniform(seed=seed * 7919 + i)  # noqa: E731
        self.conv1 = tf_keras.layers.Conv2D(f1, kernel_size, activation="relu",
                                            kernel_initializer=init(1), name="conv1")
        self.pool1 = tf_keras.layers.MaxPool2D(2, name="pool1")
        self.conv2 = tf_keras.layers.Conv2D(f2, kernel_size, activation="relu",
                                            kernel_initializer=init(2), name="conv2")
        self.pool2 = tf_keras.layers.MaxPool2D(2, name="pool2")
        self.flatten = tf_keras.layers.Flatten(name="flatten")
        self.dense1 = tf_keras.layers.Dense(hidden_units, activation="relu",
                                            kernel_initializer=init(3), name="dense1")
        self.dense2 = tf_keras.layers.Dense(classes, kernel_initializer=init(4), name="dense2")
        self(tf.zeros([1, *self.input_shape_]))

    def call(self, inputs: Any, training: bool | None = None, seed: Any = None) -> tf.Tensor:
        """Logits ``[N, classes]`` (``seed`` is accepted for symmetry and ignored)."""
        h = self.pool1(self.conv1(inputs))
        h = self.flatten(self.pool2(self.conv2(h)))
        return self.dense2(self.dense1(h))


class MNFLeNet(_Classifier):
    """LeNet-5 with every layer an MNF layer (:class:`MNFConv2D`, :class:`MNFDense`).

    Same layout as :class:`LeNet`. Each call draws one posterior sample per example; training
    calls add every layer's ``KL / train_size`` to ``model.losses``, so ``fit`` with
    ``SparseCategoricalCrossentropy(from_logits=True)`` minimises the negative ELBO per example.
    :meth:`predict_samples` averages many draws in one batched call.

    Args:
        train_size: Number of training examples ``N`` (the KL is divided by it).
        filters: Filters of the two conv layers.
        hidden_units: Width of the hidden dense layer.
        classes: Number of outputs.
        kernel_size: Conv kernel size.
        input_shape: ``(H, W, C)`` of the images.
        seed: Seed of the initial weights and of the layers' noise streams.
        **mnf_options: Options of every :class:`~normalizingflows.layers.MNFLayer` (``flow``,
            ``flow_layers``, ``aux_flow_layers``, ``flow_hidden_units``, ``prior_stddev``,
            ``kl_samples``, ``init_log_var``).

    Example:
        >>> net = MNFLeNet(train_size=100, filters=(2, 3), hidden_units=8, flow_layers=1,
        ...                aux_flow_layers=1, flow_hidden_units=(4,))
        >>> x = np.zeros((3, 28, 28, 1), np.float32)
        >>> net.predict_samples(x, samples=5).shape
        (5, 3, 10)
        >>> _ = net(x, training=True)
        >>> len(net.losses)  # one KL term per layer
        4

    References:
        Multiplicative Normalizing Flows for Variational Bayesian Neural Networks, Louizos and
        Welling 2017, https://arxiv.org/abs/1703.01961
    """

    stochastic = True

    def __init__(self, *, train_size: int, filters: Sequence[int] = (20, 50),
                 hidden_units: int = 500, classes: int = 10, kernel_size: int = 5,
                 input_shape: Sequence[int] = (28, 28, 1), seed: int = 0,
                 name: str = "mnf_lenet", **mnf_options: Any) -> None:
        super().__init__(name=name)
        f1, f2 = _check_widths(filters, hidden_units, classes, kernel_size)
        self.input_shape_ = tuple(int(s) for s in input_shape)
        opts = {"train_size": int(train_size), **mnf_options}
        self.conv1 = MNFConv2D(f1, kernel_size, activation="relu", seed=seed * 10 + 1,
                               name="conv1", **opts)
        self.pool1 = tf_keras.layers.MaxPool2D(2, name="pool1")
        self.conv2 = MNFConv2D(f2, kernel_size, activation="relu", seed=seed * 10 + 2,
                               name="conv2", **opts)
        self.pool2 = tf_keras.layers.MaxPool2D(2, name="pool2")
        self.flatten = tf_keras.layers.Flatten(name="flatten")
        self.dense1 = MNFDense(hidden_units, activation="relu", seed=seed * 10 + 3,
                               name="dense1", **opts)
        self.dense2 = MNFDense(classes, seed=seed * 10 + 4, name="dense2", **opts)
        self(tf.zeros([1, *self.input_shape_]))

    @property
    def mnf(self) -> list[MNFConv2D | MNFDense]:
        """The four MNF layers, input to output."""
        return [self.conv1, self.conv2, self.dense1, self.dense2]

    def call(self, inputs: Any, training: bool | None = None, seed: Any = None) -> tf.Tensor:
        """Logits ``[N, classes]`` of one posterior draw per example.

        ``seed``: ``None`` (each layer's own generator) or a stateless seed, split as
        ``split_seed(seed, 4)`` over the four MNF layers.
        """
        seeds = [None] * 4 if seed is None else split_seed(seed, 4)
        h = self.pool1(self.conv1(inputs, training=training, seed=seeds[0]))
        h = self.pool2(self.conv2(h, training=training, seed=seeds[1]))
        h = self.dense1(self.flatten(h), training=training, seed=seeds[2])
        return self.dense2(h, training=training, seed=seeds[3])

    def kl_divergence(self, seed: Any = None) -> tf.Tensor:
        """The summed KL bound of the four layers (nats; one Monte Carlo estimate)."""
        seeds = [None] * 4 if seed is None else split_seed(seed, 4)
        return tf.add_n([layer.kl_divergence(s) for layer, s in zip(self.mnf, seeds,
                                                                     strict=True)])


def parameter_counts(*, filters: Sequence[int] = (20, 50), hidden_units: int = 500,
                     classes: int = 10, kernel_size: int = 5,
                     input_shape: Sequence[int] = (28, 28, 1), **mnf_options: Any
                     ) -> dict[str, int]:
    """Trainable parameters of :class:`LeNet` and :class:`MNFLeNet` of the same widths
    (``mnf_options`` go to :class:`MNFLeNet`: flow depths and widths).

    Example:
        >>> parameter_counts(filters=(2, 3), hidden_units=8, flow_layers=0, aux_flow_layers=0)
        {'lenet': 687, 'mnf_lenet': 1656}
    """
    shape = {"filters": filters, "hidden_units": hidden_units, "classes": classes,
             "kernel_size": kernel_size, "input_shape": input_shape}
    lenet = LeNet(**shape)
    mnf = MNFLeNet(train_size=1, **shape, **mnf_options)
    return {"lenet": count_parameters(lenet), "mnf_lenet": count_parameters(mnf)}
