"""Multiplicative normalizing flows (MNF): Bayesian dense and conv layers with a flow over
multiplicative weight noise.

The variational posterior of a layer's weights is a continuous mixture (Louizos & Welling 2017)::

    q(W) = int q(W | z) q(z) dz,   q(W | z) = prod_ij N(W_ij | z_i mu_ij, sigma_ij^2)

with one noise variable per input unit of a dense layer (per output filter of a conv layer) and
``q(z)`` a normalizing flow: ``z_0 ~ N(mu_z, sigma_z^2)``, ``z = f(z_0)`` through catalog flows
(:func:`~normalizingflows.flows.realnvp` by default, or IAF). Pre-activations are sampled with
the local reparameterisation trick, one ``z`` per example. ``q(W)`` has no closed-form
density, so the KL to the prior ``p(W) = N(0, s^2)`` is bounded with an auxiliary inverse model
``r(z | W)`` (the paper's eq. 11):

    KL(q(W) || p(W)) <= E_q(W, z)[ KL(q(W | z) || p(W)) + log q(z) - log r(z | W) ]

``r(z | W)`` is a second flow ``g`` (RealNVP or MAF) run from ``z`` to a Gaussian whose mean and
log-scale are ``b1 * a`` and ``b2 * a`` with ``a = mean_j tanh((c^T W)_j)`` (the paper's eqs.
15-16). Each layer adds ``kl_scale * bound / train_size`` to its losses (``self.add_loss``) in
training calls, so Keras ``fit`` with a cross-entropy loss minimises the negative ELBO per
example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..flows.registry import build as _build_flow

tfb = tfp.bijectors

__all__ = ["MNFLayer", "MNFDense", "MNFConv2D", "KLAnnealing", "mnf_layers", "split_seed",
           "NOISE_FLOWS"]

#: ``flow=`` name -> (catalog flow of q(z), catalog flow of r(z | W)). q runs base -> z (its
#: forward), r runs z -> base (its inverse): IAF and MAF make both one network pass.
NOISE_FLOWS = {"realnvp": ("realnvp", "realnvp"), "maf": ("iaf", "maf")}
_VAR_EPS = 1e-8


def split_seed(seed: Any, n: int) -> list[tf.Tensor]:
    """``n`` independent stateless seeds (``shape [2]``) from one seed (an int or a ``[2]``
    tensor), via ``tf.random.experimental.stateless_split``.

    Example:
        >>> a, b = split_seed(0, 2)
        >>> a.shape, bool(tf.reduce_all(a == split_seed(0, 2)[0]))
        (TensorShape([2]), True)
    """
    if isinstance(seed, (int, np.integer)):
        seed = tf.constant([int(seed), 0], tf.int64)
    seed = tf.cast(seed, tf.int64)
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


class _Bijectors:
    """Holds the noise flows' bijectors outside Keras' tracking (their weights are tracked
    through the flows' networks, which the layer owns)."""

    def __init__(self, q: tfb.Bijector, r: tfb.Bijector) -> None:
        self.q = q
        self.r = r


class MNFLayer(tf_keras.layers.Layer):
    """Shared machinery of :class:`MNFDense` and :class:`MNFConv2D`: the weight posterior
    ``q(W | z)``, the noise flow ``q(z)``, the auxiliary ``r(z | W)`` and the KL bound.

    Subclasses define the kernel shape, which kernel axis carries the noise, and the locally
    reparameterised forward pass.

    Args:
        flow: ``"realnvp"`` (RealNVP for both q(z) and r(z | W), as in the paper) or ``"maf"``
            (IAF for q(z), MAF for r(z | W)).
        flow_layers: Depth of the flow of q(z) (0: a Gaussian q(z)).
        aux_flow_layers: Depth of the inverse flow of r(z | W) (0: a Gaussian r).
        flow_hidden_units: Hidden widths of the flows' conditioners (tanh).
        prior_stddev: Standard deviation ``s`` of the prior ``p(W) = N(0, s^2)``.
        train_size: Size ``N`` of the training set: the KL enters the loss as ``KL / N``.
        kl_samples: Draws of (z, W) averaged in each KL estimate.
        init_log_var: Initial log-variance of the weights (and of ``z_0``).
        seed: Seed of the initial weights and of the layer's noise stream.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``).

    Raises:
        ValueError: On an unknown ``flow``, negative depths, ``train_size < 1``,
            ``prior_stddev <= 0`` or ``kl_samples < 1``.

    References:
        Multiplicative Normalizing Flows for Variational Bayesian Neural Networks, Louizos and
        Welling 2017, https://arxiv.org/abs/1703.01961
    """

    #: Whether the noise axis is the first kernel axis (dense) or the last (conv).
    _noise_first = True

    def __init__(self, *, activation: Any = None, flow: str = "realnvp", flow_layers: int = 2,
                 aux_flow_layers: int = 2, flow_hidden_units: int | Sequence[int] = (50,),
                 prior_stddev: float = 1.0, train_size: int = 1, kl_samples: int = 1,
                 init_log_var: float = -9.0, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if flow not in NOISE_FLOWS:
            raise ValueError(f"flow must be one of {sorted(NOISE_FLOWS)}; got {flow!r}")
        for name, value in (("flow_layers", flow_layers), ("aux_flow_layers", aux_flow_layers)):
            if int(value) < 0:
                raise ValueError(f"{name} must be >= 0; got {value!r}")
        if int(train_size) < 1:
            raise ValueError(f"train_size must be a positive number of examples; got "
                             f"{train_size!r}")
        if not float(prior_stddev) > 0:
            raise ValueError(f"prior_stddev must be > 0; got {prior_stddev!r}")
        if int(kl_samples) < 1:
            raise ValueError(f"kl_samples must be >= 1; got {kl_samples!r}")
        self.activation = tf_keras.activations.get(activation)
        self.flow = flow
        self.flow_layers = int(flow_layers)
        self.aux_flow_layers = int(aux_flow_layers)
        self.flow_hidden_units = (int(flow_hidden_units) if isinstance(flow_hidden_units, int)
                                  else tuple(int(u) for u in flow_hidden_units))
        self.prior_stddev = float(prior_stddev)
        self.train_size = int(train_size)
        self.kl_samples = int(kl_samples)
        self.init_log_var = float(init_log_var)
        self.seed = int(seed)
        self._generator = tf.random.Generator.from_seed(self.seed * 7919 + 17)
        #: Annealing factor of the KL term (``KLAnnealing`` sets it); the loss adds
        #: ``kl_scale * KL / train_size``.
        self.kl_scale = tf.Variable(1.0, trainable=False, dtype=self.dtype, name="kl_scale")

    # ------------------------------------------------------------------ construction
    def _kernel_shape(self, input_shape: tf.TensorShape) -> tuple[int, ...]:
        raise NotImplementedError

    def _bias_size(self) -> int:
        raise NotImplementedError

    def _init(self, offset: int) -> tf_keras.initializers.Initializer:
        return tf_keras.initializers.GlorotUniform(seed=self.seed * 7919 + offset)

    def _noise_flow(self, kind: str, layers: int, features: int, seed: int
                    ) -> tuple[tfb.Bijector, list[tf_keras.layers.Layer]]:
        if layers == 0:
            return tfb.Identity(), []
        if features < 2:
            raise ValueError(f"a flow over the noise needs at least 2 noise variables; this "
                             f"layer has {features}: pass flow_layers=0 and aux_flow_layers=0")
        flow = _build_flow(kind, features, layers=layers, hidden_units=self.flow_hidden_units,
                           activation="tanh", seed=seed, dtype=self.dtype)
        return flow.bijector, list(flow.nets)

    def build(self, input_shape: Any) -> None:
        input_shape = tf.TensorShape(input_shape)
        shape = self._kernel_shape(input_shape)
        self.noise_features = shape[0] if self._noise_first else shape[-1]
        k = self.noise_features
        self.kernel_mean = self.add_weight(name="kernel_mean", shape=shape,
                                           initializer=self._init(1))
        self.kernel_log_var = self.add_weight(
            name="kernel_log_var", shape=shape, initializer=tf_keras.initializers.RandomNormal(
                self.init_log_var, 1e-3, seed=self.seed * 7919 + 2))
        self.bias = self.add_weight(name="bias", shape=[self._bias_size()], initializer="zeros")
        self.z_mean = self.add_weight(name="z_mean", shape=[k],
                                      initializer=tf_keras.initializers.RandomNormal(
                                          1.0, 1e-2, seed=self.seed * 7919 + 3))
        self.z_log_var = self.add_weight(name="z_log_var", shape=[k],
                                         initializer=tf_keras.initializers.RandomNormal(
                                             self.init_log_var, 1e-3, seed=self.seed * 7919 + 4))
        # r(z | W): c, b1, b2 of the paper's eqs. 15-16.
        self.aux_c = self.add_weight(name="aux_c", shape=[k],
                                     initializer=tf_keras.initializers.RandomNormal(
                                         0.0, 1.0, seed=self.seed * 7919 + 5))
        self.aux_b1 = self.add_weight(name="aux_b1", shape=[k],
                                      initializer=tf_keras.initializers.RandomNormal(
                                          0.0, 1.0, seed=self.seed * 7919 + 6))
        self.aux_b2 = self.add_weight(name="aux_b2", shape=[k],
                                      initializer=tf_keras.initializers.RandomNormal(
                                          0.0, 1.0, seed=self.seed * 7919 + 7))
        q_kind, r_kind = NOISE_FLOWS[self.flow]
        q, self.q_nets = self._noise_flow(q_kind, self.flow_layers, k, self.seed * 31 + 1)
        r, self.r_nets = self._noise_flow(r_kind, self.aux_flow_layers, k, self.seed * 31 + 2)
        self._bijectors = _Bijectors(q, r)
        super().build(input_shape)

    # ------------------------------------------------------------------ noise
    def next_seed(self) -> tf.Tensor:
        """A fresh stateless seed ``[2]`` from the layer's own generator (seeded by ``seed``)."""
        return self._generator.make_seeds(1)[:, 0]

    def sample_noise(self, n: Any, seed: Any, *, log_prob: bool = False
                     ) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """Draw ``n`` noise vectors ``z ~ q(z)``, shape ``[n, noise_features]``.

        ``z_0 = mu_z + sigma_z * eps``, ``z = f(z_0)``; with ``log_prob=True`` also
        ``log q(z) = log N(z_0 | mu_z, sigma_z^2) - log |det df/dz_0|`` (shape ``[n]``).
        """
        dtype = self.kernel_mean.dtype
        eps = tf.random.stateless_normal(tf.stack([n, self.noise_features]), seed, dtype=dtype)
        z0 = self.z_mean + tf.exp(0.5 * self.z_log_var) * eps
        z = self._bijectors.q.forward(z0)
        if not log_prob:
            return z
        log_q0 = (tf.reduce_sum(-0.5 * tf.square(eps), -1) - 0.5 * tf.reduce_sum(self.z_log_var)
                  - 0.5 * math.log(2 * math.pi) * self.noise_features)
        fldj = self._bijectors.q.forward_log_det_jacobian(z0, event_ndims=1)
        return z, log_q0 - fldj

    def _kernel_matrix(self, t: tf.Tensor) -> tf.Tensor:
        """A kernel-shaped tensor as ``[noise_features, rest]``... or ``[rest, noise_features]``
        for conv kernels (no transpose: contractions pick the axis)."""
        if self._noise_first:
            return tf.reshape(t, [self.noise_features, -1])
        return tf.reshape(t, [-1, self.noise_features])

    def kl_terms(self, seed: Any, samples: int | None = None) -> dict[str, tf.Tensor]:
        """The parts of the KL bound for ``samples`` draws of ``(z, W)``, each of shape
        ``[samples]``: ``"kl_gaussian"`` = KL(q(W | z) || p(W)) (closed form, >= 0),
        ``"log_q"`` = log q(z), ``"log_r"`` = log r(z | W), and ``"bound"`` =
        kl_gaussian + log_q - log_r."""
        samples = self.kl_samples if samples is None else int(samples)
        seed_z, seed_w = split_seed(seed, 2)
        z, log_q = self.sample_noise(samples, seed_z, log_prob=True)
        mean = self._kernel_matrix(self.kernel_mean)
        log_var = self._kernel_matrix(self.kernel_log_var)
        var = tf.exp(log_var)
        prior_var = tf.constant(self.prior_stddev ** 2, mean.dtype)
        axis = 1 if self._noise_first else 0  # the non-noise axis
        # KL(N(z_i mu_ij, s_ij^2) || N(0, s^2)) summed over the kernel.
        mean_sq = tf.reduce_sum(tf.square(mean), axis=axis)  # [K]
        const = 0.5 * (tf.reduce_sum(tf.math.log(prior_var) - log_var + var / prior_var)
                       - tf.cast(tf.size(mean), mean.dtype))
        kl_gauss = const + 0.5 * tf.linalg.matvec(tf.square(z), mean_sq) / prior_var
        # One draw of c^T W per sample, by local reparameterisation of the linear map W -> c^T W.
        cz = z * self.aux_c
        c2 = tf.square(self.aux_c)
        if self._noise_first:
            cw_mean = tf.matmul(cz, mean)  # [S, M]
            cw_var = tf.linalg.matvec(var, c2, transpose_a=True)  # [M]
        else:
            cw_mean = tf.matmul(cz, mean, transpose_b=True)
            cw_var = tf.linalg.matvec(var, c2)
        cw = cw_mean + tf.sqrt(cw_var + _VAR_EPS) * tf.random.stateless_normal(
            tf.shape(cw_mean), seed_w, dtype=cw_mean.dtype)
        a = tf.reduce_mean(tf.tanh(cw), axis=-1, keepdims=True)  # [S, 1]
        r_mean, r_log_scale = a * self.aux_b1, a * self.aux_b2
        u = self._bijectors.r.inverse(z)
        ildj = self._bijectors.r.inverse_log_det_jacobian(z, event_ndims=1)
        log_r = tf.reduce_sum(-0.5 * tf.square((u - r_mean) * tf.exp(-r_log_scale))
                              - r_log_scale - 0.5 * math.log(2 * math.pi), -1) + ildj
        return {"kl_gaussian": kl_gauss, "log_q": log_q, "log_r": log_r,
                "bound": kl_gauss + log_q - log_r}

    def kl_divergence(self, seed: Any = None, samples: int | None = None) -> tf.Tensor:
        """Monte Carlo estimate of the KL bound (nats, a scalar), averaged over ``samples``
        draws (``kl_samples`` by default); ``seed=None`` draws from the layer's generator.

        Its expectation is >= KL(q(W) || p(W)) >= 0; one draw may be negative.
        """
        seed = self.next_seed() if seed is None else seed
        return tf.reduce_mean(self.kl_terms(seed, samples)["bound"])

    # ------------------------------------------------------------------ forward
    def _forward(self, inputs: tf.Tensor, z: tf.Tensor, seed: Any) -> tf.Tensor:
        raise NotImplementedError

    def call(self, inputs: Any, training: bool | None = None, seed: Any = None) -> tf.Tensor:
        """One posterior draw per example (local reparameterisation); in training calls the
        layer also adds ``kl_scale * KL / train_size`` to its losses.

        Args:
            inputs: The batch.
            training: Whether this is a training call (adds the KL term).
            seed: A stateless seed (int or ``[2]``) for this call; ``None``: the layer's
                generator. It is split as ``split_seed(seed, 3)`` into the seeds of ``z``, of
                the pre-activation noise and of the KL estimate.
        """
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        seed = self.next_seed() if seed is None else seed
        seed_z, seed_out, seed_kl = split_seed(seed, 3)
        z = self.sample_noise(tf.shape(inputs)[0], seed_z)
        out = self._forward(inputs, z, seed_out)
        if training:
            kl = self.kl_divergence(seed_kl)
            self.add_loss(self.kl_scale * kl / float(self.train_size))
        return self.activation(out)

    def _noisy(self, mean: tf.Tensor, var: tf.Tensor, seed: Any) -> tf.Tensor:
        eps = tf.random.stateless_normal(tf.shape(mean), seed, dtype=mean.dtype)
        return mean + tf.sqrt(var + _VAR_EPS) * eps + self.bias

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(activation=tf_keras.activations.serialize(self.activation), flow=self.flow,
                      flow_layers=self.flow_layers, aux_flow_layers=self.aux_flow_layers,
                      flow_hidden_units=self.flow_hidden_units, prior_stddev=self.prior_stddev,
                      train_size=self.train_size, kl_samples=self.kl_samples,
                      init_log_var=self.init_log_var, seed=self.seed)
        return config


class MNFDense(MNFLayer):
    """Dense MNF layer: ``y = act(x W + b)`` with ``W ~ q(W)``, one noise variable per input.

    Locally reparameterised: given ``z``, the pre-activations are Gaussian with mean
    ``(x * z) mu`` and variance ``x^2 sigma^2``. The bias is a point estimate.

    Args:
        units: Output width.
        activation: Activation of the output.
        **kwargs: The options of :class:`MNFLayer` (flow, depths, prior, ``train_size``,
            ``seed``, ...) and of ``tf_keras.layers.Layer``.

    Example:
        >>> layer = MNFDense(3, flow_layers=1, aux_flow_layers=1, flow_hidden_units=(4,),
        ...                  train_size=100, seed=0)
        >>> y = layer(tf.ones([5, 4]), training=True)
        >>> y.shape, len(layer.losses)
        (TensorShape([5, 3]), 1)
        >>> bool(tf.reduce_any(layer(tf.ones([5, 4])) != layer(tf.ones([5, 4]))))  # stochastic
        True

    References:
        Multiplicative Normalizing Flows for Variational Bayesian Neural Networks, Louizos and
        Welling 2017, https://arxiv.org/abs/1703.01961
    """

    _noise_first = True

    def __init__(self, units: int, *, activation: Any = None, **kwargs: Any) -> None:
        super().__init__(activation=activation, **kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be >= 1; got {units!r}")
        self.units = int(units)
        self.input_spec = tf_keras.layers.InputSpec(ndim=2)

    def _kernel_shape(self, input_shape: tf.TensorShape) -> tuple[int, ...]:
        if input_shape.rank != 2 or input_shape[-1] is None:
            raise ValueError(f"MNFDense takes inputs [batch, features] with known features; got "
                             f"shape {input_shape.as_list()}")
        return (int(input_shape[-1]), self.units)

    def _bias_size(self) -> int:
        return self.units

    def _forward(self, inputs: tf.Tensor, z: tf.Tensor, seed: Any) -> tf.Tensor:
        mean = tf.matmul(inputs * z, self.kernel_mean)
        var = tf.matmul(tf.square(inputs), tf.exp(self.kernel_log_var))
        return self._noisy(mean, var, seed)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


class MNFConv2D(MNFLayer):
    """2-D convolution MNF layer: one noise variable per output filter.

    Given ``z``, the pre-activations are Gaussian with mean ``conv(x, mu) * z`` (each filter
    scaled) and variance ``conv(x^2, sigma^2)``. The bias is a point estimate.

    Args:
        filters: Number of output filters.
        kernel_size: Height and width of the kernel (an int or a pair).
        strides: Strides (an int or a pair).
        padding: ``"valid"`` or ``"same"``.
        activation: Activation of the output.
        **kwargs: The options of :class:`MNFLayer` and of ``tf_keras.layers.Layer``.

    Example:
        >>> layer = MNFConv2D(2, 3, flow_layers=1, aux_flow_layers=1, flow_hidden_units=(4,))
        >>> layer(tf.ones([2, 6, 6, 1]), seed=0).shape
        TensorShape([2, 4, 4, 2])

    References:
        Multiplicative Normalizing Flows for Variational Bayesian Neural Networks, Louizos and
        Welling 2017, https://arxiv.org/abs/1703.01961
    """

    _noise_first = False

    def __init__(self, filters: int, kernel_size: int | Sequence[int], *,
                 strides: int | Sequence[int] = 1, padding: str = "valid",
                 activation: Any = None, **kwargs: Any) -> None:
        super().__init__(activation=activation, **kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1; got {filters!r}")
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'; got {padding!r}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.input_spec = tf_keras.layers.InputSpec(ndim=4)

    def _kernel_shape(self, input_shape: tf.TensorShape) -> tuple[int, ...]:
        if input_shape.rank != 4 or input_shape[-1] is None:
            raise ValueError(f"MNFConv2D takes inputs [batch, height, width, channels] with "
                             f"known channels; got shape {input_shape.as_list()}")
        return (*self.kernel_size, int(input_shape[-1]), self.filters)

    def _bias_size(self) -> int:
        return self.filters

    def _conv(self, x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return tf.nn.conv2d(x, kernel, strides=[1, *self.strides, 1],
                            padding=self.padding.upper())

    def _forward(self, inputs: tf.Tensor, z: tf.Tensor, seed: Any) -> tf.Tensor:
        mean = self._conv(inputs, self.kernel_mean) * z[:, None, None, :]
        var = self._conv(tf.square(inputs), tf.exp(self.kernel_log_var))
        return self._noisy(mean, var, seed)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding}


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, (int, np.integer)) else tuple(
        int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them; got {value!r}")
    return pair  # type: ignore[return-value]


def mnf_layers(model: tf_keras.layers.Layer) -> list[MNFLayer]:
    """Every :class:`MNFLayer` inside ``model`` (itself included), in order.

    Example:
        >>> len(mnf_layers(MNFDense(2, flow_layers=0, aux_flow_layers=0)))
        1
    """
    if isinstance(model, MNFLayer):
        return [model]
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, MNFLayer)]


class KLAnnealing(tf_keras.callbacks.Callback):
    """Warm-up of the KL term: its weight grows linearly from ``start`` to 1 over ``epochs``.

    Sets ``kl_scale`` of every :class:`MNFLayer` of the model at the start of each epoch:
    ``min(1, start + (1 - start) * epoch / epochs)``.

    Args:
        epochs: Epochs until the full KL (``0``: full KL from the start).
        start: Weight in the first epoch.

    Example:
        >>> model = tf_keras.Sequential([MNFDense(2, flow_layers=0, aux_flow_layers=0)])
        >>> model.build((None, 3))
        >>> callback = KLAnnealing(epochs=4)
        >>> callback.set_model(model)
        >>> callback.on_epoch_begin(1)
        >>> float(model.layers[0].kl_scale.numpy())
        0.25
    """

    def __init__(self, epochs: int, start: float = 0.0) -> None:
        super().__init__()
        if int(epochs) < 0 or not 0.0 <= float(start) <= 1.0:
            raise ValueError(f"KLAnnealing needs epochs >= 0 and 0 <= start <= 1; got "
                             f"epochs={epochs!r}, start={start!r}")
        self.epochs = int(epochs)
        self.start = float(start)

    def value(self, epoch: int) -> float:
        """The KL weight in epoch ``epoch`` (0-based)."""
        if self.epochs == 0:
            return 1.0
        return min(1.0, self.start + (1.0 - self.start) * epoch / self.epochs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for layer in mnf_layers(self.model):
            layer.kl_scale.assign(self.value(epoch))
