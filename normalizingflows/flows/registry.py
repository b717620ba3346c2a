"""The flow catalog: ``catalog()`` maps names to constructors, ``build`` builds one.

Every constructor takes ``features`` first, then keyword-only arguments from one vocabulary:
``layers``, ``hidden_units``, ``activation``, ``bins``, ``bound``, ``components``,
``context_features``, ``order``, ``batch_norm``, ``seed`` (plus ``dtype`` and a few
flow-specific switches). :func:`register` checks that vocabulary once for all flows and records
the arguments so that ``Flow.get_config`` can rebuild the flow.

``dtype`` is ``"float32"``, ``"float64"`` or the mixed policy ``"mixed_bfloat16"``: the flow is
then built in float32 with its networks under that Keras policy (bfloat16 matmuls, float32
variables, transformers and log-dets; see :mod:`normalizingflows.nn.precision`).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn.precision import MIXED_POLICIES, is_mixed, precision_scope
from .core import FAST_DIRECTIONS, Flow

__all__ = ["Entry", "register", "catalog", "entries", "build", "hidden_units_tuple",
           "image_shape_tuple", "unserializable_arguments"]


@dataclass(frozen=True)
class Entry:
    """One catalog entry: the constructor and the facts the README table and tests use.

    Attributes:
        name: Registry name.
        constructor: ``fn(features, **kwargs) -> Flow`` (already argument-checked).
        paper: Title of the paper that introduced the flow.
        arxiv: Link to the paper.
        fast_direction: ``"density"``, ``"sampling"`` or ``"both"``.
        exact_inverse: Whether both directions are exact.
        min_features: Smallest ``features`` the flow admits.
        test_variants: Keyword sets the registry-driven harness builds besides the defaults.
        image_shapes: For image flows, the ``(H, W, C)`` shapes the harness tests (each as
            ``features = H * W * C`` with ``image_shape=(H, W, C)``); empty for vector flows.
    """

    name: str
    constructor: Callable[..., Flow]
    paper: str
    arxiv: str
    fast_direction: str
    exact_inverse: bool = True
    min_features: int = 1
    test_variants: tuple[dict, ...] = field(default_factory=lambda: ({},))
    image_shapes: tuple[tuple[int, int, int], ...] = ()


_ENTRIES: dict[str, Entry] = {}


def hidden_units_tuple(hidden_units: int | Sequence[int]) -> tuple[int, ...]:
    """``64`` -> ``(64, 64)`` (two hidden layers); a sequence is taken as the layer widths."""
    if isinstance(hidden_units, int):
        units = (hidden_units, hidden_units)
    else:
        units = tuple(int(u) for u in hidden_units)
    if any(u < 1 for u in units):
        raise ValueError(f"hidden_units must be positive widths; got {hidden_units!r}")
    return units


def image_shape_tuple(features: int, image_shape: Any) -> tuple[int, int, int]:
    """``image_shape`` as ``(H, W, C)`` after checking that ``H * W * C == features``.

    Image flows take flattened images ``[N, H * W * C]`` (row-major, channels last, as the
    image loaders return them with ``flatten=True``) and reshape inside the bijector.

    Raises:
        ValueError: If ``image_shape`` is not three positive ints or does not match ``features``.
    """
    ok = (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3
          and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                  for s in image_shape))
    if not ok:
        raise ValueError(f"image_shape must be (height, width, channels) of positive ints; got "
                         f"{image_shape!r}")
    shape = tuple(int(s) for s in image_shape)
    if int(np.prod(shape)) != features:
        raise ValueError(f"image_shape={shape} holds {int(np.prod(shape))} values but "
                         f"features={features}; features must be height * width * channels")
    return shape


def _check_arguments(name: str, features: Any, kwargs: dict[str, Any], min_features: int) -> None:
    if isinstance(features, bool) or not isinstance(features, int):
        raise TypeError(f"features must be an int; got {features!r} ({type(features).__name__})")
    if features < min_features:
        raise ValueError(f"flow {name!r} needs features >= {min_features}; got {features}")
    checks = {"layers": 1, "bins": 2, "components": 1}
    for key, low in checks.items():
        if key in kwargs:
            value = kwargs[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an int >= {low}; got {value!r}")
    if "bound" in kwargs and not float(kwargs["bound"]) > 0:
        raise ValueError(f"bound must be > 0; got {kwargs['bound']!r}")
    if "dtype" in kwargs and kwargs["dtype"] not in ("float32", "float64", *MIXED_POLICIES):
        raise TypeError(f"dtype must be 'float32', 'float64' or one of {MIXED_POLICIES}; got "
                        f"{kwargs['dtype']!r}")
    if "hidden_units" in kwargs:
        hidden_units_tuple(kwargs["hidden_units"])
    if "image_shape" in kwargs:
        image_shape_tuple(features, kwargs["image_shape"])
    context = kwargs.get("context_features")
    if context is not None and (isinstance(context, bool) or not isinstance(context, int)
                                or context < 1):
        raise ValueError(f"context_features must be None or an int >= 1; got {context!r}")


_NOT_JSON = "__not_serializable__"

# Constructor defaults that changed: flow -> argument -> (the last flow-file version written
# while the old default held, the old default). Every config names these arguments (so a
# run resumed across the change is refused with the difference named rather than rebuilt
# with the other value), and ``nf.load`` gives a file of that version or older the old value.
CHANGED_DEFAULTS: dict[str, dict[str, tuple[int, Any]]] = {
    "glow": {"coupling_scale": (1, "tanh"), "split_prior": (2, False)},
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    # e.g. a tf_keras layer as context_net: the flow works, but cannot be rebuilt from JSON.
    return {_NOT_JSON: type(value).__name__}


def register(name: str, *, paper: str, arxiv: str, fast_direction: str, exact_inverse: bool = True,
             min_features: int = 1, test_variants: Sequence[dict] = ({},),
             image_shapes: Sequence[Sequence[int]] = ()
             ) -> Callable[[Callable[..., Flow]], Callable[..., Flow]]:
    """Decorator that adds a constructor to the catalog under ``name``.

    The wrapped constructor checks the shared vocabulary, names the flow and records its
    arguments (``Flow.get_config``).
    """
    if fast_direction not in FAST_DIRECTIONS:
        raise ValueError(f"fast_direction must be one of {FAST_DIRECTIONS}")

    def deco(fn: Callable[..., Flow]) -> Callable[..., Flow]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def constructor(features: int, **kwargs: Any) -> Flow:
            unknown = set(kwargs) - set(signature.parameters)
            if unknown:
                takes = sorted(p for p in signature.parameters if p != "features")
                raise TypeError(f"flow {name!r} got unknown argument(s) {sorted(unknown)}; "
                                f"it takes {takes}")
            bound_args = signature.bind(features, **kwargs)
            bound_args.apply_defaults()
            all_kwargs = dict(bound_args.arguments)
            all_kwargs.pop("features")
            _check_arguments(name, features, all_kwargs, min_features)
            policy = kwargs.get("dtype")
            if is_mixed(policy):  # float32 flow, networks under the mixed policy
                with precision_scope(policy):
                    flow = fn(features, **{**kwargs, "dtype": "float32"})
                flow.precision = policy
            else:
                flow = fn(features, **kwargs)
            recorded = {**kwargs, **{k: all_kwargs[k] for k in CHANGED_DEFAULTS.get(name, {})}}
            flow._spec_json = json.dumps({"flow": name, "features": features, "kwargs": {
                k: _jsonable(v) for k, v in recorded.items()}})
            return flow

        if name in _ENTRIES:
            raise ValueError(f"flow {name!r} is registered twice")
        _ENTRIES[name] = Entry(name, constructor, paper, arxiv, fast_direction, exact_inverse,
                               min_features, tuple(test_variants),
                               tuple(tuple(int(v) for v in s) for s in image_shapes))
        return constructor

    return deco


def unserializable_arguments(spec: dict) -> list[str]:
    """Names of the constructor arguments in ``spec`` that JSON cannot hold (e.g. a layer)."""
    return [k for k, v in spec.get("kwargs", {}).items()
            if isinstance(v, dict) and _NOT_JSON in v]


def entries() -> dict[str, Entry]:
    """Every catalog entry with its facts, by name."""
    return dict(_ENTRIES)


def catalog() -> dict[str, Callable[..., Flow]]:
    """``{name: constructor}`` for every flow in the catalog."""
    return {name: entry.constructor for name, entry in _ENTRIES.items()}


def build(name: str, features: int, **kwargs: Any) -> Flow:
    """Build catalog flow ``name`` on ``features`` dimensions.

    Args:
        name: A key of :func:`catalog`.
        features: Number of data dimensions.
        **kwargs: Keyword arguments of that flow's constructor.

    Returns:
        The :class:`Flow`.

    Raises:
        ValueError: If ``name`` is unknown or an argument is out of range.
        TypeError: If an argument is unknown or of the wrong type.

    Example:
        >>> flow = build("realnvp", 2, layers=2, hidden_units=8)
        >>> flow.fast_direction
        'both'
    """
    if name not in _ENTRIES:
        raise ValueError(f"unknown flow name={name!r}; expected one of {sorted(_ENTRIES)}")
    return _ENTRIES[name].constructor(features, **kwargs)
