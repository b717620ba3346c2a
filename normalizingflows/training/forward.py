"""``fit``: maximum likelihood (forward KL) with Keras, resumable, with a non-finite guard."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from ..flows.core import check_array as core_check_array
from ..flows.core import check_context
from .batch_norm import BatchNormStatistics, batch_norm_layers
from .callbacks import NonFiniteGuard
from .distribute import is_chief, jit_supported, replica_shards, resolve_strategy
from .state import CheckpointError, check_run_config, fingerprint

__all__ = ["FitResult", "fit", "make_optimizer", "check_array", "epoch_batches", "SCHEDULES"]

SCHEDULES = (None, "cosine", "plateau")
BATCH_NORM_STATISTICS = ("moving", "train")


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: ``{"loss": [...], "val_loss": [...], "lr": [...]}``, one entry per epoch run
            (epochs run before a resume included).
        best_epoch: 1-based epoch whose weights the flow holds at the end (lowest ``val_loss``,
            or ``loss`` without validation data); ``None`` if no epoch finished.
        best_loss: The monitored loss at ``best_epoch``.
        epochs_run: Epochs completed in total.
        stopped_early: Whether early stopping ended the run.
        nonfinite: The :class:`NonFiniteGuard` report if a non-finite loss stopped the run.
        initial_epoch: Epochs already done when this call started (non-zero on resume).
        seconds: Wall time of this call.
        replicas: Replicas that trained in sync (``strategy.num_replicas_in_sync``).
        jit_compile: Whether the train step was compiled with XLA.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    best_loss: float | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    nonfinite: dict | None = None
    initial_epoch: int = 0
    seconds: float = 0.0
    replicas: int = 1
    jit_compile: bool = False

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return asdict(self)


def check_array(x: Any, name: str, features: int | None = None) -> np.ndarray:
    """``x`` as a floating array ``[N, features]`` with no NaN/Inf, else a clear error.

    :func:`normalizingflows.flows.core.check_array`, plus: a ``tf.data.Dataset`` is refused
    (resumable training reshuffles arrays by ``(seed, epoch)``).

    Raises:
        TypeError: If ``x`` is a dataset or not a floating-point array.
        ValueError: On a wrong shape, an empty array, or NaN/Inf (the first bad row is named).

    Example:
        >>> check_array(np.ones((3, 2), np.float32), "train", 2).shape
        (3, 2)
    """
    if isinstance(x, tf.data.Dataset):
        raise TypeError(f"{name} must be an array; got a tf.data.Dataset (for streamed data use "
                        "flow.compile + flow.fit directly)")
    return core_check_array(x, name, features)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


def epoch_batches(x: np.ndarray, batch_size: int, seed: int, first_epoch: int, epochs: int,
                  context: np.ndarray | None = None, *,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Batches of epochs ``first_epoch .. epochs-1``; epoch ``e`` is shuffled by ``(seed, e)``.

    The order of every epoch is a function of ``(seed, e)`` alone, so a resumed run sees the
    batches the uninterrupted run saw. With ``context`` each element is an ``(x, context)``
    pair (Keras passes the context as ``y``). With ``input_context`` (``tf.distribute``) the
    elements are this input pipeline's equal per-replica shards of the same global batches
    (:func:`~normalizingflows.training.distribute.replica_shards` with ``trim=True``).

    Example:
        >>> ds = epoch_batches(np.arange(10, dtype=np.float32)[:, None], 4, 0, 0, 2)
        >>> [int(b.shape[0]) for b in ds]
        [4, 4, 2, 4, 4, 2]
        >>> ctx = tf.distribute.InputContext(1, 0, num_replicas_in_sync=4)
        >>> ds = epoch_batches(np.arange(10, dtype=np.float32)[:, None], 4, 0, 0, 1,
        ...                    input_context=ctx)
        >>> [int(b.shape[0]) for b in ds]  # the last batch (2 rows) is too small for 4 replicas
        [1, 1, 1, 1, 1, 1, 1, 1]
    """
    data = tf.constant(x)
    cond = None if context is None else tf.constant(context)
    n = len(x)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(_permutation(n, seed, epoch)).batch(batch_size)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    if input_context is not None:
        ds = replica_shards(ds, input_context, trim=True)
    return _gather(ds, data, cond)


