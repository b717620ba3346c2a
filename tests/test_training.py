"""nf.training: fit (validation, best weights, schedules, resume after SIGKILL, config checks,
corrupt checkpoints, the non-finite guard) and fit_reverse_kl (log Z and ESS)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import normalizingflows as nf
from normalizingflows.training import CheckpointError, ResumeConfigError

tfb, tfd = tfp.bijectors, tfp.distributions
ROOT = Path(__file__).resolve().parents[1]

# The run the SIGKILL test repeats in a child process; keep both in sync through this text.
RUN = dict(epochs=6, batch_size=100, lr=3e-3, schedule="cosine", seed=3, verbose=0,
           jit_compile=False)


def _data():
    splits = nf.data.load("moons", n=2500, seed=0)
    return splits.train, splits.val


def _flow():
    return nf.flows.build("maf", 2, layers=2, hidden_units=16, seed=1)


CHILD = textwrap.dedent(f"""
    import json, sys, time
    import tf_keras
    sys.path.insert(0, {str(ROOT)!r})
    import normalizingflows as nf
    from normalizingflows.training import atomic_write_json

    class Slow(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(float(sys.argv[2]))

    splits = nf.data.load("moons", n=2500, seed=0)
    flow = nf.flows.build("maf", 2, layers=2, hidden_units=16, seed=1)
    r = nf.training.fit(flow, splits.train, val=splits.val, checkpoint_dir=sys.argv[1],
                        resume=True, callbacks=[Slow()], **{RUN!r})
    atomic_write_json(sys.argv[1] + "/result.json",
                      {{"history": r.history, "initial_epoch": r.initial_epoch,
                        "weights": [w.tolist() for w in flow.get_weights()]}})
""")


def _child(script: Path, ckpt: Path, sleep: float) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(script), str(ckpt), str(sleep)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_resume_after_sigkill_matches_the_uninterrupted_run(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ckpt = tmp_path / "run"
    proc = _child(script, ckpt, sleep=0.7)
    deadline = time.time() + 120
    # Kill once the second epoch's checkpoint is on disk (mid-run: more epochs remain).
    while not (ckpt / "ckpt" / "ckpt-2.index").exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "the child never wrote its second checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ckpt / "result.json").exists()
    proc = _child(script, ckpt, sleep=0.0)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out.decode()[-2000:]
    resumed = json.loads((ckpt / "result.json").read_text())
    assert resumed["initial_epoch"] >= 2

    train, val = _data()
    flow = _flow()
    straight = nf.training.fit(flow, train, val=val, **RUN)
    assert len(resumed["history"]["val_loss"]) == RUN["epochs"]
    np.testing.assert_allclose(resumed["history"]["val_loss"], straight.history["val_loss"],
                               atol=1e-5)
    for a, b in zip(resumed["weights"], flow.get_weights(), strict=True):
        np.testing.assert_allclose(np.asarray(a), b, atol=1e-5)


def test_validation_best_weights_and_history(tmp_path):
    train, val = _data()
    flow = _flow()
    r = nf.training.fit(flow, train, val=val, epochs=3, batch_size=250, lr=1e-2, verbose=0,
                        schedule="plateau", clipnorm=1.0, weight_decay=1e-4, patience=5,
                        jit_compile=False)
    assert set(r.history) == {"loss", "val_loss", "lr"}
    assert r.epochs_run == 3 and len(r.history["loss"]) == 3
    best = int(np.argmin(r.history["val_loss"])) + 1
    assert r.best_epoch == best
    val_now = -float(tf.reduce_mean(flow.log_prob(val)))
    assert val_now == pytest.approx(r.best_loss, abs=1e-4)


def test_tensorboard_logs(tmp_path):
    pytest.importorskip("tensorboard")
    train, _ = _data()
    nf.training.fit(_flow(), train, epochs=1, batch_size=500, verbose=0,
                    tensorboard_dir=tmp_path / "tb")
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_early_stopping_restores_the_best_epoch():
    train, val = _data()
    flow = _flow()
    far = val + 4.0  # a validation set the flow moves away from as it learns the moons
    r = nf.training.fit(flow, train, val=far, epochs=20, batch_size=250, lr=1e-2, patience=2,
                        verbose=0, jit_compile=False)
    assert r.stopped_early and r.best_epoch == 1 and r.epochs_run == 3
    assert r.history["val_loss"][1] > r.history["val_loss"][0]
    val_now = -float(tf.reduce_mean(flow.log_prob(far)))
    assert val_now == pytest.approx(r.history["val_loss"][0], rel=1e-5)


def test_cosine_schedule_decays_to_zero():
    train, _ = _data()
    r = nf.training.fit(_flow(), train, epochs=2, batch_size=500, schedule="cosine", verbose=0,
                        jit_compile=False)
    assert r.history["lr"][-1] == pytest.approx(0.0, abs=1e-9)
    assert r.history["lr"][0] < 1e-3


def test_resume_with_a_different_config_is_refused(tmp_path):
    train, val = _data()
    nf.training.fit(_flow(), train, val=val, epochs=1, batch_size=500, verbose=0,
                    checkpoint_dir=tmp_path, jit_compile=False)
    with pytest.raises(ResumeConfigError, match="lr: checkpoint has 0.001, now 0.01"):
        nf.training.fit(_flow(), train, val=val, epochs=1, batch_size=500, lr=1e-2,
                        verbose=0, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ResumeConfigError, match="flow"):
        nf.training.fit(nf.flows.build("maf", 2, layers=3, hidden_units=16), train, val=val,
                        epochs=1, batch_size=500, verbose=0, checkpoint_dir=tmp_path,
                        resume=True)
    with pytest.raises(ResumeConfigError, match="resume=True"):
        nf.training.fit(_flow(), train, val=val, epochs=1, batch_size=500, verbose=0,
                        checkpoint_dir=tmp_path)


def test_a_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    train, _ = _data()
    nf.training.fit(_flow(), train, epochs=1, batch_size=500, verbose=0,
                    checkpoint_dir=tmp_path, jit_compile=False)
    data_file = next((tmp_path / "ckpt").glob("ckpt-1.data-*"))
    data_file.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        nf.training.fit(_flow(), train, epochs=1, batch_size=500, verbose=0,
                        checkpoint_dir=tmp_path, resume=True)
    (tmp_path / "run_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        nf.training.fit(_flow(), train, epochs=1, batch_size=500, verbose=0,
                        checkpoint_dir=tmp_path, resume=True)


class _Offset(tf_keras.layers.Layer):
    def build(self, input_shape=None):
        self.v = self.add_weight(name="offset", shape=[2], initializer="zeros")


def _log_flow():
    """base -> exp -> shift: data below the shift has no preimage, so its log goes NaN."""
    holder = _Offset(name="offset_net")
    holder.build()
    bijector = tfb.Chain([tfb.Shift(holder.v, name="shift_step"), tfb.Exp(name="exp_step")])
    base = tfd.Sample(tfd.Normal(0.0, 1.0), [2])
    return nf.Flow(features=2, bijector=bijector, base=base, nets=[holder])


def test_nonfinite_guard_stops_restores_and_names_the_step():
    rng = np.random.default_rng(0)
    x = np.exp(rng.standard_normal((400, 2))).astype(np.float32)
    x[123] = [-3.0, 1.0]  # finite, but outside the flow's support
    flow = _log_flow()
    r = nf.training.fit(flow, x, epochs=3, batch_size=50, lr=1e-2, verbose=0, seed=0,
                        jit_compile=False)
    assert r.nonfinite is not None
    assert "exp_step" in r.nonfinite["message"] and "batch" in r.nonfinite["message"]
    assert r.nonfinite["epoch"] == 1
    perm = nf.training.forward._permutation(400, 0, 0).numpy()
    assert r.nonfinite["batch"] == int(np.flatnonzero(perm == 123)[0]) // 50
    assert all(np.isfinite(w).all() for w in flow.get_weights())
    assert r.epochs_run == 0


def test_first_nonfinite_step_probe():
    flow = _log_flow()
    assert nf.training.first_nonfinite_step(flow, np.ones((3, 2), np.float32)) is None
    message = nf.training.first_nonfinite_step(flow, -np.ones((3, 2), np.float32))
    assert "exp_step" in message


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1, "batch_size": 0}, "batch_size"),
    ({"epochs": 1, "schedule": "linear"}, "schedule"), ({"epochs": 1, "lr": -1.0}, "lr"),
])
def test_bad_arguments(kwargs, match):
    train, _ = _data()
    kwargs = {"batch_size": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        nf.training.fit(_flow(), train, verbose=0, **kwargs)


def test_bad_data():
    train, _ = _data()
    bad = train.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf in 1 row.*row 5"):
        nf.training.fit(_flow(), bad, epochs=1, batch_size=100, verbose=0)
    with pytest.raises(ValueError, match="val"):
        nf.training.fit(_flow(), train, val=bad, epochs=1, batch_size=100, verbose=0)
    with pytest.raises(ValueError, match=r"shape \[N >= 1, 2\]"):
        nf.training.fit(_flow(), train[:, :1], epochs=1, batch_size=100, verbose=0)
    with pytest.raises(TypeError, match="floating"):
        nf.training.fit(_flow(), train.astype(int), epochs=1, batch_size=100, verbose=0)


class GaussianEnergy:
    """U(x) = 0.5 sum((x - mu) / s)^2, so log Z = log(2 pi) + sum(log s)."""

    name = "gaussian"
    mu = np.array([1.0, -0.5], np.float32)
    s = np.array([0.5, 2.0], np.float32)
    log_z = float(math.log(2 * math.pi) + np.log(s).sum())

    def energy(self, x):
        return 0.5 * tf.reduce_sum(((x - self.mu) / self.s) ** 2, axis=-1)


def test_reverse_kl_recovers_log_z_of_a_gaussian():
    energy = GaussianEnergy()
    flow = nf.flows.build("realnvp", 2, layers=2, hidden_units=16, seed=0)
    r = nf.training.fit_reverse_kl(flow, energy, steps=300, batch_size=256, lr=1e-2, seed=0,
                                   eval_samples=20_000, verbose=0)
    assert r.log_z_reference == pytest.approx(energy.log_z)
    assert abs(r.log_z_estimate - energy.log_z) < 0.01
    assert r.ess_fraction > 0.95
    assert r.elbo <= r.log_z_estimate + 1e-6
    assert abs(r.loss + energy.log_z) < 0.05  # E_q[log q + U] -> -log Z
    assert r.steps == 300 and r.nonfinite is None


def test_reverse_kl_bad_arguments():
    flow = nf.flows.build("realnvp", 2, layers=1, hidden_units=4)
    with pytest.raises(ValueError, match="steps"):
        nf.training.fit_reverse_kl(flow, GaussianEnergy(), steps=0)
    with pytest.raises(TypeError, match="energy"):
        nf.training.fit_reverse_kl(flow, 3.0, steps=1)
