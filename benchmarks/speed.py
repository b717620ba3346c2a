"""Training, density and sampling speed of the same flows in normalizingflows, TFP, zuko, nflows.

One process, one run: for every flow and feature count D it builds the same configuration
(``layers`` layers, a 2 x 512 ReLU conditioner, batch 256, Adam(1e-3); splines with 8 bins) in

* ``nf``: this project (Keras ``train_step`` under ``tf.function(jit_compile=True)``, exactly
  what ``flow.fit`` runs after ``flow.compile(..., jit_compile=True)``; XLA ``log_prob`` and
  ``sample``; plain ``tf.function`` where XLA fails, marked in the table);
* ``tfp``: stock TensorFlow Probability bijectors (``tfb.MaskedAutoregressiveFlow`` with
  ``tfb.AutoregressiveNetwork``, ``tfb.RealNVP``, ``tfb.RationalQuadraticSpline``,
  ``tfb.Invert``, ``tfb.Permute``), timed under ``tf.function`` and under
  ``tf.function(jit_compile=True)`` (two columns);
* ``zuko`` and ``nflows`` (PyTorch, eager, ``torch.optim.Adam``; ``torch.no_grad()`` for
  densities and sampling), skipped with the reason when they are not installed
  (``pip install -e .[bench]``),

and prints samples per second of: one Adam step on the mean NLL of a fixed batch of 256
standard-normal rows (``train``), ``log_prob`` of that batch (``log_prob``), drawing
``--samples`` (10,000) samples (``sample``) and, for IAF, ``log_prob`` of 10,000 points
(``log_prob 10k``), with the ratios ours / each peer. A matmul "roofline" per flow is an
XLA program of exactly the dense matmuls of one train step with the same shapes (forward
X @ W, input gradient dY @ W^T except for the very first layer, weight gradient X^T @ dY); each
system's train rate is reported as a fraction of it. nf's MADE leaves out the mask blocks
that are all zero (``MADE(blocks=3)``), so its autoregressive train steps do fewer multiply-adds
than the dense roofline counts and can pass 100% of it.

Timing: one warm-up call (tracing and compilation), one calibration call, then rounds of
enough calls to take ``--min-time`` seconds (2 s), best of ``--repeats`` (3) rounds; the rounds
go round-robin over every system and metric of a flow, so a slow spell of a shared machine
falls on all of them alike. A call that takes ``--min-time``
or longer on its own (D sequential network passes: MAF sampling and IAF density in TFP, zuko
and nflows) is timed once ("single call"); one whose warm-up takes longer than
``--max-seconds`` is skipped and listed (with the upper bound on its rate that the first call
gives). Expect the default run (D = 43, five flows, all systems) to take some 15 to 25 minutes
on a quiet multi-core CPU, compilation included; each further D adds about as much (less for
small D); ``--max-seconds`` bounds the slow paths. Run it on a quiet machine: TF's and torch's
thread pools both use every core (``--torch-threads``), and a busy core stalls them badly.

Usage:
    PYTHONPATH=. python benchmarks/speed.py [--flows maf iaf ...] [--features 43 6 8 21 63]
        [--systems nf tfp zuko nflows] [--repeats 3] [--min-time 2] [--max-seconds 60]
        [--torch-threads N] [--out benchmarks/RESULTS.md] [--json PATH] [--quick]

    # smoke run of everything (2 layers of 2 x 32, 200 samples; mostly XLA compilation,
    # about 2 minutes on a busy 2-core machine):
    PYTHONPATH=. python benchmarks/speed.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "Config", "FLOWS", "SYSTEMS"]

FLOWS = ("maf", "iaf", "nsf_autoregressive", "nsf_coupling", "realnvp")
SYSTEMS = ("nf", "tfp", "zuko", "nflows")
# Table columns: the TFP system is timed in two modes.
COLUMNS = ("nf", "tfp", "tfp_xla", "zuko", "nflows")
COLUMN_TITLES = {"nf": "nf (ours, XLA)", "tfp": "TFP tf.function", "tfp_xla": "TFP XLA",
                 "zuko": "zuko", "nflows": "nflows"}
RATIO_TITLES = {"zuko": "nf/zuko", "tfp": "nf/TFP fn", "tfp_xla": "nf/TFP XLA",
                "nflows": "nf/nflows"}
TORCH_SYSTEMS = ("zuko", "nflows")
AUTOREGRESSIVE = ("maf", "iaf", "nsf_autoregressive")
SPLINES = ("nsf_autoregressive", "nsf_coupling")
EAGER_SINGLE_CALL_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Config:
    """What is measured and how long each measurement may take."""

    layers: int = 5
    hidden: tuple[int, ...] = (512, 512)
    batch: int = 256
    lr: float = 1e-3
    bins: int = 8
    bound: float = 3.0
    samples: int = 10_000
    density_points: int = 10_000
    repeats: int = 3
    min_time: float = 2.0
    max_seconds: float = 60.0
    quick: bool = False


Calls = dict[str, tuple[Callable[[], Any], Any]]  # metric -> (call, its tf.function wrapper)


@dataclasses.dataclass
class Timing:
    """One measurement: ``rate`` items per second, or ``None`` with the reason in ``note``."""

    rate: float | None
    seconds_per_call: float | None
    calls: int
    note: str = ""


def _metrics(flow: str, cfg: Config) -> list[tuple[str, str]]:
    """``(key, label)`` of every metric measured for ``flow``."""
    out = [("train", f"train (samples/s, batch {cfg.batch})"),
           ("log_prob", f"log_prob (samples/s, batch {cfg.batch})"),
           ("sample", f"sample {cfg.samples:,} (samples/s)")]
    if flow == "iaf":
        out.append(("log_prob_big", f"log_prob {cfg.density_points:,} pts (samples/s)"))
    return out


def _params_per_feature(flow: str, cfg: Config) -> int:
    return 3 * cfg.bins - 1 if flow in SPLINES else 2


# ---------------------------------------------------------------------------- timing
def _prepare(fn: Callable[[], Any], items: int, cfg: Config, *, sync: Callable[[Any], Any],
             compiled: bool) -> Timing | int:
    """Warm-up and calibration of ``fn``: a final ``Timing`` (skipped, or timed as a single
    call), or the number of calls one timed round makes (see the module docstring)."""
    t = time.perf_counter()
    sync(fn())
    warm = time.perf_counter() - t
    if warm > cfg.max_seconds:
        return Timing(None, None, 0, f"skipped: the first call (with compilation) took "
                                     f"{warm:.1f} s > --max-seconds {cfg.max_seconds:g}, "
                                     f"so <= {items / warm:,.0f} items/s")
    if not compiled and warm >= max(cfg.min_time, EAGER_SINGLE_CALL_SECONDS):
        # Eager PyTorch: nothing to compile, and one-time costs are small against a call
        # this long, so the first call measures the slow path (saves a second long call).
        return Timing(items / warm, warm, 1, "single call")
    t = time.perf_counter()
    sync(fn())
    once = time.perf_counter() - t
    if once >= cfg.min_time:
        return Timing(items / once, once, 1, "single call")
    return max(1, math.ceil(cfg.min_time / max(once, 1e-6)))


def _round(fn: Callable[[], Any], iters: int, sync: Callable[[Any], Any]) -> float:
    """Seconds per call of ``iters`` calls in a row."""
    t = time.perf_counter()
    for _ in range(iters):
        out = fn()
    sync(out)
    return (time.perf_counter() - t) / iters


def _measure(fn: Callable[[], Any], items: int, cfg: Config, *, sync: Callable[[Any], Any],
             compiled: bool) -> Timing:
    """Items per second of ``fn``: best of ``repeats`` rounds, one function at a time."""
    iters = _prepare(fn, items, cfg, sync=sync, compiled=compiled)
    if isinstance(iters, Timing):
        return iters
    best = min(_round(fn, iters, sync) for _ in range(cfg.repeats))
    return Timing(items / best, best, iters * cfg.repeats)


def _tf_sync(out: Any) -> None:
    import tensorflow as tf

    leaf = tf.nest.flatten(out)[0]
    leaf.numpy()


def _no_sync(out: Any) -> None:
    return None


# ---------------------------------------------------------------------------- TensorFlow
class _XlaOrGraph:
    """Call ``tf.function(fn, jit_compile=True)``; if XLA cannot compile it, plain
    ``tf.function`` from then on (``fallback`` holds the reason)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        import tensorflow as tf

        self._xla = tf.function(fn, jit_compile=True)
        self._graph = tf.function(fn)
        self.fallback = ""

    def __call__(self, *args: Any) -> Any:
        if self.fallback:
            return self._graph(*args)
        try:
            return self._xla(*args)
        except Exception as err:  # any XLA failure: fall back, say why
            first = (str(err).strip().splitlines() or [""])[0][:160]
            self.fallback = f"tf.function (XLA failed: {type(err).__name__}: {first})"
            return self._graph(*args)


