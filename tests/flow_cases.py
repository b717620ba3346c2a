"""Cases for the registry-driven harness: every catalog flow x features x test variant.

Adding a flow to the catalog (with its ``test_variants``) adds it here; nothing else changes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import normalizingflows as nf

FEATURES = (1, 2, 3, 5)
# Small networks keep the harness fast; the math is the same at any width.
SMALL = {"layers": 2, "hidden_units": 8, "bins": 4, "components": 3}


def small_kwargs(name: str, variant: dict) -> dict:
    constructor = nf.flows.catalog()[name]
    import inspect

    params = inspect.signature(constructor.__wrapped__).parameters
    kwargs = {k: v for k, v in SMALL.items() if k in params}
    kwargs.update(variant)
    return kwargs


def variant_id(variant: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(variant.items())) or "default"


def flow_cases(features=FEATURES):
    """``(id, name, features, kwargs)`` for every catalog entry, variant and allowed size."""
    cases = []
    for name, entry in nf.flows.entries().items():
        for variant in entry.test_variants:
            for d in features:
                if d >= entry.min_features:
                    cases.append((f"{name}[{variant_id(variant)}]-D{d}", name, d,
                                  small_kwargs(name, variant)))
    return cases


CONTEXT = 3
# Every catalog flow is tested conditionally, with the raw context and with an embedding net.
CONDITIONAL_VARIANTS = ({"context_features": CONTEXT},
                        {"context_features": CONTEXT, "context_net": [8, 4]})


def conditional_cases(features=(2,)):
    """``(id, name, features, kwargs)``: every catalog entry x its test variants x a context."""
    cases = []
    for name, entry in nf.flows.entries().items():
        for variant in entry.test_variants:
            for cond in CONDITIONAL_VARIANTS:
                for d in features:
                    if d >= entry.min_features:
                        kwargs = small_kwargs(name, {**variant, **cond})
                        cases.append((f"{name}[{variant_id({**variant, **cond})}]-D{d}", name, d,
                                      kwargs))
    return cases


def context(n: int = 16, seed: int = 0, dtype: str = "float32") -> tf.Tensor:
    rng = np.random.default_rng(seed + 1000)
    return tf.constant(rng.standard_normal((n, CONTEXT)), dtype=dtype)


def data(features: int, n: int = 16, seed: int = 0, dtype: str = "float32") -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return tf.constant(rng.standard_normal((n, features)), dtype=dtype)


def make_flow(name: str, features: int, kwargs: dict, dtype: str = "float32", seed: int = 0,
              scale: float = 0.1) -> nf.flows.Flow:
    """Build a flow and move it away from its (often identity) initialisation.

    Every trainable variable gets seeded Gaussian noise, and one training-mode pass on data
    sets batch-norm statistics and data-dependent initialisations.
    """
    flow = nf.flows.build(name, features, dtype=dtype, seed=seed, **kwargs)
    perturb(flow, scale=scale, seed=seed)
    c = context(64, seed=seed + 1, dtype=dtype) if flow.conditional else None
    flow.log_prob(data(features, n=64, seed=seed + 1, dtype=dtype), c, training=True)
    return flow


def perturb(flow, scale: float = 0.1, seed: int = 0) -> None:
    for i, v in enumerate(flow.trainable_variables):
        noise = tf.random.stateless_normal(v.shape, seed=[seed, i], dtype=v.dtype)
        v.assign_add(scale * noise)