def _gather(ds: tf.data.Dataset, data: tf.Tensor, cond: tf.Tensor | None) -> tf.data.Dataset:
    """Rows of ``data`` (and ``cond``) at each element's indices."""
    if cond is None:
        ds = ds.map(lambda i: tf.gather(data, i), deterministic=True)
    else:
        ds = ds.map(lambda i: (tf.gather(data, i), tf.gather(cond, i)), deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _eval_shards(x: np.ndarray, context: np.ndarray | None, batch_size: int,
                 input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    """Per-replica shards of ``x`` in order, every row once per pass, repeated."""
    rows = tf.data.Dataset.range(len(x)).batch(batch_size)
    ds = replica_shards(rows, input_context, trim=False)
    return _gather(ds.repeat(), tf.constant(x),
                   None if context is None else tf.constant(context))


def _data_and_context(flow: Any, data: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``data`` (an array, or an ``(x, context)`` pair for a conditional flow), checked."""
    context = None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        data, context = data
    if flow.conditional and context is None:
        raise ValueError(f"the flow is conditional (context_features={flow.context_features}): "
                         f"give {name} as an (x, context) pair")
    if context is not None and not flow.conditional:
        raise ValueError(f"{name} holds a context but the flow is unconditional")
    x = check_array(data, name, flow.features).astype(flow.dtype, copy=False)
    if context is None:
        return x, None
    context = check_context(context, f"{name} context", flow.context_features
                            ).astype(flow.dtype, copy=False)
    if len(context) != len(x):
        raise ValueError(f"{name}: x has {len(x)} rows but its context has {len(context)}")
    return x, context


def _permutation(n: int, seed: int, epoch: Any) -> tf.Tensor:
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)


def make_optimizer(lr: float, *, schedule: str | None = None, decay_steps: int = 1,
                   clipnorm: float | None = None, weight_decay: float = 0.0
                   ) -> tf_keras.optimizers.Optimizer:
    """Adam (AdamW when ``weight_decay > 0``) with optional cosine decay and gradient clipping.

    Example:
        >>> type(make_optimizer(1e-3, schedule="cosine", decay_steps=100)).__name__
        'Adam'
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    if not float(lr) > 0:
        raise ValueError(f"lr must be > 0; got {lr!r}")
    if clipnorm is not None and not float(clipnorm) > 0:
        raise ValueError(f"clipnorm must be > 0 or None; got {clipnorm!r}")
    if not float(weight_decay) >= 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay!r}")
    rate: Any = float(lr)
    if schedule == "cosine":
        rate = tf_keras.optimizers.schedules.CosineDecay(float(lr), decay_steps=int(decay_steps))
    if weight_decay > 0:
        return tf_keras.optimizers.AdamW(rate, weight_decay=float(weight_decay), clipnorm=clipnorm)
    return tf_keras.optimizers.Adam(rate, clipnorm=clipnorm)


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError as err:
        raise ImportError("tensorboard_dir needs the tensorboard package: pip install "
                          "tensorboard") from err


def _current_lr(optimizer: tf_keras.optimizers.Optimizer) -> float:
    rate = optimizer._learning_rate  # the schedule or the variable
    if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
        return float(rate(optimizer.iterations))
    return float(tf_keras.backend.get_value(rate))


class _RunState(tf_keras.callbacks.Callback):
    """History, best weights, early stopping, plateau decay and per-epoch checkpoints.

    Checkpoints are written to ``checkpoint_dir`` and restored from ``restore_dir`` (the same
    folder, except on a non-chief worker of a multi-worker run, which restores the chief's
    checkpoints and writes its own to a private folder).
    """

    def __init__(self, flow: Any, optimizer: Any, *, monitor: str, patience: int | None,
                 plateau: bool, guard: NonFiniteGuard, checkpoint_dir: Path | None,
                 restore_dir: Path | None = None) -> None:
        super().__init__()
        self.flow = flow
        self.optimizer = optimizer
        self.monitor = monitor
        self.patience = patience
        self.plateau = plateau
        self.plateau_patience = max(2, patience // 3) if patience else 5
        self.guard = guard
        self.state = {"history": {"loss": [], "val_loss": [], "lr": []}, "best": None,
                      "best_epoch": None, "wait": 0, "plateau_wait": 0, "stopped_early": False}
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.state_text = tf.Variable("{}", dtype=tf.string, trainable=False, name="state")
        self.best = tf.Module()
        self.best.weights = [tf.Variable(v, trainable=False) for v in flow.weights]
        self.manager = None
        self.restore_dir = restore_dir or checkpoint_dir
        if checkpoint_dir is not None:
            ckpt = tf.train.Checkpoint(flow=flow, optimizer=optimizer, epoch=self.epoch,
                                       state=self.state_text, best=self.best)
            self.manager = tf.train.CheckpointManager(ckpt, str(checkpoint_dir / "ckpt"),
                                                      max_to_keep=2)

    def restore(self) -> int:
        """Load the latest checkpoint; return the number of epochs it had finished."""
        directory = str(self.restore_dir / "ckpt")
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise CheckpointError(f"no readable checkpoint in {directory}; delete the folder "
                                  "to start over")
        try:
            status = self.manager.checkpoint.restore(path)
            status.assert_existing_objects_matched()
            self.state = json.loads(self.state_text.numpy().decode())
        except Exception as err:  # TF raises OpError, IndexError, AssertionError, ... here
            raise CheckpointError(f"checkpoint {path} is corrupt or does not match this flow "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:300]}); "
                                  "delete the folder to start over") from err
        return int(self.epoch.numpy())

    def restore_best(self) -> None:
        if self.state["best_epoch"] is not None:
            for dst, src in zip(self.flow.weights, self.best.weights, strict=True):
                dst.assign(src)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.guard.tripped:
            return
        logs = logs or {}
        s = self.state
        for key in ("loss", "val_loss"):
            if key in logs:
                s["history"][key].append(float(logs[key]))
        s["history"]["lr"].append(_current_lr(self.optimizer))
        value = float(logs[self.monitor])
        if s["best"] is None or value < s["best"]:
            s["best"], s["best_epoch"], s["wait"], s["plateau_wait"] = value, epoch + 1, 0, 0
            for dst, src in zip(self.best.weights, self.flow.weights, strict=True):
                dst.assign(src)
        else:
            s["wait"] += 1
            s["plateau_wait"] += 1
        if self.plateau and s["plateau_wait"] >= self.plateau_patience:
            rate = self.optimizer.learning_rate
            rate.assign(rate * 0.5)
            s["plateau_wait"] = 0
        if self.patience is not None and s["wait"] >= self.patience:
            s["stopped_early"] = True
            self.model.stop_training = True
        self.epoch.assign(epoch + 1)
        if self.manager is not None:
            self.state_text.assign(json.dumps(s))
            self.manager.save(checkpoint_number=epoch + 1)