def _count(variables: Any) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def _nf_callables(flow_name: str, d: int, cfg: Config, x: Any, x_big: Any
                  ) -> tuple[dict[str, Calls], int]:
    import tensorflow as tf
    import tf_keras

    import normalizingflows as nf

    kwargs: dict[str, Any] = {"layers": cfg.layers, "hidden_units": list(cfg.hidden), "seed": 0}
    if flow_name in SPLINES:
        kwargs.update(bins=cfg.bins, bound=cfg.bound)
    flow = nf.flows.build(flow_name, d, **kwargs)
    flow.compile(tf_keras.optimizers.Adam(cfg.lr), jit_compile=True)
    train = _XlaOrGraph(flow.train_step)
    log_prob = _XlaOrGraph(flow.log_prob)
    sample = _XlaOrGraph(lambda seed: flow.sample(cfg.samples, seed=seed))
    seed = tf.constant([1, 2], tf.int32)
    data = (x,)
    out = {"train": (lambda: train(data), train),
           "log_prob": (lambda: log_prob(x), log_prob),
           "sample": (lambda: sample(seed), sample)}
    if flow_name == "iaf":
        out["log_prob_big"] = (lambda: log_prob(x_big), log_prob)
    stored = _count(flow.trainable_variables)
    # MADE stores only the mask blocks that can be nonzero (``blocks``); count the dense-kernel
    # network it computes too, the one the other systems build.
    unstored = sum(int(m.size) for made in flow.submodules if isinstance(made, nf.nn.MADE)
                   for m in made.masks()) - sum(
        _count([k for k, *_ in blocks]) for made in flow.submodules
        if isinstance(made, nf.nn.MADE) for blocks in made.kernel_blocks)
    return {"nf": out}, (stored + unstored, stored)


