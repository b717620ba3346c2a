"""Training on several devices or machines with ``tf.distribute``.

:func:`make_strategy` names the strategies that ``nf.training.fit`` and the CLI's
``--strategy`` support; :func:`resolve_strategy` checks that a flow was built under the
strategy it is trained with; :func:`replica_shards` splits every global batch into equal
per-replica shards, so that a distributed step sees exactly the rows one device would see.

Keras' own splitting of a ``tf.data`` batch (``experimental_distribute_dataset``) gives the
replicas shares of different sizes when a batch does not divide evenly, and an *empty* share
when the last batch of an epoch has fewer rows than there are replicas (seen here: a batch of
one row on two replicas becomes ``[x]`` and ``[]``); the mean log-likelihood of an empty share is
NaN. :func:`replica_shards` is the input function of a Keras ``DatasetCreator`` instead: each
input pipeline (one per worker) builds the same global batches from ``(seed, epoch)`` and keeps
the rows of its own replicas, so no automatic sharding is involved.

Example:
    >>> import normalizingflows as nf
    >>> strategy = make_strategy(None)
    >>> with strategy.scope():
    ...     flow = nf.flows.build("maf", 2, layers=1, hidden_units=8)
    >>> resolve_strategy(flow, strategy) is strategy
    True
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["STRATEGIES", "make_strategy", "resolve_strategy", "replica_shards", "is_chief",
           "jit_supported", "barrier"]

STRATEGIES = ("mirrored", "multiworker")


def make_strategy(name: str | None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name``.

    - ``None`` or ``"default"``: the current (by default the no-op, one-device) strategy.
    - ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over every local GPU; without a GPU,
      over every logical CPU device (one unless the program split the CPU with
      ``tf.config.set_logical_device_configuration``).
    - ``"multiworker"``: ``tf.distribute.MultiWorkerMirroredStrategy``; the cluster and this
      process's place in it come from the ``TF_CONFIG`` environment variable. Create it at the
      start of the program, before TensorFlow runs anything else.

    Args:
        name: One of :data:`STRATEGIES`, ``"default"`` or ``None``.

    Returns:
        The strategy. Build the flow inside ``strategy.scope()`` and pass the strategy to
        :func:`~normalizingflows.training.fit`.

    Raises:
        ValueError: On an unknown name.

    Example:
        >>> make_strategy(None).num_replicas_in_sync
        1
        >>> make_strategy("ring")
        Traceback (most recent call last):
        ...
        ValueError: strategy must be one of ('mirrored', 'multiworker') or None; got 'ring'
    """
    if name is None or name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in
                                               tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES} or None; got {name!r}")


def resolve_strategy(flow: Any, strategy: tf.distribute.Strategy | None) -> tf.distribute.Strategy:
    """The strategy to train ``flow`` with, after checking that its variables belong to it.

    Keras ties a model to the strategy whose ``scope()`` it was built in; so does this: with
    ``strategy=None`` the flow's own strategy is used (the one-device default for a flow built
    outside any scope), and a given strategy must be that one.

    Args:
        flow: A :class:`~normalizingflows.flows.core.Flow` (its lazily created variables, if
            any, already created).
        strategy: A ``tf.distribute.Strategy`` or ``None``.

    Returns:
        The strategy.

    Raises:
        TypeError: If ``strategy`` is not a ``tf.distribute.Strategy`` (a name, say).
        ValueError: If a variable of the flow was created outside ``strategy.scope()``.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=1, hidden_units=8)
        >>> resolve_strategy(flow, None).num_replicas_in_sync
        1
    """
    if strategy is None:
        strategy = flow.distribute_strategy
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy must be a tf.distribute.Strategy or None; got "
                        f"{strategy!r} (make one with nf.training.make_strategy(name), then "
                        "build the flow inside `with strategy.scope():`)")
    outside = [v.name for v in flow.variables
               if not strategy.extended.variable_created_in_scope(v)]
    if outside:
        raise ValueError(
            f"strategy: the flow's variables (e.g. {outside[0]!r}) were not created under "
            f"this {type(strategy).__name__}'s scope; build the flow inside "
            "`with strategy.scope(): flow = nf.flows.build(...)` and pass the same strategy "
            "(Keras requires the same: a model trains under the strategy it was built in)")
    return strategy


