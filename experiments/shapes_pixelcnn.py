"""PixelCNN flow on the binary ``shapes`` images (20x20): test bits/dim and a sample grid.

Trains ``pixelcnn_flow`` (one PixelCNN layer with mixture-of-logistics CDF conditionals) on the
in-process ``shapes`` dataset (``nf.data.load("shapes")``: 10,000 / 1,000 / 1,000 images of
squares, circles, triangles, pluses and crosses, dequantised as (k + u)/2 in [0, 1)) with Keras
``compile``/``fit`` (XLA by default), keeps the weights of the epoch with the best validation
loss, and reports test bits/dim = nll / (D ln 2) + log2(2). Writes
``visualizations/shapes_pixelcnn_samples.png`` (real test shapes | samples as drawn, clipped to
[0, 1] | the same samples binarised at 0.5, i.e. the pixel level k = floor(2x)) and
``experiments/results/shapes_pixelcnn.json``. Sampling costs D = 400 PixelCNN passes (one
compiled loop).

Example (the run in experiments/README.md, about 8 minutes on 2 CPU cores)::

    PYTHONPATH=. .venv/bin/python experiments/shapes_pixelcnn.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from common import batched_log_prob

import normalizingflows as nf
from normalizingflows.data.preprocess import nats_to_bits_per_dim
from normalizingflows.training.state import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3,
                   help="initial Adam learning rate (cosine decay to 5%% of it)")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden-units", type=int, default=32)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--components", type=int, default=4)
    p.add_argument("--size", type=int, default=20)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=36)
    p.add_argument("--temperature", type=float, default=0.8,
                   help="temperature of the second sample panel (the first is at 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-jit", action="store_true", help="tf.function instead of XLA")
    p.add_argument("--out", type=Path, default=ROOT / "experiments/results/shapes_pixelcnn.json",
                   help="results JSON")
    p.add_argument("--png", type=Path,
                   default=ROOT / "visualizations/shapes_pixelcnn_samples.png",
                   help="sample grid")
    return p.parse_args(argv)


def bits_per_dim(log_prob: np.ndarray, dims: int) -> float:
    """Mean bits/dim of the binary pixels: -mean log p / (D ln 2) + log2(2)."""
    return float(nats_to_bits_per_dim(-float(np.mean(log_prob)), dims, levels=2))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.time()
    tf_keras.utils.set_random_seed(args.seed)
    data = nf.data.load("shapes", seed=args.seed, n_train=args.n_train, size=args.size)
    shape = tuple(data.info["image_shape"])
    dims = int(np.prod(shape))
    flow = nf.flows.build("pixelcnn_flow", dims, image_shape=shape, layers=args.layers,
                          hidden_units=args.hidden_units, blocks=args.blocks,
                          components=args.components, seed=args.seed)
    jit = not args.no_jit
    steps = args.epochs * -(-len(data.train) // args.batch_size)
    schedule = tf_keras.optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.05)
    flow.compile(tf_keras.optimizers.Adam(schedule), jit_compile=None if jit else False)
    # Keras restores the best epoch at the end of training, stopped early or not.
    best = tf_keras.callbacks.EarlyStopping(patience=args.epochs, restore_best_weights=True)
    epoch_bpd = []
    log_bpd = tf_keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epoch_bpd.append(
        {"epoch": e + 1, "train_bpd": float(nats_to_bits_per_dim(logs["loss"], dims, levels=2)),
         "val_bpd": float(nats_to_bits_per_dim(logs["val_loss"], dims, levels=2))}))
    t = time.time()
    history = flow.fit(data.train, batch_size=args.batch_size, epochs=args.epochs, verbose=2,
                       validation_data=(data.val,), shuffle=True, callbacks=[best, log_bpd])
    train_s = time.time() - t

    t = time.time()
    test_bpd = bits_per_dim(batched_log_prob(flow, data.test, jit=jit), dims)
    val_bpd = bits_per_dim(batched_log_prob(flow, data.val, jit=jit), dims)
    eval_s = time.time() - t

    t = time.time()
    sample = tf.function(lambda temperature: flow.sample(
        args.samples, seed=tf.constant([args.seed, 1]), temperature=temperature),
        jit_compile=jit)
    drawn = flow.as_images(sample(1.0)).numpy()
    cooled = flow.as_images(sample(args.temperature)).numpy()
    sample_s = time.time() - t
    real = data.test[:args.samples].reshape((-1,) + shape)
    # Pixel level k = floor(2x) of a sample x, clipped to {0, 1}: binarised at 0.5.
    fig = nf.plot.image_grid(
        [np.floor(2 * real), np.clip(drawn, 0.0, 1.0), drawn >= 0.5, cooled >= 0.5],
        titles=["test shapes (pixel levels)", "samples as drawn (clipped to [0, 1])",
                "the same samples binarised at 0.5",
                f"samples at temperature {args.temperature:g}, binarised"], columns=6)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)
    total_s = time.time() - start

    results = {
        "experiment": "shapes_pixelcnn",
        "command": "PYTHONPATH=. .venv/bin/python experiments/shapes_pixelcnn.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "dataset": {k: data.info[k] for k in ("name", "size", "sizes", "levels", "form",
                                              "classes", "seed")},
        "flow": "pixelcnn_flow",
        "flow_kwargs": {"image_shape": list(shape), "layers": args.layers,
                        "hidden_units": args.hidden_units, "blocks": args.blocks,
                        "components": args.components, "seed": args.seed},
        "parameters": int(sum(int(np.prod(v.shape)) for v in flow.trainable_variables)),
        "training": {"optimizer": f"Adam, cosine decay {args.lr:g} -> {0.05 * args.lr:g}",
                     "batch_size": args.batch_size,
                     "epochs": args.epochs, "jit_compile": jit,
                     "best_epoch": best.best_epoch + 1,
                     "loss": [float(v) for v in history.history["loss"]],
                     "val_loss": [float(v) for v in history.history["val_loss"]],
                     "per_epoch_bits_per_dim": epoch_bpd},
        "test_bits_per_dim": test_bpd,
        "val_bits_per_dim": val_bpd,
        "bits_per_dim_formula": "nll_nats / (D ln 2) + log2(2), D = 400",
        "samples": {"n": args.samples, "png": str(args.png.relative_to(ROOT)
                                                   if args.png.is_relative_to(ROOT)
                                                   else args.png),
                    "shown": "test shapes | samples at T=1 as drawn (clipped to [0, 1]) | "
                             "the same binarised at 0.5 | samples at T="
                             f"{args.temperature:g} binarised at 0.5",
                    # Sample values inside [0, 1), the data's range.
                    "fraction_in_0_1": float(np.mean((drawn >= 0) & (drawn < 1))),
                    "mean_on_pixels_samples": float(np.mean(drawn >= 0.5)),
                    "mean_on_pixels_samples_cooled": float(np.mean(cooled >= 0.5)),
                    "mean_on_pixels_test": float(np.floor(2 * data.test).mean())},
        "seconds": {"train": round(train_s, 1), "evaluate": round(eval_s, 1),
                    "sample": round(sample_s, 1), "total": round(total_s, 1)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "tensorflow": tf.__version__, "tfp": tfp.__version__,
                    "gpus": len(tf.config.list_physical_devices("GPU"))},
    }
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"test bits/dim {test_bpd:.4f} (val {val_bpd:.4f}); train {train_s:.0f} s, "
          f"sample {sample_s:.0f} s, total {total_s:.0f} s")
    print(f"wrote {args.out} and {args.png}")
    return results


if __name__ == "__main__":
    main()