def _tfp_spline(params: Any, bins: int, bound: float) -> Any:
    """Rational-quadratic spline on [-bound, bound] from raw ``params [..., 3 * bins - 1]``
    (softmax bin widths and heights with a floor, softplus interior slopes)."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    floor = 1e-3
    w, h, s = tf.split(params, [bins, bins, bins - 1], axis=-1)
    widths = floor + (2 * bound - bins * floor) * tf.math.softmax(w, axis=-1)
    heights = floor + (2 * bound - bins * floor) * tf.math.softmax(h, axis=-1)
    slopes = floor + tf.math.softplus(s)
    return tfp.bijectors.RationalQuadraticSpline(widths, heights, slopes, range_min=-bound)


def _tfp_mlp(d_in: int, d_out: int, hidden: Sequence[int]) -> Any:
    import tf_keras

    inputs = tf_keras.Input(shape=(d_in,))
    h = inputs
    for units in hidden:
        h = tf_keras.layers.Dense(units, activation="relu")(h)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(d_out)(h))


def build_tfp(flow_name: str, d: int, cfg: Config) -> tuple[Any, list[Any]]:
    """The flow from stock TFP bijectors: ``(tfd.TransformedDistribution, [networks])``."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfb, tfd = tfp.bijectors, tfp.distributions
    hidden = list(cfg.hidden)
    bins, bound = cfg.bins, cfg.bound
    p = _params_per_feature(flow_name, cfg)
    nets: list[Any] = []
    steps: list[Any] = []
    for i in range(cfg.layers):
        if i:
            steps.append(tfb.Permute(permutation=list(range(d - 1, -1, -1))))
        if flow_name in AUTOREGRESSIVE:
            made = tfb.AutoregressiveNetwork(params=p, event_shape=[d], hidden_units=hidden,
                                             activation="relu")
            made(tf.zeros([1, d]))
            nets.append(made)
            if flow_name == "nsf_autoregressive":
                def spline_fn(x: Any, _made: Any = made, **kwargs: Any) -> Any:
                    return _tfp_spline(_made(x), bins, bound)

                step = tfb.MaskedAutoregressiveFlow(bijector_fn=spline_fn)
            else:
                step = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made)
            steps.append(tfb.Invert(step) if flow_name == "iaf" else step)
        else:
            masked = d // 2
            net = _tfp_mlp(masked, (d - masked) * p, hidden)
            nets.append(net)
            if flow_name == "nsf_coupling":
                def coupling_fn(x0: Any, input_depth: int, _net: Any = net,
                                **kwargs: Any) -> Any:
                    out = _net(x0)
                    shape = tf.concat([tf.shape(out)[:-1], [input_depth, p]], axis=0)
                    return _tfp_spline(tf.reshape(out, shape), bins, bound)

                steps.append(tfb.RealNVP(num_masked=masked, bijector_fn=coupling_fn))
            else:
                def shift_log_scale(x0: Any, input_depth: int, _net: Any = net,
                                    **kwargs: Any) -> tuple[Any, Any]:
                    shift, log_scale = tf.split(_net(x0), 2, axis=-1)
                    return shift, log_scale

                steps.append(tfb.RealNVP(num_masked=masked,
                                         shift_and_log_scale_fn=shift_log_scale))
    base = tfd.MultivariateNormalDiag(loc=tf.zeros([d]))
    return tfd.TransformedDistribution(base, tfb.Chain(steps)), nets


def _tfp_callables(flow_name: str, d: int, cfg: Config, x: Any, x_big: Any
                   ) -> tuple[dict[str, Calls], int]:
    import tensorflow as tf
    import tf_keras

    dist, nets = build_tfp(flow_name, d, cfg)
    variables = [v for net in nets for v in net.trainable_variables]
    seed = tf.constant([1, 2], tf.int32)
    out: dict[str, Calls] = {}
    for column, jit in (("tfp", False), ("tfp_xla", True)):
        opt = tf_keras.optimizers.Adam(cfg.lr)
        opt.build(variables)

        def step(xb: Any, _opt: Any = opt) -> Any:
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(dist.log_prob(xb))
            grads = tape.gradient(loss, variables)
            _opt.apply_gradients(zip(grads, variables, strict=True))
            return loss

        if jit:
            train, log_prob, sample = (
                _XlaOrGraph(step), _XlaOrGraph(dist.log_prob),
                _XlaOrGraph(lambda s: dist.sample(cfg.samples, seed=s)))
        else:
            train, log_prob, sample = (
                tf.function(step), tf.function(dist.log_prob),
                tf.function(lambda s: dist.sample(cfg.samples, seed=s)))
        calls = {"train": (lambda f=train: f(x), train),
                 "log_prob": (lambda f=log_prob: f(x), log_prob),
                 "sample": (lambda f=sample: f(seed), sample)}
        if flow_name == "iaf":
            calls["log_prob_big"] = (lambda f=log_prob: f(x_big), log_prob)
        out[column] = calls
    return out, _count(variables)


