"""Mixture-of-Gaussians autoregressive densities: MADE-MoG, and MAF-MoG (a MAF on a MADE-MoG)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..nn import MADE
from ._parts import affine, autoregressive_stack, chain, context_embedding, layer_orders
from .core import Flow
from .registry import hidden_units_tuple, register

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["made_mog", "maf_mog", "mog_autoregressive", "MixtureAutoregressive"]

_MIN_SCALE = 1e-3


class MixtureAutoregressive(tfd.Distribution):
    """p(x | c) = prod_i sum_k pi_ik N(x_i | mu_ik, sigma_ik^2), all parameters from one MADE.

    The parameters of conditional ``i`` come from ``made(x, context)[..., i, :]``, which sees
    only x_<i (and the context): the density costs one MADE pass, sampling ``D`` passes (pass
    ``i`` fixes coordinate ``i``). Unlike ``tfd.Autoregressive`` it takes the condition as a
    keyword (``log_prob(x, context=c)``, ``sample(n, context=c)``), so a
    ``tfd.TransformedDistribution`` delivers it through ``distribution_kwargs``.

    Args:
        made: A :class:`~normalizingflows.nn.MADE` with ``params = 3 * components`` (logits,
            means, raw scales per input; scale = softplus(raw) + 1e-3).
        components: Mixture components per conditional.
        name: Distribution name.
    """

    def __init__(self, made: MADE, components: int, name: str = "mixture_autoregressive"
                 ) -> None:
        parameters = dict(locals())
        self._made = made
        self._components = int(components)
        super().__init__(dtype=tf.as_dtype(made.dtype),
                         reparameterization_type=tfd.NOT_REPARAMETERIZED, validate_args=False,
                         allow_nan_stats=True, parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _event_shape(self) -> tf.TensorShape:
        return tf.TensorShape([self._made.features])

    def _event_shape_tensor(self) -> tf.Tensor:
        return tf.constant([self._made.features], tf.int32)

    def _batch_shape(self) -> tf.TensorShape:
        return tf.TensorShape([])

    def _batch_shape_tensor(self) -> tf.Tensor:
        return tf.constant([], tf.int32)

    def _conditionals(self, x: tf.Tensor, context: tf.Tensor | None) -> tfd.Distribution:
        k = self._components
        p = self._made(x, context=context)
        scale = tf.math.softplus(p[..., 2 * k:]) + _MIN_SCALE
        return tfd.MixtureSameFamily(tfd.Categorical(logits=p[..., :k]),
                                     tfd.Normal(p[..., k:2 * k], scale))

    def _log_prob(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        return tf.reduce_sum(self._conditionals(x, context).log_prob(x), axis=-1)

    def _sample_n(self, n: int, seed: Any = None, context: tf.Tensor | None = None
                  ) -> tf.Tensor:
        d = self._made.features
        seeds = tfp.random.split_seed(seed, n=d)
        x = tf.zeros(tf.stack([n, d]), self.dtype)
        position = np.argsort(self._made.degrees)  # coordinates in autoregressive order
        for step in range(d):
            i = int(position[step])
            draw = self._conditionals(x, context).sample(seed=seeds[step])
            onehot = tf.one_hot(i, d, dtype=self.dtype)
            x = x * (1 - onehot) + draw * onehot
        return x


def mog_autoregressive(features: int, *, components: int, hidden_units: tuple[int, ...],
                       activation: str, order: str, seed: int, dtype: str,
                       context: int | None = None) -> tuple[tfd.Distribution, MADE]:
    """An autoregressive density with mixture-of-Gaussians conditionals, as a TFP distribution.

    p(x) = prod_i sum_k pi_ik(x_<i) N(x_i | mu_ik(x_<i), sigma_ik(x_<i)^2), with all parameters
    from one MADE (and the context of width ``context``, if any).

    Returns:
        ``(distribution, made)``.
    """
    k = components
    # Spread the initial component means so the components start distinct (symmetry breaking).
    per_input = np.concatenate([np.zeros(k), np.linspace(-1.5, 1.5, k) if k > 1 else [0.0],
                                np.zeros(k)])
    made = MADE(features, params=3 * k, hidden_units=hidden_units, activation=activation,
                order=order, seed=seed, dtype=dtype, name="made_mog", context_features=context,
                output_initializer=tf_keras.initializers.GlorotUniform(seed=seed * 1000 + 999),
                output_bias_initializer=tf_keras.initializers.Constant(np.tile(per_input,
                                                                               features)))
    return MixtureAutoregressive(made, k, name="made_mog"), made


@register("made_mog", paper="Masked Autoregressive Flow for Density Estimation (MADE MoG)",
          arxiv="https://arxiv.org/abs/1705.07057", fast_direction="density",
          test_variants=({}, {"components": 1}))
def made_mog(features: int, *, components: int = 10, hidden_units: int | Sequence[int] = 64,
             activation: str = "relu", order: str = "sequential",
             context_features: int | None = None, context_net: Any = None,
             seed: int = 0, dtype: str = "float32") -> Flow:
    """MADE with mixture-of-Gaussians conditionals (``components`` per input).

    Its ``.bijector`` is the identity: the model is its base distribution, an autoregressive
    mixture (density in one pass, sampling in D).

    Args:
        features: Data dimensions.
        components: Mixture components per conditional.
        hidden_units: MADE widths (an int means two hidden layers).
        activation: MADE activation.
        order: ``"sequential"`` or ``"random"``.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of the weights and of a random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`.

    Example:
        >>> made_mog(2, components=3, hidden_units=8).log_prob([[0.0, 1.0]]).shape
        TensorShape([1])

    References:
        Masked Autoregressive Flow for Density Estimation, Papamakarios et al. 2017,
        https://arxiv.org/abs/1705.07057
    """
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    base, made = mog_autoregressive(features, components=components,
                                    hidden_units=hidden_units_tuple(hidden_units),
                                    activation=activation, order=layer_orders(order, 1)[0],
                                    seed=seed, dtype=dtype, context=width)
    return Flow(features=features, bijector=tfb.Identity(), base=base, nets=[made],
                context_features=context_features, context_net=embed,
                fast_direction="density", dtype=dtype, name="made_mog")


@register("maf_mog", paper="Masked Autoregressive Flow for Density Estimation (MAF MoG)",
          arxiv="https://arxiv.org/abs/1705.07057", fast_direction="density",
          test_variants=({}, {"batch_norm": True}))
def maf_mog(features: int, *, layers: int = 5, components: int = 10,
            hidden_units: int | Sequence[int] = 64, activation: str = "relu",
            order: str = "alternating", batch_norm: bool = False,
            context_features: int | None = None, context_net: Any = None,
            seed: int = 0, dtype: str = "float32") -> Flow:
    """MAF whose base density is a MADE-MoG, trained jointly (MAF paper, section 3.3).

    Args:
        features: Data dimensions.
        layers: Number of MAF layers.
        components: Mixture components per conditional of the MADE-MoG base.
        hidden_units: MADE widths (an int means two hidden layers).
        activation: MADE activation.
        order: ``"alternating"``, ``"sequential"`` or ``"random"``; the base continues it.
        batch_norm: Batch normalisation after each MAF layer.
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every layer sees the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of every weight and random order.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`.

    Example:
        >>> maf_mog(2, layers=1, components=2, hidden_units=8).fast_direction
        'density'

    References:
        Masked Autoregressive Flow for Density Estimation, Papamakarios et al. 2017,
        https://arxiv.org/abs/1705.07057
    """
    units = hidden_units_tuple(hidden_units)
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    steps, nets = autoregressive_stack(features, layers=layers, hidden_units=units,
                                       activation=activation, order=order, seed=seed,
                                       dtype=dtype, params=2, make_bijector=affine,
                                       batch_norm=batch_norm, context=width)
    base, made = mog_autoregressive(features, components=components, hidden_units=units,
                                    activation=activation,
                                    order=layer_orders(order, layers + 1)[-1],
                                    seed=seed * 1000 + layers, dtype=dtype, context=width)
    return Flow(features=features, bijector=chain(steps), base=base, nets=[*nets, made],
                context_features=context_features, context_net=embed,
                fast_direction="density", dtype=dtype, name="maf_mog")
