"""Mixed precision for the conditioners: bfloat16 matmuls, float32 variables and log-dets.

A flow built with ``dtype="mixed_bfloat16"`` (``nf.flows.build(name, D,
dtype="mixed_bfloat16")``) keeps every variable, every bijector and every log-determinant in
float32; only its networks (MADE, MLP, ConvNet, PixelCNN) run under the Keras
``mixed_bfloat16`` policy: their matmuls and convolutions take bfloat16 operands (float32
accumulation inside the kernels), and they hand float32 parameters to the transformers. The
flow is still an exact flow of the map it computes (the log-det is the sum of the same
log-scales the map uses), but the map itself is computed to bfloat16 precision (about 3
significant digits), so a round trip through the cheap and the expensive direction of an
autoregressive flow agrees to about 1e-2, not 1e-6.

The flow constructors build their networks inside :func:`precision_scope`; any
``tf_keras`` layer of this package built with ``dtype`` ``None`` or ``"float32"`` inside the
scope takes the scope's policy (:func:`layer_dtype`). A network built directly takes a Keras
policy as its ``dtype`` in the usual way (``MADE(..., dtype="mixed_bfloat16")``).

Example:
    >>> with precision_scope("mixed_bfloat16"):
    ...     layer_dtype("float32")
    'mixed_bfloat16'
    >>> layer_dtype("float32")
    'float32'
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["MIXED_POLICIES", "precision_scope", "layer_dtype", "is_mixed"]

#: Mixed policies a flow's ``dtype`` may name (variables float32, network compute bfloat16).
MIXED_POLICIES = ("mixed_bfloat16",)

_STATE = threading.local()


def is_mixed(dtype: Any) -> bool:
    """Whether ``dtype`` names a mixed policy of :data:`MIXED_POLICIES`."""
    return isinstance(dtype, str) and dtype in MIXED_POLICIES


@contextlib.contextmanager
def precision_scope(policy: str | None) -> Iterator[None]:
    """Networks of this package built inside take ``policy`` (``None``: no change).

    Raises:
        ValueError: If ``policy`` is not ``None`` or one of :data:`MIXED_POLICIES`.
    """
    if policy is not None and not is_mixed(policy):
        raise ValueError(f"policy must be None or one of {MIXED_POLICIES}; got {policy!r}")
    previous = getattr(_STATE, "policy", None)
    _STATE.policy = policy
    try:
        yield
    finally:
        _STATE.policy = previous


def layer_dtype(dtype: Any) -> Any:
    """The ``dtype`` a network layer is built with: the scope's policy for ``None`` or
    ``"float32"`` inside :func:`precision_scope`, else ``dtype`` unchanged."""
    policy = getattr(_STATE, "policy", None)
    if policy is not None and (dtype is None or dtype == "float32"):
        return policy
    return dtype
