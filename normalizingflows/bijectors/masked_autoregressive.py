"""Masked autoregressive bijector whose sequential direction costs about one network pass."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from ._common import static_bool

tfb = tfp.bijectors

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(tfb.Bijector):
    """``y_i = f(x_i; theta_i(y_<i))`` with ``theta`` from a masked autoregressive network.

    The same map as ``tfb.MaskedAutoregressiveFlow(bijector_fn=...)`` (MAF paper, eq. 4-5),
    with the same direction convention: the inverse ``x = f^{-1}(y; theta(y))`` (density for a
    MAF) is one network pass; the forward (sampling for a MAF, density for an IAF built as
    ``tfb.Invert``) is sequential. TFP's forward runs ``D`` full network passes. When the
    conditioner has a ``solve(step, x, context)`` method (:meth:`normalizingflows.nn.MADE.solve`)
    this bijector runs the degree-blocked incremental solve instead: each of the ``D`` steps
    computes only the hidden units that just became computable, so the whole forward does the
    multiply-adds of about one pass. ``incremental=False`` (or a conditioner without
    ``solve``) runs the ``D`` full passes in a ``tf.while_loop``.

    Every method takes the keyword ``context`` (a conditional flow's condition) and, when the
    conditioner's ``call`` takes it, ``training`` (e.g. for a MADE's dropout), which ``Flow``
    and ``tfb.Chain`` route here. Each direction runs the conditioner once for the map
    and its log-det together (the log-det goes into TFP's cache), so with dropout both use one
    dropout mask.

    Args:
        conditioner: ``fn(y [..., D], context=None) -> params [..., D, P]`` whose output ``i``
            depends only on inputs before ``i`` in its order (a MADE).
        make_transform: ``fn(params [..., K, P]) -> tfb.Bijector``, an elementwise bijector
            over ``[..., K]`` (affine, spline, ...).
        incremental: Use ``conditioner.solve`` for the forward when it has one.
        validate_args: Passed to ``tfb.Bijector``.
        name: Name of the bijector (``tfb.Chain`` routes keyword arguments by it).

    Example:
        >>> import tensorflow as tf
        >>> from normalizingflows.nn import MADE
        >>> made = MADE(3, params=2, hidden_units=(8,), output_initializer="glorot_uniform")
        >>> shift = lambda p: tfp.bijectors.Shift(p[..., 0])
        >>> bij = MaskedAutoregressive(made, shift)
        >>> x = tf.random.stateless_normal([4, 3], seed=[1, 2])
        >>> float(tf.reduce_max(tf.abs(bij.inverse(bij.forward(x)) - x))) < 1e-5
        True

    References:
        Masked Autoregressive Flow for Density Estimation, Papamakarios et al. 2017,
        https://arxiv.org/abs/1705.07057
    """

    def __init__(self, conditioner: Callable[..., tf.Tensor],
                 make_transform: Callable[[tf.Tensor], tfb.Bijector], *,
                 incremental: bool = True, validate_args: bool = False,
                 name: str = "masked_autoregressive") -> None:
        parameters = dict(locals())
        if not callable(conditioner) or not callable(make_transform):
            raise TypeError("conditioner and make_transform must be callable")
        self._conditioner = conditioner
        self._make_transform = make_transform
        self._incremental = bool(incremental) and hasattr(conditioner, "solve")
        # A user's conditioner may have a solve without ``return_params`` (then the log-det
        # takes one more network pass, as in TFP).
        self._solve_params = self._incremental and (
            "return_params" in inspect.signature(conditioner.solve).parameters)
        self._takes_training = "training" in inspect.signature(
            getattr(conditioner, "call", conditioner)).parameters
        #: The keywords this bijector takes (read by ``Flow``'s routing, see ``accepts``).
        self._nf_kwargs = ("context", "training") if self._takes_training else ("context",)
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=False,
                         validate_args=validate_args, parameters=parameters, name=name)

    @property
    def conditioner(self) -> Callable[..., tf.Tensor]:
        """The masked network that maps ``y`` (and the context) to the parameters."""
        return self._conditioner

    @property
    def incremental(self) -> bool:
        """Whether the forward runs the degree-blocked incremental solve."""
        return self._incremental

    def _conditioner_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - set(self._nf_kwargs)
        if unknown:
            raise TypeError(f"{self.name} takes the keywords {list(self._nf_kwargs)}; got "
                            f"{sorted(unknown)}")
        out = {"context": kwargs.get("context")}
        if self._takes_training:  # explicit, so no Keras call context can turn dropout on
            out["training"] = static_bool(kwargs.get("training", False), "training")
        return out

    def _transform(self, y: tf.Tensor, kwargs: dict[str, Any]) -> tfb.Bijector:
        return self._make_transform(self._conditioner(y, **self._conditioner_kwargs(kwargs)))

    def _step(self, params: tf.Tensor, x_i: tf.Tensor) -> tf.Tensor:
        return self._make_transform(params).forward(x_i)

    # The methods take ``**kwargs`` so that TFP's cache keys a call by exactly the keywords
    # it was given: the log-det stored by ``_forward``/``_inverse`` is found under that key.
    def _forward(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        context = self._conditioner_kwargs(kwargs)["context"]
        if self._solve_params:
            # The solve hands back the parameters it used, so the log-det needs no further
            # network pass (an IAF density calls forward, then its log-det, on the same x).
            # The solve never applies dropout.
            y, params = self._conditioner.solve(self._step, x, context, return_params=True)
            self._cache.forward_attributes(x, **kwargs)["ildj"] = (
                -self._make_transform(params).forward_log_det_jacobian(x, event_ndims=1))
            return y
        if self._incremental:
            return self._conditioner.solve(self._step, x, context)
        d = tf.compat.dimension_value(x.shape[-1])
        if d is None:
            d = tf.shape(x)[-1]

        def body(k: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # no dropout, as in the solve: the D passes must see one network
            return k + 1, self._transform(y, {"context": context}).forward(x)

        return tf.while_loop(lambda k, _: k < d, body, (tf.constant(0), tf.zeros_like(x)),
                             maximum_iterations=d)[1]

    def _inverse(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        # One conditioner pass for both the inverse and its log-det: TFP looks the log-det up
        # in the cache attributes of ``y`` before calling _inverse_log_det_jacobian (a density
        # evaluation calls inverse, then inverse_log_det_jacobian, on the same ``y``).
        transform = self._transform(y, kwargs)
        self._cache.inverse_attributes(y, **kwargs)["ildj"] = (
            transform.inverse_log_det_jacobian(y, event_ndims=1))
        return transform.inverse(y)

    def _inverse_log_det_jacobian(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return self._transform(y, kwargs).inverse_log_det_jacobian(y, event_ndims=1)