# ---------------------------------------------------------------------------- PyTorch
def _torch_missing() -> str:
    try:
        import torch  # noqa: F401
    except ImportError as err:
        return f"torch not importable ({err}); pip install -e .[bench]"
    return ""


def build_zuko(flow_name: str, d: int, cfg: Config) -> Any:
    """The flow in zuko (a ``zuko.flows.Flow``; call it to get the distribution)."""
    import zuko

    hidden = tuple(cfg.hidden)
    t = cfg.layers
    if flow_name in ("maf", "iaf"):
        flow = zuko.flows.MAF(d, transforms=t, hidden_features=hidden)
        if flow_name == "iaf":
            # The inverse of MAF's lazy transform: one pass to sample, d for density.
            flow = zuko.flows.Flow(flow.transform.inv, flow.base)
        return flow
    if flow_name == "nsf_autoregressive":
        return zuko.flows.NSF(d, transforms=t, hidden_features=hidden, bins=cfg.bins)
    if flow_name == "nsf_coupling":
        return zuko.flows.RealNVP(d, transforms=t, hidden_features=hidden,
                                  univariate=zuko.transforms.MonotonicRQSTransform,
                                  shapes=[(cfg.bins,), (cfg.bins,), (cfg.bins - 1,)])
    return zuko.flows.RealNVP(d, transforms=t, hidden_features=hidden)


def build_nflows(flow_name: str, d: int, cfg: Config) -> Any:
    """The flow in nflows (``nflows.flows.Flow``), MADE without residual blocks or batch norm."""
    import torch
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms import autoregressive as ar
    from nflows.transforms import coupling
    from nflows.transforms.base import CompositeTransform, InverseTransform
    from nflows.transforms.permutations import ReversePermutation

    hidden = list(cfg.hidden)
    if len(set(hidden)) != 1:
        raise ValueError(f"nflows' MADE needs equal hidden widths; got {hidden}")
    # nflows' MADE: an initial masked layer, then num_blocks hidden-to-hidden blocks.
    made_kw = {"hidden_features": hidden[0], "num_blocks": len(hidden) - 1,
               "use_residual_blocks": False, "activation": torch.relu}
    spline_kw = {"num_bins": cfg.bins, "tails": "linear", "tail_bound": cfg.bound}

    class MLP(torch.nn.Module):
        def __init__(self, d_in: int, d_out: int) -> None:
            super().__init__()
            sizes = [d_in, *hidden]
            layers: list[torch.nn.Module] = []
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], d_out))

        def forward(self, inputs: Any, context: Any = None) -> Any:
            return self.net(inputs)

    mask = [-1] * (d // 2) + [1] * (d - d // 2)  # > 0: transformed
    transforms: list[Any] = []
    for i in range(cfg.layers):
        if i:
            transforms.append(ReversePermutation(d))
        if flow_name in ("maf", "iaf"):
            step = ar.MaskedAffineAutoregressiveTransform(d, **made_kw)
            transforms.append(InverseTransform(step) if flow_name == "iaf" else step)
        elif flow_name == "nsf_autoregressive":
            transforms.append(ar.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                d, **made_kw, **spline_kw))
        elif flow_name == "nsf_coupling":
            transforms.append(coupling.PiecewiseRationalQuadraticCouplingTransform(
                mask, MLP, **spline_kw))
        else:
            transforms.append(coupling.AffineCouplingTransform(mask, MLP))
    return Flow(CompositeTransform(transforms), StandardNormal([d]))


def _torch_callables(system: str, flow_name: str, d: int, cfg: Config, x_np: np.ndarray,
                     x_big_np: np.ndarray) -> tuple[dict[str, Calls], int]:
    import torch

    torch.manual_seed(0)
    x = torch.from_numpy(x_np)
    x_big = torch.from_numpy(x_big_np)
    if system == "zuko":
        flow = build_zuko(flow_name, d, cfg)
        log_prob = lambda xb: flow().log_prob(xb)
        sample = lambda: flow().sample((cfg.samples,))
    else:
        flow = build_nflows(flow_name, d, cfg)
        log_prob = lambda xb: flow.log_prob(xb)
        sample = lambda: flow.sample(cfg.samples)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)

    def train() -> Any:
        opt.zero_grad()
        loss = -log_prob(x).mean()
        loss.backward()
        opt.step()
        return loss

    def no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return fn()
        return call

    out = {"train": (train, None), "log_prob": (no_grad(lambda: log_prob(x)), None),
           "sample": (no_grad(sample), None)}
    if flow_name == "iaf":
        out["log_prob_big"] = (no_grad(lambda: log_prob(x_big)), None)
    return {system: out}, int(sum(p.numel() for p in flow.parameters() if p.requires_grad))


# ---------------------------------------------------------------------------- roofline
def dense_shapes(flow_name: str, d: int, cfg: Config) -> list[list[tuple[int, int]]]:
    """``[(d_in, d_out)]`` of every dense layer of every flow layer's conditioner."""
    p = _params_per_feature(flow_name, cfg)
    if flow_name in AUTOREGRESSIVE:
        d_in, d_out = d, p * d
    else:
        d_in, d_out = d // 2, p * (d - d // 2)
    sizes = [d_in, *cfg.hidden, d_out]
    return [list(zip(sizes[:-1], sizes[1:], strict=True)) for _ in range(cfg.layers)]


