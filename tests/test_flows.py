"""The registry-driven harness for flows: every catalog entry passes every check here."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from flow_cases import (
    assert_old_made_file_loads,
    assert_same_weights,
    data,
    flow_cases,
    make_flow,
    one_case_per_flow,
    small_kwargs,
)

import normalizingflows as nf

tfd = tfp.distributions

CASES = flow_cases()
IDS = [c[0] for c in CASES]
ARGS = [c[1:] for c in CASES]
# One size per (flow, variant) for the costlier checks (compilation, fit, 2-D grids); image
# flows take part in the compilation check at their first test shape.
CASES_2D = [c for c in CASES if c[2] == 2]
CASES_3D = one_case_per_flow(CASES, 3)
DEFAULT_2D = [c for c in CASES_2D if "[default]" in c[0]]


def test_catalog_lists_the_core_flows():
    required = {"planar", "radial", "nice", "realnvp", "maf", "iaf", "nsf_coupling",
                "nsf_autoregressive", "made", "made_mog", "maf_mog"}
    assert required <= set(nf.flows.catalog())
    for name, entry in nf.flows.entries().items():
        assert entry.arxiv.startswith("https://arxiv.org/abs/"), name
        assert entry.fast_direction in ("density", "sampling", "both")


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_shapes_finite_and_batch_of_one(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    x = data(features, n=7)
    lp = flow.log_prob(x)
    assert lp.shape == (7,)
    assert np.isfinite(lp.numpy()).all()
    one = flow.log_prob(x[:1])
    np.testing.assert_allclose(one.numpy(), lp.numpy()[:1], rtol=1e-5, atol=1e-5)
    assert flow.to_base(x).shape == (7, features)
    s = flow.sample(5, seed=3)
    assert s.shape == (5, features) and np.isfinite(s.numpy()).all()
    assert flow.sample(1, seed=3).shape == (1, features)
    assert isinstance(flow.distribution, tfd.Distribution)
    assert flow.distribution.event_shape == [features]
    assert flow.fast_direction in ("density", "sampling", "both")


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_sample_and_log_prob_agree_with_log_prob(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    x, lp = flow.sample_and_log_prob(64, seed=11)
    np.testing.assert_allclose(flow.log_prob(x).numpy(), lp.numpy(), rtol=1e-4, atol=2e-3)
    # The same seed gives the same draws.
    np.testing.assert_array_equal(flow.sample(8, seed=5).numpy(), flow.sample(8, seed=5).numpy())


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_float64_round_trip_through_base(name, features, kwargs):
    flow = make_flow(name, features, kwargs, dtype="float64")
    x = data(features, n=9, dtype="float64")
    z = flow.to_base(x)
    assert z.dtype == tf.float64
    back = flow.bijector.forward(tf.identity(z))
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-8)
    assert flow.log_prob(x).dtype == tf.float64


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_every_variable_gets_a_gradient_and_a_step_changes_log_prob(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    x = data(features, n=32, seed=4)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x, training=True))
    grads = tape.gradient(loss, flow.trainable_variables)
    assert flow.trainable_variables
    # In training a batch norm normalises away any shift before it. At D = 1 every MAF layer is
    # affine with constant parameters, so the shift of each batch norm but the last is cancelled
    # exactly by the next one: its gradient is 0 (up to rounding), as it should be.
    norms = nf.training.batch_norm_layers(flow) if features == 1 else []
    cancelled = {bn.shift.ref() for bn in norms[:-1]}
    for var, grad in zip(flow.trainable_variables, grads, strict=True):
        assert grad is not None, f"no gradient reaches {var.name}"
        if var.ref() not in cancelled:
            assert np.abs(tf.convert_to_tensor(grad).numpy()).max() > 0, \
                f"zero gradient: {var.name}"
    before = flow.log_prob(x).numpy()
    # Clipped: a deep image flow pushed off its identity start has gradients in the thousands.
    tf_keras.optimizers.SGD(0.05, global_clipnorm=1.0).apply_gradients(
        zip(grads, flow.trainable_variables, strict=True))
    after = flow.log_prob(x).numpy()  # the same tensor object: no stale TFP cache
    assert np.abs(after - before).max() > 1e-6


@pytest.mark.parametrize("name,features,kwargs", ARGS, ids=IDS)
def test_save_load_and_config_round_trip(name, features, kwargs, tmp_path):
    flow = make_flow(name, features, kwargs)
    x = data(features, n=5)
    flow.save(tmp_path / "flow")
    loaded = nf.load(tmp_path / "flow")
    np.testing.assert_array_equal(loaded.log_prob(x).numpy(), flow.log_prob(x).numpy())
    assert loaded.get_config() == flow.get_config()
    # The same config and seed give the same initial weights.
    fresh_a = nf.flows.Flow.from_config(flow.get_config())
    fresh_b = nf.flows.build(name, features, **kwargs)
    assert_same_weights(fresh_a, fresh_b)
    np.testing.assert_array_equal(fresh_a.log_prob(x).numpy(), fresh_b.log_prob(x).numpy())


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in CASES_3D],
                         ids=[c[0] for c in CASES_3D])
def test_files_from_before_made_weights_were_packed_load(name, features, kwargs, tmp_path):
    assert_old_made_file_loads(name, features, kwargs, tmp_path / "old", data(features, n=5))


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in CASES_2D],
                         ids=[c[0] for c in CASES_2D])
def test_2d_density_integrates_to_one(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    # The square covers every one of 20,000 samples with a margin.
    bound = max(5.0, 1.25 * float(np.abs(flow.sample(20_000, seed=0).numpy()).max()))
    total = nf.diagnostics.grid_integral(flow, bound=bound, resolution=500)
    assert abs(total - 1.0) < 0.01, total


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in CASES_3D],
                         ids=[c[0] for c in CASES_3D])
def test_eager_function_and_xla_agree(name, features, kwargs):
    flow = make_flow(name, features, kwargs)
    x = data(features, n=6)
    z = data(features, n=6, seed=8)
    seed = tf.constant([1, 2], tf.int32)

    def run(x, z, seed):
        # Both directions of the flow, and a seeded draw with its log-density.
        sample, sample_lp = flow.sample_and_log_prob(4, seed=seed)
        return (flow.log_prob(x), flow.to_base(x), flow.bijector.forward(z), sample,
                sample_lp - flow.log_prob(sample))

    eager = run(x, z, seed)
    graph = tf.function(run)(x, z, seed)
    xla = tf.function(run, jit_compile=True)(x, z, seed)
    for e, g in zip(eager, graph, strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)
    # XLA draws other random numbers from the same stateless seed (its own RNG algorithm), so
    # its sample is checked through its log-density instead of against the eager draw.
    for e, j in zip(eager[:3], xla[:3], strict=True):
        np.testing.assert_allclose(j.numpy(), e.numpy(), rtol=1e-4, atol=1e-4)
    assert np.isfinite(xla[3].numpy()).all()
    np.testing.assert_allclose(xla[4].numpy(), 0.0, atol=2e-3)


@pytest.mark.parametrize("name,features,kwargs", [c[1:] for c in DEFAULT_2D],
                         ids=[c[0] for c in DEFAULT_2D])
@pytest.mark.parametrize("jit", [True, False], ids=["xla", "graph"])
def test_keras_fit_lowers_the_loss(name, features, kwargs, jit):
    # Graph mode matters too: there Keras leaves static shapes unknown that XLA knows.
    x = nf.data.toy.moons(512, seed=0)
    flow = nf.flows.build(name, features, **kwargs)
    flow.compile(tf_keras.optimizers.Adam(1e-2), jit_compile=jit)
    before = -float(tf.reduce_mean(flow.log_prob(x)))
    history = flow.fit(x, batch_size=128, epochs=3, verbose=0, validation_data=(x[:128],))
    after = -float(tf.reduce_mean(flow.log_prob(x)))
    assert set(history.history) == {"loss", "val_loss"}
    assert np.isfinite(history.history["loss"]).all()
    assert after < before


# ---------------------------------------------------------------------- bad input
def test_unknown_flow_name():
    with pytest.raises(ValueError, match="unknown flow name='nope'"):
        nf.flows.build("nope", 2)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"layers": 0}, ValueError, "layers must be an int >= 1"),
    ({"hidden_units": 0}, ValueError, "hidden_units"),
    ({"dtype": "int32"}, TypeError, "dtype"),
    ({"frobnicate": 1}, TypeError, "unknown argument"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        nf.flows.build("maf", 2, **kwargs)


def test_bad_bins_and_features():
    with pytest.raises(ValueError, match="bins must be an int >= 2"):
        nf.flows.build("nsf_coupling", 2, bins=1)
    with pytest.raises(ValueError, match="needs features >= 2"):
        nf.flows.build("realnvp", 1)
    with pytest.raises(TypeError, match="features must be an int"):
        nf.flows.build("maf", 2.0)


def test_bad_inputs_to_log_prob_and_fit():
    flow = nf.flows.build("maf", 2, **small_kwargs("maf", {}))
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 2\]"):
        flow.log_prob(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        flow.log_prob(np.zeros((4, 2), np.int64))
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    bad = np.zeros((10, 2), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf in 1 row"):
        flow.fit(bad, epochs=1, verbose=0)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="validation_data contains NaN or Inf"):
        flow.fit(np.zeros((10, 2), np.float32), epochs=1, verbose=0, validation_data=(bad,))
    with pytest.raises(ValueError, match="context was given"):
        flow.log_prob(np.zeros((4, 2), np.float32), context=np.ones((4, 1), np.float32))


def test_load_rejects_missing_and_foreign_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        nf.load(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="format"):
        nf.load(tmp_path / "other")


def save_as_older_versions_did(flow, path):
    """Write ``flow`` to ``path`` as save() did before it left the optimizer out."""
    flow.save(path)
    tf.train.Checkpoint(flow=flow).write(str(path / "weights"))
    saved = [name for name, _ in tf.train.list_variables(str(path / "weights"))]
    assert [name for name in saved if "optimizer" in name]


@pytest.mark.parametrize("writer", ["save", "older save"])
def test_loading_a_trained_flow_is_quiet_about_its_optimizer(tmp_path, writer):
    """A flow file from an older save() after fit carries Adam's slots; load takes the weights
    and says nothing about the rest (it logged one TensorFlow warning per optimizer variable
    before)."""
    import gc
    import logging

    flow = nf.flows.build("maf", 2, **small_kwargs("maf", {}))
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    flow.fit(np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32), epochs=1,
             verbose=0)
    if writer == "save":
        flow.save(tmp_path / "f")
    else:
        save_as_older_versions_did(flow, tmp_path / "f")
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        loaded = nf.load(tmp_path / "f")
        assert_same_weights(flow, loaded)
        del loaded  # TensorFlow reports unrestored checkpoint values when the object dies
        gc.collect()
    finally:
        tf.get_logger().removeHandler(handler)
    assert [r.getMessage()[:80] for r in records] == []


@pytest.mark.parametrize("writer", ["save", "older save"])
def test_a_loaded_flow_trains_with_the_optimizer_it_is_given(tmp_path, writer):
    """A loaded flow compiled with a new optimizer trains with that one. save() leaves the
    optimizer out of the file; files from an older save() hold the trained flow's Adam
    (learning rate, step count, moments), which Keras had restored into the new optimizer:
    Adam(0.0) trained at 1e-3."""
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    flow = nf.flows.build("maf", 2, **small_kwargs("maf", {}))
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    flow.fit(x, batch_size=16, epochs=2, verbose=0)
    flow.save(tmp_path / "f")
    saved = [name for name, _ in tf.train.list_variables(str(tmp_path / "f" / "weights"))]
    assert not [name for name in saved if "optimizer" in name]
    assert len([name for name in saved if "flow/nets" in name]) == len(flow.trainable_variables)
    if writer == "older save":
        save_as_older_versions_did(flow, tmp_path / "f")
    loaded = nf.load(tmp_path / "f")
    loaded.compile(tf_keras.optimizers.Adam(0.0))
    loaded.fit(x, batch_size=32, epochs=1, verbose=0)
    for a, b in zip(flow.trainable_variables, loaded.trainable_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(loaded.optimizer.learning_rate) == 0.0
    assert int(loaded.optimizer.iterations) == 2  # this fit's steps only, not 8 + 2


def test_save_leaves_nothing_half_written(tmp_path):
    flow = nf.flows.build("realnvp", 2, **small_kwargs("realnvp", {}))
    flow.save(tmp_path / "f")
    with pytest.raises(FileExistsError):
        flow.save(tmp_path / "f", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# ---------------------------------------------------------------------- MADE
@pytest.fixture
def tiny_blocks(monkeypatch):
    """Column groups of any width, so that the small MADEs of the tests are split too."""
    monkeypatch.setattr(nf.nn.made, "MIN_BLOCK_UNITS", 1)


@pytest.mark.parametrize("order", ["left-to-right", "right-to-left", "random"])
@pytest.mark.parametrize("features,blocks", [(1, 2), (2, 2), (3, 1), (3, 2), (5, 2), (5, 3),
                                             (5, 8)])
def test_made_jacobian_is_zero_above_the_autoregressive_order(order, features, blocks,
                                                              tiny_blocks):
    made = nf.nn.MADE(features, params=3, hidden_units=(16, 16), order=order, seed=7,
                      output_initializer="glorot_uniform", blocks=blocks)
    x = data(features, n=4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = made(x)
    jac = tape.batch_jacobian(out, x).numpy()  # [batch, D, params, D]
    allowed = made.degrees[None, :] < made.degrees[:, None]  # [out i, in j]
    for p in range(3):
        block = jac[:, :, p, :]
        assert np.abs(block[:, ~allowed]).max(initial=0.0) == 0.0
        if allowed.any():
            assert np.abs(block[:, allowed]).max() > 0.0


@pytest.mark.parametrize("context", [None, 2])
def test_made_blocks_change_the_storage_not_the_map(context, tiny_blocks):
    x = data(7, n=5, dtype="float64")
    c = None if context is None else data(context, n=5, seed=4, dtype="float64")
    made = [nf.nn.MADE(7, params=3, hidden_units=(10, 9), order="random", seed=5,
                       context_features=context, dtype="float64", blocks=blocks,
                       output_initializer="glorot_uniform")
            for blocks in (1, 2, 3, 9)]
    counts = [sum(int(np.prod(v.shape)) for v in m.trainable_variables) for m in made]
    assert counts[0] > counts[1] > counts[2] > counts[3]  # fewer stored zeros
    reference = made[0](x, context=c).numpy()
    for m in made[1:]:
        np.testing.assert_allclose(m(x, context=c).numpy(), reference, rtol=1e-12, atol=1e-12)
        for dense, mask in zip(m.dense_kernels(), m.masks(), strict=True):
            assert np.all(dense.numpy()[mask == 0] == 0.0)
    with pytest.raises(ValueError, match="blocks"):
        nf.nn.MADE(3, blocks=0)


def test_made_splits_only_wide_layers():
    wide = nf.nn.MADE(43, hidden_units=(512, 512))  # 512, 512 and 86 units
    assert [len(b) for b in wide.kernel_blocks] == [3, 3, 2]
    narrow = nf.nn.MADE(5, hidden_units=(16, 16))
    assert [len(b) for b in narrow.kernel_blocks] == [1, 1, 1]


def test_made_keeps_its_weights_in_one_variable():
    """One packed variable per MADE (a compiled call pays for each variable it captures): the
    same values, outputs and gradients as one variable per kernel block, bias and context
    kernel (the layout before flow files of version 4), in both directions."""
    args = dict(hidden_units=(512, 512), context_features=3, seed=2,
                output_initializer="glorot_uniform")
    made = nf.nn.MADE(43, **args)
    with nf.nn.made.legacy_layout():
        old = nf.nn.MADE(43, **args)
    assert [v.name.split("/")[-1] for v in made.weights] == ["packed:0"]
    assert len(old.weights) == 3 + 3 + 2 + 3 + 1  # blocks of each layer, biases, context
    np.testing.assert_array_equal(
        made.packed.numpy(), np.concatenate([v.numpy().ravel() for v in old.weights]))
    kernels = [v for v in old.weights if "kernel" in v.name]  # what a weight penalty sums
    assert len(made.kernels()) == len(kernels) == 3 + 3 + 2 + 1
    for k, v in zip(made.kernels(), kernels, strict=True):
        np.testing.assert_array_equal(k.numpy(), v.numpy())
    x, c = data(43, n=4), tf.ones([4, 3])
    for run in (lambda m: m(x, context=c),
                lambda m: m.solve(lambda p, z: z + p[..., 0], x, context=c)):
        outs, grads = [], []
        for m in (made, old):
            with tf.GradientTape() as tape:
                out = run(m)
                loss = tf.reduce_sum(out ** 2)
            outs.append(out.numpy())
            grads.append(tape.gradient(loss, m.weights))
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)
        assert isinstance(grads[0][0], tf.Tensor)  # dense, as optimisers expect
        np.testing.assert_allclose(
            grads[0][0].numpy(), np.concatenate([tf.convert_to_tensor(g).numpy().ravel()
                                                 for g in grads[1]]), rtol=1e-5, atol=1e-6)
        assert np.count_nonzero(grads[0][0].numpy()) > 0


def test_made_masks_survive_a_manual_update():
    made = nf.nn.MADE(4, params=2, hidden_units=(8,), seed=1, output_initializer="glorot_uniform")
    for v in made.trainable_variables:  # no optimizer, no constraint: a plain assign
        v.assign_add(tf.ones_like(v))
    x = data(4, n=3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = made(x)[..., 0]
    jac = tape.batch_jacobian(out, x).numpy()
    allowed = made.degrees[None, :] < made.degrees[:, None]
    assert np.abs(jac[:, ~allowed]).max() == 0.0


def test_maf_log_prob_matches_its_autodiff_jacobian_after_training_steps():
    flow = nf.flows.build("maf", 4, layers=2, hidden_units=16, dtype="float64")
    x = data(4, n=64, dtype="float64")
    flow.compile(tf_keras.optimizers.Adam(1e-2))
    flow.fit(x, epochs=3, batch_size=16, verbose=0)
    z_x = data(4, n=8, seed=9, dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(z_x)
        z = flow.to_base(z_x)
    _, logdet = tf.linalg.slogdet(tape.batch_jacobian(z, z_x))
    expected = flow.base.log_prob(z) + logdet
    np.testing.assert_allclose(flow.log_prob(z_x).numpy(), expected.numpy(), atol=1e-9)


def test_ar_mixture_cdf_with_uniform_latent_is_the_autoregressive_mixture_density():
    flow = nf.flows.build("ar_mixture_cdf", 3, components=4, hidden_units=8, latent="uniform",
                          dtype="float64")
    perturb_x = data(3, n=10, dtype="float64")
    for v in flow.trainable_variables:  # move away from the initialisation
        v.assign_add(0.1 * tf.random.stateless_normal(v.shape, seed=[1, 2], dtype=v.dtype))
    params = flow.nets[0](perturb_x).numpy()  # [10, 3, 3K]
    k = 4
    logits, locs = params[..., :k], params[..., k:2 * k]
    scales = np.log1p(np.exp(params[..., 2 * k:])) + 1e-3
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), tfd.Normal(locs, scales))
    expected = mixture.log_prob(perturb_x).numpy().sum(-1)
    np.testing.assert_allclose(flow.log_prob(perturb_x).numpy(), expected, rtol=1e-10)
    s = flow.sample(50, seed=3).numpy()
    u = flow.to_base(s).numpy()
    assert np.all((u > 0) & (u < 1))
    with pytest.raises(ValueError, match="latent must be one of"):
        nf.flows.build("ar_mixture_cdf", 2, latent="cauchy")


@pytest.mark.parametrize("name", ["maf", "realnvp", "maf_mog"])
def test_training_mode_reaches_every_batch_norm_layer(name):
    # tfb.Chain of bijectors with Keras-made parameters is TFP's private _Chain class; the
    # training flag must still reach each BatchNorm (a regression seen here).
    flow = nf.flows.build(name, 3, batch_norm=True, **small_kwargs(name, {}))
    norms = [v for v in flow.non_trainable_variables if "moving_variance" in v.name]
    assert len(norms) == 2
    x = data(3, n=64) * 2.0 + 1.0
    flow.log_prob(x)  # evaluation: stored statistics, nothing changes
    assert all(np.all(v.numpy() == 1.0) for v in norms)
    flow.log_prob(x, training=True)  # every layer updates its running variance
    assert all(np.all(v.numpy() != 1.0) for v in norms)
    before = [v.numpy().copy() for v in norms]
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    flow.fit(x.numpy(), batch_size=32, epochs=1, verbose=0)
    assert all(np.abs(v.numpy() - b).max() > 0 for v, b in zip(norms, before, strict=True))


def test_coupling_mlp_accepts_an_unknown_static_width():
    # A tf.data pipeline can leave the feature axis unknown; the MLP must not read it.
    net = nf.nn.MLP(2, 4, hidden_units=(8,))
    fn = tf.function(net, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    assert fn(tf.ones([3, 2])).shape == (3, 4)
    assert net(tf.ones([2, 5, 2])).shape == (2, 5, 4)


def test_residual_mlp_is_pre_activation_blocks():
    # NSF's residual conditioner: h0 = W0 x, h <- h + W2 relu(W1 relu(h)) per block, out on relu(h).
    net = nf.nn.MLP(3, 2, hidden_units=(6, 6), residual=True, output_initializer="glorot_uniform")
    x = tf.random.stateless_normal([5, 3], seed=[1, 2])
    out = net(x).numpy()
    dense = [(d.kernel.numpy(), d.bias.numpy()) for d in net.hidden]
    assert len(dense) == 5 and [k.shape for k, _ in dense][:2] == [(3, 6), (6, 6)]

    def relu(a):
        return np.maximum(a, 0.0)

    h = x.numpy() @ dense[0][0] + dense[0][1]
    for (k1, b1), (k2, b2) in zip(dense[1::2], dense[2::2], strict=True):
        h = h + relu(relu(h) @ k1 + b1) @ k2 + b2
    expected = relu(h) @ net.out.kernel.numpy() + net.out.bias.numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one common width"):
        nf.nn.MLP(3, 2, hidden_units=(6, 8), residual=True)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "dropout"])
@pytest.mark.parametrize("order", ["left-to-right", "random"])
@pytest.mark.parametrize("features,context,blocks", [(1, None, 2), (3, None, 1), (5, 2, 3),
                                                     (6, None, 8)])
def test_residual_made_is_autoregressive_and_pre_activation_blocks(features, context, blocks,
                                                                   order, training,
                                                                   tiny_blocks):
    # ResMADE: h0 = W0 x (+ context), h <- h + W2 act(W1 act(h)) per block, out on act(h), with
    # every kernel masked; the Jacobian stays strictly below the order, with dropout too.
    made = nf.nn.MADE(features, params=3, hidden_units=(16, 16), order=order, seed=7,
                      context_features=context, output_initializer="glorot_uniform",
                      blocks=blocks, residual=True, dropout=0.5 if training else 0.0,
                      activation="tanh")
    x = data(features, n=4)
    c = None if context is None else data(context, n=4, seed=3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = made(x, context=c, training=training)
    jac = tape.batch_jacobian(out, x).numpy()
    allowed = made.degrees[None, :] < made.degrees[:, None]
    for p in range(3):
        block = jac[:, :, p, :]
        assert np.abs(block[:, ~allowed]).max(initial=0.0) == 0.0
        if allowed.any():
            assert np.abs(block[:, allowed]).max() > 0.0
    if training:
        return
    masks = made.masks()
    kernels = [np.zeros(m.shape, np.float32) if k is None else k.numpy()  # None: fully masked
               for k, m in zip(made.dense_kernels(), masks, strict=True)]
    biases = [b.numpy() for b in made.biases]
    assert len(kernels) == 6  # input map, two blocks of two, output
    h = x.numpy() @ kernels[0] + biases[0]
    if c is not None:
        h = h + c.numpy() @ made.context_kernel.numpy()
    for j in (1, 3):
        h = h + np.tanh(np.tanh(h) @ kernels[j] + biases[j]) @ kernels[j + 1] + biases[j + 1]
    expected = (np.tanh(h) @ kernels[5] + biases[5]).reshape(4, features, 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one common width"):
        nf.nn.MADE(3, hidden_units=(6, 8), residual=True)


@pytest.mark.parametrize("net", ["made", "mlp", "mlp_residual"])
def test_dropout_only_while_training(net):
    kwargs = dict(hidden_units=(32, 32), seed=2, output_initializer="glorot_uniform")
    if net == "made":
        make = lambda rate: nf.nn.MADE(4, params=2, dropout=rate, **kwargs)
    else:
        make = lambda rate: nf.nn.MLP(4, 6, dropout=rate, residual=net == "mlp_residual",
                                      **kwargs)
    plain, dropped = make(0.0), make(0.5)
    x = data(4, n=64)
    # the rate changes nothing else: same initial weights, same map when not training
    np.testing.assert_array_equal(dropped(x).numpy(), plain(x).numpy())
    np.testing.assert_array_equal(dropped(x, training=False).numpy(), plain(x).numpy())
    a, b = dropped(x, training=True).numpy(), dropped(x, training=True).numpy()
    assert np.abs(a - b).max() > 1e-3 and np.abs(a - plain(x).numpy()).max() > 1e-3
    np.testing.assert_array_equal(plain(x, training=True).numpy(), plain(x).numpy())
    with pytest.raises(ValueError, match="dropout"):
        make(1.0)


@pytest.mark.parametrize("name,kwargs", [
    ("nsf_coupling", {"residual": True, "lu_layers": True}),
    ("nsf_autoregressive", {"residual": True}),
    ("nsf_coupling", {}),
    ("nsf_autoregressive", {"context_features": 2}),
])
def test_dropout_flow_uses_one_network_pass_per_layer(name, kwargs, monkeypatch):
    """With dropout the map and its log-det must come from one network call (one mask):
    TFP's RealNVP would call the network again for the log-det."""
    flow = nf.flows.build(name, 4, layers=2, hidden_units=(16,), dropout=0.5, seed=1, **kwargs)
    for net in flow.nets:  # leave the identity start, so that dropout changes the density
        for v in net.trainable_variables:
            v.assign(tf.random.stateless_normal(v.shape, seed=[3, v.shape.num_elements()],
                                                stddev=0.3))
    x = data(4, n=32)
    c = data(2, n=32, seed=5) if "context_features" in kwargs else None
    calls = []
    for net in flow.nets:
        call = net.call
        monkeypatch.setattr(net, "call", lambda *a, _call=call, **k: calls.append(
            k.get("training")) or _call(*a, **k))
    train = flow.log_prob(x, context=c, training=True)
    assert calls == [True, True]
    calls.clear()
    np.testing.assert_array_equal(flow.log_prob(x, context=c).numpy(),
                                  flow.log_prob(x, context=c).numpy())
    assert calls == [False, False] * 2  # explicit: no Keras call context decides
    assert np.abs(train.numpy() - flow.log_prob(x, context=c, training=True).numpy()).max() > 1e-3
    assert np.all(np.isfinite(train.numpy()))


@pytest.mark.parametrize("name", ["nsf_coupling", "nsf_autoregressive"])
def test_dropout_flow_trains_compiled(name):
    flow = nf.flows.build(name, 3, layers=2, hidden_units=(16,), dropout=0.2, residual=True)
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    history = flow.fit(data(3, n=256), epochs=2, batch_size=64, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert flow.jit_compile is True  # the XLA step compiled, with the dropout in it (no fallback)
