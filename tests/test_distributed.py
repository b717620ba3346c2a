"""tf.distribute: ``nf.training.fit(..., strategy=...)`` and ``train --strategy`` on two logical
CPU devices (MirroredStrategy) and on two worker processes on 127.0.0.1 (MultiWorkerMirrored-
Strategy through TF_CONFIG) give one device's loss curve for the same global batch and seed.

Logical devices must be configured before TensorFlow starts and a multi-worker strategy before
it runs anything, so every distributed run is a fresh child process; the one-device reference
runs in the test process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import normalizingflows as nf
from normalizingflows.cli import main
from normalizingflows.training.distribute import replica_shards

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds for one child process (they take ~10 s on two busy CPU cores)

# One global batch and seed for every run. 400 rows in batches of 64: the last batch has 16
# rows, a multiple of 2 replicas, so no row is left out and the runs must agree.
RUN = dict(epochs=3, batch_size=64, lr=3e-3, seed=2, verbose=0)
# Float32 summation order differs (per-replica means and an all-reduced gradient sum versus
# one batch mean); measured: losses agree to 2.4e-7 nats and weights to 1.2e-7.
TOL = 1e-5


def _data():
    x = nf.data.toy.moons(500, seed=0).astype(np.float32)
    return x[:400], x[400:]


def _conditional_data():
    x, _ = _data()
    labels = np.random.default_rng(0).integers(0, 2, len(x))
    return x, np.eye(2, dtype=np.float32)[labels]


CHILD = textwrap.dedent(f"""
    import json, os, sys, warnings
    task = json.loads(os.environ.get("TF_CONFIG", "{{}}")).get("task", {{}}).get("index", 0)
    mode, out = sys.argv[1], sys.argv[2].replace("TASK", str(task))
    import tensorflow as tf
    if mode == "mirrored":
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, {str(ROOT)!r})
    import numpy as np
    import tensorflow_probability as tfp
    import tf_keras
    import normalizingflows as nf
    from normalizingflows.training import atomic_write_json

    strategy = nf.training.make_strategy("mirrored" if mode == "mirrored" else "multiworker")
    x = nf.data.toy.moons(500, seed=0).astype(np.float32)
    with strategy.scope():
        flow = nf.flows.build("realnvp", 2, layers=2, hidden_units=16, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = nf.training.fit(flow, x[:400], val=x[400:], jit_compile=True, strategy=strategy,
                            checkpoint_dir=sys.argv[3], **{RUN!r})
    result = {{"replicas": r.replicas, "jit_compile": r.jit_compile, "history": r.history,
               "best_epoch": r.best_epoch,
               "weights": [v.numpy().tolist() for v in flow.trainable_variables],
               "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning]}}

    if mode == "mirrored":
        # A conditional flow: (x, context) pairs are sharded alike.
        labels = np.random.default_rng(0).integers(0, 2, 400)
        c = np.eye(2, dtype=np.float32)[labels]
        with strategy.scope():
            cflow = nf.flows.build("realnvp", 2, layers=2, hidden_units=16, seed=1,
                                   context_features=2)
        r = nf.training.fit(cflow, (x[:400], c), val=(x[:100], c[:100]), jit_compile=False,
                            strategy=strategy, **{RUN!r})
        result["conditional_history"] = r.history

        # The non-finite guard copies and restores mirrored weights.
        tfb, tfd = tfp.bijectors, tfp.distributions

        class Offset(tf_keras.layers.Layer):
            def build(self, input_shape=None):
                self.v = self.add_weight(name="offset", shape=[2], initializer="zeros")

        with strategy.scope():
            holder = Offset(name="offset_net")
            holder.build()
            base = tfd.Sample(tfd.Normal(0.0, 1.0), [2])
            bad_flow = nf.Flow(features=2, nets=[holder], base=base,
                               bijector=tfb.Chain([tfb.Shift(holder.v, name="shift_step"),
                                                   tfb.Exp(name="exp_step")]))
        y = np.exp(np.random.default_rng(0).standard_normal((400, 2))).astype(np.float32)
        y[123] = [-3.0, 1.0]  # finite, but outside the flow's support
        r = nf.training.fit(bad_flow, y, epochs=3, batch_size=50, lr=1e-2, verbose=0, seed=0,
                            jit_compile=False, strategy=strategy)
        result["guard"] = r.nonfinite
        result["guard_weights_finite"] = all(np.isfinite(w).all() for w in bad_flow.get_weights())

        # A flow built outside the scope is refused with a clear error.
        outside = nf.flows.build("realnvp", 2, layers=1, hidden_units=8)
        try:
            nf.training.fit(outside, x[:400], epochs=1, batch_size=64, verbose=0,
                            strategy=strategy)
        except ValueError as err:
            result["outside_error"] = str(err)
        # The global batch must split evenly.
        try:
            nf.training.fit(flow, x[:400], epochs=1, batch_size=63, verbose=0,
                            strategy=strategy)
        except ValueError as err:
            result["batch_error"] = str(err)
    atomic_write_json(out, result)
""")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC to 127.0.0.1
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **extra}


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no output)"


def _run_processes(argvs: list[list[str]], envs: list[dict], logs: list[Path]) -> list[int]:
    """Run the processes side by side; if one fails, stop the others (a worker whose peer died
    would wait for it forever); stop all after TIMEOUT seconds."""
    procs = []
    for argv, env, log in zip(argvs, envs, logs, strict=True):
        with open(log, "w") as f:
            procs.append(subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT,
                                          cwd=ROOT))
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            failed = any(p.poll() not in (None, 0) for p in procs)
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return [p.returncode for p in procs]


def _check(codes: list[int], logs: list[Path]) -> None:
    if any(codes):
        report = "\n".join(f"--- process {i} (exit {c}):\n{_tail(log)}"
                           for i, (c, log) in enumerate(zip(codes, logs, strict=True)))
        pytest.fail(f"distributed child process failed:\n{report}")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(argv: list[str], tmp: Path, name: str) -> None:
    """``argv`` on two MultiWorkerMirroredStrategy workers on 127.0.0.1 (one retry if a port
    was taken between choosing and binding it)."""
    for attempt in range(2):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
        envs = [_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": i}}))
                for i in range(2)]
        logs = [tmp / f"{name}-worker{i}-{attempt}.log" for i in range(2)]
        codes = _run_processes([argv, argv], envs, logs)
        in_use = any("in use" in _tail(log).lower() for log in logs)
        if not any(codes) or not in_use or attempt == 1:
            _check(codes, logs)
            return


@pytest.fixture(scope="module")
def one_device():
    """The one-device reference runs, in this process."""
    train, val = _data()
    flow = nf.flows.build("realnvp", 2, layers=2, hidden_units=16, seed=1)
    r = nf.training.fit(flow, train, val=val, jit_compile=False, **RUN)
    x, c = _conditional_data()
    cflow = nf.flows.build("realnvp", 2, layers=2, hidden_units=16, seed=1, context_features=2)
    rc = nf.training.fit(cflow, (x, c), val=(x[:100], c[:100]), jit_compile=False, **RUN)
    return {"history": r.history, "best_epoch": r.best_epoch,
            "weights": [v.numpy() for v in flow.trainable_variables],
            "conditional_history": rc.history}


def _assert_same_run(got: dict, ref: dict) -> None:
    assert got["replicas"] == 2
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(got["history"][key], ref["history"][key], rtol=0, atol=TOL,
                                   err_msg=key)
    assert got["best_epoch"] == ref["best_epoch"]
    for w, v in zip(got["weights"], ref["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(w), v, rtol=0, atol=TOL)
    # XLA cannot compile a step across CPU replicas: fit fell back, and said so.
    assert got["jit_compile"] is False
    assert any("without XLA" in w for w in got["warnings"])


def test_mirrored_on_two_cpus_matches_one_device(one_device, tmp_path):
    log, out = tmp_path / "mirrored.log", tmp_path / "mirrored.json"
    _check(_run_processes([[sys.executable, "-c", CHILD, "mirrored", str(out),
                            str(tmp_path / "ckpt")]], [_env()], [log]), [log])
    got = json.loads(out.read_text())
    _assert_same_run(got, one_device)
    np.testing.assert_allclose(got["conditional_history"]["loss"],
                               one_device["conditional_history"]["loss"], rtol=0, atol=TOL)
    np.testing.assert_allclose(got["conditional_history"]["val_loss"],
                               one_device["conditional_history"]["val_loss"], rtol=0, atol=TOL)
    guard = got["guard"]
    assert guard is not None and "exp_step" in guard["message"] and guard["epoch"] == 1
    assert got["guard_weights_finite"]
    assert "strategy.scope()" in got["outside_error"]
    assert "multiple of the 2 replicas" in got["batch_error"]


def test_multiworker_two_processes_match_one_device(one_device, tmp_path):
    ckpt = tmp_path / "ckpt"
    # Both workers run the same command; each writes wTASK.json with its task index.
    _run_workers([sys.executable, "-c", CHILD, "worker", str(tmp_path / "wTASK.json"),
                  str(ckpt)], tmp_path, "fit")
    for out in (tmp_path / "w0.json", tmp_path / "w1.json"):
        _assert_same_run(json.loads(out.read_text()), one_device)
    # Only the chief wrote the checkpoint folder; the other worker's copies are gone.
    assert sorted(p.name for p in ckpt.iterdir()) == ["ckpt", "run_config.json"]
    assert sorted(p.name for p in (ckpt / "ckpt").iterdir() if p.name.endswith(".index")) == [
        "ckpt-2.index", "ckpt-3.index"]


CLI_CHILD = textwrap.dedent(f"""
    import sys
    import tensorflow as tf
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, {str(ROOT)!r})
    from normalizingflows.cli import main
    sys.exit(main(sys.argv[1:]))
""")
CLI_TRAIN = ["train", "--flow", "realnvp", "--data", "moons", "--n", "1000", "--epochs", "2",
             "--layers", "1", "--hidden-units", "8", "--batch-size", "200", "--verbose", "0"]


def test_cli_train_strategy_mirrored(tmp_path):
    out, log = tmp_path / "run", tmp_path / "cli.log"
    codes = _run_processes([[sys.executable, "-c", CLI_CHILD, *CLI_TRAIN, "--strategy",
                             "mirrored", "--out", str(out)]], [_env()], [log])
    _check(codes, [log])
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == "mirrored" and m["replicas"] == 2 and m["jit_compile"] is False
    assert np.isfinite(m["test_log_likelihood"]) and len(m["history"]["val_loss"]) == 2
    for name in ("density.png", "loss.png", "flow/config.json", "checkpoints/run_config.json"):
        assert (out / name).exists(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.log", "run"]


@pytest.mark.slow
def test_cli_train_strategy_multiworker(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "normalizingflows", *CLI_TRAIN, "--strategy", "multiworker",
            "--out", str(out)]
    _run_workers(argv, tmp_path, "cli")
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == "multiworker" and m["replicas"] == 2
    _run_workers([*argv, "--resume"], tmp_path, "cli-resume")
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["test_log_likelihood"] == pytest.approx(m["test_log_likelihood"], abs=1e-6)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".log")] == ["run"]


def test_unknown_strategy_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*CLI_TRAIN, "--strategy", "ring", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown strategy --strategy 'ring'") and "mirrored" in err
    assert err.count("\n") == 1 and not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="strategy must be one of"):
        nf.training.make_strategy("ring")
    train, _ = _data()
    flow = nf.flows.build("realnvp", 2, layers=1, hidden_units=8)
    with pytest.raises(TypeError, match="make_strategy"):
        nf.training.fit(flow, train, epochs=1, batch_size=64, verbose=0, strategy="mirrored")


def test_a_flow_built_outside_the_scope_is_refused():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    train, _ = _data()
    with pytest.raises(ValueError, match=r"strategy\.scope\(\)"):
        nf.training.fit(nf.flows.build("realnvp", 2, layers=1, hidden_units=8), train,
                        epochs=1, batch_size=64, verbose=0, strategy=strategy)
    with strategy.scope():
        flow = nf.flows.build("realnvp", 2, layers=1, hidden_units=8)
    # A flow built in a scope trains under that scope's strategy by default.
    r = nf.training.fit(flow, train[:128], epochs=1, batch_size=64, verbose=0,
                        jit_compile=False)
    assert r.replicas == 1 and np.isfinite(r.history["loss"][0])


@pytest.mark.parametrize("workers,replicas_per_worker", [(1, 2), (2, 2), (2, 1)])
def test_replica_shards_cover_each_global_batch(workers, replicas_per_worker):
    """The shards of every worker, in replica order, are the global batch (less the rows that
    keep the shards equal), as on one device."""
    replicas = workers * replicas_per_worker
    batches = tf.data.Dataset.range(23).batch(8)  # 8, 8, 7 rows
    per_worker = [list(replica_shards(batches, tf.distribute.InputContext(
        workers, w, replicas), trim=True)) for w in range(workers)]
    joined = []
    for b in range(3):
        shards = [s.numpy() for w in range(workers) for s in
                  per_worker[w][b * replicas_per_worker:(b + 1) * replicas_per_worker]]
        assert len({len(s) for s in shards}) == 1  # equal shards
        joined.append(np.concatenate(shards).tolist())
    keep = 7 - 7 % replicas
    assert joined == [list(range(8)), list(range(8, 16)), list(range(16, 16 + keep))]
    evaluation = [list(replica_shards(batches, tf.distribute.InputContext(
        workers, w, replicas), trim=False)) for w in range(workers)]
    rows = sorted(int(v) for shards in evaluation for s in shards for v in s.numpy())
    assert rows == list(range(23))  # evaluation leaves no row out