def fit(flow: Any, train: Any, *, val: Any = None, epochs: int, batch_size: int,
        lr: float = 1e-3, schedule: str | None = None, clipnorm: float | None = None,
        weight_decay: float = 0.0, patience: int | None = None,
        checkpoint_dir: str | Path | None = None, resume: bool = False,
        tensorboard_dir: str | Path | None = None, seed: int = 0, verbose: int = 1,
        jit_compile: bool = True, callbacks: list | tuple = (),
        strategy: tf.distribute.Strategy | None = None, batch_norm: str = "moving"
        ) -> FitResult:
    """Fit ``flow`` to data by maximum likelihood (forward KL) with Keras ``fit``.

    Loss: mean of -log q(x) over a batch. Each epoch sees the training set in an order drawn
    from ``(seed, epoch)``; the validation loss is computed on the whole validation set after
    every epoch. The flow ends holding the weights of its best epoch (lowest validation loss,
    or training loss without ``val``). With ``checkpoint_dir`` the run is saved after every
    epoch (flow, optimizer, epoch, history, best weights) and ``resume=True`` continues it,
    from a kill at any moment, to the result the uninterrupted run would have given. A
    non-finite loss stops the run, restores the weights from before the failing batch and
    names that batch and the step of the flow that went non-finite (``result.nonfinite``).

    Several devices or machines (``tf.distribute``), as in Keras: build the flow inside
    ``strategy.scope()`` and pass the strategy (or nothing: a flow built in a scope trains under
    that scope's strategy). ``batch_size`` is the global batch, a multiple of the number of
    replicas ``R``; every global batch is the one a single device would see, cut into ``R``
    equal shards (each worker of a multi-worker run builds the same batches and keeps its
    replicas' shards), so the loss curve is one device's up to floating-point summation order.
    To keep the shards equal, the last batch of an epoch drops its last ``rows % R`` rows (at
    most ``R - 1`` per epoch, different rows each epoch). The validation loss is the mean of
    the ``R`` shard means (shards differ by at most one row; no row is left out). Under a
    multi-worker strategy only the chief writes ``checkpoint_dir`` (the other workers write to
    a private temporary folder and, on resume, read the chief's: a shared file system, as for
    Keras' ``BackupAndRestore``). ``jit_compile`` is turned off, with a warning, where
    TensorFlow cannot run XLA (several replicas on CPU devices; see
    :func:`~normalizingflows.training.distribute.jit_supported`).

    Args:
        flow: A :class:`~normalizingflows.flows.core.Flow`.
        train: Training array ``[N, D]``; for a conditional flow the pair ``(x, context)``
            with ``context [N, C]``.
        val: Validation array ``[M, D]`` (early stopping and best weights monitor it), or
            ``(x, context)`` for a conditional flow.
        epochs: Number of epochs (>= 1).
        batch_size: Examples per (global) batch.
        lr: Peak learning rate of Adam/AdamW.
        schedule: ``None`` (constant), ``"cosine"`` (decay to 0 over the run) or ``"plateau"``
            (halve when the monitored loss stalls for ``max(2, patience // 3)`` epochs, or 5).
        clipnorm: Clip each gradient to this norm (Keras optimizer ``clipnorm``).
        weight_decay: Decoupled weight decay (AdamW) when > 0.
        patience: Stop after this many epochs without improvement (``None``: never).
        checkpoint_dir: Folder for per-epoch checkpoints and the run config.
        resume: Continue the run in ``checkpoint_dir``; refused if its config differs.
        tensorboard_dir: Write TensorBoard logs here.
        seed: Seed of the shuffling.
        verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        jit_compile: Compile the train step with XLA.
        callbacks: Extra Keras callbacks.
        strategy: The ``tf.distribute.Strategy`` the flow was built under
            (:func:`~normalizingflows.training.distribute.make_strategy`), or ``None`` for the
            flow's own.
        batch_norm: Statistics the flow's batch-norm layers use outside training:
            ``"moving"`` (their moving averages) or ``"train"`` (the MAF paper's: exact
            statistics of the whole training set, set before every validation and for the
            returned flow; :class:`~normalizingflows.training.batch_norm.BatchNormStatistics`).

    Returns:
        :class:`FitResult` with the history and best epoch.

    Raises:
        ValueError: On bad arguments or data (``epochs < 1``, NaN, wrong shape, a flow built
            outside ``strategy.scope()``, a ``batch_size`` that is not a multiple of the
            replicas).
        TypeError: If ``strategy`` is not a ``tf.distribute.Strategy``.
        ResumeConfigError: If ``resume`` meets a checkpoint of a different run.
        CheckpointError: If the checkpoint is corrupt.

    Example:
        >>> import normalizingflows as nf
        >>> x = nf.data.toy.moons(256, seed=0)
        >>> flow = nf.flows.build("realnvp", 2, layers=2, hidden_units=8)
        >>> result = fit(flow, x, val=x[:64], epochs=2, batch_size=128, verbose=0,
        ...              jit_compile=False)
        >>> len(result.history["val_loss"]), result.best_epoch in (1, 2)
        (2, True)
    """
    start_time = time.perf_counter()
    if tensorboard_dir is not None:
        _require_tensorboard()
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    if patience is not None:
        patience = _positive_int(patience, "patience")
    if batch_norm not in BATCH_NORM_STATISTICS:
        raise ValueError(f"batch_norm must be one of {BATCH_NORM_STATISTICS}; got {batch_norm!r}")
    strategy = resolve_strategy(flow, strategy)
    replicas = int(strategy.num_replicas_in_sync)
    train, train_context = _data_and_context(flow, train, "train")
    val_context = None
    if val is not None:
        val, val_context = _data_and_context(flow, val, "val")
    steps = math.ceil(len(train) / batch_size)
    if replicas > 1:
        if batch_size % replicas:
            raise ValueError(f"batch_size is the global batch and must be a multiple of the "
                             f"{replicas} replicas of the strategy; got {batch_size}")
        if len(train) < replicas or (val is not None and len(val) < replicas):
            raise ValueError(f"train and val need at least one row per replica ({replicas}); "
                             f"got {len(train)} and {None if val is None else len(val)}")
        steps = len(train) // batch_size + (len(train) % batch_size >= replicas)
    if jit_compile and not jit_supported(strategy):
        warnings.warn(f"jit_compile=True: TensorFlow cannot compile a step with XLA across "
                      f"{replicas} CPU replicas; training without XLA", RuntimeWarning,
                      stacklevel=2)
        jit_compile = False
    with strategy.scope():
        optimizer = make_optimizer(lr, schedule=schedule, decay_steps=epochs * steps,
                                   clipnorm=clipnorm, weight_decay=weight_decay)
        # Build lazily created layers before copying or restoring weights.
        flow.log_prob(train[:2], None if train_context is None else train_context[:2])
        optimizer.build(flow.trainable_variables)
        flow.compile(optimizer, jit_compile=jit_compile)
    resolve_strategy(flow, strategy)  # the lazily created variables too

    def batch_fn(epoch: int, batch: int) -> Any:
        rows = _permutation(len(train), seed, epoch)[batch * batch_size:(batch + 1) * batch_size]
        if replicas > 1:
            rows = rows[:len(rows) - len(rows) % replicas]
        if train_context is None:
            return tf.gather(train, rows)
        return tf.gather(train, rows), tf.gather(train_context, rows)

    guard = NonFiniteGuard(batch_fn, verbose=verbose)
    norm_stats = None
    if batch_norm == "train" and batch_norm_layers(flow):
        norm_stats = BatchNormStatistics(
            train if train_context is None else (train, train_context), at_end=False)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    chief = is_chief(strategy)
    private_dir = None  # a non-chief worker's checkpoints: written, never read, then removed
    if checkpoint_dir is not None and not chief:
        private_dir = Path(tempfile.mkdtemp(prefix="nf-worker-checkpoints-"))
    try:
        run = _RunState(flow, optimizer, monitor="val_loss" if val is not None else "loss",
                        patience=patience, plateau=schedule == "plateau", guard=guard,
                        checkpoint_dir=private_dir or checkpoint_dir, restore_dir=checkpoint_dir)
        initial_epoch = 0
        if checkpoint_dir is not None:
            try:
                flow_config = flow.get_config()
            except NotImplementedError:
                flow_config = {"class": type(flow).__name__, "weights": fingerprint(
                    np.concatenate([np.ravel(v.numpy()) for v in flow.weights]))}
            config = {"flow": flow_config, "train": fingerprint(train), "val": fingerprint(val),
                      **({"train_context": fingerprint(train_context),
                          "val_context": fingerprint(val_context)} if flow.conditional else {}),
                      "epochs": epochs, "batch_size": batch_size, "lr": float(lr),
                      "schedule": schedule, "clipnorm": clipnorm,
                      "weight_decay": float(weight_decay), "patience": patience,
                      "seed": int(seed),
                      **({"batch_norm": batch_norm} if batch_norm != "moving" else {})}
            if chief:
                if check_run_config(checkpoint_dir, config, resume=resume):
                    initial_epoch = run.restore()
            elif resume and (checkpoint_dir / "ckpt" / "checkpoint").exists():
                check_run_config(checkpoint_dir, config, resume=True)  # reads only
                initial_epoch = run.restore()
        elif resume:
            raise ValueError("resume=True needs checkpoint_dir")

        if initial_epoch < epochs and not run.state["stopped_early"]:
            cbs = [guard, *([norm_stats] if norm_stats is not None else []), run, *callbacks]
            if tensorboard_dir is not None:
                _require_tensorboard()
                cbs.append(tf_keras.callbacks.TensorBoard(str(tensorboard_dir)))
            x, val_kwargs = _keras_inputs(train, train_context, val, val_context, batch_size,
                                          seed, initial_epoch, epochs, replicas)
            flow.fit(x, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                     verbose=verbose, callbacks=cbs, **val_kwargs)
    finally:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
    if not guard.tripped:
        run.restore_best()
        if norm_stats is not None and val is None:
            # With validation the restored best weights already hold the statistics set before
            # that epoch's validation; without it nothing set them.
            norm_stats.set_model(flow)
            norm_stats.run()
    s = run.state
    history = {k: v for k, v in s["history"].items() if v}
    return FitResult(history=history, best_epoch=s["best_epoch"], best_loss=s["best"],
                     epochs_run=len(s["history"]["loss"]), stopped_early=s["stopped_early"],
                     nonfinite=guard.report, initial_epoch=initial_epoch,
                     seconds=time.perf_counter() - start_time, replicas=replicas,
                     jit_compile=bool(jit_compile))


