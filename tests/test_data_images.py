"""BSDS300 patches (real images, HDF5, cache) and the CelebA tf.data pipeline."""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import normalizingflows.data as nfd
from normalizingflows.data.bsds300 import extract_patches

SHARED = Path(os.environ.get("NF_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
has_bsds = (SHARED / "BSDS300/images/train").is_dir()
has_celeba = (SHARED / "celeba/img_align_celeba").is_dir()


def test_extract_patches_recipe():
    img = np.arange(20 * 30, dtype=np.int64).reshape(20, 30) % 256
    p = extract_patches([img.astype(np.uint8)], 500, np.random.default_rng(0), dtype=np.float64)
    assert p.shape == (500, 63)
    last = -p.sum(axis=1)  # the dropped pixel restores a zero patch mean
    full = np.column_stack([p, last])
    np.testing.assert_allclose(full.mean(axis=1), 0, atol=1e-12)
    assert np.abs(full).max() < 1.0


@pytest.mark.skipif(not has_bsds, reason="shared/data/BSDS300 absent")
def test_real_bsds300_patches(tmp_path):
    import shutil

    shutil.copytree(SHARED / "BSDS300", tmp_path / "BSDS300")
    kw = dict(data_dir=tmp_path, n_train=5000, n_val=500, n_test=2000, seed=7)
    s = nfd.load("bsds300", **kw)
    assert s.train.shape == (5000, 63) and s.val.shape == (500, 63)
    assert s.test.shape == (2000, 63) and s.train.dtype == np.float32
    assert s.info["images"] == {"train": 200, "test": 100}
    for a in s[:3]:
        full = np.column_stack([a, -a.sum(axis=1)])
        assert np.abs(full.mean(axis=1)).max() < 1e-5  # per-patch mean 0
        assert -1 < a.min() and a.max() < 1
    assert 0.01 < s.train.std() < 0.5
    cache = Path(s.info["cache"])
    assert cache.is_file() and not list(cache.parent.glob("*.tmp"))
    again = nfd.load("bsds300", **kw)  # from the cache
    np.testing.assert_array_equal(again.train, s.train)
    other = nfd.load("bsds300", **{**kw, "seed": 8, "cache": False})
    assert not np.allclose(other.train[:10], s.train[:10])


def test_bsds300_hdf5_and_missing(tmp_path):
    with pytest.raises(nfd.MissingDataError, match="iids"):
        nfd.load("bsds300", data_dir=tmp_path)
    h5py = pytest.importorskip("h5py")
    (tmp_path / "BSDS300").mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "BSDS300/BSDS300.hdf5", "w") as f:
        for k, n in (("train", 100), ("validation", 10), ("test", 20)):
            f[k] = rng.normal(size=(n, 63))
    s = nfd.load("bsds300", data_dir=tmp_path)
    assert s.info["source"] == "hdf5"
    assert (s.train.shape, s.val.shape, s.test.shape) == ((100, 63), (10, 63), (20, 63))
    with h5py.File(tmp_path / "BSDS300/BSDS300.hdf5", "w") as f:
        f["train"] = np.zeros((3, 62))
    with pytest.raises(nfd.DataFormatError):
        nfd.load("bsds300", data_dir=tmp_path)


def test_bsds300_missing_listed_image(tmp_path):
    d = tmp_path / "BSDS300"
    (d / "images/train").mkdir(parents=True)
    (d / "iids_train.txt").write_text("1\n2\n")
    with pytest.raises(nfd.MissingDataError, match="2 of 2"):
        nfd.load("bsds300", data_dir=tmp_path, n_train=5, n_val=1, n_test=1)


@pytest.mark.skipif(not has_celeba, reason="shared/data/celeba absent")
def test_real_celeba_pipeline():
    s = nfd.load("celeba", data_dir=SHARED, seed=0)
    assert s.info["sizes"] == {"train": 3000, "val": 500, "test": 500}
    assert isinstance(s.train, tf.data.Dataset)
    x = next(iter(s.val))
    assert x.shape == (64, 64, 3) and x.dtype == tf.uint8
    small = nfd.load("celeba", data_dir=SHARED, size=32, limit=40, as_numpy=True, cache=None)
    assert small.train.shape == (40, 32, 32, 3) and small.train.dtype == np.uint8
    assert 40 < small.train.mean() < 220
    batched = nfd.load("celeba", data_dir=SHARED, limit=16, batch_size=8, cache=None)
    assert next(iter(batched.train)).shape == (8, 64, 64, 3)


def _jpeg(path, array):
    path.write_bytes(tf.io.encode_jpeg(array, quality=100).numpy())


def test_celeba_central_crop_fixture(tmp_path):
    d = tmp_path / "celeba/img_align_celeba"
    d.mkdir(parents=True)
    img = np.zeros((218, 178, 3), np.uint8)  # black border, white central 148x148
    img[35:183, 15:163] = 255
    for i in (1, 2, 3):
        _jpeg(d / f"00000{i}.jpg", img)
    (tmp_path / "celeba/list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    s = nfd.load("celeba", data_dir=tmp_path, as_numpy=True)
    assert s.train.shape == (1, 64, 64, 3)
    assert s.train.min() >= 240  # only the white square survives the crop
    (tmp_path / "celeba/list_eval_partition.txt").write_text("000009.jpg 0\n")
    with pytest.raises(nfd.MissingDataError, match="000009"):
        nfd.load("celeba", data_dir=tmp_path)
    (tmp_path / "celeba/list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(nfd.DataFormatError, match="list_eval_partition"):
        nfd.load("celeba", data_dir=tmp_path)


def test_celeba_missing_and_options(tmp_path):
    with pytest.raises(nfd.MissingDataError, match="img_align_celeba"):
        nfd.load("celeba", data_dir=tmp_path)
    with pytest.raises(ValueError, match="size"):
        nfd.load("celeba", data_dir=tmp_path, size=48)


def test_image_rows_bits_per_dim_and_pixels_back(tmp_path):
    d = tmp_path / "celeba/img_align_celeba"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        _jpeg(d / f"00000{i}.jpg", rng.integers(0, 256, (218, 178, 3), dtype=np.uint8))
    (tmp_path / "celeba/list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    s = nfd.images.load_image_rows("celeba32", data_dir=tmp_path, seed=0)
    assert s.train.shape == (1, 32 * 32 * 3) and s.train.dtype == np.float32
    assert s.info["image_shape"] == (32, 32, 3) and s.info["lam"] == 0.05
    raw = nfd.load("celeba", data_dir=tmp_path, size=32, as_numpy=True, cache=None).train
    # Rows are dequantised pixels in logit space: back in [0, 1] they lie in their pixel's bin.
    pixels = nfd.images.to_pixels(s.train, s.info)
    assert pixels.shape == (1, 32, 32, 3)
    k = np.floor(pixels * 256 + 1e-4)
    np.testing.assert_array_equal(k, raw.astype(np.float64))
    # A density uniform over [0, 1)^D in pixel space is 8 bits/dim; in logit space its log
    # density is minus the logit's log-Jacobian.
    x = nfd.preprocess.inverse_logit_transform(s.train.astype(np.float64), 0.05)
    lp = -nfd.preprocess.logit_log_det_jacobian(x, 0.05)
    np.testing.assert_allclose(nfd.images.bits_per_dim(lp, s.train, s.info), 8.0, atol=1e-4)
    # Without a logit (binary shapes): uniform on [0, 1)^D is log2(2) = 1 bit/dim.
    info = {"lam": None, "levels": 2, "image_shape": (2, 2, 1)}
    np.testing.assert_allclose(nfd.images.bits_per_dim(np.zeros(3), np.zeros((3, 4)), info), 1.0)
    with pytest.raises(ValueError, match="unknown image dataset"):
        nfd.images.load_image_rows("cifar10")


def test_bits_per_dim_summary_shows_the_image_that_dominates_the_mean():
    s = nfd.images.bits_per_dim_summary([1.0, 1.2, 1.1, 97.0], "test_bpd")
    assert s["test_bpd"] == pytest.approx(25.075)
    assert s["test_bpd_se"] == pytest.approx(np.std([1.0, 1.2, 1.1, 97.0]) / 2)
    assert s["test_bpd_median"] == pytest.approx(1.15)
    assert (s["test_bpd_worst"], s["test_bpd_worst_index"]) == (97.0, 3)


def _epoch(ds):
    """One pass over an augmented dataset of ``(rows, one-hot index)`` pairs, in image order."""
    rows, index = zip(*[(x.numpy(), c.numpy().argmax(-1)) for x, c in ds], strict=True)
    rows, index = np.concatenate(rows), np.concatenate(index)
    return rows[np.argsort(index)], index


def _shifted(image, dy, dx):
    """``image [H, W]`` moved down ``dy`` and right ``dx`` pixels, zeros coming in."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_augmented_dataset_fresh_noise_each_epoch_in_each_pixels_bin():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 16), dtype=np.uint8)
    context = np.eye(10, dtype=np.float32)  # the image's index travels as its context
    info = {"image_shape": (4, 4, 1), "lam": 1e-6, "levels": 256}
    ds = nfd.images.augmented_dataset(pixels, info, batch_size=4, seed=3, context=context)
    first, index = _epoch(ds)
    second, _ = _epoch(ds)
    assert first.dtype == np.float32 and first.shape == (10, 16)
    assert sorted(index) == list(range(10))  # every image once per epoch
    for rows in (first, second):
        # Back in [0, 1], each value lies in its pixel's bin [k/256, (k + 1)/256).
        x = nfd.preprocess.inverse_logit_transform(rows.astype(np.float64), 1e-6)
        assert (x >= pixels / 256 - 1e-6).all() and (x <= (pixels + 1) / 256 + 1e-6).all()
    assert np.abs(first - second).min() > 0  # new noise every epoch, for every pixel
    again, _ = _epoch(nfd.images.augmented_dataset(pixels, info, batch_size=4, seed=3,
                                                   context=context))
    np.testing.assert_array_equal(again, first)  # reproducible for a seed
    # Without a logit the rows are (k + u) / levels themselves.
    binary = {"image_shape": (4, 4, 1), "lam": None, "levels": 2}
    plain, _ = _epoch(nfd.images.augmented_dataset(pixels % 2, binary, batch_size=4,
                                                   context=context))
    np.testing.assert_array_equal(np.floor(plain * 2), pixels % 2)


def test_augmented_dataset_shifts_and_flips_whole_images():
    rng = np.random.default_rng(1)
    pixels = rng.integers(1, 256, (40, 5, 6, 1), dtype=np.uint8)  # no zeros: borders show
    context = np.eye(40, dtype=np.float32)
    info = {"image_shape": (5, 6, 1), "lam": None, "levels": 256}
    seen = set()
    for flip in (False, True):
        ds = nfd.images.augmented_dataset(pixels, info, batch_size=16, seed=0, context=context,
                                          max_shift=2, flip=flip)
        rows, _ = _epoch(ds)
        levels = np.floor(rows * 256).reshape(40, 5, 6)
        for image, out in zip(pixels[..., 0], levels, strict=True):
            moves = [(dy, dx, m) for dy in range(-2, 3) for dx in range(-2, 3)
                     for m in ((False, True) if flip else (False,))
                     if np.array_equal(out, _shifted(image[:, ::-1] if m else image, dy, dx))]
            assert len(moves) == 1, moves  # one shift (and mirror) explains the image
            seen.add(moves[0])
    assert len({(dy, dx) for dy, dx, _ in seen}) > 10  # offsets vary from image to image
    assert {m for _, _, m in seen} == {False, True}


def test_augmented_dataset_checks_and_trains_a_flow():
    with pytest.raises(ValueError, match="unknown image dataset"):
        nfd.images.augmented_dataset(np.zeros((2, 4), np.uint8), "cifar10", batch_size=2)
    with pytest.raises(ValueError, match="max_shift"):
        nfd.images.augmented_dataset(np.zeros((2, 784), np.uint8), "mnist", batch_size=2,
                                     max_shift=28)
    import tf_keras

    import normalizingflows as nf

    rng = np.random.default_rng(0)
    pixels = np.zeros((64, 4, 4, 1), np.uint8)
    pixels[:, 1:3, 1:3] = rng.integers(128, 256, (64, 2, 2, 1))  # bright squares on black
    labels = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
    info = {"image_shape": (4, 4, 1), "lam": 0.05, "levels": 256}
    flow = nf.flows.build("glow", 16, image_shape=(4, 4, 1), levels=1, layers=2,
                          hidden_units=8, context_features=2, seed=0)
    flow.compile(tf_keras.optimizers.Adam(1e-2))
    ds = nfd.images.augmented_dataset(pixels, info, batch_size=16, context=labels, max_shift=1)
    history = flow.fit(ds, epochs=6, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
