"""``Flow``: a normalizing flow as a ``tf_keras.Model`` around a real TFP distribution."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..bijectors._common import is_chain, is_invert

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["Flow", "load", "check_array", "FAST_DIRECTIONS"]

FAST_DIRECTIONS = ("density", "sampling", "both")
_FORMAT = "normalizingflows.Flow"


def _accepts(bijector: tfb.Bijector, name: str) -> bool:
    method = getattr(type(bijector), "_inverse", None)
    return method is not None and name in inspect.signature(method).parameters


def _route(bijector: tfb.Bijector, leaf_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``bijector`` that deliver ``leaf_kwargs`` to every leaf accepting them.

    ``tfb.Chain`` routes keyword arguments by sub-bijector name, ``tfb.Invert`` passes its own
    through; a leaf receives the subset of ``leaf_kwargs`` its ``_inverse`` accepts.
    """
    if is_chain(bijector):
        routed = {}
        for sub in bijector.bijectors:
            kw = _route(sub, leaf_kwargs)
            if kw:
                routed[sub.name] = kw
        return routed
    if is_invert(bijector):
        return _route(bijector.bijector, leaf_kwargs)
    return {k: v for k, v in leaf_kwargs.items() if _accepts(bijector, k)}


def check_array(x: Any, name: str, features: int | None = None) -> np.ndarray:
    """``x`` as a floating array ``[N >= 1, ..., features]`` with no NaN/Inf, else a clear error.

    Raises:
        TypeError: If ``x`` is not a floating-point array.
        ValueError: On a wrong shape, an empty array, or NaN/Inf (the first bad row is named).

    Example:
        >>> check_array(np.ones((3, 2), np.float32), "x", 2).shape
        (3, 2)
    """
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array; got dtype {arr.dtype}")
    if arr.ndim < 2 or len(arr) == 0 or (features is not None and arr.shape[-1] != features):
        want = features if features is not None else "D"
        raise ValueError(f"{name} must have shape [N >= 1, {want}]; got {list(arr.shape)}")
    bad = ~np.isfinite(arr).all(axis=tuple(range(1, arr.ndim)))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name} contains NaN or Inf in {rows.size} row(s), first at row "
                         f"{rows[0]}; remove or impute them")
    return arr


