"""Speed of mixed precision (``dtype="mixed_bfloat16"``) against float32, for catalog flows.

For each flow (``layers`` layers, 2 x 512 ReLU conditioners, D = 43 by default) and batch size
it times, in one process with the rounds going round-robin (``benchmarks/speed.py``'s method):
one Adam step of the Keras ``train_step`` (``train``) and ``log_prob`` of a fixed batch, each
under XLA (``tf.function(jit_compile=True)``) and under a plain ``tf.function`` (TensorFlow's
graph kernels, which on x86 CPUs are oneDNN's and use AMX bfloat16 tiles where the processor
has them), in float32 and in mixed bfloat16: four columns and the ratios mixed / float32 in the
same mode.

The effect on the test log-likelihood is measured by training, not here: ``experiments/
tabular.py --dtype mixed_bfloat16`` next to the float32 run (``benchmarks/MIXED_PRECISION.md``
quotes both).

Usage:
    PYTHONPATH=. python benchmarks/mixed_precision.py [--flows maf realnvp] [--features 43]
        [--batches 256 1024] [--repeats 3] [--min-time 2] [--out benchmarks/MIXED_PRECISION.md]
    PYTHONPATH=. python benchmarks/mixed_precision.py --quick   # smoke run, tiny networks
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "MODES"]

_SPEC = importlib.util.spec_from_file_location("_nf_speed", Path(__file__).with_name("speed.py"))
speed = importlib.util.module_from_spec(_SPEC)
sys.modules["_nf_speed"] = speed
_SPEC.loader.exec_module(speed)

#: (column, dtype, jit_compile)
MODES = (("float32 XLA", "float32", True), ("bf16 XLA", "mixed_bfloat16", True),
         ("float32 graph", "float32", False), ("bf16 graph", "mixed_bfloat16", False))
METRICS = ("train", "log_prob")
#: Image flows are timed on MNIST-shaped rows with the size of experiments/mnist_flows.py.
IMAGE_FLOWS = {"glow": {"layers": 8, "levels": 2, "hidden_units": 64, "blocks": 1,
                        "image_shape": (28, 28, 1)},
               "realnvp_image": {"layers": 2, "levels": 2, "hidden_units": 32, "blocks": 1,
                                 "image_shape": (28, 28, 1)}}


def _calls(flow_name: str, d: int, batch: int, cfg: Any, x: Any) -> dict[str, Any]:
    import tf_keras

    import normalizingflows as nf

    out = {}
    kwargs = IMAGE_FLOWS.get(flow_name) or {"layers": cfg.layers,
                                             "hidden_units": list(cfg.hidden)}
    for column, dtype, jit in MODES:
        flow = nf.flows.build(flow_name, d, seed=0, dtype=dtype, **kwargs)
        flow.log_prob(x, training=True)  # data-dependent initialisations (ActNorm)
        flow.compile(tf_keras.optimizers.Adam(cfg.lr), jit_compile=jit)
        import tensorflow as tf

        train = tf.function(flow.train_step, jit_compile=jit)
        log_prob = tf.function(flow.log_prob, jit_compile=jit)
        out[column] = {"train": lambda f=train: f((x,)), "log_prob": lambda f=log_prob: f(x)}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tensorflow as tf

    cfg = speed.Config(layers=args.layers, hidden=tuple(args.hidden), repeats=args.repeats,
                       min_time=args.min_time)
    header = speed._header(cfg, ["nf"])
    header["command"] = " ".join(["python", "benchmarks/mixed_precision.py", *args.argv])
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    header["amx_bf16"] = "amx_bf16" in flags
    header["avx512_bf16"] = "avx512_bf16" in flags
    header["gpus"] = [g.name for g in tf.config.list_physical_devices("GPU")]
    rng = np.random.default_rng(0)
    results = []
    start = time.perf_counter()
    cases = [(flow, d, batch) for d in args.features for batch in args.batches
             for flow in args.flows if flow not in IMAGE_FLOWS]
    cases += [(flow, int(np.prod(IMAGE_FLOWS[flow]["image_shape"])), args.image_batch)
              for flow in args.flows if flow in IMAGE_FLOWS]
    for flow, d, batch in cases:
        x = tf.constant(rng.standard_normal((batch, d)).astype(np.float32))
        built = _calls(flow, d, batch, cfg, x)
        rounds = {}
        for column, calls in built.items():
            for metric in METRICS:
                prepared = speed._prepare(calls[metric], batch, cfg, sync=speed._tf_sync,
                                          compiled=True)
                rounds[column, metric] = (calls[metric], prepared)
        best = {key: math.inf for key in rounds}
        for _ in range(cfg.repeats):
            for key, (fn, iters) in rounds.items():
                if not isinstance(iters, speed.Timing):
                    best[key] = min(best[key], speed._round(fn, iters, speed._tf_sync))
        for (column, metric), (_, iters) in rounds.items():
            rate = (iters.rate if isinstance(iters, speed.Timing)
                    else batch / best[column, metric])
            results.append({"features": d, "batch": batch, "flow": flow,
                            "metric": metric, "column": column, "rate": rate})
            print(f"[{time.perf_counter() - start:6.1f}s] D={d} batch={batch} {flow} "
                  f"{metric:<8} {column:<13} {speed._fmt(rate):>10} samples/s",
                  flush=True)
    return {"header": header, "config": dataclasses.asdict(cfg), "results": results}


def render(payload: dict[str, Any]) -> str:
    h = payload["header"]
    cfg = payload["config"]
    columns = [m[0] for m in MODES]
    lines = ["# Mixed precision (bfloat16 networks) against float32", "",
             f"- date: {h['date']}",
             f"- machine: {h['platform']}; CPU: {h['cpu']}; cores: {h['cores']}; AMX bf16: "
             f"{'yes' if h['amx_bf16'] else 'no'}; AVX-512 bf16: "
             f"{'yes' if h['avx512_bf16'] else 'no'}; GPUs: {h['gpus'] or 'none'}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in h["versions"].items()),
             f"- command: `{h['command']}`",
             f"- configuration: {cfg['layers']} layers, conditioners "
             f"{' x '.join(map(str, cfg['hidden']))} ReLU, Adam({cfg['lr']:g}); train = one "
             "Keras `train_step` on a fixed batch; best of "
             f"{cfg['repeats']} round-robin rounds of >= {cfg['min_time']:g} s; samples/s.",
             "- bf16 = `nf.flows.build(..., dtype=\"mixed_bfloat16\")`: network matmuls in "
             "bfloat16, variables, transformers and log-dets in float32.",
             "- image flows (" + ", ".join(IMAGE_FLOWS) + "): MNIST-shaped rows (D = 784), "
             "the sizes of `experiments/mnist_flows.py`.", "",
             "| D | batch | flow | metric | " + " | ".join(columns)
             + " | bf16/f32 XLA | bf16/f32 graph | best bf16 / best f32 |",
             "|---:|---:|---|---|" + "---:|" * (len(columns) + 3)]
    index = {(r["features"], r["batch"], r["flow"], r["metric"], r["column"]): r["rate"]
             for r in payload["results"]}
    keys = sorted({k[:4] for k in index}, key=lambda k: (k[0], k[1], k[2], METRICS.index(k[3])))
    for key in keys:
        rates = [index.get((*key, c)) for c in columns]
        ratios = [speed._ratio(rates[1], rates[0]), speed._ratio(rates[3], rates[2]),
                  speed._ratio(max(rates[1], rates[3]), max(rates[0], rates[2]))]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | "
                     + " | ".join(speed._fmt(r) for r in rates) + " | "
                     + " | ".join("—" if r is None else f"{r:.2f}x" for r in ratios) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", nargs="+", default=["maf", "realnvp"])
    ap.add_argument("--features", nargs="+", type=int, default=[43])
    ap.add_argument("--batches", nargs="+", type=int, default=[256, 1024])
    ap.add_argument("--image-batch", type=int, default=64,
                    help="batch of the image flows (MNIST-shaped rows, D = 784)")
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--hidden", nargs="+", type=int, default=[512, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here "
                    "(and the raw results next to it as .json)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 layer of 2 x 8, D = 3")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.features, args.batches, args.layers, args.hidden = [3], [16], 1, [8, 8]
        args.image_batch = 2
        args.repeats, args.min_time = 1, 0.01
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    payload = run(args)
    text = render(payload)
    print(text, flush=True)
    if args.out:
        speed._write(args.out, text)
        speed._write(args.out.with_suffix(".json"), json.dumps(payload, indent=1) + "\n")
    return payload


if __name__ == "__main__":
    main()
