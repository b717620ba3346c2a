"""Coupling bijector that runs its conditioner once per direction for the map and its log-det."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = ["Coupling"]


class Coupling(tfb.RealNVP):
    """``tfb.RealNVP`` (same arguments, same map) whose forward and inverse also compute
    their log-det from the same conditioner call.

    TFP's ``RealNVP`` calls ``bijector_fn`` once in ``inverse`` and once more in
    ``inverse_log_det_jacobian`` (likewise forward). That costs a second network pass outside
    XLA, and with a random conditioner (dropout under ``training=True``) the two calls draw
    different masks, so a density would pair one map with the log-det of another. Here each
    direction stores its log-det in TFP's cache under the keywords of the call, where
    ``log_prob`` (which calls ``inverse`` first) and ``sample``-then-log-det find it.

    Measured with ``benchmarks/coupling_calls.py`` (interleaved, D = 43, 5 layers, 2 x 512,
    batch 256, 2-core AMD EPYC, two runs): under ``tf.function`` the ``log_prob`` of
    ``realnvp`` runs 1.56-1.59x and of ``nsf_coupling`` 1.54x faster than with
    ``tfb.RealNVP``; under XLA, which merges the two identical calls of a deterministic
    network, 0.96-1.12x (the same speed within the noise).

    Example:
        >>> import tensorflow as tf
        >>> fn = lambda x0, input_depth, **kw: tfp.bijectors.Shift(tf.reduce_sum(x0, -1,
        ...                                                                  keepdims=True))
        >>> bij = Coupling(num_masked=1, bijector_fn=fn)
        >>> bij.forward(tf.constant([[1.0, 2.0]])).numpy().tolist()
        [[1.0, 3.0]]
    """

    def _halves(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        self._cache_input_depth(x)
        x0, x1 = x[..., :self._masked_size], x[..., self._masked_size:]
        return (x1, x0) if self._reverse_mask else (x0, x1)

    def _join(self, x0: tf.Tensor, y1: tf.Tensor) -> tf.Tensor:
        return tf.concat([y1, x0] if self._reverse_mask else [x0, y1], axis=-1)

    def _forward(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        x0, x1 = self._halves(x)
        transform = self._bijector_fn(x0, self._bijector_input_units(), **kwargs)
        self._cache.forward_attributes(x, **kwargs)["ildj"] = (
            -transform.forward_log_det_jacobian(x1, event_ndims=1))
        return self._join(x0, transform.forward(x1))

    def _inverse(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        y0, y1 = self._halves(y)
        transform = self._bijector_fn(y0, self._bijector_input_units(), **kwargs)
        self._cache.inverse_attributes(y, **kwargs)["ildj"] = (
            transform.inverse_log_det_jacobian(y1, event_ndims=1))
        return self._join(y0, transform.inverse(y1))
