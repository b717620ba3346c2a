"""Seeded initialisers shared by the conditioners."""

from __future__ import annotations

from typing import Any

import tf_keras

__all__ = ["seeded"]


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
