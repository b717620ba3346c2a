"""Mixed precision (``dtype="mixed_bfloat16"``) for every catalog flow: the networks' matmuls
and convolutions run in bfloat16, everything else (variables, transformers, log-dets, the
densities) stays float32."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from flow_cases import context, data, flow_cases, make_flow, one_case_per_flow

import normalizingflows as nf

CASES = one_case_per_flow(flow_cases(), 3)
CONDITIONAL = [("maf", 3, {"layers": 2, "hidden_units": 8, "context_features": 3,
                           "context_net": [8, 4]}),
               ("nsf_coupling", 3, {"layers": 2, "hidden_units": 8, "bins": 4,
                                    "context_features": 3}),
               ("glow", 16, {"layers": 2, "hidden_units": 8, "image_shape": (4, 4, 1),
                             "context_features": 3})]
NETS = (nf.nn.MADE, nf.nn.MLP, nf.nn.ConvNet, nf.nn.PixelCNN)


def _bf16_kernels(fn, *args) -> int:
    """Matmuls and convolutions with bfloat16 operands in the graph of ``fn(*args)``."""
    graph = tf.function(fn).get_concrete_function(*args).graph
    ops = [op for func in [graph, *graph._functions.values()]
           for op in (func.get_operations() if hasattr(func, "get_operations")
                      else func.graph.get_operations())]
    return sum(op.type in ("MatMul", "BatchMatMulV2", "Conv2D") and op.get_attr("T") == tf.bfloat16
               for op in ops)


def _check(name, features, kwargs, tmp_path):
    full = make_flow(name, features, kwargs)
    mixed = make_flow(name, features, kwargs, dtype="mixed_bfloat16")
    assert mixed.precision == "mixed_bfloat16" and mixed.dtype == "float32"
    assert [v.dtype for v in mixed.variables] == [v.dtype for v in full.variables]
    assert all(v.dtype != tf.bfloat16 for v in mixed.variables)
    c = context(16) if mixed.conditional else None
    x = data(features, n=16)
    lp = mixed.log_prob(x, c)
    assert lp.dtype == tf.float32 and np.isfinite(lp.numpy()).all()
    # The same float32 weights: the densities differ by bfloat16 rounding of the networks only.
    # (Perturbed weights and several layers of rounding: up to about 0.1 nats per dimension.)
    np.testing.assert_allclose(lp.numpy(), full.log_prob(x, c).numpy(), rtol=0.05,
                               atol=0.1 * features)
    nets = [m for m in mixed.submodules if isinstance(m, NETS)]
    if nets:
        assert all(net.compute_dtype == "bfloat16" for net in nets)
        assert _bf16_kernels(lambda x: mixed.log_prob(x, c), x) > 0
    else:  # planar and radial have no networks: nothing changes
        np.testing.assert_array_equal(lp.numpy(), full.log_prob(x, c).numpy())
    # Both directions in float32, inverse to bfloat16 precision (root solves included).
    z = mixed.to_base(x, c)
    assert z.dtype == tf.float32
    back = mixed.bijector.forward(tf.identity(z),
                                  **mixed.condition_kwargs(c).get("bijector_kwargs", {}))
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=2e-2)
    # XLA computes the same (bfloat16 ops fused differently: rounding-level differences).
    bk = mixed.condition_kwargs(c).get("bijector_kwargs", {})
    xla = tf.function(lambda x, z: (mixed.log_prob(x, c), mixed.bijector.forward(z, **bk)),
                      jit_compile=True)(x, z)
    np.testing.assert_allclose(xla[0].numpy(), lp.numpy(), rtol=0.02, atol=0.05 * features)
    np.testing.assert_allclose(xla[1].numpy(), x.numpy(), atol=5e-2)
    # Gradients reach every variable, in float32; a Keras step trains.
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(mixed.log_prob(x, c, training=True))
    grads = tape.gradient(loss, mixed.trainable_variables)
    for var, grad in zip(mixed.trainable_variables, grads, strict=True):
        assert grad is not None and grad.dtype == tf.float32, var.name
    # Save and load keep the precision (the training pass above moved batch-norm statistics).
    mixed.save(tmp_path / "flow")
    loaded = nf.load(tmp_path / "flow")
    assert loaded.precision == "mixed_bfloat16"
    np.testing.assert_array_equal(loaded.log_prob(x, c).numpy(),
                                  mixed.log_prob(tf.identity(x), c).numpy())


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mixed_bfloat16_flow(name, features, kwargs, tmp_path):
    _check(name, features, kwargs, tmp_path)


@pytest.mark.parametrize("name,features,kwargs", CONDITIONAL, ids=[c[0] for c in CONDITIONAL])
def test_mixed_bfloat16_conditional_flow(name, features, kwargs, tmp_path):
    _check(name, features, kwargs, tmp_path)


@pytest.mark.parametrize("jit", [True, False], ids=["xla", "graph"])
def test_mixed_bfloat16_keras_fit_lowers_the_loss(jit):
    x = nf.data.toy.moons(512, seed=0)
    flow = nf.flows.build("maf", 2, layers=2, hidden_units=16, dtype="mixed_bfloat16")
    flow.compile(tf_keras.optimizers.Adam(1e-2), jit_compile=jit)
    before = -float(tf.reduce_mean(flow.log_prob(x)))
    history = flow.fit(x, batch_size=128, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert -float(tf.reduce_mean(flow.log_prob(x))) < before


def test_mixed_precision_scope_and_bad_policies():
    made = nf.nn.MADE(3, hidden_units=(8,), dtype="mixed_bfloat16")
    assert made.dtype == "float32" and made.compute_dtype == "bfloat16"
    assert made(tf.zeros([2, 3])).dtype == tf.float32
    with nf.nn.precision_scope("mixed_bfloat16"):
        assert nf.nn.MLP(2, 2, hidden_units=(4,)).compute_dtype == "bfloat16"
        # An explicit float64 network is left alone.
        assert nf.nn.MLP(2, 2, hidden_units=(4,), dtype="float64").compute_dtype == "float64"
    assert nf.nn.MLP(2, 2, hidden_units=(4,)).compute_dtype == "float32"
    with pytest.raises(ValueError, match="policy must be"):
        with nf.nn.precision_scope("mixed_float8"):
            pass
    with pytest.raises(TypeError, match="dtype must be"):
        nf.flows.build("maf", 2, dtype="bfloat16")
