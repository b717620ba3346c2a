"""Image bijectors and flows beyond the registry harness: layouts, masks, log-dets, training.

The harness (``test_flows.py``, ``test_bijectors.py``, ``test_conditional_flows.py``) already
runs every image flow at its ``image_shapes``; here are the checks specific to images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import normalizingflows as nf
from normalizingflows.bijectors import (
    ActNorm,
    ChannelSplit,
    ImageCoupling,
    Squeeze,
    invertible_1x1_conv,
)
from normalizingflows.bijectors._common import is_invert
from normalizingflows.nn import ConvNet

tfb = tfp.bijectors
FIX = Path(__file__).resolve().parent / "fixtures" / "mnist"


def test_squeeze_moves_each_2x2_block_into_channels():
    x = tf.reshape(tf.range(2 * 4 * 4 * 2, dtype=tf.float32), [2, 4, 4, 2])
    y = Squeeze().forward(x)
    assert y.shape == (2, 2, 2, 8)
    # Pixel (0, 1) of the squeezed image holds the block rows 0-1, columns 2-3.
    np.testing.assert_array_equal(y[0, 0, 1].numpy(),
                                  tf.reshape(x[0, 0:2, 2:4], [-1]).numpy())
    np.testing.assert_array_equal(Squeeze().inverse(y).numpy(), x.numpy())
    assert Squeeze().forward_event_shape([4, 6, 3]) == [2, 3, 12]
    assert Squeeze().inverse_event_shape([2, 3, 12]) == [4, 6, 3]
    assert float(Squeeze().forward_log_det_jacobian(x, event_ndims=3)) == 0.0
    # Any batch shape, and an unbatched image.
    assert Squeeze().forward(tf.zeros([3, 2, 4, 4, 1])).shape == (3, 2, 2, 2, 4)
    assert Squeeze().forward(tf.zeros([4, 4, 1])).shape == (2, 2, 4)
    with pytest.raises(ValueError, match="divisible by 2"):
        Squeeze().forward(tf.zeros([1, 3, 4, 1]))


def _jacobian_logdet(bijector, x, **kwargs):
    flat = tf.reshape(x, [x.shape[0], -1])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(flat)
        y = bijector.forward(tf.reshape(flat, x.shape), **kwargs)
        y = tf.reshape(y, [x.shape[0], -1])
    jac = tape.batch_jacobian(y, flat, experimental_use_pfor=False).numpy()
    return jac, np.linalg.slogdet(jac)[1]


@pytest.mark.parametrize("scale", ["tanh", "sigmoid"])
@pytest.mark.parametrize("mask,parity,channels", [("checkerboard", 0, 1), ("checkerboard", 1, 3),
                                                  ("channel", 0, 4), ("channel", 1, 3)])
def test_coupling_keeps_its_half_and_its_log_det_is_exact(mask, parity, channels, scale):
    c_in = channels + 1 if mask == "checkerboard" else channels // 2
    c_out = 2 * channels if mask == "checkerboard" else 2 * (channels - channels // 2)
    net = ConvNet(c_in, c_out, hidden_channels=4, blocks=1, seed=3, dtype="float64")
    for v in net.trainable_variables:  # off the identity start
        v.assign_add(0.3 * tf.random.stateless_normal(v.shape, [1, 2], dtype=tf.float64))
    bij = ImageCoupling(net, mask=mask, parity=parity, scale=scale)
    x = tf.random.stateless_normal([2, 4, 4, channels], [3, 4], dtype=tf.float64)
    y = bij.forward(x)
    if mask == "checkerboard":
        kept = (np.add.outer(np.arange(4), np.arange(4)) % 2 == parity)[..., None]
        kept = np.broadcast_to(kept, x.shape[1:])
    else:
        cut = channels // 2
        kept = np.zeros(x.shape[1:], bool)
        kept[..., :cut] = parity == 0
        kept[..., channels - cut:] |= parity == 1
    np.testing.assert_array_equal(y.numpy()[:, kept], x.numpy()[:, kept])
    assert np.abs(y.numpy()[:, ~kept] - x.numpy()[:, ~kept]).max() > 1e-3
    np.testing.assert_allclose(bij.inverse(tf.identity(y)).numpy(), x.numpy(), atol=1e-12)
    _, logdet = _jacobian_logdet(bij, x)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(tf.identity(x), event_ndims=3),
                               logdet, atol=1e-10)


def test_channel_mask_on_one_channel_is_a_clear_error():
    bij = ImageCoupling(ConvNet(0, 2, hidden_channels=4), mask="channel")
    with pytest.raises(ValueError, match="at least 2 channels"):
        bij.forward(tf.zeros([1, 2, 2, 1]))
    with pytest.raises(ValueError, match="mask must be one of"):
        ImageCoupling(ConvNet(1, 2), mask="stripes")
    with pytest.raises(ValueError, match="scale must be one of"):
        ImageCoupling(ConvNet(1, 2), scale="exp")


def test_sigmoid_coupling_never_amplifies_an_input_on_the_way_to_the_base():
    """Glow's scale: data -> base multiplies x_b - t by sigmoid(r + 2) < 1, whatever the net
    says, so an input unlike the training data cannot be blown up coupling after coupling.
    The tanh scale can multiply it by up to exp(3) = 20 per coupling (a trained MNIST Glow
    sent a few test digits to |z| ~ 10^4 that way)."""
    net = ConvNet(2, 4, hidden_channels=4, blocks=0, seed=1, dtype="float64")
    for v in net.trainable_variables:  # a net whose outputs are large and of both signs
        v.assign(30.0 * tf.random.stateless_normal(v.shape, [5, 6], dtype=tf.float64))
    y = tf.random.stateless_normal([8, 4, 4, 4], [7, 8], dtype=tf.float64) * 10.0
    gains = {}
    for scale in ("sigmoid", "tanh"):
        bij = ImageCoupling(net, mask="channel", scale=scale)
        shift, log_scale = bij._params(y[..., :2], tf.shape(y)[:-3], None)
        x = bij.inverse(y)
        gains[scale] = (np.abs(x[..., 2:].numpy()) / np.abs((y[..., 2:] - shift).numpy())).max()
        ildj = bij.inverse_log_det_jacobian(y, event_ndims=3).numpy()
        np.testing.assert_allclose(ildj, -tf.reduce_sum(log_scale, [-3, -2, -1]).numpy())
        if scale == "sigmoid":
            assert (ildj <= 0).all()
    assert gains["sigmoid"] <= 1.0
    assert gains["tanh"] > 10.0


def test_invertible_1x1_conv_log_det_is_pixels_times_log_det_w():
    conv = invertible_1x1_conv(3, dtype=tf.float64, seed=4)
    conv.trainable_variables[0].assign_add(
        0.2 * tf.random.stateless_normal([3, 3], [5, 6], dtype=tf.float64))
    x = tf.random.stateless_normal([2, 3, 5, 3], [7, 8], dtype=tf.float64)
    jac, logdet = _jacobian_logdet(conv, x)
    w = jac[0, :3, :3]  # the channel map of the first pixel
    np.testing.assert_allclose(conv.forward_log_det_jacobian(x, event_ndims=3).numpy(),
                               15 * np.linalg.slogdet(w)[1], atol=1e-10)
    np.testing.assert_allclose(logdet, 15 * np.linalg.slogdet(w)[1], atol=1e-10)
    # The same seed gives the same rotation; its start is volume-preserving.
    a, b = invertible_1x1_conv(4, seed=9), invertible_1x1_conv(4, seed=9)
    np.testing.assert_array_equal(a.trainable_variables[0].numpy(),
                                  b.trainable_variables[0].numpy())
    assert abs(float(a.forward_log_det_jacobian(tf.zeros([1, 4]), event_ndims=1))) < 1e-5


def test_channel_split_routes_keywords_and_passes_the_rest():
    norm = ActNorm.new(2, event_ndims=3, name="inner_norm")
    split = ChannelSplit(tfb.Chain([norm]), channels=2)
    y = 3.0 + 2.0 * tf.random.stateless_normal([64, 2, 2, 3], [1, 1])
    x = split.inverse(y, training=True)  # reaches the ActNorm inside: data-dependent init
    assert bool(norm.initialized.numpy())
    np.testing.assert_allclose(x.numpy()[..., :2].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_array_equal(x.numpy()[..., 2:], y.numpy()[..., 2:])
    ildj = split.inverse_log_det_jacobian(tf.identity(y), event_ndims=3)
    np.testing.assert_allclose(ildj.numpy(), -4 * float(tf.reduce_sum(norm.log_scale)),
                               rtol=1e-5)


@pytest.mark.parametrize("name", ["realnvp_image", "glow"])
def test_image_flow_on_mnist_shape_layout_and_errors(name):
    flow = nf.flows.build(name, 784, image_shape=(28, 28, 1), layers=1, hidden_units=4,
                          blocks=0)
    assert flow.image_shape == (28, 28, 1)
    x = tf.random.stateless_normal([3, 784], [0, 1])
    z = flow.to_base(x)
    np.testing.assert_allclose(flow.bijector.forward(z).numpy(), x.numpy(), atol=1e-4)
    assert flow.as_images(flow.sample(2, seed=1)).shape == (2, 28, 28, 1)
    # At the identity start (zero output convs, fresh ActNorm) the flow is the base density
    # (Glow's default sigmoid scale starts at sigmoid(2), not 1, and so does its split prior's
    # spread: its tanh scale without the split prior starts at 1).
    base = flow.base.log_prob(x).numpy()
    identity = {"coupling_scale": "tanh", "split_prior": False} if name == "glow" else {}
    fresh = nf.flows.build(name, 784, image_shape=(28, 28, 1), layers=1, hidden_units=4,
                           blocks=0, **identity)
    np.testing.assert_allclose(fresh.log_prob(x).numpy(), base, rtol=1e-5)
    with pytest.raises(ValueError, match="features must be height"):
        nf.flows.build(name, 780, image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="image_shape must be"):
        nf.flows.build(name, 784, image_shape=(28, 28))
    with pytest.raises(ValueError, match="divisible by"):
        nf.flows.build(name, 28 * 28, image_shape=(28, 28, 1), levels=4)
    with pytest.raises(ValueError, match="image flow"):
        nf.flows.build("maf", 2).as_images(tf.zeros([1, 2]))


def test_first_training_batch_initialises_every_act_norm():
    flow = nf.flows.build("glow", 48, image_shape=(4, 4, 3), layers=2, hidden_units=8)
    norms = [v for v in flow.variables if "initialized" in v.name]
    assert len(norms) == 4 and not any(bool(v.numpy()) for v in norms)
    flow.sample(4, seed=0)  # sampling never initialises
    flow.log_prob(tf.zeros([2, 48]))  # neither does evaluation
    assert not any(bool(v.numpy()) for v in norms)
    flow.log_prob(tf.random.stateless_normal([32, 48], [2, 3]), training=True)
    assert all(bool(v.numpy()) for v in norms)


def test_temperature_scales_the_base_draw():
    flow = nf.flows.build("glow", 16, image_shape=(4, 4, 1), layers=1, levels=1, hidden_units=4)
    cold = flow.sample(2000, seed=3, temperature=0.5).numpy()
    warm = flow.sample(2000, seed=3).numpy()
    # At the identity start the flow is N(0, I): the spread scales with the temperature.
    np.testing.assert_allclose(cold.std(), 0.5 * warm.std(), rtol=0.05)
    with pytest.raises(ValueError, match="temperature"):
        flow.sample(2, temperature=0.0)


def test_class_conditional_glow_fits_mnist_fixture_digits_and_lowers_bits_per_dim():
    images = nf.data.mnist.read_idx(FIX / "t10k-images-300-idx3-ubyte.gz")
    labels = nf.data.mnist.read_idx(FIX / "t10k-labels-300-idx1-ubyte.gz")
    x = nf.data.preprocess.to_flow_input(images.reshape(300, 784), form="logit", seed=0)
    c = np.eye(10, dtype=np.float32)[labels]
    flow = nf.flows.build("glow", 784, image_shape=(28, 28, 1), layers=2, hidden_units=16,
                          blocks=0, context_features=10)

    def bpd() -> float:
        deq = nf.data.preprocess.inverse_logit_transform(x.astype(np.float64))
        lp = flow.log_prob(x, context=c).numpy()
        return float(nf.data.preprocess.bits_per_dim(lp, deq).mean())

    flow.log_prob(x[:256], context=c[:256], training=True)  # data-dependent init
    before = bpd()
    flow.compile(tf_keras.optimizers.Adam(1e-3))
    flow.fit((x, c), batch_size=50, epochs=3, verbose=0)
    after = bpd()
    assert np.isfinite(after) and after < before - 0.3, (before, after)
    samples = flow.as_images(flow.sample(4, context=np.eye(10)[[2, 4, 7, 8]], seed=0))
    assert samples.shape == (4, 28, 28, 1) and np.isfinite(samples.numpy()).all()


@pytest.mark.parametrize("jit", [True, False], ids=["xla", "graph"])
def test_fit_in_graph_mode_keeps_the_image_shapes(jit):
    # Keras traces train steps with unknown static shapes; the couplings after a 1x1
    # convolution's inverse (TFP's lu_solve) still need the image's height and width.
    x = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    flow = nf.flows.build("glow", 48, image_shape=(4, 4, 3), layers=2, hidden_units=8)
    flow.compile(tf_keras.optimizers.Adam(1e-3), jit_compile=jit)
    history = flow.fit(x, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def _nodes(bijector):
    """``bijector`` and every bijector inside it (chains, factor-outs, inversions)."""
    if isinstance(bijector, ChannelSplit) or is_invert(bijector):
        subs = [bijector.bijector]
    else:
        subs = list(getattr(bijector, "bijectors", []))
    return [bijector] + [n for s in subs for n in _nodes(s)]


def _couplings(bijector):
    return [n for n in _nodes(bijector) if isinstance(n, ImageCoupling)]


def _split_priors(bijector):
    return [n for n in _nodes(bijector) if is_invert(n) and n.name.startswith("split_prior")]


@pytest.mark.parametrize("version, changed", [
    (1, {"coupling_scale": "tanh", "split_prior": False}),
    (2, {"split_prior": False}),
])
def test_glow_files_from_before_a_default_changed_load_as_they_were(tmp_path, version, changed):
    """Glow's coupling scale became "sigmoid" with flow files of version 2 and its split prior
    came with version 3; an older file that does not name them must come back as the flow it
    was, and every new config names them (so resuming a run across a change is refused, not
    silently rebuilt)."""
    import json

    kwargs = {"image_shape": (4, 4, 1), "layers": 2, "levels": 2, "hidden_units": 4}
    now = nf.flows.build("glow", 16, **kwargs)
    assert {k: now.get_config()["kwargs"][k] for k in ("coupling_scale", "split_prior")} == \
        {"coupling_scale": "sigmoid", "split_prior": True}
    assert len(_split_priors(now.bijector)) == 1
    old = nf.flows.build("glow", 16, **changed, **kwargs)
    for v in old.trainable_variables:  # off the identity start, so the scale matters
        v.assign_add(0.2 * tf.random.stateless_normal(v.shape, [3, 1]))
    x = tf.random.stateless_normal([5, 16], [4, 2])
    old.save(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["version"] == nf.flows.core._VERSION
    config["version"] = version
    for key in changed:
        del config["kwargs"][key]
    config_file.write_text(json.dumps(config))
    loaded = nf.load(tmp_path / "old")
    scales = {"tanh"} if version == 1 else {"sigmoid"}
    assert {c.scale for c in _couplings(loaded.bijector)} == scales
    assert _split_priors(loaded.bijector) == []
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), old.log_prob(x).numpy(), rtol=1e-5)
    # A training run started before the change records a config without the argument:
    # resuming it now is refused, with the difference named.
    before = {k: v for k, v in config.items() if k in ("flow", "features", "kwargs")}
    nf.training.check_run_config(tmp_path / "run", {"flow": before}, resume=False)
    with pytest.raises(nf.training.ResumeConfigError, match="split_prior"):
        nf.training.check_run_config(tmp_path / "run", {"flow": now.get_config()},
                                     resume=True)
    config["version"] = nf.flows.core._VERSION + 1
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"version {nf.flows.core._VERSION + 1}"):
        nf.load(tmp_path / "old")


def test_glow_split_prior_is_a_gaussian_of_the_factored_out_half_given_the_kept_half():
    """Glow's learned prior at a split: log p(x) = (log|det| of the steps before the split) +
    log p_deeper(z_1) + log N(z_2; mu(z_1), sigma(z_1)), with mu and log sigma from the split
    prior's net on the kept half z_1 (the first half of the channels)."""
    flow = nf.flows.build("glow", 16, image_shape=(4, 4, 1), layers=1, levels=2,
                          hidden_units=4)
    for v in flow.trainable_variables:
        v.assign_add(0.3 * tf.random.stateless_normal(v.shape, [5, 1]))
    with pytest.raises(TypeError, match="split_prior"):
        nf.flows.build("glow", 16, image_shape=(4, 4, 1), split_prior="yes")
    x = tf.random.stateless_normal([6, 16], [6, 2])
    body = flow.bijector.bijectors[1]
    names = [type(b).__name__ for b in body.bijectors]
    split_at = names.index("ChannelSplit")
    prior = body.bijectors[split_at - 1]
    assert _split_priors(prior) == [prior] and prior.bijector.scale == "sigmoid"
    h = tf.reshape(x, [6, 4, 4, 1])
    log_det = tf.zeros([6])
    for b in body.bijectors[:split_at - 1]:
        log_det += b.inverse_log_det_jacobian(h, event_ndims=3)
        h = b.inverse(h)
    z1, z2 = h[..., :2], h[..., 2:]
    deeper = body.bijectors[split_at].bijector
    u = deeper.inverse(z1)
    log_deeper = (tfp.distributions.Normal(0.0, 1.0).log_prob(u).numpy().sum(axis=(1, 2, 3))
                  + deeper.inverse_log_det_jacobian(z1, event_ndims=3).numpy())
    out = prior.bijector._conditioner(z1).numpy().astype(np.float64)
    sigma = 1.0 / (1.0 + np.exp(-(out[..., 2:] + 2.0)))  # in (0, 1)
    mu = -out[..., :2] * sigma  # data -> base: z_2 / sigma + t = (z_2 - mu) / sigma
    assert np.abs(mu).max() > 0.01 and np.abs(sigma - 1 / (1 + np.exp(-2))).max() > 0.01
    log_z2 = tfp.distributions.Normal(mu, sigma).log_prob(z2.numpy()).numpy()
    expected = log_det.numpy() + log_deeper + log_z2.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(flow.log_prob(x).numpy(), expected, rtol=1e-5, atol=1e-4)
