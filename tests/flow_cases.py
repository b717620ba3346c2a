"""Cases for the registry-driven harness: every catalog flow x features x test variant.

Adding a flow to the catalog (with its ``test_variants``) adds it here; nothing else changes.
"""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

import normalizingflows as nf

FEATURES = (1, 2, 3, 5)
# Small networks keep the harness fast; the math is the same at any width.
SMALL = {"layers": 2, "hidden_units": 8, "bins": 4, "components": 3}


def is_image_case(case) -> bool:
    return "image_shape" in case[3]


def one_case_per_flow(cases, features: int):
    """Cases at ``features`` dimensions, plus the first case of each image flow and variant."""
    seen, out = set(), []
    for case in cases:
        key = case[0].rsplit("-", 1)[0]
        if case[2] == features and not is_image_case(case):
            out.append(case)
        elif is_image_case(case) and key not in seen:
            seen.add(key)
            out.append(case)
    return out


def small_kwargs(name: str, variant: dict) -> dict:
    constructor = nf.flows.catalog()[name]
    import inspect

    params = inspect.signature(constructor.__wrapped__).parameters
    kwargs = {k: v for k, v in SMALL.items() if k in params}
    kwargs.update(variant)
    return kwargs


def variant_id(variant: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(variant.items())) or "default"


def image_cases(name: str, entry, variant: dict, shapes=None) -> list:
    """Cases of an image flow: one per test image shape, ``features = H * W * C``."""
    return [(f"{name}[{variant_id(variant)}]-{'x'.join(map(str, s))}", name, int(np.prod(s)),
             small_kwargs(name, {**variant, "image_shape": s}))
            for s in (shapes or entry.image_shapes)]


def flow_cases(features=FEATURES):
    """``(id, name, features, kwargs)`` for every catalog entry, variant and allowed size.

    Vector flows are built at each of ``features``; image flows at each of their
    ``image_shapes`` (whatever ``features`` says).
    """
    cases = []
    for name, entry in nf.flows.entries().items():
        for variant in entry.test_variants:
            if entry.image_shapes:
                cases += image_cases(name, entry, variant)
                continue
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
                if entry.image_shapes:
                    cases += image_cases(name, entry, {**variant, **cond},
                                         shapes=entry.image_shapes[:1])
                    continue
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
    dtype = flow.dtype  # float32 for a mixed policy
    c = context(64, seed=seed + 1, dtype=dtype) if flow.conditional else None
    flow.log_prob(data(features, n=64, seed=seed + 1, dtype=dtype), c, training=True)
    return flow


def assert_same_weights(a: nf.flows.Flow, b: nf.flows.Flow) -> None:
    """Every variable of ``a`` equals the same variable of ``b`` (two flows built alike).

    Densities alone cannot show this: a zero-initialised output layer hides any weight behind it.
    """
    assert [v.name for v in a.variables] == [v.name for v in b.variables]
    for u, v in zip(a.variables, b.variables, strict=True):
        np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=u.name)


def perturb(flow, scale: float = 0.1, seed: int = 0) -> None:
    for i, v in enumerate(flow.trainable_variables):
        noise = tf.random.stateless_normal(v.shape, seed=[seed, i], dtype=v.dtype)
        v.assign_add(scale * noise)


def assert_old_made_file_loads(name: str, features: int, kwargs: dict, path, x, **context
                               ) -> None:
    """A flow file of version 3, whose MADEs hold one variable per kernel block, bias and
    context kernel, loads into packed MADEs (one variable each) with the same density."""
    with nf.nn.made.legacy_layout():
        old = make_flow(name, features, kwargs)
    old.save(path)
    config = json.loads((path / "config.json").read_text())
    config["version"] = 3
    (path / "config.json").write_text(json.dumps(config))
    loaded = nf.load(path)
    expected = old.log_prob(x, **context).numpy()
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(loaded.log_prob(x, **context).numpy(), expected,
                               rtol=1e-6, atol=1e-6)
    old_mades = [m for m in old.submodules if isinstance(m, nf.nn.MADE)]
    new_mades = [m for m in loaded.submodules if isinstance(m, nf.nn.MADE)]
    assert len(old_mades) == len(new_mades)
    assert all(len(m.weights) == 1 for m in new_mades)
    for a, b in zip(old_mades, new_mades, strict=True):
        assert len(a.weights) > 1
        for u, v in zip(a.biases + [a.context_kernel], b.biases + [b.context_kernel],
                        strict=True):
            if u is not None:
                np.testing.assert_array_equal(u.numpy(), v.numpy())
