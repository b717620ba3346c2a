"""Seeded initialisers and the argument checks and pieces shared by the conditioners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tf_keras

__all__ = ["seeded", "check_residual_widths", "dropout_layer"]


def seeded(initializer: Any, seed: int) -> tf_keras.initializers.Initializer:
    """``initializer`` as an object; an unseeded random one becomes a seeded copy.

    A copy, not ``init.seed = seed``: a Keras initialiser makes its random generator when it is
    constructed, so a seed set afterwards is ignored and the weights differ from run to run.

    Example:
        >>> a, b = seeded("glorot_uniform", 3), seeded("glorot_uniform", 3)
        >>> bool((a([2, 2]).numpy() == b([2, 2]).numpy()).all())
        True
    """
    init = tf_keras.initializers.get(initializer)
    if getattr(init, "seed", 0) is None:
        init = type(init).from_config({**init.get_config(), "seed": seed})
    return init


def check_residual_widths(residual: bool, hidden_units: Sequence[int]) -> None:
    """A residual net adds each block's output to its input: every width must be the same."""
    if residual and len(set(hidden_units)) != 1:
        raise ValueError("residual=True needs hidden_units of one common width; got "
                         f"{list(hidden_units)}")


def dropout_layer(rate: float, seed: int, dtype: Any) -> tf_keras.layers.Dropout | None:
    """A seeded Keras ``Dropout`` for the hidden units of a conditioner (``None`` at rate 0).

    Raises:
        ValueError: If ``rate`` is not in ``[0, 1)``.
    """
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {rate}")
    if not rate:
        return None
    return tf_keras.layers.Dropout(float(rate), seed=seed * 7919 + 991, dtype=dtype,
                                   name="dropout")
