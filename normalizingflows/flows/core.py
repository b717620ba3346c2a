"""``Flow``: a normalizing flow as a ``tf_keras.Model`` around a real TFP distribution."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from ..bijectors._common import accepts as _accepts
from ..bijectors._common import route_kwargs as _route

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["Flow", "load", "check_array", "check_context", "FAST_DIRECTIONS"]

FAST_DIRECTIONS = ("density", "sampling", "both")
_FORMAT = "normalizingflows.Flow"
# 2: Glow's coupling_scale default became "sigmoid"; 3: Glow's split_prior default became True
# (registry.CHANGED_DEFAULTS); 4: a MADE stores its weights as one packed variable (older files
# are read through nn.made.legacy_layout).
_VERSION = 4
_LAST_UNPACKED_MADE = 3


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


def check_context(c: Any, name: str, width: int | None) -> np.ndarray:
    """A context array ``[N, width]`` (one-hot integers or booleans allowed) as floats, checked
    like :func:`check_array`."""
    arr = np.asarray(c)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    return check_array(arr, name, width)


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
        context_features: Width ``C`` of the condition of a conditional flow, else ``None``.
        context_net: A ``tf_keras`` layer embedding the context before it reaches the layers
            (trained with the flow), or ``None``.
        fast_direction: ``"density"``, ``"sampling"`` or ``"both"``.
        exact_inverse: Whether both directions are exact (root solves to machine precision
            count as exact).
        spec: ``{"flow": name, "features": D, "kwargs": {...}}`` to rebuild the flow.
        image_shape: ``(H, W, C)`` for an image flow (its rows are flattened images,
            ``D = H * W * C``), else ``None``.
        dtype: ``"float32"`` or ``"float64"``.
        name: Model name.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=8)
        >>> flow.log_prob(tf.zeros([3, 2])).shape
        TensorShape([3])
    """

    def __init__(self, *, features: int, bijector: tfb.Bijector, base: tfd.Distribution,
                 nets: Sequence[tf_keras.layers.Layer] = (), context_features: int | None = None,
                 context_net: tf_keras.layers.Layer | None = None, fast_direction: str = "both",
                 exact_inverse: bool = True, spec: dict | None = None,
                 image_shape: Sequence[int] | None = None, dtype: str = "float32",
                 name: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if fast_direction not in FAST_DIRECTIONS:
            raise ValueError(f"fast_direction must be one of {FAST_DIRECTIONS}; "
                             f"got {fast_direction!r}")
        self.features = int(features)
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.features:
            raise ValueError(f"image_shape={self.image_shape} does not hold features="
                             f"{self.features} values")
        self.nets = list(nets)
        self.context_features = None if context_features is None else int(context_features)
        self.context_net = context_net
        self._bijector = bijector
        self._base = base
        self._distribution = tfd.TransformedDistribution(base, bijector)
        self._fast_direction = fast_direction
        self.exact_inverse = bool(exact_inverse)
        # Kept as JSON text: Keras would wrap a dict attribute in a tracking wrapper.
        self._spec_json = json.dumps(spec or {})
        #: ``dtype``, or the mixed policy its networks run under (``"mixed_bfloat16"``).
        self.precision = dtype
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

    def as_images(self, x: Any) -> tf.Tensor:
        """Rows ``[..., D]`` of an image flow as images ``[..., H, W, C]`` (e.g. samples).

        Raises:
            ValueError: If the flow is not an image flow (``image_shape`` is ``None``).
        """
        if self.image_shape is None:
            raise ValueError("as_images needs an image flow (built with image_shape=(H, W, C))")
        x = tf.convert_to_tensor(x)
        return tf.reshape(x, tf.concat([tf.shape(x)[:-1], self.image_shape], axis=0))

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

    @property
    def conditional(self) -> bool:
        """Whether the flow is conditional (``context_features`` is set)."""
        return self.context_features is not None

    def _as_context(self, context: Any) -> tf.Tensor | None:
        """Check ``context`` against ``context_features`` and embed it (``context_net``)."""
        if not self.conditional:
            if context is not None:
                raise ValueError("context was given but this flow is unconditional "
                                 "(context_features=None); build it with context_features=C")
            return None
        if context is None:
            raise ValueError(f"this flow is conditional: pass context= with shape "
                             f"[..., {self.context_features}] (context_features="
                             f"{self.context_features})")
        if not tf.is_tensor(context):
            context = np.asarray(context)
        dtype = tf.as_dtype(context.dtype)
        if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
            raise TypeError(f"context must be numeric; got dtype {dtype.name}")
        shape = tf.TensorShape(context.shape)
        if shape.rank is not None and (shape.rank < 1
                                       or shape[-1] not in (None, self.context_features)):
            raise ValueError(f"context must have shape [..., {self.context_features}] "
                             f"(context_features={self.context_features}); got shape "
                             f"{shape.as_list()}")
        context = tf.cast(context, self.dtype)
        if self.context_net is None:
            return tf.identity(context)
        flat = tf.reshape(context, [-1, self.context_features])
        embedded = tf.cast(self.context_net(flat), self.dtype)
        return tf.reshape(embedded, tf.concat([tf.shape(context)[:-1],
                                               tf.shape(embedded)[-1:]], axis=0))

    def _broadcast(self, x: tf.Tensor, context: tf.Tensor | None
                   ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Broadcast ``x [..., D]`` and ``context [..., E]`` to one batch shape."""
        if context is None:
            return x, None
        try:
            batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(context)[:-1])
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            raise ValueError(f"x (batch shape {x.shape[:-1].as_list()}) and context (batch shape "
                             f"{context.shape[:-1].as_list()}) do not broadcast: give one "
                             "context per row or one for all") from err
        return (tf.broadcast_to(x, tf.concat([batch, tf.shape(x)[-1:]], 0)),
                tf.broadcast_to(context, tf.concat([batch, tf.shape(context)[-1:]], 0)))

    def _condition(self, context: tf.Tensor | None, training: bool = False) -> dict[str, Any]:
        """``bijector_kwargs``/``distribution_kwargs`` for an already embedded ``context``."""
        leaf = {"training": bool(training)}
        if context is not None:
            leaf["context"] = context
        kwargs = {}
        bijector_kwargs = _route(self._bijector, leaf)
        if bijector_kwargs:
            kwargs["bijector_kwargs"] = bijector_kwargs
        if context is not None and _accepts(self._base, "context", "_log_prob"):
            kwargs["distribution_kwargs"] = {"context": context}
        return kwargs

    def condition_kwargs(self, context: Any = None, training: bool = False) -> dict[str, Any]:
        """Keyword arguments that condition :attr:`distribution` (and route ``training``).

        The context is embedded (``context_net``) and delivered to every layer that takes it,
        by the sub-bijector names of the chain, so ``.distribution`` stays a plain TFP
        distribution: ``flow.distribution.log_prob(x, **flow.condition_kwargs(c))`` equals
        ``flow.log_prob(x, context=c)``. For ``sample`` give one context row per sample.

        Returns:
            ``{"bijector_kwargs": ..., "distribution_kwargs": ...}`` (keys only where needed).

        Example:
            >>> import normalizingflows as nf
            >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=8, context_features=1)
            >>> x, c = tf.zeros([3, 2]), tf.ones([3, 1])
            >>> lp = flow.distribution.log_prob(x, **flow.condition_kwargs(c))
            >>> bool(np.allclose(lp, flow.log_prob(x, context=c)))
            True
        """
        return self._condition(self._as_context(context), training)

    def _bijector_kwargs(self, training: bool = False, context: tf.Tensor | None = None
                         ) -> dict[str, Any]:
        return self._condition(context, training).get("bijector_kwargs", {})

    # ------------------------------------------------------------------ densities
    def log_prob(self, x: Any, context: Any = None, *, training: bool = False) -> tf.Tensor:
        """Log-density of ``x [..., D]`` (one value per row).

        Args:
            x: Points in data space, shape ``[..., features]``.
            context: Condition of a conditional flow, shape ``[..., context_features]``: one
                row per point or one broadcast to all (``None`` for unconditional flows).
            training: Use batch statistics (batch norm) and data-dependent init (ActNorm).

        Returns:
            Tensor of shape ``[...]``.

        Raises:
            TypeError: If ``x`` is not floating point.
            ValueError: If the last axis of ``x`` is not ``features``, or the context is
                missing, unexpected, of the wrong width or of a batch that does not broadcast.
        """
        x, context = self._broadcast(self._as_input(x), self._as_context(context))
        return self._distribution.log_prob(x, **self._condition(context, training))

    def log_prob_marginal(self, x: Any, prior: Any = None) -> tf.Tensor:
        """log p(x) = log sum_y p(x | y) p(y) of a class-conditional flow (one-hot contexts).

        The MAF paper evaluates conditional models this way: the context of class ``y`` is the
        one-hot vector ``e_y`` of width ``context_features``.

        Args:
            x: Points, shape ``[..., features]``.
            prior: Class probabilities ``[context_features]`` (uniform when ``None``).

        Returns:
            Tensor of shape ``[...]``.

        Raises:
            ValueError: If the flow is unconditional or ``prior`` is not a distribution over
                ``context_features`` classes.

        Example:
            >>> import normalizingflows as nf
            >>> flow = nf.flows.build("maf", 2, layers=1, hidden_units=8, context_features=3)
            >>> flow.log_prob_marginal(tf.zeros([4, 2])).shape
            TensorShape([4])
        """
        if not self.conditional:
            raise ValueError("log_prob_marginal needs a class-conditional flow "
                             "(context_features = number of classes)")
        k = self.context_features
        if prior is None:
            log_prior = tf.fill([k], -tf.math.log(tf.constant(k, self.dtype)))
        else:
            prior = np.asarray(prior, dtype=np.float64)
            if prior.shape != (k,) or (prior < 0).any() or abs(prior.sum() - 1) > 1e-6:
                raise ValueError(f"prior must be {k} class probabilities summing to 1; got "
                                 f"{prior.tolist()}")
            with np.errstate(divide="ignore"):
                log_prior = tf.constant(np.log(prior), self.dtype)
        x = self._as_input(x)
        eye = tf.eye(k, dtype=self.dtype)
        per_class = tf.stack([self.log_prob(tf.identity(x), eye[y]) for y in range(k)], axis=-1)
        return tf.reduce_logsumexp(per_class + log_prior, axis=-1)

    def to_base(self, x: Any, context: Any = None) -> tf.Tensor:
        """Map data ``x`` to the base (latent) space, for diagnostics."""
        x, context = self._broadcast(self._as_input(x), self._as_context(context))
        return self._bijector.inverse(x, **self._bijector_kwargs(False, context))

    @staticmethod
    def _seed(seed: Any) -> Any:
        if isinstance(seed, (int, np.integer)):
            return tf.constant([int(seed), 0], dtype=tf.int32)
        return seed

    def _sample_context(self, n: int, context: Any) -> dict[str, Any]:
        context = self._as_context(context)
        if context is None:
            return {}
        rows = context.shape[0] if context.shape.rank == 2 else None
        if context.shape.rank not in (1, 2) or rows not in (None, 1, n):
            raise ValueError(f"context for sample(n={n}) must have shape [{self.context_features}]"
                             f", [1, {self.context_features}] or [n, {self.context_features}]; "
                             f"got {context.shape.as_list()}")
        context = tf.broadcast_to(tf.reshape(context, [-1, context.shape[-1]]),
                                  [n, context.shape[-1]])
        return self._condition(context)

    def sample(self, n: int, context: Any = None, seed: Any = None, temperature: float = 1.0
               ) -> tf.Tensor:
        """Draw ``n`` samples, shape ``[n, D]``; an ``int`` seed gives the same draws each time.

        A conditional flow takes one context for all samples (``[C]`` or ``[1, C]``) or one per
        sample (``[n, C]``). ``temperature`` ``T`` scales the base draw, ``x = f(T z)``: below
        1 it trades diversity for typical samples (Glow, section 5); it assumes the standard
        normal base of the catalog flows.

        Raises:
            ValueError: If ``temperature <= 0``.
        """
        kwargs = self._sample_context(n, context)
        if temperature == 1.0:
            return self._distribution.sample(n, seed=self._seed(seed), **kwargs)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        z = self._base.sample(n, seed=self._seed(seed), **kwargs.get("distribution_kwargs", {}))
        return self._bijector.forward(z * tf.cast(temperature, z.dtype),
                                      **kwargs.get("bijector_kwargs", {}))

    def sample_and_log_prob(self, n: int, context: Any = None, seed: Any = None
                            ) -> tuple[tf.Tensor, tf.Tensor]:
        """Draw ``n`` samples and their log-density in one pass of the sampling direction."""
        return self._distribution.experimental_sample_and_log_prob(
            n, seed=self._seed(seed), **self._sample_context(n, context))

    # ------------------------------------------------------------------ Keras
    def _split(self, x: Any, y: Any = None) -> tuple[Any, Any]:
        """``(x, context)`` from Keras inputs: ``(x, c)``, ``{"x", "context"}``, or ``x`` with
        the context as Keras' ``y`` (a ``tf.data`` set of ``(x, c)`` pairs arrives that way)."""
        if isinstance(x, dict):
            return x["x"], x.get("context")
        if isinstance(x, (tuple, list)) and len(x) == 2:
            return x[0], x[1]
        return x, (y if self.conditional else None)

    def call(self, inputs: Any, training: bool | None = None) -> tf.Tensor:
        """``log_prob(inputs)``: the model's output is the log-density of each row; a
        conditional flow takes ``(x, context)``."""
        x, context = self._split(inputs)
        return self.log_prob(x, context, training=bool(training))

    def _nll(self, data: Any, training: bool) -> tf.Tensor:
        x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
        x, context = self._split(x, y)
        log_prob = self.log_prob(x, context, training=training)
        if sample_weight is None:
            return -tf.reduce_mean(log_prob)
        sample_weight = tf.cast(tf.reshape(sample_weight, tf.shape(log_prob)), log_prob.dtype)
        return -tf.reduce_sum(sample_weight * log_prob) / tf.reduce_sum(sample_weight)

    def compile(self, optimizer: Any = "rmsprop", *args: Any, jit_compile: bool | None = None,
                **kwargs: Any) -> None:
        """Keras ``compile``, with the train step compiled by XLA unless told otherwise.

        ``jit_compile=None`` (the default) means XLA wherever TensorFlow can compile the step:
        not with ``run_eagerly=True`` and not across several CPU replicas of a
        ``tf.distribute`` strategy. If XLA then cannot compile the step (a custom layer with an
        op XLA lacks, such as ``tf.py_function``), the first ``fit`` step warns and falls back
        to a plain ``tf.function``; ``jit_compile=False`` is the explicit escape hatch.
        """
        if jit_compile is None:
            from ..training.distribute import jit_supported

            jit_compile = (not kwargs.get("run_eagerly")
                           and jit_supported(tf.distribute.get_strategy()))
        super().compile(optimizer, *args, jit_compile=jit_compile, **kwargs)

    def make_train_function(self, force: bool = False) -> Any:
        """Keras' train function; when compiled with XLA, its first call falls back to a plain
        ``tf.function`` (with a ``RuntimeWarning``) if XLA cannot compile the step."""
        function = super().make_train_function(force=force)
        if not self.jit_compile or getattr(function, "_nf_xla_fallback", False):
            return function
        first = [True]

        def train_function(iterator: Any) -> Any:
            if not first[0]:
                return function(iterator)
            try:
                out = function(iterator)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as err:
                if not _xla_compile_error(err):
                    raise
                warnings.warn(
                    "XLA could not compile this flow's train step "
                    f"({str(err).strip().splitlines()[0][:200]}); training with a plain "
                    "tf.function instead (pass jit_compile=False to compile() to skip the "
                    "attempt)", RuntimeWarning, stacklevel=2)
                self.jit_compile = False  # also clears Keras' cached functions
                return super(Flow, self).make_train_function(force=True)(iterator)
            first[0] = False
            return out

        train_function._nf_xla_fallback = True
        self.train_function = train_function
        return train_function

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

    def _check_finite(self, x: Any, name: str, y: Any = None) -> None:
        if x is None or isinstance(x, tf.data.Dataset) or callable(x):
            return
        if isinstance(x, (tuple, list)) and len(x) == 1:
            x = x[0]
        elif name == "validation_data" and isinstance(x, (tuple, list)) and len(x) in (2, 3):
            x, y = x[0], x[1]  # Keras' (x, y[, sample_weight])
        x, context = self._split(x, y)
        for value, check in ((x, lambda v: check_array(v, name, self.features)),
                             (context, lambda v: check_context(v, f"{name} context",
                                                               self.context_features))):
            if value is None or isinstance(value, dict) or (tf.is_tensor(value)
                                                            and not tf.executing_eagerly()):
                continue
            check(value)
        if self.conditional and context is None:
            raise ValueError(f"this flow is conditional (context_features="
                             f"{self.context_features}): fit on (x, context) pairs")

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Keras ``fit`` after checking array inputs for shape, dtype and NaN/Inf.

        A conditional flow fits on ``(x, context)`` pairs: ``fit((x, c))``, ``fit(x, c)`` or a
        ``tf.data`` set of ``(x, c)`` elements.

        Raises:
            ValueError: If ``x`` or the context has the wrong width or holds NaN/Inf, or a
                conditional flow gets no context.
            TypeError: If ``x`` is not floating point.
        """
        self._check_finite(x, "x", y)
        val = kwargs.get("validation_data")
        if val is not None:
            self._check_finite(val, "validation_data")
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------------ config and files
    def get_config(self) -> dict:
        """The JSON-able spec ``{"flow": name, "features": D, "kwargs": {...}}``."""
        from .registry import unserializable_arguments

        spec = json.loads(self._spec_json)
        if not spec:
            raise NotImplementedError("this Flow was not built by a catalog constructor, so it "
                                      "has no config; build it with nf.flows.build")
        bad = unserializable_arguments(spec)
        if bad:
            raise NotImplementedError(
                f"this flow was built with {bad} given as Python objects, which a JSON config "
                "cannot hold; pass context_net as a list of widths to get a savable flow, or "
                "save the weights with tf.train.Checkpoint(flow=flow)")
        return spec

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> Flow:
        """Rebuild a flow (fresh weights) from :meth:`get_config`."""
        from .registry import build

        return build(config["flow"], config["features"], **config.get("kwargs", {}))

    def _trackable_children(self, save_type: str = "checkpoint", **kwargs: Any) -> dict:
        children = super()._trackable_children(save_type, **kwargs)
        if getattr(self, "_weights_only", False):
            # save() writes the flow, not its training run: a compiled flow's optimizer (step
            # count, learning rate, Adam's two moments per weight, about 2x the weights) stays
            # out of the file. Training checkpoints (nf.training.fit) hold it on their own.
            children.pop("optimizer", None)
        return children

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, **kwargs: Any) -> None:
        """Save to folder ``filepath``: ``config.json`` and a TF checkpoint (never pickle).

        The checkpoint holds the weights, not the optimizer's state: resume a training run from
        the checkpoints of ``nf.training.fit(checkpoint_dir=...)``. The folder appears complete
        or not at all (written under a temporary name, then renamed).

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
            config = {"format": _FORMAT, "version": _VERSION, **self.get_config()}
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
            self._weights_only = True
            try:
                tf.train.Checkpoint(flow=self).write(str(tmp / "weights"))
            finally:
                self._weights_only = False
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def _xla_compile_error(err: Exception) -> bool:
    """Whether ``err`` says XLA could not compile a function (not a runtime failure)."""
    text = str(err)
    return any(mark in text for mark in ("XLA_CPU_JIT", "XLA_GPU_JIT", "tf2xla",
                                         "must be a compile-time constant",
                                         "Detected unsupported operations"))


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
    version = int(config.get("version", 1))
    if version > _VERSION:
        raise ValueError(f"{config_file} is version {version}; this normalizingflows reads up to "
                         f"{_VERSION} (upgrade it)")
    from .registry import CHANGED_DEFAULTS

    old = {k: value for k, (last, value) in CHANGED_DEFAULTS.get(config.get("flow"), {}).items()
           if version <= last}
    config["kwargs"] = {**old, **config.get("kwargs", {})}
    flow = Flow.from_config(config)
    if version <= _LAST_UNPACKED_MADE and _mades(flow):
        from ..nn.made import legacy_layout

        with legacy_layout():
            old = Flow.from_config(config)
        _restore(old, path)
        _copy_unpacked_weights(old, flow)
        return flow
    _restore(flow, path)
    return flow


def _restore(flow: Flow, path: Path) -> None:
    status = tf.train.Checkpoint(flow=flow).read(str(path / "weights"))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ValueError(f"the weights in {path} do not match its config: {err}") from err
    # A flow file that an older save() wrote after fit also holds the optimizer (learning
    # rate, step count, slots; save() now leaves it out); the loaded flow is
    # uncompiled and takes only the weights (resume training from
    # tf.train.CheckpointManager files). Reading leaves the optimizer's values pending on the
    # flow, and Keras would restore them into whatever optimizer a later compile() attaches:
    # Adam(lr) would silently train at the saved run's learning rate, from its moments. No
    # public call drops a pending restoration, so the flow's entry for its "optimizer" child
    # is removed (tests/test_flows.py pins the effect).
    flow._deferred_dependencies.pop("optimizer", None)
    # Without this TensorFlow logs one warning per unused optimizer variable.
    status.expect_partial()


def _mades(flow: Flow) -> list:
    from ..nn.made import MADE

    return [m for m in flow.submodules if isinstance(m, MADE)]


def _copy_unpacked_weights(old: Flow, new: Flow) -> None:
    """Copy the weights of ``old`` (MADEs with one variable per piece) into ``new``, the same
    flow with packed MADEs: each MADE's pieces, in order, make its packed variable."""
    old_mades, new_mades = _mades(old), _mades(new)
    for a, b in zip(old_mades, new_mades, strict=True):
        b.packed.assign(tf.concat([tf.reshape(v, [-1]) for v in a.weights], axis=0))
    in_mades = {id(v) for m in old_mades + new_mades for v in m.weights}
    rest_old = [v for v in old.weights if id(v) not in in_mades]
    rest_new = [v for v in new.weights if id(v) not in in_mades]
    for a, b in zip(rest_old, rest_new, strict=True):
        if a.shape != b.shape:
            raise ValueError(f"cannot convert the old flow file: {a.name} {a.shape} against "
                             f"{b.name} {b.shape}")
        b.assign(a)