def roofline(flow_name: str, d: int, cfg: Config) -> dict[str, Any]:
    """Time an XLA program of exactly the dense matmuls of one train step (same shapes)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    b = cfg.batch
    args: list[Any] = []
    flops = 0
    count = 0
    for i, layer in enumerate(dense_shapes(flow_name, d, cfg)):
        for j, (d_in, d_out) in enumerate(layer):
            needs_input_grad = not (i == 0 and j == 0)
            args += [rng.standard_normal((b, d_in), np.float32),
                     rng.standard_normal((d_in, d_out), np.float32) / math.sqrt(d_in),
                     rng.standard_normal((b, d_out), np.float32), needs_input_grad]
            per = 2 * b * d_in * d_out
            flops += per * (3 if needs_input_grad else 2)
            count += 3 if needs_input_grad else 2
    tensors = [tf.constant(a) for a in args if not isinstance(a, bool)]
    flags = [a for a in args if isinstance(a, bool)]

    @tf.function(jit_compile=True)
    def matmuls(*ts: Any) -> list[Any]:
        out = []
        for k, needs_input_grad in enumerate(flags):
            x, w, dy = ts[3 * k: 3 * k + 3]
            out.append(tf.matmul(x, w))                      # forward
            out.append(tf.matmul(x, dy, transpose_a=True))   # weight gradient
            if needs_input_grad:
                out.append(tf.matmul(dy, w, transpose_b=True))  # input gradient
        return out

    timing = _measure(lambda: matmuls(*tensors), b, cfg, sync=_tf_sync, compiled=True)
    rate = timing.rate
    return {"flow": flow_name, "features": d, "matmuls": count, "gflop_per_step": flops / 1e9,
            "samples_per_s": rate, "seconds_per_step": timing.seconds_per_call,
            "gflops": None if rate is None else flops / 1e9 * rate / b, "note": timing.note}


# ---------------------------------------------------------------------------- report
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for label, dist in (("numpy", "numpy"), ("tensorflow", "tensorflow"),
                        ("tf_keras", "tf-keras"), ("tfp", "tensorflow-probability"),
                        ("torch", "torch"), ("zuko", "zuko"), ("nflows", "nflows")):
        try:
            out[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[label] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _header(cfg: Config, systems: Sequence[str]) -> dict[str, Any]:
    import tensorflow as tf

    threads = {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads() or "auto",
               "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads() or "auto"}
    if any(s in TORCH_SYSTEMS for s in systems) and not _torch_missing():
        import torch

        threads["torch"] = torch.get_num_threads()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "command": " ".join(["python", *sys.argv]), "versions": _versions(),
            "threads": threads, "config": dataclasses.asdict(cfg)}


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _cell(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "—"
    if rec["rate"] is None:
        return "skipped" if rec["note"].startswith("skipped") else "error"
    marks = ("*" if "single call" in rec["note"] else "") + ("†" if "XLA failed" in rec["note"]
                                                           else "")
    return _fmt(rec["rate"]) + marks


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _targets(d: int, rows: dict[tuple[str, str, str], dict[str, Any]],
             roof: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, where the needed cells were measured (MAF/IAF at this D)."""

    def rate(flow: str, metric: str, column: str) -> float | None:
        rec = rows.get((flow, metric, column))
        return None if rec is None else rec["rate"]

    def best(flow: str, metric: str, *columns: str) -> float | None:
        vals = [v for c in columns if (v := rate(flow, metric, c)) is not None]
        return max(vals) if vals else None

    checks = [
        ("MAF train: nf / zuko >= 1.5", _ratio(rate("maf", "train", "nf"),
                                               rate("maf", "train", "zuko")), 1.5),
        ("MAF train: nf / TFP tf.function >= 2", _ratio(rate("maf", "train", "nf"),
                                                        rate("maf", "train", "tfp")), 2.0),
        ("MAF log_prob: nf / zuko >= 1.5", _ratio(rate("maf", "log_prob", "nf"),
                                                  rate("maf", "log_prob", "zuko")), 1.5),
        ("MAF train: nf / same-shape matmul roofline >= 0.8",
         _ratio(rate("maf", "train", "nf"), roof.get("maf", {}).get("samples_per_s")), 0.8),
        ("MAF sample: nf / faster TFP mode >= 10",
         _ratio(rate("maf", "sample", "nf"), best("maf", "sample", "tfp", "tfp_xla")), 10.0),
        ("MAF sample: nf / zuko >= 10", _ratio(rate("maf", "sample", "nf"),
                                               rate("maf", "sample", "zuko")), 10.0),
        ("IAF density (big): nf / faster TFP mode >= 10",
         _ratio(rate("iaf", "log_prob_big", "nf"),
                best("iaf", "log_prob_big", "tfp", "tfp_xla")), 10.0),
        ("IAF density (big): nf / zuko >= 10", _ratio(rate("iaf", "log_prob_big", "nf"),
                                                      rate("iaf", "log_prob_big", "zuko")), 10.0),
    ]
    return [{"features": d, "target": name, "measured": value, "threshold": threshold,
             "met": None if value is None else bool(value >= threshold)}
            for name, value, threshold in checks]


