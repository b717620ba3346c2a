"""Mixture-of-Gaussians autoregressive densities: MADE-MoG, and MAF-MoG (a MAF on a MADE-MoG)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..nn import MADE
from ._parts import affine, autoregressive_stack, chain, layer_orders
from .core import Flow
from .registry import hidden_units_tuple, register

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["made_mog", "maf_mog", "mog_autoregressive"]

_MIN_SCALE = 1e-3


class _Autoregressive(tfd.Autoregressive):
    """``tfd.Autoregressive`` with the static shapes these models have by construction.

    TFP leaves the event shape unknown because a general ``distribution_fn`` may change it; here
    it is always ``sample0.shape`` (``[D]``) with a scalar batch.
    """

    def _batch_shape(self) -> tf.TensorShape:
        return tf.TensorShape([])

    def _event_shape(self) -> tf.TensorShape:
        return self._sample0.shape


def mog_autoregressive(features: int, *, components: int, hidden_units: tuple[int, ...],
                       activation: str, order: str, seed: int, dtype: str
                       ) -> tuple[tfd.Distribution, MADE]:
    """An autoregressive density with mixture-of-Gaussians conditionals, as a TFP distribution.

    p(x) = prod_i sum_k pi_ik(x_<i) N(x_i | mu_ik(x_<i), sigma_ik(x_<i)^2), with all parameters
    from one MADE: ``tfd.Autoregressive`` evaluates the density in one MADE pass and samples in D.

    Returns:
        ``(distribution, made)``.
    """
    k = components
    # Spread the initial component means so the components start distinct (symmetry breaking).
    per_input = np.concatenate([np.zeros(k), np.linspace(-1.5, 1.5, k) if k > 1 else [0.0],
                                np.zeros(k)])
    made = MADE(features, params=3 * k, hidden_units=hidden_units, activation=activation,
                order=order, seed=seed, dtype=dtype, name="made_mog",
                output_initializer=tf_keras.initializers.GlorotUniform(seed=seed * 1000 + 999),
                output_bias_initializer=tf_keras.initializers.Constant(np.tile(per_input,
                                                                               features)))

    def conditionals(x: tf.Tensor) -> tfd.Distribution:
        p = made(x)
        logits, loc, raw_scale = p[..., :k], p[..., k:2 * k], p[..., 2 * k:]
        scale = tf.math.softplus(raw_scale) + _MIN_SCALE
        mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), tfd.Normal(loc, scale))
        return tfd.Independent(mixture, reinterpreted_batch_ndims=1)

    distribution = _Autoregressive(conditionals, sample0=tf.zeros([features], dtype),
                                      num_steps=features, name="made_mog")
    return distribution, made


@register("made_mog", paper="Masked Autoregressive Flow for Density Estimation (MADE MoG)",
          arxiv="https://arxiv.org/abs/1705.07057", fast_direction="density",
          test_variants=({}, {"components": 1}))
def made_mog(features: int, *, components: int = 10, hidden_units: int | Sequence[int] = 64,
             activation: str = "relu", order: str = "sequential",
             context_features: int | None = None, seed: int = 0, dtype: str = "float32") -> Flow:
    """MADE with mixture-of-Gaussians conditionals (``components`` per input).

    Its ``.bijector`` is the identity: the model is its base distribution, an autoregressive
    mixture (density in one pass, sampling in D).

    Args:
        features: Data dimensions.
        components: Mixture components per conditional.
        hidden_units: MADE widths (an int means two hidden layers).
        activation: MADE activation.
        order: ``"sequential"`` or ``"random"``.
        context_features: Reserved for conditional flows (must be None).
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
    base, made = mog_autoregressive(features, components=components,
                                    hidden_units=hidden_units_tuple(hidden_units),
                                    activation=activation, order=layer_orders(order, 1)[0],
                                    seed=seed, dtype=dtype)
    return Flow(features=features, bijector=tfb.Identity(), base=base, nets=[made],
                fast_direction="density", dtype=dtype, name="made_mog")


@register("maf_mog", paper="Masked Autoregressive Flow for Density Estimation (MAF MoG)",
          arxiv="https://arxiv.org/abs/1705.07057", fast_direction="density",
          test_variants=({}, {"batch_norm": True}))
def maf_mog(features: int, *, layers: int = 5, components: int = 10,
            hidden_units: int | Sequence[int] = 64, activation: str = "relu",
            order: str = "alternating", batch_norm: bool = False,
            context_features: int | None = None, seed: int = 0, dtype: str = "float32") -> Flow:
    """MAF whose base density is a MADE-MoG, trained jointly (MAF paper, section 3.3).

    Args:
        features: Data dimensions.
        layers: Number of MAF layers.
        components: Mixture components per conditional of the MADE-MoG base.
        hidden_units: MADE widths (an int means two hidden layers).
        activation: MADE activation.
        order: ``"alternating"``, ``"sequential"`` or ``"random"``; the base continues it.
        batch_norm: Batch normalisation after each MAF layer.
        context_features: Reserved for conditional flows (must be None).
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
    steps, nets = autoregressive_stack(features, layers=layers, hidden_units=units,
                                       activation=activation, order=order, seed=seed,
                                       dtype=dtype, params=2, make_bijector=affine,
                                       batch_norm=batch_norm)
    base, made = mog_autoregressive(features, components=components, hidden_units=units,
                                    activation=activation,
                                    order=layer_orders(order, layers + 1)[-1],
                                    seed=seed * 1000 + layers, dtype=dtype)
    return Flow(features=features, bijector=chain(steps), base=base, nets=[*nets, made],
                fast_direction="density", dtype=dtype, name="maf_mog")
