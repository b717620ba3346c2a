"""PixelCNN conditioner, the ``pixelcnn_flow`` catalog entry beyond the harness, and ``shapes``."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import normalizingflows as nf
from normalizingflows.nn.pixelcnn import channel_groups, pixelcnn_mask


def _allowed(h: int, w: int, c: int) -> np.ndarray:
    """[out (i, j, c), in (k, l, e)]: raster order over pixels, then channel order."""
    pixel = np.repeat(np.arange(h * w), c)
    channel = np.tile(np.arange(c), h * w)
    before = pixel[None, :] < pixel[:, None]
    same = (pixel[None, :] == pixel[:, None]) & (channel[None, :] < channel[:, None])
    return before | same


def test_masks_of_type_a_and_b():
    one = np.zeros(1, int)
    a = pixelcnn_mask(3, one, one, "A")[..., 0, 0]
    b = pixelcnn_mask(3, one, one, "B")[..., 0, 0]
    np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    groups = channel_groups(6, 3)
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 2, 2])
    centre_a = pixelcnn_mask(1, np.arange(3), groups, "A")[0, 0]
    centre_b = pixelcnn_mask(1, groups, groups, "B")[0, 0]
    np.testing.assert_array_equal(centre_a, np.arange(3)[:, None] < groups[None, :])
    np.testing.assert_array_equal(centre_b, groups[:, None] <= groups[None, :])
    with pytest.raises(ValueError, match="mask_type"):
        pixelcnn_mask(3, one, one, "C")
    with pytest.raises(ValueError, match="odd"):
        pixelcnn_mask(4, one, one, "A")


@pytest.mark.parametrize("channels,context", [(1, None), (3, None), (3, 2), (2, 1)])
def test_pixelcnn_jacobian_is_autoregressive_even_after_a_manual_update(channels, context):
    h, w, p = 5, 4, 2
    # tanh: no unit is dead, so every connection the masks allow shows in the Jacobian.
    net = nf.nn.PixelCNN(channels, params=p, hidden_units=7, blocks=1, seed=3,
                         activation="tanh", context_features=context,
                         output_initializer="glorot_uniform", dtype="float64")
    # No optimizer and no constraint: a plain assign to every variable, masked taps included.
    for i, v in enumerate(net.trainable_variables):
        v.assign_add(0.5 + tf.random.stateless_normal(v.shape, seed=[i, 1], dtype=v.dtype))
    x = tf.random.stateless_normal([3, h * w * channels], seed=[1, 2], dtype=tf.float64)
    c = None if context is None else tf.random.stateless_normal([3, context], seed=[3, 4],
                                                                   dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = net(tf.reshape(x, [3, h, w, channels]), context=c)
        assert out.shape == (3, h, w, channels, p)
        out = tf.reshape(out, [3, h * w * channels, p])
    jac = tape.batch_jacobian(out, x).numpy()  # [N, D, P, D]
    allowed = _allowed(h, w, channels)
    for k in range(p):
        assert np.abs(jac[:, :, k, :][:, ~allowed]).max() == 0.0
        assert np.abs(jac[:, :, k, :][:, allowed]).max() > 0.0
    # The nearest allowed inputs do reach each output: the left and upper neighbours and,
    # within a pixel, the previous channel.
    reach = np.abs(jac).max(axis=(0, 2)) > 0
    index = np.arange(h * w * channels).reshape(h, w, channels)
    assert reach[index[2, 2, 0], index[2, 1, 0]] and reach[index[2, 2, 0], index[1, 2, 0]]
    for ch in range(1, channels):
        assert reach[index[2, 2, ch], index[2, 2, ch - 1]]
    if context is not None:
        other = net(tf.reshape(x, [3, h, w, channels]), context=c + 1.0)
        assert np.abs(other.numpy().reshape(out.shape) - out.numpy()).max() > 1e-6


def test_pixelcnn_is_seeded_and_checks_its_arguments():
    a = nf.nn.PixelCNN(2, params=3, hidden_units=6, seed=5, output_initializer="glorot_uniform")
    b = nf.nn.PixelCNN(2, params=3, hidden_units=6, seed=5, output_initializer="glorot_uniform")
    for va, vb in zip(a.variables, b.variables, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert len(a.masks()) == len(a.kernels) == 2 + 2 * a.blocks + 1
    # The output layer starts at zero by default: the output is the output bias.
    net = nf.nn.PixelCNN(1, params=2, hidden_units=4, output_bias_initializer="ones")
    np.testing.assert_array_equal(net(tf.ones([2, 3, 3, 1])).numpy(), 1.0)
    with pytest.raises(ValueError, match="hidden_units must be an int >= 1"):
        nf.nn.PixelCNN(1, hidden_units=0)
    with pytest.raises(ValueError, match="context was given"):
        net(tf.ones([2, 3, 3, 1]), context=tf.ones([2, 1]))


@pytest.mark.parametrize("kwargs", [{"family": "normal", "order": "sequential"},
                                    {"family": "logistic", "order": "alternating"}])
def test_pixelcnn_flow_log_prob_matches_the_autodiff_jacobian(kwargs):
    flow = nf.flows.build("pixelcnn_flow", 8, image_shape=(2, 2, 2), layers=2, hidden_units=6,
                          blocks=1, components=3, dtype="float64", **kwargs)
    for i, v in enumerate(flow.trainable_variables):
        v.assign_add(0.2 * tf.random.stateless_normal(v.shape, seed=[i, 7], dtype=v.dtype))
    x = tf.random.stateless_normal([5, 8], seed=[2, 3], dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = flow.to_base(x)
    jac = tape.batch_jacobian(z, x)
    expected = flow.base.log_prob(z) + tf.linalg.slogdet(jac)[1]
    np.testing.assert_allclose(flow.log_prob(x).numpy(), expected.numpy(), atol=1e-9)
    np.testing.assert_allclose(flow.bijector.forward(tf.identity(z)).numpy(), x.numpy(),
                               atol=1e-9)
    # One layer in raster order: a lower-triangular Jacobian.
    one = nf.flows.build("pixelcnn_flow", 8, image_shape=(2, 2, 2), hidden_units=6, blocks=1,
                         components=3, dtype="float64", **kwargs)
    for i, v in enumerate(one.trainable_variables):
        v.assign_add(0.2 * tf.random.stateless_normal(v.shape, seed=[i, 8], dtype=v.dtype))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = one.to_base(x)
    jac = tape.batch_jacobian(z, x).numpy()
    assert np.abs(np.triu(jac, 1)).max() == 0.0 and np.abs(np.tril(jac, -1)).max() > 0.0



@pytest.mark.parametrize("order", ["sequential", "alternating"])
def test_pixelcnn_sampling_log_det_comes_from_the_solve(order):
    # The sequential direction keeps the parameters of its passes; its log-det (a sample's
    # log-prob) equals the one-pass log-det at the solved values.
    flow = nf.flows.build("pixelcnn_flow", 8, image_shape=(2, 2, 2), layers=2, hidden_units=6,
                          blocks=1, components=3, dtype="float64", order=order)
    for i, v in enumerate(flow.trainable_variables):
        v.assign_add(0.2 * tf.random.stateless_normal(v.shape, seed=[i, 9], dtype=v.dtype))
    z = tf.random.stateless_normal([5, 8], seed=[4, 5], dtype=tf.float64)
    x = flow.bijector.forward(z)
    fldj = flow.bijector.forward_log_det_jacobian(z, event_ndims=1)
    expected = -flow.bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
    np.testing.assert_allclose(fldj.numpy(), expected.numpy(), atol=1e-9)
    step = [b for b in flow.bijector.bijectors if hasattr(b, "conditioner")][0]
    cond = step.conditioner
    solved, params = cond.solve(lambda p, z_i: step._make_transform(p).forward(z_i), z,
                                return_params=True)
    np.testing.assert_allclose(params.numpy(), cond(solved).numpy(), atol=1e-9)

def test_pixelcnn_flow_samples_images_and_rejects_bad_arguments():
    flow = nf.flows.build("pixelcnn_flow", 12, image_shape=(2, 3, 2), hidden_units=4,
                          components=2)
    assert flow.image_shape == (2, 3, 2) and flow.fast_direction == "density"
    assert flow.as_images(flow.sample(3, seed=1)).shape == (3, 2, 3, 2)
    with pytest.raises(ValueError, match="features must be height"):
        nf.flows.build("pixelcnn_flow", 10, image_shape=(2, 3, 2))
    with pytest.raises(ValueError, match="family must be one of"):
        nf.flows.build("pixelcnn_flow", 4, image_shape=(2, 2, 1), family="cauchy")
    with pytest.raises(ValueError, match="order must be one of"):
        nf.flows.build("pixelcnn_flow", 4, image_shape=(2, 2, 1), order="random")


# ---------------------------------------------------------------------- shapes dataset
def test_shapes_are_deterministic_binary_and_dequantised_into_the_unit_interval():
    opts = {"n_train": 40, "n_val": 10, "n_test": 10, "size": 12}
    a = nf.data.load("shapes", seed=3, **opts)
    b = nf.data.load("shapes", seed=3, **opts)
    other = nf.data.load("shapes", seed=4, **opts)
    raw = nf.data.load("shapes", seed=3, form="uint8", flatten=False, **opts)
    for part_a, part_b, part_o in zip(a[:3], b[:3], other[:3], strict=True):
        np.testing.assert_array_equal(part_a, part_b)
        assert not np.array_equal(part_a, part_o)
    for ya, yb in zip(a.labels, b.labels, strict=True):
        np.testing.assert_array_equal(ya, yb)
    assert a.train.shape == (40, 144) and a.train.dtype == np.float32
    assert raw.train.shape == (40, 12, 12, 1) and raw.train.dtype == np.uint8
    for deq, levels in zip(a[:3], raw[:3], strict=True):
        assert set(np.unique(levels)) == {0, 1}
        assert deq.min() >= 0.0 and deq.max() < 1.0
        np.testing.assert_array_equal(np.floor(deq * 2).reshape(levels.shape), levels)
    assert all(img.sum() > 0 for img in raw.train)  # every image holds a shape
    assert set(np.concatenate(a.labels)) <= set(range(len(nf.data.shapes.CLASSES)))
    info = a.info
    assert info["name"] == "shapes" and info["features"] == 144 and info["levels"] == 2
    assert info["sizes"] == {"train": 40, "val": 10, "test": 10}
    assert info["image_shape"] == (12, 12, 1) and info["form"] == "dequantized"
    with pytest.raises(ValueError, match="form must be one of"):
        nf.data.load("shapes", form="logit")
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        nf.data.load("shapes", size=4)


def test_short_fit_on_shapes_lowers_bits_per_dim():
    data = nf.data.load("shapes", seed=0, n_train=384, n_val=64, n_test=64, size=8)
    flow = nf.flows.build("pixelcnn_flow", 64, image_shape=(8, 8, 1), hidden_units=16,
                          blocks=1, components=4, seed=0)

    def bpd(x: np.ndarray) -> float:
        nll = -float(tf.reduce_mean(flow.log_prob(x)))
        return float(nf.data.preprocess.nats_to_bits_per_dim(nll, 64, levels=2))

    before = bpd(data.test)
    flow.compile(tf_keras.optimizers.Adam(5e-3), jit_compile=False)
    history = flow.fit(data.train, batch_size=64, epochs=4, verbose=0,
                       validation_data=(data.val,))
    after = bpd(data.test)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after < before - 0.1, (before, after)
