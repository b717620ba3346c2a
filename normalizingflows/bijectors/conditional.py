"""A bijector built anew from a context on every call (conditional flows, hyper-networks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = ["Conditional"]


class Conditional(tfb.Bijector):
    """A bijector `y = f_c(x)` whose map `f_c = make_bijector(c)` depends on a context `c`.

    Every method takes the context as the keyword `context` (an explicit parameter of
    `_inverse`, so `Flow` and `tfb.Chain` routing deliver it), builds `make_bijector(context)`
    and delegates to it. Typically `make_bijector` runs a hyper-network on the context and
    returns a bijector with batched parameters, one map per row:

        y = f_{theta(c)}(x),   log|det J| = log|det d f_{theta(c)} / dx|

    The bijector owns no variables: whatever `make_bijector` uses (a hyper-network) must be
    tracked elsewhere (a `Flow` takes it in `nets`).

    Args:
        make_bijector: `fn(context) -> tfb.Bijector` over events of rank
            `forward_min_event_ndims`.
        forward_min_event_ndims: Event rank of the bijectors `make_bijector` returns.
        dtype: Floating dtype of the inputs (`None`: any).
        validate_args: Passed to `tfb.Bijector`.
        name: Name of the bijector (`tfb.Chain` routes keyword arguments by it).

    Raises:
        TypeError: If `make_bijector` is not callable.
        ValueError: When a method is called without a context, or `make_bijector` returns
            something that is not a `tfb.Bijector`.

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> import tensorflow_probability as tfp
        >>> from normalizingflows.bijectors import Conditional
        >>> scale_by_context = lambda c: tfp.bijectors.Scale(1.0 + tf.square(c))
        >>> bij = Conditional(scale_by_context, name="scale_by_context")
        >>> x, c = tf.ones([3, 2]), tf.constant([[0.0], [1.0], [2.0]])
        >>> bij.forward(x, context=c).numpy().tolist()
        [[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]]
        >>> bij.inverse_log_det_jacobian(tf.ones([3, 2]), event_ndims=1, context=c).shape
        TensorShape([3])
    """

    def __init__(
        self,
        make_bijector: Callable[[tf.Tensor], tfb.Bijector],
        *,
        forward_min_event_ndims: int = 1,
        dtype: Any = None,
        validate_args: bool = False,
        name: str = "conditional",
    ) -> None:
        parameters = dict(locals())
        if not callable(make_bijector):
            raise TypeError(
                f"`make_bijector` must be callable (context -> bijector), got {make_bijector!r}."
            )
        self._make_bijector = make_bijector
        super().__init__(
            forward_min_event_ndims=int(forward_min_event_ndims),
            is_constant_jacobian=False,
            validate_args=validate_args,
            dtype=None if dtype is None else tf.as_dtype(dtype),
            parameters=parameters,
            name=name,
        )

    @property
    def make_bijector(self) -> Callable[[tf.Tensor], tfb.Bijector]:
        """The function `context -> bijector`."""
        return self._make_bijector

    def bijector(self, context: Any) -> tfb.Bijector:
        """The bijector `make_bijector(context)` for the given context.

        Args:
            context: The context (any tensor `make_bijector` accepts).

        Returns:
            The bijector for this context.

        Raises:
            ValueError: If `context` is None or `make_bijector` returns no bijector.
        """
        if context is None:
            raise ValueError(
                f"the conditional bijector {self.name!r} needs `context=`: got None (pass the "
                "context to the method, or to Flow.log_prob / sample / to_base)."
            )
        bijector = self._make_bijector(context)
        if not isinstance(bijector, tfb.Bijector):
            raise ValueError(
                f"`make_bijector` of {self.name!r} must return a tfb.Bijector, got "
                f"{type(bijector).__name__}."
            )
        return bijector

    def _forward(self, x: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self.bijector(context).forward(x)

    def _inverse(self, y: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self.bijector(context).inverse(y)

    def _forward_log_det_jacobian(self, x: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self.bijector(context).forward_log_det_jacobian(
            x, event_ndims=self.forward_min_event_ndims)

    def _inverse_log_det_jacobian(self, y: tf.Tensor, context: Any = None) -> tf.Tensor:
        return self.bijector(context).inverse_log_det_jacobian(
            y, event_ndims=self.inverse_min_event_ndims)
