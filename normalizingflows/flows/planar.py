"""Planar flows (Rezende & Mohamed 2015), unconditional or conditional through hyper-networks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..bijectors import Conditional, Planar
from ..nn import MLP
from ._parts import chain, context_embedding, normal_base
from .core import Flow
from .registry import hidden_units_tuple, register

tfb = tfp.bijectors

__all__ = ["planar", "residual_flow", "hyper_maps"]


def residual_flow(maps: list[tfb.Bijector], *, features: int, invert: bool, dtype: str,
                  fast_map: str, name: str, nets: Sequence[tf_keras.layers.Layer] = (),
                  context_features: int | None = None,
                  context_net: tf_keras.layers.Layer | None = None) -> Flow:
    """A flow of residual maps f(z) = z + ... (planar, radial).

    By default the maps run in the normalising direction (data -> base), so ``log_prob`` on data
    is exact and cheap and sampling uses the maps' exact inverses. ``invert=True`` makes the maps
    generative (base -> data), the variational-inference form of the paper.

    Args:
        maps: The residual bijectors, applied to data in list order when ``invert`` is False.
        features: Data dimensions.
        invert: Use the maps in the generative direction.
        dtype: ``"float32"`` or ``"float64"``.
        fast_map: The cost profile of the maps themselves: ``"both"`` when their inverse is
            closed-form, ``"forward"`` when it is a root solve.
        name: Model name.
        nets: The hyper-networks of a conditional flow (they own its weights).
        context_features: Width of the condition of a conditional flow, else ``None``.
        context_net: The built context embedding (or ``None``).
    """
    normalising = chain(list(reversed(maps)), name="normalising")
    bijector = normalising if invert else tfb.Invert(normalising, name="generative")
    if fast_map == "both":
        fast = "both"
    else:
        fast = "sampling" if invert else "density"
    return Flow(features=features, bijector=bijector, base=normal_base(features, dtype),
                nets=nets, context_features=context_features, context_net=context_net,
                fast_direction=fast, dtype=dtype, name=name)


def hyper_maps(initial: Sequence[Sequence[tf.Tensor]], make_map: Callable[..., tfb.Bijector], *,
               width: int, hidden_units: int | Sequence[int], activation: str, seed: int,
               dtype: str, name: str) -> tuple[list[tfb.Bijector], list[MLP]]:
    """Conditional residual maps whose raw parameters come from per-map hyper-networks.

    Map ``i`` is ``Conditional(lambda c: make_map(*split(net_i(c)), name=...))``; ``net_i`` is an
    :class:`~normalizingflows.nn.MLP` from the (embedded) context of width ``width`` to the
    map's raw parameters, with a zero last kernel and ``initial[i]`` (flattened) as its last
    bias, so the conditional flow starts as the unconditional one with the same seed (and
    not dead). Parameter ``j`` of map ``i`` comes out with the shape
    ``[..., *initial[i][j].shape]``.

    Args:
        initial: Per map, the initial raw parameters (e.g. ``Planar.initial_parameters``).
        make_map: ``fn(*params, name=...) -> tfb.Bijector`` taking batched raw parameters.
        width: Width of the context the hyper-networks see.
        hidden_units: Hidden widths of each hyper-network (an int: two layers).
        activation: Hidden activation.
        seed: Seed of the hyper-networks.
        dtype: Their dtype.
        name: Prefix of the map and network names (``f"{name}_{i}"``, ``f"hyper_{name}_{i}"``).

    Returns:
        ``(maps, nets)``.
    """
    units = hidden_units_tuple(hidden_units)
    maps, nets = [], []
    for i, params in enumerate(initial):
        shapes = [tuple(int(d) for d in p.shape) for p in params]
        sizes = [int(np.prod(s)) for s in shapes]
        bias = np.concatenate([np.reshape(np.asarray(p, np.float64), [-1]) for p in params])
        net = MLP(width, sum(sizes), hidden_units=units, activation=activation,
                  output_bias_initializer=tf_keras.initializers.Constant(bias),
                  seed=seed * 1000 + i, dtype=dtype, name=f"hyper_{name}_{i}")
        nets.append(net)

        def make(context: tf.Tensor, _net: MLP = net, _i: int = i,
                 _sizes: list[int] = sizes, _shapes: list[tuple[int, ...]] = shapes
                 ) -> tfb.Bijector:
            flat = _net(context)
            batch = tf.shape(flat)[:-1]
            parts = tf.split(flat, _sizes, axis=-1)
            raw = [p[..., 0] if not s else p if len(s) == 1
                   else tf.reshape(p, tf.concat([batch, tf.constant(s, tf.int32)], 0))
                   for p, s in zip(parts, _shapes, strict=True)]
            return make_map(*raw, name=f"{name}_{_i}")

        maps.append(Conditional(make, dtype=dtype, name=f"{name}_{i}"))
    return maps, nets


@register("planar", paper="Variational Inference with Normalizing Flows",
          arxiv="https://arxiv.org/abs/1505.05770", fast_direction="density",
          test_variants=({}, {"nonlinearity": "leaky_relu"}, {"invert": True}))
def planar(features: int, *, layers: int = 16, nonlinearity: str = "tanh", invert: bool = False,
           hidden_units: int | Sequence[int] = 32, activation: str = "relu",
           context_features: int | None = None, context_net: Any = None, seed: int = 0,
           dtype: str = "float32") -> Flow:
    """A stack of planar maps f(z) = z + u_hat h(w^T z + b), with w^T u_hat >= -1 built in.

    Args:
        features: Data dimensions.
        layers: Number of planar maps.
        nonlinearity: ``"tanh"`` (inverse by a scalar root solve that always converges) or
            ``"leaky_relu"`` (closed-form inverse).
        invert: Use the maps base -> data (variational form) instead of data -> base.
        hidden_units: Widths of each map's hyper-network in a conditional flow (an int means
            two hidden layers of that width); unused when unconditional.
        activation: Hidden activation of the hyper-networks (and of a built ``context_net``).
        context_features: Width of the condition for a conditional flow p(x | c) (``None``:
            unconditional); every map's parameters come from a hyper-network of the context.
        context_net: Embedding of the context, trained jointly: ``None``, a list of widths
            (an MLP) or a ``tf_keras`` layer.
        seed: Seed of the parameters.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`; exact in both directions.

    Example:
        >>> planar(2, layers=4).fast_direction
        'density'
        >>> flow = planar(2, layers=2, hidden_units=8, context_features=3)
        >>> flow.log_prob(tf.zeros([5, 2]), context=tf.ones([5, 3])).shape
        TensorShape([5])

    References:
        Variational Inference with Normalizing Flows, Rezende & Mohamed 2015,
        https://arxiv.org/abs/1505.05770
    """
    fast_map = "both" if nonlinearity == "leaky_relu" else "forward"
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    if width is None:
        maps = [Planar.new(features, dtype=dtype, seed=seed * 1000 + i, name=f"planar_{i}",
                           nonlinearity=nonlinearity) for i in range(layers)]
        return residual_flow(maps, features=features, invert=invert, dtype=dtype,
                             fast_map=fast_map, name="planar")
    initial = [Planar.initial_parameters(features, dtype=dtype, seed=seed * 1000 + i)
               for i in range(layers)]

    def make_map(w: tf.Tensor, u: tf.Tensor, b: tf.Tensor, name: str) -> tfb.Bijector:
        return Planar(w, u, b, nonlinearity=nonlinearity, name=name)

    maps, nets = hyper_maps(initial, make_map, width=width, hidden_units=hidden_units,
                            activation=activation, seed=seed, dtype=dtype, name="planar")
    return residual_flow(maps, features=features, invert=invert, dtype=dtype, fast_map=fast_map,
                         name="planar", nets=nets, context_features=context_features,
                         context_net=embed)