def replica_shards(batches: tf.data.Dataset, input_context: tf.distribute.InputContext, *,
                   trim: bool) -> tf.data.Dataset:
    """This input pipeline's per-replica shards of every global batch of ``batches``.

    Global batch ``b`` of ``n`` rows is cut into ``R = num_replicas_in_sync`` consecutive
    shards; the pipeline ``input_pipeline_id`` (a worker) yields the shards of its replicas in
    order, which ``distribute_datasets_from_function`` hands to its replicas one each.

    Args:
        batches: Global batches (rows of any shape, batched on axis 0).
        input_context: The ``tf.distribute.InputContext`` Keras' ``DatasetCreator`` passes.
        trim: ``True``: every shard gets ``n // R`` rows (the last ``n % R`` rows of a batch
            are left out and a batch of fewer than ``R`` rows is skipped), so the mean of the
            shard means is the batch mean; training batches. ``False``: no row is left out
            and shards differ by at most one row (a batch must have at least ``R`` rows);
            evaluation batches.

    Returns:
        The dataset of shards.

    Example:
        >>> ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
        ...                                  num_replicas_in_sync=4)
        >>> ds = tf.data.Dataset.range(15).batch(8)
        >>> [s.numpy().tolist() for s in replica_shards(ds, ctx, trim=True)]
        [[4, 5], [6, 7], [10], [11]]
        >>> [s.numpy().tolist() for s in replica_shards(ds, ctx, trim=False)]
        [[4, 5], [6, 7], [11, 12], [13, 14]]
    """
    replicas = input_context.num_replicas_in_sync
    local = replicas // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local

    def shards(rows: Any) -> tf.data.Dataset:
        n = tf.shape(rows, out_type=tf.int64)[0]
        ends = tf.range(replicas + 1, dtype=tf.int64)
        ends = ends * (n // replicas) if trim else ends * n // replicas
        return tf.data.Dataset.range(first, first + local).map(
            lambda r: rows[ends[r]:ends[r + 1]])

    if trim:
        batches = batches.filter(lambda rows: tf.shape(rows)[0] >= replicas)
    return batches.flat_map(shards)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the checkpoints and outputs (always, except on a
    non-chief worker of a multi-worker strategy).

    Example:
        >>> is_chief(tf.distribute.get_strategy())
        True
    """
    return bool(strategy.extended.should_checkpoint)


def jit_supported(strategy: tf.distribute.Strategy) -> bool:
    """Whether Keras can compile the train step with XLA (``jit_compile``) under ``strategy``.

    Not with several replicas on CPU devices. Measured with TF 2.21: two logical CPU devices
    under ``MirroredStrategy`` fail with "Trying to access resource ... located in device CPU:1
    from device CPU:0" (XLA runs the step on the first CPU device), and two one-CPU workers
    under ``MultiWorkerMirroredStrategy`` fail with "Collectives are not yet implemented for
    CPU devices when compiling with XLA" (the gradient all-reduce is inside the compiled
    step). One replica is fine; replicas on GPUs keep ``jit_compile`` (XLA compiles collectives
    for GPUs; not measured here, as this project's tests run on CPUs).

    Example:
        >>> jit_supported(tf.distribute.get_strategy())
        True
    """
    if strategy.num_replicas_in_sync == 1:
        return True
    devices = strategy.extended.worker_devices
    return not any("CPU" in d.upper().rsplit("/", 1)[-1] for d in devices)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker of ``strategy`` gets here (one tiny all-reduce); a no-op for
    one worker.

    Example:
        >>> barrier(tf.distribute.get_strategy())
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        @tf.function  # eager collectives warn of their overhead
        def all_reduce() -> tf.Tensor:
            return strategy.reduce(tf.distribute.ReduceOp.SUM,
                                   strategy.run(lambda: tf.constant(1.0)), axis=None)

        all_reduce()
