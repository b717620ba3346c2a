"""Full-training-set batch-norm statistics (MAF paper): the stepwise pass, the callback, fit."""

import numpy as np
import pytest
import tensorflow as tf

import normalizingflows as nf
from normalizingflows.bijectors import BatchNorm


def _data(n=600, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(2.0, 3.0, d)
    return x.astype(np.float32)


def test_first_layer_gets_exact_statistics_of_its_input():
    flow = nf.flows.build("maf", 3, layers=2, hidden_units=[8], batch_norm=True, seed=1)
    x = _data()
    flow.log_prob(x[:4])
    leaves = nf.training.leaf_bijectors(flow.bijector)
    assert [type(b) for b in leaves].count(BatchNorm) == 2
    assert nf.training.set_batch_norm_statistics(flow, x, batch_size=128) == 2
    first = leaves.index(nf.training.batch_norm_layers(flow)[0])
    z = x
    for step in leaves[:first]:
        z = step.inverse(z).numpy()
    bn = leaves[first]
    np.testing.assert_allclose(bn.moving_mean.numpy(), z.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), z.var(0), rtol=1e-4)


@pytest.mark.parametrize("conditional", [False, True])
def test_stored_statistics_equal_one_batch_of_the_whole_set(conditional):
    """With the statistics of the whole set, evaluation mode equals training mode on the whole
    set in one batch (where every layer normalises with that batch's statistics)."""
    kwargs = {"context_features": 2} if conditional else {}
    flow = nf.flows.build("maf", 3, layers=3, hidden_units=[16], batch_norm=True, seed=2,
                          **kwargs)
    x = _data(500)
    c = np.random.default_rng(3).normal(size=(500, 2)).astype(np.float32) if conditional \
        else None
    flow.log_prob(x[:2], None if c is None else c[:2])
    # Make the networks non-trivial: a few training steps in batch mode.
    nf.training.fit(flow, x if c is None else (x, c), epochs=2, batch_size=100, verbose=0,
                    jit_compile=False)
    data = x if c is None else (x, c)
    # With the moving averages training left, evaluation differs from one batch of the whole
    # set (so the equality below is the statistics' doing).
    moving = flow.log_prob(x, c).numpy()
    nf.training.set_batch_norm_statistics(flow, data, batch_size=77)
    stored = flow.log_prob(x, c).numpy()
    batch = flow.log_prob(x, c, training=True).numpy()
    assert np.abs(moving - batch).max() > 1e-2
    np.testing.assert_allclose(stored, batch, rtol=1e-4, atol=1e-3)
    # training=True updated the moving averages from the exact statistics set above.
    bn = nf.training.batch_norm_layers(flow)[-1]
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)


def test_no_batch_norm_is_a_no_op():
    flow = nf.flows.build("realnvp", 2, layers=2, hidden_units=[4])
    assert nf.training.set_batch_norm_statistics(flow, _data(50, 2)) == 0
    assert nf.training.batch_norm_layers(flow) == []


def test_fit_with_training_set_statistics():
    x = _data(800)
    train, val = x[:600], x[600:]
    flow = nf.flows.build("maf", 3, layers=2, hidden_units=[16], batch_norm=True, seed=4)
    result = nf.training.fit(flow, train, val=val, epochs=3, batch_size=100, verbose=0,
                             jit_compile=False, batch_norm="train")
    before = [v.numpy().copy() for b in nf.training.batch_norm_layers(flow)
              for v in (b.moving_mean, b.moving_variance)]
    # The returned flow already holds the statistics of the training set ...
    nf.training.set_batch_norm_statistics(flow, train)
    after = [v.numpy() for b in nf.training.batch_norm_layers(flow)
             for v in (b.moving_mean, b.moving_variance)]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # ... and the best validation loss was computed with them (best epoch restored).
    nll = -float(np.mean(flow.log_prob(val).numpy()))
    assert nll == pytest.approx(result.best_loss, rel=1e-4)


def test_fit_rejects_unknown_batch_norm_mode():
    flow = nf.flows.build("maf", 2, layers=1, hidden_units=[4])
    with pytest.raises(ValueError, match="batch_norm"):
        nf.training.fit(flow, _data(20, 2), epochs=1, batch_size=10, batch_norm="full")


def test_callback_in_plain_keras_fit():
    x = _data(300)
    flow = nf.flows.build("maf", 3, layers=2, hidden_units=[8], batch_norm=True, seed=5)
    flow.compile("adam", jit_compile=False)
    cb = nf.training.BatchNormStatistics(x, batch_size=64)
    flow.fit(x, epochs=1, batch_size=100, verbose=0, validation_data=(x[:50],), callbacks=[cb])
    np.testing.assert_allclose(flow.log_prob(x).numpy(), flow.log_prob(x, training=True).numpy(),
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["maf", "iaf", "realnvp", "maf_mog", "nsf_coupling",
                                  "nsf_autoregressive"])
def test_training_log_prob_takes_the_log_det_of_the_batch_statistics(name):
    """Regression: TFP's log_prob takes the log-det as -fldj(x) at the base point, and batch
    norm's forward knows only the stored statistics; in training mode the log-det must still
    be the batch statistics' (it was the moving averages', and MAF with batch norm diverged)."""
    flow = nf.flows.build(name, 3, layers=2, hidden_units=[8], batch_norm=True, seed=6)
    x = _data(64)
    flow.log_prob(x[:2])
    norms = nf.training.batch_norm_layers(flow)
    assert norms

    def stepwise():
        z, total = tf.constant(x), 0.0
        for step in nf.training.leaf_bijectors(flow.bijector):
            kw = {"training": True} if isinstance(step, BatchNorm) else {}
            total += step.inverse_log_det_jacobian(z, event_ndims=1, **kw)
            z = step.inverse(z, **kw)
        return (total + flow.base.log_prob(z)).numpy()

    results = []
    for mean, var in ((5.0, 100.0), (-3.0, 1e-3)):  # stored statistics far from the batch's
        for bn in norms:
            bn.moving_mean.assign(tf.fill(bn.moving_mean.shape, mean))
            bn.moving_variance.assign(tf.fill(bn.moving_variance.shape, var))
        expect = stepwise()
        for bn in norms:  # stepwise() moved the averages: put them back
            bn.moving_mean.assign(tf.fill(bn.moving_mean.shape, mean))
            bn.moving_variance.assign(tf.fill(bn.moving_variance.shape, var))
        got = flow.log_prob(x, training=True).numpy()
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-4)
        results.append(got)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-4)


def test_fit_without_validation_sets_the_statistics_at_the_end():
    x = _data(400)
    flow = nf.flows.build("maf", 3, layers=2, hidden_units=[16], batch_norm=True, seed=7)
    nf.training.fit(flow, x, epochs=2, batch_size=100, verbose=0, jit_compile=False,
                    batch_norm="train")
    np.testing.assert_allclose(flow.log_prob(x).numpy(), flow.log_prob(x, training=True).numpy(),
                               rtol=1e-4, atol=1e-3)
