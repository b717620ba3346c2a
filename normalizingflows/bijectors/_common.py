"""Argument handling shared by the bijectors of this package."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["infer_dtype", "as_parameter", "static_bool", "check_features", "batch_shape_of",
           "is_chain", "is_invert", "accepts", "route_kwargs"]


def _base_class(public: type, private_name: str) -> type:
    for cls in public.__mro__:
        if cls.__name__ == private_name:
            return cls
    return public


# ``tfb.Chain(...)`` and ``tfb.Invert(...)`` return instances of the private base classes
# ``_Chain`` / ``_Invert`` (not of the public names) when a member is not a CompositeTensor,
# e.g. a bijector whose parameters come from Keras layers. Test against the base classes,
# found through the public classes' MRO.
_CHAIN = _base_class(tfp.bijectors.Chain, "_Chain")
_INVERT = _base_class(tfp.bijectors.Invert, "_Invert")


def is_chain(bijector: Any) -> bool:
    """Whether ``bijector`` is a ``tfb.Chain`` (public or private class)."""
    return isinstance(bijector, _CHAIN)


def is_invert(bijector: Any) -> bool:
    """Whether ``bijector`` is a ``tfb.Invert`` (public or private class)."""
    return isinstance(bijector, _INVERT)


def infer_dtype(*values: Any) -> tf.DType:
    """Returns the first floating dtype among `values`, else float32."""
    for value in values:
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            dtype = tf.as_dtype(dtype)
            if dtype.is_floating:
                return dtype
    return tf.float32


def as_parameter(value: Any, name: str, dtype: tf.DType) -> Any:
    """Keeps Variables (so that modules track them); converts everything else to a tensor."""
    if isinstance(value, (tf.Variable, tfp.util.DeferredTensor)):
        if value.dtype != dtype:
            raise TypeError(
                f"`{name}` must have dtype {dtype.name} like the other parameters, "
                f"got {value.dtype.name}."
            )
        return value
    try:
        return tf.convert_to_tensor(value, dtype=dtype, name=name)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be convertible to a {dtype.name} tensor: {err}") from err


def static_bool(value: Any, name: str) -> bool:
    """Resolves a Python bool or a constant boolean tensor to a Python bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    static = tf.get_static_value(value)
    if static is None:
        raise ValueError(
            f"`{name}` must be a Python bool (or a constant boolean tensor), got {value!r}."
        )
    return bool(static)


def check_features(x: tf.Tensor, features: int | None, arg: str) -> None:
    """Raises a ValueError naming ``arg`` unless ``x`` has shape ``[..., features]``."""
    last = x.shape[-1] if x.shape.rank else None
    if x.shape.rank == 0 or (last is not None and features is not None and last != features):
        raise ValueError(
            f"`{arg}` must have shape [..., {features}] (features last), got shape {x.shape}."
        )


def batch_shape_of(shapes: dict[str, tf.TensorShape], what: str) -> tf.TensorShape:
    """The static broadcast of the parameter batch ``shapes`` (name -> shape), else a ValueError
    naming ``what`` and every shape."""
    result = tf.TensorShape([])
    try:
        for shape in shapes.values():
            result = tf.broadcast_static_shape(result, tf.TensorShape(shape))
    except ValueError as err:
        listed = ", ".join(f"{name}: {shape}" for name, shape in shapes.items())
        raise ValueError(f"{what}: the batch shapes of the parameters must broadcast, got "
                         f"{listed}.") from err
    return result


def accepts(bijector: Any, name: str, method: str = "_inverse") -> bool:
    """Whether ``bijector`` (or distribution) takes keyword ``name``: a named parameter of its
    ``method``, or listed in its ``_nf_kwargs`` (bijectors that take ``**kwargs``, e.g. a
    conditioner behind ``tfb.RealNVP`` or a wrapper that routes them on)."""
    if name in getattr(bijector, "_nf_kwargs", ()):
        return True
    return name in _parameters(type(bijector), method)


@functools.cache
def _parameters(cls: type, method: str) -> frozenset[str]:
    """Parameter names of ``cls.method`` (inspected once per class, not on every call)."""
    fn = getattr(cls, method, None)
    return frozenset(inspect.signature(fn).parameters) if fn is not None else frozenset()


def route_kwargs(bijector: Any, leaf_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``bijector`` that deliver ``leaf_kwargs`` to every leaf accepting
    them.

    ``tfb.Chain`` routes keyword arguments by sub-bijector name, ``tfb.Invert`` passes its own
    through; a leaf receives the subset of ``leaf_kwargs`` it accepts (:func:`accepts`).
    """
    if is_chain(bijector):
        routed = {}
        for sub in bijector.bijectors:
            kw = route_kwargs(sub, leaf_kwargs)
            if kw:
                routed[sub.name] = kw
        return routed
    if is_invert(bijector):
        return route_kwargs(bijector.bijector, leaf_kwargs)
    return {k: v for k, v in leaf_kwargs.items() if accepts(bijector, k)}