def _keras_inputs(train: np.ndarray, train_context: np.ndarray | None, val: np.ndarray | None,
                  val_context: np.ndarray | None, batch_size: int, seed: int,
                  initial_epoch: int, epochs: int, replicas: int) -> tuple[Any, dict]:
    """``(x, kwargs)`` for Keras ``fit``: a ``tf.data`` set on one replica, else Keras
    ``DatasetCreator``s that give every replica its equal shard of each global batch."""
    if replicas == 1:
        kwargs = {}
        if val is not None:
            kwargs = {"validation_data": (val,) if val_context is None else (val, val_context),
                      "validation_batch_size": min(len(val), 50_000)}
        return epoch_batches(train, batch_size, seed, initial_epoch, epochs, train_context), kwargs

    def train_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return epoch_batches(train, batch_size, seed, initial_epoch, epochs, train_context,
                             input_context=input_context)

    kwargs = {}
    if val is not None:
        val_steps = math.ceil(len(val) / 50_000)
        val_batch = math.ceil(len(val) / val_steps)  # equal batches, each >= replicas rows

        def val_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
            return _eval_shards(val, val_context, val_batch, input_context)

        kwargs = {"validation_data": tf_keras.utils.experimental.DatasetCreator(val_fn),
                  "validation_steps": val_steps}
    return tf_keras.utils.experimental.DatasetCreator(train_fn), kwargs
