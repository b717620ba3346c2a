"""Interleaved A/B of the coupling bijector: ``realnvp`` and ``nsf_coupling`` log_prob (D = 43,
5 layers, 2 x 512, batch 256) built on ``tfb.RealNVP`` (a second conditioner call for the
log-det) and on ``nf.bijectors.Coupling`` (one call per direction), under ``tf.function`` and
under XLA; medians of 7 interleaved rounds of 20 calls each.

    PYTHONPATH=. .venv/bin/python benchmarks/coupling_calls.py
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import normalizingflows as nf
import normalizingflows.flows.coupling as coupling

SYSTEMS = {"tfb.RealNVP": tfp.bijectors.RealNVP, "Coupling": nf.bijectors.Coupling}


def build(name: str, cls: type) -> nf.flows.Flow:
    """The flow with ``cls`` as its coupling bijector and small random weights."""
    coupling.Coupling = cls
    try:
        flow = nf.flows.build(name, 43, layers=5, hidden_units=(512, 512), seed=0)
    finally:
        coupling.Coupling = nf.bijectors.Coupling
    for net in flow.nets:  # leave the identity start, so both systems compute a real map
        for v in net.trainable_variables:
            v.assign(tf.random.stateless_normal(v.shape, seed=[1, v.shape.num_elements()],
                                                stddev=0.02))
    return flow


def main() -> None:
    x = tf.constant(np.random.default_rng(0).standard_normal((256, 43)), tf.float32)
    for name in ("realnvp", "nsf_coupling"):
        fns = {}
        for label, cls in SYSTEMS.items():
            flow = build(name, cls)
            for jit in (False, True):
                fn = tf.function(lambda x, f=flow: f.log_prob(x), jit_compile=jit)
                fn(x)
                fns[label, jit] = fn
        np.testing.assert_allclose(fns["Coupling", True](x).numpy(),
                                   fns["tfb.RealNVP", True](x).numpy(), rtol=1e-4, atol=1e-3)
        rates = {k: [] for k in fns}
        for _ in range(7):
            for key, fn in fns.items():
                start = time.perf_counter()
                for _ in range(20):
                    fn(x).numpy()
                rates[key].append(256 * 20 / (time.perf_counter() - start))
        for jit in (False, True):
            old, new = (np.median(rates[label, jit]) for label in SYSTEMS)
            print(f"{name:13s} {'XLA' if jit else 'tf.function':12s} log_prob samples/s "
                  f"(median of 7): tfb.RealNVP {old:9,.0f}  Coupling {new:9,.0f}  "
                  f"ratio {new / old:.2f}")


if __name__ == "__main__":
    main()