class Flow(tf_keras.Model):
    """A normalizing flow: a base distribution pushed through a bijector (base -> data).

    ``log_prob``, ``sample`` and ``to_base`` are methods of the model; ``.distribution`` is a
    real ``tfd.TransformedDistribution`` for users who compose by hand. Training is Keras:
    ``compile(optimizer)`` then ``fit(x)`` minimises the mean negative log-likelihood.

    Flows are built by the constructors of the catalog (``nf.flows.build``); this class is the
    shared model around them.

    Args:
        features: Number of data dimensions ``D``.
        bijector: The bijector from base space to data space.
        base: Base distribution with event shape ``[D]``.
        nets: The ``tf_keras`` layers that own the conditioners' weights.
        fast_direction: ``"density"``, ``"sampling"`` or ``"both"``.
        exact_inverse: Whether both directions are exact (root solves to machine precision
            count as exact).
        spec: ``{"flow": name, "features": D, "kwargs": {...}}`` to rebuild the flow.
        dtype: ``"float32"`` or ``"float64"``.
        name: Model name.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=8)
        >>> flow.log_prob(tf.zeros([3, 2])).shape
        TensorShape([3])
    """

    def __init__(self, *, features: int, bijector: tfb.Bijector, base: tfd.Distribution,
                 nets: Sequence[tf_keras.layers.Layer] = (), fast_direction: str = "both",
                 exact_inverse: bool = True, spec: dict | None = None, dtype: str = "float32",
                 name: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if fast_direction not in FAST_DIRECTIONS:
            raise ValueError(f"fast_direction must be one of {FAST_DIRECTIONS}; "
                             f"got {fast_direction!r}")
        self.features = int(features)
        self.nets = list(nets)
        self._bijector = bijector
        self._base = base
        self._distribution = tfd.TransformedDistribution(base, bijector)
        self._fast_direction = fast_direction
        self.exact_inverse = bool(exact_inverse)
        # Kept as JSON text: Keras would wrap a dict attribute in a tracking wrapper.
        self._spec_json = json.dumps(spec or {})
        self._loss_tracker = tf_keras.metrics.Mean(name="loss")

    # ------------------------------------------------------------------ properties
    @property
    def bijector(self) -> tfb.Bijector:
        """The bijector from base space to data space."""
        return self._bijector

    @property
    def base(self) -> tfd.Distribution:
        """The base distribution (event shape ``[features]``)."""
        return self._base

    @property
    def distribution(self) -> tfd.TransformedDistribution:
        """The flow as a ``tfd.TransformedDistribution``."""
        return self._distribution

    @property
    def fast_direction(self) -> str:
        """Which direction costs one network pass: ``"density"``, ``"sampling"`` or ``"both"``."""
        return self._fast_direction

    @property
    def metrics(self) -> list:
        return [self._loss_tracker]

    # ------------------------------------------------------------------ inputs
    def _as_input(self, x: Any, name: str = "x") -> tf.Tensor:
        """Validate ``x`` and return it as a *fresh* tensor of the flow's dtype.

        A fresh tensor keeps TFP's bijector cache (keyed by tensor identity) from returning a
        result computed before a weight update.
        """
        if not tf.is_tensor(x):
            x = np.asarray(x)
        dtype = tf.as_dtype(x.dtype)
        if not dtype.is_floating:
            raise TypeError(f"{name} must be a floating-point array; got dtype {dtype.name}")
        shape = tf.TensorShape(x.shape)
        if shape.rank is not None and (shape.rank < 1 or shape[-1] not in (None, self.features)):
            raise ValueError(f"{name} must have shape [..., {self.features}] (features="
                             f"{self.features}); got shape {shape.as_list()}")
        return tf.identity(tf.cast(x, self.dtype))

    def _bijector_kwargs(self, training: bool = False) -> dict[str, Any]:
        return _route(self._bijector, {"training": bool(training)})

    def _unsupported_context(self, context: Any) -> None:
        if context is not None:
            raise ValueError("context was given but this flow has context_features=None")

    # ------------------------------------------------------------------ densities
    def log_prob(self, x: Any, context: Any = None, *, training: bool = False) -> tf.Tensor:
        """Log-density of ``x [..., D]`` (one value per row).

        Args:
            x: Points in data space, shape ``[..., features]``.
            context: Condition for conditional flows (``None`` otherwise).
            training: Use batch statistics (batch norm) and data-dependent init (ActNorm).

        Returns:
            Tensor of shape ``[...]``.

        Raises:
            TypeError: If ``x`` is not floating point.
            ValueError: If the last axis of ``x`` is not ``features``.
        """
        self._unsupported_context(context)
        x = self._as_input(x)
        kwargs = self._bijector_kwargs(training)
        if kwargs:
            return self._distribution.log_prob(x, bijector_kwargs=kwargs)
        return self._distribution.log_prob(x)

    def to_base(self, x: Any, context: Any = None) -> tf.Tensor:
        """Map data ``x`` to the base (latent) space, for diagnostics."""
        self._unsupported_context(context)
        return self._bijector.inverse(self._as_input(x), **self._bijector_kwargs(False))

    @staticmethod
    def _seed(seed: Any) -> Any:
        if isinstance(seed, (int, np.integer)):
            return tf.constant([int(seed), 0], dtype=tf.int32)
        return seed

    def sample(self, n: int, context: Any = None, seed: Any = None) -> tf.Tensor:
        """Draw ``n`` samples, shape ``[n, D]``; an ``int`` seed gives the same draws each time."""
        self._unsupported_context(context)
        return self._distribution.sample(n, seed=self._seed(seed))

    def sample_and_log_prob(self, n: int, context: Any = None, seed: Any = None
                            ) -> tuple[tf.Tensor, tf.Tensor]:
        """Draw ``n`` samples and their log-density in one pass of the sampling direction."""
        self._unsupported_context(context)
        return self._distribution.experimental_sample_and_log_prob(n, seed=self._seed(seed))

    # ------------------------------------------------------------------ Keras
    def call(self, inputs: Any, training: bool | None = None) -> tf.Tensor:
        """``log_prob(inputs)``: the model's output is the log-density of each row."""
        return self.log_prob(inputs, training=bool(training))

    def _nll(self, data: Any, training: bool) -> tf.Tensor:
        x, _, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
        log_prob = self.log_prob(x, training=training)
        if sample_weight is None:
            return -tf.reduce_mean(log_prob)
        sample_weight = tf.cast(tf.reshape(sample_weight, tf.shape(log_prob)), log_prob.dtype)
        return -tf.reduce_sum(sample_weight * log_prob) / tf.reduce_sum(sample_weight)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimizer step on the mean negative log-likelihood of a batch."""
        with tf.GradientTape() as tape:
            nll = self._nll(data, training=True)
            loss = nll + tf.add_n(self.losses) if self.losses else nll
            # Gradients are summed over replicas under tf.distribute.
            loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        self._loss_tracker.update_state(nll)
        return {"loss": self._loss_tracker.result()}

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """Mean negative log-likelihood of a batch, without touching any state."""
        self._loss_tracker.update_state(self._nll(data, training=False))
        return {"loss": self._loss_tracker.result()}

    def _check_finite(self, x: Any, name: str) -> None:
        if x is None or isinstance(x, tf.data.Dataset) or callable(x):
            return
        x = x[0] if isinstance(x, (tuple, list)) else x
        if isinstance(x, dict) or (tf.is_tensor(x) and not tf.executing_eagerly()):
            return
        check_array(x, name, self.features)

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Keras ``fit`` after checking array inputs for shape, dtype and NaN/Inf.

        Raises:
            ValueError: If ``x`` has the wrong feature count or holds NaN/Inf.
            TypeError: If ``x`` is not floating point.
        """
        self._check_finite(x, "x")
        val = kwargs.get("validation_data")
        if val is not None:
            self._check_finite(val, "validation_data")
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------------ config and files
    def get_config(self) -> dict:
        """The JSON-able spec ``{"flow": name, "features": D, "kwargs": {...}}``."""
        spec = json.loads(self._spec_json)
        if not spec:
            raise NotImplementedError("this Flow was not built by a catalog constructor, so it "
                                      "has no config; build it with nf.flows.build")
        return spec

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> Flow:
        """Rebuild a flow (fresh weights) from :meth:`get_config`."""
        from .registry import build

        return build(config["flow"], config["features"], **config.get("kwargs", {}))

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, **kwargs: Any) -> None:
        """Save to folder ``filepath``: ``config.json`` and a TF checkpoint (never pickle).

        The folder appears complete or not at all (written under a temporary name, then renamed).

        Raises:
            FileExistsError: If ``filepath`` exists and ``overwrite`` is False.
        """
        path = Path(filepath)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            tmp.mkdir()
            config = {"format": _FORMAT, "version": 1, **self.get_config()}
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
            tf.train.Checkpoint(flow=self).write(str(tmp / "weights"))
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def load(path: str | os.PathLike) -> Flow:
    """Load a flow written by :meth:`Flow.save`.

    Raises:
        FileNotFoundError: If ``path`` holds no saved flow.
        ValueError: If the folder is not a saved ``Flow`` or its weights do not match.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {path} is not a folder written by "
                                "Flow.save")
    config = json.loads(config_file.read_text())
    if config.get("format") != _FORMAT:
        raise ValueError(f"{config_file} has format {config.get('format')!r}; expected {_FORMAT!r}")
    flow = Flow.from_config(config)
    status = tf.train.Checkpoint(flow=flow).read(str(path / "weights"))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ValueError(f"the weights in {path} do not match its config: {err}") from err
    return flow
