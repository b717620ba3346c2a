"""``as_dataset``: arrays, ``(x, y)`` tuples or a split of :class:`Splits` as ``tf.data``."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from .registry import Splits

__all__ = ["as_dataset"]


def as_dataset(data: Any, batch_size: int = 256, shuffle: bool = True, seed: int = 0, *,
               split: str = "train", labels: bool = False, drop_remainder: bool = False,
               repeat: bool = False, cache: bool = False) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` that ``tf_keras.Model.fit`` consumes.

    Args:
        data: An array ``(N, ...)``, a tuple ``(x, y)`` of arrays with equal first axis, a
            :class:`Splits` (``split`` picks the part), or an unbatched ``tf.data.Dataset``.
        batch_size: Examples per batch.
        shuffle: Reshuffle every epoch (seeded): arrays get a fresh permutation of all
            indices per epoch; datasets a 10,000-element shuffle buffer.
        seed: Shuffle seed.
        split: ``"train"``, ``"val"`` or ``"test"`` when ``data`` is a :class:`Splits`.
        labels: With :class:`Splits`, yield ``(x, y)`` using ``Splits.labels``.
        drop_remainder: Drop the last incomplete batch.
        repeat: Repeat forever (then pass ``steps_per_epoch`` to ``fit``).
        cache: Cache the elements in memory after the first pass (useful for datasets whose
            elements are computed, e.g. decoded images).

    Returns:
        The dataset.

    Raises:
        ValueError: On a bad ``batch_size``, ``split`` or mismatched tuple lengths.

    Example:
        >>> ds = as_dataset(np.zeros((10, 2), np.float32), batch_size=4, shuffle=False)
        >>> [int(b.shape[0]) for b in ds]
        [4, 4, 2]
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive int")
    if isinstance(data, Splits):
        names = ("train", "val", "test")
        if split not in names:
            raise ValueError(f"split={split!r}: expected one of {names}")
        i = names.index(split)
        x = data[i]
        if labels:
            if data.labels is None:
                raise ValueError(f"labels=True but dataset {data.info.get('name')!r} has none")
            data = (x, data.labels[i])
        else:
            data = x
    if isinstance(data, tf.data.Dataset):
        ds = data
        n = None
    else:
        if isinstance(data, tuple | list):
            arrays = tuple(np.asarray(a) for a in data)
            lengths = {len(a) for a in arrays}
            if len(lengths) != 1:
                raise ValueError(f"data: tuple parts have different lengths {sorted(lengths)}")
            n = lengths.pop()
            data = arrays
        else:
            data = np.asarray(data)
            n = len(data)
        if shuffle and not cache:
            return _shuffled_batches(data, n, batch_size, seed, drop_remainder, repeat)
        ds = tf.data.Dataset.from_tensor_slices(data)
    if cache:
        ds = ds.cache()
    if shuffle:
        buffer = n if n else 10_000
        ds = ds.shuffle(max(int(buffer), 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


@tf.autograph.experimental.do_not_convert
def _shuffled_batches(data: Any, n: int, batch_size: int, seed: int, drop_remainder: bool,
                      repeat: bool) -> tf.data.Dataset:
    """Per-epoch permutation of indices, batched, then one gather per batch.

    About 3-4x faster than an element-wise ``shuffle`` with a full buffer. Each iteration
    (epoch) draws a fresh permutation from ``Dataset.random(seed, rerandomize_each_iteration)``
    so epochs differ while the whole sequence stays reproducible for a given ``seed``.
    """
    consts = tf.nest.map_structure(tf.constant, data)

    def epoch(key: tf.Tensor) -> tf.data.Dataset:
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([key, tf.constant(seed, tf.int64)]))
        return tf.data.Dataset.from_tensor_slices(perm).batch(batch_size, drop_remainder)

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    if repeat:
        keys = tf.data.Dataset.random(seed=seed)
    ds = keys.flat_map(epoch)
    ds = ds.map(lambda i: tf.nest.map_structure(lambda a: tf.gather(a, i), consts),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
