"""The registry-driven harness for conditional flows: every catalog entry, with a context.

Each catalog flow x its test variants is built with ``context_features`` (raw, and through a
``context_net`` embedding) and must give, for every fixed context, a normalised density that
depends on the context, consistent samples, gradients for every weight (the context network's
included), XLA agreement and save/load.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from flow_cases import (
    CONTEXT,
    assert_old_made_file_loads,
    assert_same_weights,
    conditional_cases,
    context,
    data,
    is_image_case,
    make_flow,
    perturb,
    small_kwargs,
)

import normalizingflows as nf

CASES = conditional_cases()
IDS = [c[0] for c in CASES]
ARGS = [c[1:] for c in CASES]
RAW = [c for c in CASES if "context_net" not in c[0]]
# The grid integral needs 2-D events: image flows are normalised by construction (the harness
# checks their log-det against the autodiff Jacobian instead).
CASES_2D = [c for c in CASES if not is_image_case(c)]


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_density_depends_on_context_and_samples_are_consistent(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    assert flow.conditional and flow.context_features == CONTEXT
    x, c = data(features, n=6), context(6)
    lp = flow.log_prob(x, context=c)
    assert lp.shape == (6,) and np.isfinite(lp.numpy()).all()
    # One context broadcast to every row equals that context repeated.
    one = flow.log_prob(tf.identity(x), context=c[0])
    rep = flow.log_prob(tf.identity(x), context=tf.repeat(c[:1], 6, axis=0))
    np.testing.assert_allclose(one.numpy(), rep.numpy(), rtol=1e-5, atol=1e-5)
    # Different contexts give different densities.
    other = flow.log_prob(tf.identity(x), context=c + 1.0)
    assert np.abs(other.numpy() - lp.numpy()).max() > 1e-3
    # Samples: one context per sample, or one for all; their log-density agrees with log_prob.
    s, s_lp = flow.sample_and_log_prob(6, context=c, seed=4)
    np.testing.assert_allclose(flow.log_prob(tf.identity(s), context=tf.identity(c)).numpy(),
                               s_lp.numpy(), rtol=1e-4, atol=2e-3)
    s1 = flow.sample(5, context=c[0], seed=2)
    assert s1.shape == (5, features) and np.isfinite(s1.numpy()).all()
    # The latent of x under c maps back to x under c.
    z = flow.to_base(tf.identity(x), context=c)
    back = flow.bijector.forward(tf.identity(z),
                                 **flow.condition_kwargs(c).get("bijector_kwargs", {}))
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-3)
    # The TFP distribution takes the condition through its kwargs.
    np.testing.assert_allclose(
        flow.distribution.log_prob(tf.identity(x), **flow.condition_kwargs(c)).numpy(),
        lp.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_every_variable_including_the_context_net_gets_a_gradient(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    x, c = data(features, n=32, seed=4), context(32, seed=4)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x, context=c, training=True))
    grads = tape.gradient(loss, flow.trainable_variables)
    if "context_net" in kwargs:
        assert flow.context_net is not None and flow.context_net.trainable_variables
        names = {v.name for v in flow.context_net.trainable_variables}
        assert names <= {v.name for v in flow.trainable_variables}
    for var, grad in zip(flow.trainable_variables, grads, strict=True):
        assert grad is not None, var.name
        assert np.abs(grad.numpy()).max() > 0, var.name


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in CASES_2D],
                         ids=[c[0] for c in CASES_2D])
def test_density_is_normalised_for_each_context(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    for c in context(2, seed=7).numpy():
        bound = max(5.0, 1.25 * float(np.abs(flow.sample(20_000, context=c, seed=0)).max()))
        total = nf.diagnostics.grid_integral(flow, bound=bound, resolution=500, context=c)
        assert abs(total - 1.0) < 0.01, (c, total)


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_save_load_with_context(name, features, kwargs, tmp_path):
    flow = make_flow(name, features, kwargs)
    x, c = data(features, n=5), context(5)
    flow.save(tmp_path / "flow")
    loaded = nf.load(tmp_path / "flow")
    assert loaded.context_features == CONTEXT
    np.testing.assert_array_equal(loaded.log_prob(x, context=c).numpy(),
                                  flow.log_prob(x, context=c).numpy())
    # The same config and seed give the same initial weights, the context network's included.
    assert_same_weights(nf.flows.Flow.from_config(flow.get_config()),
                        nf.flows.build(name, features, **kwargs))


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in RAW], ids=[c[0] for c in RAW])
def test_files_from_before_made_weights_were_packed_load_with_context(name, features, kwargs,
                                                                      tmp_path):
    assert_old_made_file_loads(name, features, kwargs, tmp_path / "old", data(features, n=5),
                               context=context(5))


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in RAW], ids=[c[0] for c in RAW])
def test_xla_agrees_with_eager_given_a_context(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    x, c = data(features, n=6), context(6)

    def run(x, c):
        return flow.log_prob(x, context=c), flow.to_base(x, context=c)

    eager = run(x, c)
    xla = tf.function(run, jit_compile=True)(x, c)
    for e, j in zip(eager, xla, strict=True):
        np.testing.assert_allclose(j.numpy(), e.numpy(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- training
def _labelled_moons(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    x = np.stack([np.cos(t) - y, np.sin(t) * (1 - 2 * y) + 0.5 * y], 1)
    x = x + 0.1 * rng.standard_normal((n, 2))
    return x.astype(np.float32), np.eye(2, dtype=np.float32)[y]


@pytest.mark.parametrize("form", ["tuple", "y", "dataset"])
def test_keras_fit_on_pairs_learns_the_condition(form):
    x, c = _labelled_moons(1024)
    flow = nf.flows.build("maf", 2, layers=3, hidden_units=32, context_features=2)
    flow.compile(tf_keras.optimizers.Adam(1e-2), jit_compile=True)
    before = -float(tf.reduce_mean(flow.log_prob(x, context=c)))
    if form == "tuple":
        flow.fit((x, c), batch_size=128, epochs=8, verbose=0, validation_data=(x[:128], c[:128]))
    elif form == "y":
        flow.fit(x, c, batch_size=128, epochs=8, verbose=0)
    else:
        flow.fit(tf.data.Dataset.from_tensor_slices((x, c)).batch(128), epochs=8, verbose=0)
    after = -float(tf.reduce_mean(flow.log_prob(x, context=c)))
    assert after < before - 0.3
    # The right label explains a point better than the wrong one.
    right = flow.log_prob(x, context=c).numpy()
    wrong = flow.log_prob(x, context=1.0 - c).numpy()
    assert (right > wrong).mean() > 0.8


def test_training_fit_takes_x_context_pairs():
    x, c = _labelled_moons(512)
    flow = nf.flows.build("realnvp", 2, layers=2, hidden_units=16, context_features=2)
    result = nf.training.fit(flow, (x, c), val=(x[:128], c[:128]), epochs=3, batch_size=128,
                             verbose=0, jit_compile=False)
    assert len(result.history["val_loss"]) == 3
    assert np.isfinite(result.best_loss)
    with pytest.raises(ValueError, match="conditional"):
        nf.training.fit(flow, x, epochs=1, batch_size=128, verbose=0)
    with pytest.raises(ValueError, match="rows but its context"):
        nf.training.fit(flow, (x, c[:10]), epochs=1, batch_size=128, verbose=0)


def test_log_prob_marginal_sums_the_classes():
    flow = make_flow("maf", 2, small_kwargs("maf", {"context_features": 3}))
    x = data(2, n=5)
    per_class = np.stack([flow.log_prob(x, context=np.eye(3, dtype=np.float32)[k]).numpy()
                          for k in range(3)], -1)
    prior = np.array([0.2, 0.3, 0.5])
    expected = np.log((np.exp(per_class.astype(np.float64)) * prior).sum(-1))
    np.testing.assert_allclose(flow.log_prob_marginal(x, prior=prior).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    uniform = np.log(np.exp(per_class.astype(np.float64)).mean(-1))
    np.testing.assert_allclose(flow.log_prob_marginal(x).numpy(), uniform, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="prior must be 3 class probabilities"):
        flow.log_prob_marginal(x, prior=[0.5, 0.5])
    with pytest.raises(ValueError, match="class-conditional"):
        nf.flows.build("maf", 2, layers=1, hidden_units=8).log_prob_marginal(x)


def test_tanh_shift_initialises_from_the_first_training_batch():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((512, 2)) * [3.0, 0.5] + [5.0, -2.0]).astype(np.float32)
    flow = nf.flows.build("realnvp", 2, layers=3, hidden_units=8, scale="tanh_shift")
    flow.log_prob(x, training=True)
    z = flow.to_base(x).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    # Evaluation never re-initialises; a second training batch does not either.
    flow.log_prob(x * 2.0, training=True)
    np.testing.assert_allclose(flow.to_base(x).numpy(), z, atol=1e-6)
    with pytest.raises(ValueError, match="scale must be one of"):
        nf.flows.build("realnvp", 2, scale="exp")


# ---------------------------------------------------------------------- bad input
def test_bad_context_inputs_name_the_argument():
    flow = nf.flows.build("maf", 2, layers=1, hidden_units=8, context_features=3)
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"conditional: pass context= with shape \[\.\.\., 3\]"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match=r"context must have shape \[\.\.\., 3\].*got shape"):
        flow.log_prob(x, context=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="do not broadcast"):
        flow.log_prob(x, context=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"context for sample\(n=5\)"):
        flow.sample(5, context=np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="context must be numeric"):
        flow.log_prob(x, context=np.array([["a", "b", "c"]]))
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="fit on \\(x, context\\) pairs"):
        flow.fit(x, epochs=1, verbose=0)
    bad = np.zeros((4, 3), np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="x context contains NaN"):
        flow.fit((x, bad), epochs=1, verbose=0)
    plain = nf.flows.build("maf", 2, layers=1, hidden_units=8)
    with pytest.raises(ValueError, match="context was given but this flow is unconditional"):
        plain.log_prob(x, context=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="context_net needs context_features"):
        nf.flows.build("maf", 2, context_net=[8])
    with pytest.raises(ValueError, match="context_features must be None or an int >= 1"):
        nf.flows.build("maf", 2, context_features=0)
    with pytest.raises(ValueError, match="context_net must be"):
        nf.flows.build("maf", 2, context_features=2, context_net=[0])


def test_a_keras_layer_as_context_net_trains_but_is_not_json(tmp_path):
    embed = tf_keras.layers.Dense(5, activation="tanh")
    flow = nf.flows.build("nsf_coupling", 2, layers=2, hidden_units=8, bins=4,
                          context_features=3, context_net=embed)
    perturb(flow)  # away from the identity start, where no weight has a gradient yet
    x, c = data(2, n=8), context(8)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x, context=c))
    grads = tape.gradient(loss, embed.trainable_variables)
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)
    with pytest.raises(NotImplementedError, match="context_net"):
        flow.save(tmp_path / "flow")
    assert not (tmp_path / "flow").exists()