def render(header: dict[str, Any], results: list[dict[str, Any]],
           roofs: list[dict[str, Any]], targets: list[dict[str, Any]], flows: Sequence[str],
           features: Sequence[int], columns: Sequence[str], cfg: Config,
           skipped_systems: dict[str, str], params: Sequence[dict[str, Any]] = ()) -> str:
    """The Markdown report."""
    v = header["versions"]
    lines = [
        "# Speed: normalizingflows vs TFP stock, zuko and nflows",
        "",
        f"- date: {header['date']}",
        f"- machine: {header['platform']}; CPU: {header['cpu']}; cores: {header['cores']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- threads: {header['threads']}",
        f"- command: `{header['command']}`",
        f"- configuration: {cfg.layers} layer(s), conditioner {' x '.join(map(str, cfg.hidden))}"
        f" ReLU, batch {cfg.batch}, Adam({cfg.lr:g}), float32; train = one Adam step on the "
        f"mean NLL of a fixed batch of standard-normal rows; best of {cfg.repeats} round(s) "
        f"of >= {cfg.min_time:g} s each, round-robin over the systems of a flow (first call: "
        "warm-up and compilation, not timed).",
        f"- splines: {cfg.bins} bins; nf, TFP and nflows on [-{cfg.bound:g}, {cfg.bound:g}] "
        "(identity / linear tails); zuko on its default [-5, 5].",
        "- systems: nf = `nf.flows.build(...)`, Keras `train_step`, `log_prob` and `sample` "
        "under `tf.function(jit_compile=True)`; TFP = stock bijectors under `tf.function` and "
        "under `tf.function(jit_compile=True)`; zuko / nflows = PyTorch eager "
        "(`torch.no_grad()` for log_prob and sample). Flow mapping: maf = zuko `MAF` / nflows "
        "`MaskedAffineAutoregressiveTransform`; iaf = zuko `Flow(MAF(...).transform.inv, base)`"
        " / nflows `InverseTransform(MaskedAffineAutoregressiveTransform)`; "
        "nsf_autoregressive = zuko `NSF` / nflows "
        "`MaskedPiecewiseRationalQuadraticAutoregressiveTransform`; nsf_coupling = zuko "
        "`RealNVP(univariate=MonotonicRQSTransform)` (a true coupling net on half the "
        "features, not `NSF(passes=2)`'s masked net on all) / nflows "
        "`PiecewiseRationalQuadraticCouplingTransform`; realnvp = zuko `RealNVP` / nflows "
        "`AffineCouplingTransform`. nflows MADE: `num_blocks=1`, no residual blocks, "
        "no batch norm; reversals between layers everywhere (zuko: alternating orders/masks).",
        "- cells: samples/s (higher is better); `*` timed as a single call (slow path), "
        "`†` nf/TFP XLA fell back to plain `tf.function`; `skipped` / `error`: see the notes.",
    ]
    for system, why in skipped_systems.items():
        lines.append(f"- {system}: not run ({why})")
    index = {(r["flow"], r["metric"], r["column"], r["features"]): r for r in results}
    roof_index = {(r["flow"], r["features"]): r for r in roofs}
    peers = [c for c in columns if c != "nf"]
    for d in features:
        lines += ["", f"## D = {d}", ""]
        head = ["flow", "metric", *(COLUMN_TITLES[c] for c in columns)]
        if "nf" in columns:
            head += [RATIO_TITLES[c] for c in peers]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
        notes: list[str] = []
        for flow in flows:
            for metric, label in _metrics(flow, cfg):
                recs = {c: index.get((flow, metric, c, d)) for c in columns}
                row = [flow, label, *(_cell(recs[c]) for c in columns)]
                if "nf" in columns:
                    ours = recs["nf"]["rate"] if recs["nf"] else None
                    for c in peers:
                        r = _ratio(ours, recs[c]["rate"] if recs[c] else None)
                        row.append("—" if r is None else f"{r:.2f}x")
                lines.append("| " + " | ".join(row) + " |")
                for c in columns:
                    rec = recs[c]
                    if rec and rec["note"] and rec["note"] != "single call":
                        notes.append(f"- {flow} / {metric} / {COLUMN_TITLES[c]}: {rec['note']}")
        if notes:
            lines += ["", "Notes:", *notes]
        present = [f for f in flows if (f, d) in roof_index]
        if present:
            lines += ["", f"Same-shape matmul roofline (D = {d}): an XLA program of only the "
                      "dense matmuls of one train step; each system's train samples/s as a "
                      "fraction of it (nf's MADE skips the all-zero mask blocks, so its "
                      "autoregressive flows can pass 100%).", ""]
            head = ["flow", "matmuls", "GFLOP/step", "roofline samples/s", "GFLOP/s",
                    *(COLUMN_TITLES[c] for c in columns)]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
            for flow in present:
                r = roof_index[(flow, d)]
                fr = []
                for c in columns:
                    rec = index.get((flow, "train", c, d))
                    f = _ratio(rec["rate"] if rec else None, r["samples_per_s"])
                    fr.append("—" if f is None else f"{f:.0%}")
                lines.append("| " + " | ".join([
                    flow + (" (one-pass shapes; IAF density is D steps)" if flow == "iaf"
                            else ""),
                    str(r["matmuls"]), f"{r['gflop_per_step']:.3g}", _fmt(r["samples_per_s"]),
                    _fmt(r["gflops"]), *fr]) + " |")
        counts = {(p["flow"], p["system"]): p["params"] for p in params if p["features"] == d}
        stored = {p["flow"]: p["stored"] for p in params
                  if p["features"] == d and p.get("stored") is not None}
        systems = [c for c in columns if c != "tfp_xla"]
        if counts:
            lines += ["", f"Trainable parameters (D = {d}; a check that the systems build the "
                      "same networks; nf stored: what nf keeps after leaving out the MADE mask "
                      "blocks that are all zero):", "",
                      "| flow | " + " | ".join(COLUMN_TITLES[c].split(" (")[0]
                                               .replace(" tf.function", "") for c in systems)
                      + (" | nf stored" if stored else "") + " |",
                      "|---|" + "---:|" * (len(systems) + bool(stored))]
            for flow in flows:
                cells = [counts.get((flow, c)) for c in systems] + (
                    [stored.get(flow)] if stored else [])
                if any(v is not None for v in cells):
                    lines.append(f"| {flow} | " + " | ".join(
                        "—" if v is None else f"{v:,}" for v in cells) + " |")
        tg = [t for t in targets if t["features"] == d and t["measured"] is not None]
        if tg:
            lines += ["", f"Issue targets (D = {d}):", "", "| target | measured | met |",
                      "|---|---:|---|"]
            for t in tg:
                lines.append(f"| {t['target']} | {t['measured']:.2f} | "
                             f"{'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- main
def _build_system(system: str, flow: str, d: int, cfg: Config, data: tuple[Any, ...],
                  columns: Sequence[str]) -> tuple[dict[str, Calls], int | None,
                                                   list[dict[str, Any]]]:
    """Build ``flow`` in ``system``: ``(calls per column, parameter count, error records)``."""
    x, x_big, x_np, x_big_np = data
    try:
        if system == "nf":
            built, n_params = _nf_callables(flow, d, cfg, x, x_big)
        elif system == "tfp":
            built, n_params = _tfp_callables(flow, d, cfg, x, x_big)
        else:
            built, n_params = _torch_callables(system, flow, d, cfg, x_np, x_big_np)
    except Exception as err:  # report and go on
        traceback.print_exc()
        note = f"error: {type(err).__name__}: {str(err)[:200]}"
        return {}, None, [{"features": d, "flow": flow, "metric": metric, "column": column,
                           "rate": None, "seconds_per_call": None, "calls": 0, "note": note}
                          for column in columns if column.startswith(system)
                          for metric, _ in _metrics(flow, cfg)]
    return built, n_params, []


def _time_flow(flow: str, d: int, cfg: Config, built: dict[str, Calls],
               start: float) -> list[dict[str, Any]]:
    """Time every metric of every built column of one flow.

    Each call is warmed up and calibrated first; then the timed rounds go round-robin over
    all columns and metrics, ``repeats`` times, keeping each one's best round, so a slow spell
    of a shared machine falls on every system alike instead of on whichever ran then.
    """
    items = {"train": cfg.batch, "log_prob": cfg.batch, "sample": cfg.samples,
             "log_prob_big": cfg.density_points}
    timings: dict[tuple[str, str], Timing] = {}
    rounds: dict[tuple[str, str], tuple[Callable[[], Any], int, Callable[[Any], Any]]] = {}
    for column, calls in built.items():
        eager = column in TORCH_SYSTEMS
        sync = _no_sync if eager else _tf_sync
        for metric, _ in _metrics(flow, cfg):
            fn = calls[metric][0]
            try:
                prepared = _prepare(fn, items[metric], cfg, sync=sync, compiled=not eager)
            except Exception as err:  # report and go on
                prepared = Timing(None, None, 0,
                                  f"error: {type(err).__name__}: {str(err)[:200]}")
            if isinstance(prepared, Timing):
                timings[column, metric] = prepared
            else:
                rounds[column, metric] = (fn, prepared, sync)
    best = {key: math.inf for key in rounds}
    for _ in range(cfg.repeats):
        for key, (fn, iters, sync) in rounds.items():
            try:
                best[key] = min(best[key], _round(fn, iters, sync))
            except Exception as err:  # report and go on
                timings[key] = Timing(None, None, 0,
                                      f"error: {type(err).__name__}: {str(err)[:200]}")
    for key, (_, iters, _) in rounds.items():
        if key not in timings:
            timings[key] = Timing(items[key[1]] / best[key], best[key], iters * cfg.repeats)
    records = []
    for column, calls in built.items():
        for metric, _ in _metrics(flow, cfg):
            timing = timings[column, metric]
            fallback = getattr(calls[metric][1], "fallback", "")
            note = "; ".join(n for n in (timing.note, fallback) if n)
            records.append({"features": d, "flow": flow, "metric": metric, "column": column,
                            "rate": timing.rate, "seconds_per_call": timing.seconds_per_call,
                            "calls": timing.calls, "note": note})
            print(f"[{time.perf_counter() - start:6.1f}s] D={d:<3} {flow:<19} {metric:<12} "
                  f"{column:<8} {_fmt(timing.rate):>12} samples/s  {note}", flush=True)
    return records


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", nargs="+", default=list(FLOWS), choices=FLOWS)
    ap.add_argument("--features", nargs="+", type=int, default=[43],
                    help="feature counts D (default 43; the issue also asks for 6 8 21 63)")
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--repeats", type=int, default=None, help="best of N (default 3)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds each timed run lasts at least (default 2)")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="skip a measurement whose first call takes longer (default 60)")
    ap.add_argument("--layers", type=int, default=None, help="flow layers (default 5)")
    ap.add_argument("--hidden", nargs="+", type=int, default=None,
                    help="conditioner widths (default 512 512)")
    ap.add_argument("--samples", type=int, default=None,
                    help="samples drawn per sample call (default 10000)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads (default: os.cpu_count())")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    ap.add_argument("--json", type=Path, default=None,
                    help="write the raw results here (default: --out with suffix .json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 layers of 2 x 32, 1 repeat, 200 samples, short timings")
    return ap.parse_args(argv)


def _config(args: argparse.Namespace) -> Config:
    base = (Config(layers=2, hidden=(32, 32), samples=200, density_points=200, repeats=1,
                   min_time=0.02, max_seconds=20.0, quick=True) if args.quick else Config())
    updates: dict[str, Any] = {}
    for field, value in (("repeats", args.repeats), ("min_time", args.min_time),
                         ("max_seconds", args.max_seconds), ("layers", args.layers),
                         ("samples", args.samples)):
        if value is not None:
            updates[field] = value
    if args.samples is not None:
        updates["density_points"] = args.samples
    if args.hidden is not None:
        updates["hidden"] = tuple(args.hidden)
    return dataclasses.replace(base, **updates)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the Markdown report, write ``--out``/``--json``; return the
    JSON-able results."""
    args = _parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # many tf.functions are built on purpose: no retracing warnings
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled")
            return _run(args)
    finally:
        logger.setLevel(level)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _config(args)
    import tensorflow as tf

    systems = list(dict.fromkeys(args.systems))
    skipped_systems: dict[str, str] = {}
    torch_reason = _torch_missing() if any(s in TORCH_SYSTEMS for s in systems) else ""
    for system in TORCH_SYSTEMS:
        if system not in systems:
            continue
        reason = torch_reason
        if not reason:
            try:
                importlib.import_module(system)
            except ImportError as err:
                reason = f"{system} not importable ({err}); pip install -e .[bench]"
        if reason:
            skipped_systems[system] = reason
            print(f"# skipping {system}: {reason}", flush=True)
    systems = [s for s in systems if s not in skipped_systems]
    if any(s in TORCH_SYSTEMS for s in systems):
        import torch

        torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)
    columns = [c for c in COLUMNS if c in systems or (c == "tfp_xla" and "tfp" in systems)]
    header = _header(cfg, systems)
    print(f"# {header['cpu']}, {header['cores']} cores; {header['versions']}", flush=True)

    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    roofs: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for d in args.features:
        x_np = rng.standard_normal((cfg.batch, d)).astype(np.float32)
        x_big_np = rng.standard_normal((cfg.density_points, d)).astype(np.float32)
        x, x_big = tf.constant(x_np), tf.constant(x_big_np)
        for flow in args.flows:
            if flow in ("nsf_coupling", "realnvp") and d < 2:
                print(f"# {flow} needs D >= 2; skipped D = {d}", flush=True)
                continue
            roof = roofline(flow, d, cfg)
            roofs.append(roof)
            print(f"[{time.perf_counter() - start:6.1f}s] D={d:<3} {flow:<19} roofline "
                  f"{'':<13} {_fmt(roof['samples_per_s']):>12} samples/s  "
                  f"{_fmt(roof['gflops'])} GFLOP/s", flush=True)
            built: dict[str, Calls] = {}
            for system in systems:
                calls, n_params, errors = _build_system(
                    system, flow, d, cfg, (x, x_big, x_np, x_big_np), columns)
                built.update(calls)
                results += errors
                count, stored = n_params if isinstance(n_params, tuple) else (n_params, None)
                params.append({"features": d, "flow": flow, "system": system,
                               "params": count, "stored": stored})
            results += _time_flow(flow, d, cfg, built, start)
    targets: list[dict[str, Any]] = []
    for d in args.features:
        rows = {(r["flow"], r["metric"], r["column"]): r for r in results if r["features"] == d}
        roof = {r["flow"]: r for r in roofs if r["features"] == d}
        targets += _targets(d, rows, roof)
    text = render(header, results, roofs, targets, args.flows, args.features, columns, cfg,
                  skipped_systems, params)
    print()
    print(text, flush=True)
    skipped = [r for r in results if r["rate"] is None]
    if skipped:
        print("Not measured:")
        for r in skipped:
            print(f"  D={r['features']} {r['flow']} {r['metric']} {r['column']}: {r['note']}")
    payload = {"header": header, "columns": columns, "skipped_systems": skipped_systems,
               "results": results, "roofline": roofs, "targets": targets,
               "parameters": params}
    json_path = args.json or (args.out.with_suffix(".json") if args.out else None)
    if args.out:
        _write(args.out, text)
    if json_path:
        _write(json_path, json.dumps(payload, indent=1) + "\n")
    return payload


if __name__ == "__main__":
    main()
