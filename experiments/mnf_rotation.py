"""mnf_rotation: MNF LeNet-5 against a plain LeNet-5 on MNIST, and on rotated digits.

One command (from the repository root):

    PYTHONPATH=. .venv/bin/python experiments/mnf_rotation.py

Both models (``nf.layers.MNFLeNet`` and ``nf.layers.LeNet``: conv 20 5x5 - pool - conv 50 5x5 -
pool - dense 500 - dense 10) train with Keras ``fit`` (Adam, batch 100) on the MNIST data of
``--data-dir``: ``nf.data.load("mnist", form="dequantized", flatten=False)``, which on this
project's shared data is the partial layout (4,167 training / 833 validation digits, the
10,000 test digits). MNF minimises the negative ELBO per example (cross-entropy plus the
layers' KL bound divided by the training-set size; ``--warmup E`` ramps the KL in over ``E``
epochs with ``nf.layers.KLAnnealing``, off by default). Each model keeps the weights of its
epoch with the best validation accuracy (``--select last``: the last epoch).

Reported (``experiments/results/mnf_rotation.json``): test accuracy and expected calibration
error (15 bins) on the 10,000 test digits (MNF: the mean of ``--test-samples`` posterior draws),
the mean predictive entropy of the first ``--rotated`` test digits rotated by 60, 80, ..., 180
degrees (and per angle from 0 to 180), trainable parameter counts and timings. The figure
``visualizations/mnf_rotation.png`` rotates one test 9 by 0, 20, ..., 180 degrees: violins of
the class probabilities of ``--violin-samples`` posterior draws of MNF per angle, and the
softmax of the plain LeNet.

Rotation is bilinear, about the image centre, zeros outside (``rotate_images``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

import normalizingflows as nf  # noqa: E402
from normalizingflows.layers import (  # noqa: E402
    KLAnnealing,
    LeNet,
    MNFLeNet,
    accuracy,
    expected_calibration_error,
    predictive_entropy,
)

__all__ = ["rotate_images", "train", "evaluate", "plot_rotation", "main"]

VIOLIN_ANGLES = tuple(range(0, 181, 20))
ENTROPY_ANGLES = tuple(range(60, 181, 20))


def rotate_images(images: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate images ``[N, H, W, C]`` counter-clockwise by ``degrees`` about their centre
    (bilinear interpolation, zeros outside).

    Example:
        >>> img = np.zeros((1, 3, 3, 1)); img[0, 0, 1, 0] = 1.0   # top middle
        >>> rotate_images(img, 90)[0, :, :, 0].round(6).tolist()   # -> middle left
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    theta = np.deg2rad(degrees)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dy, dx = rows - cy, cols - cx
    # The source of each output pixel: the inverse rotation (rows grow downwards).
    sx = np.cos(theta) * dx - np.sin(theta) * dy + cx
    sy = np.sin(theta) * dx + np.cos(theta) * dy + cy
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    out = np.zeros_like(images, dtype=np.float64)
    for oy, ox, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + oy, x0 + ox
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vals = images[:, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1), :]
        out += vals * (weight * inside)[None, :, :, None]
    return out.astype(images.dtype)


def train(model: tf_keras.Model, data: nf.data.Splits, *, epochs: int, lr: float,
          batch_size: int, warmup: int, seed: int, verbose: int, select: str) -> dict:
    """Keras ``fit`` with Adam; MNF with a KL warm-up; with ``select="best"`` the weights of
    the epoch with the best validation accuracy. Returns the history, the epoch kept and the
    seconds."""
    tf_keras.utils.set_random_seed(seed)
    model.compile(tf_keras.optimizers.Adam(lr),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    callbacks = [KLAnnealing(warmup)] if isinstance(model, MNFLeNet) else []
    # Keras restores the best epoch at the end of training, stopped early or not.
    best = tf_keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=epochs,
                                            restore_best_weights=True)
    if select == "best":
        callbacks.append(best)
    start = time.time()
    history = model.fit(data.train, data.labels[0], batch_size=batch_size, epochs=epochs,
                        validation_data=(data.val, data.labels[1]), callbacks=callbacks,
                        verbose=verbose)
    return {"history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
            "kept_epoch": best.best_epoch + 1 if select == "best" else epochs,
            "train_seconds": time.time() - start}


def evaluate(model: tf_keras.Model, data: nf.data.Splits, *, samples: int, rotated: int,
             rotated_samples: int, seed: int) -> dict:
    """Test accuracy, ECE, NLL and the mean predictive entropy on rotated test digits."""
    start = time.time()
    test_y = data.labels[2]
    probs = model.predict_proba(data.test, samples=samples, seed=seed)
    nll = float(-np.mean(np.log(np.maximum(probs[np.arange(len(test_y)), test_y], 1e-12))))
    result = {"test_accuracy": accuracy(probs, test_y),
              "test_ece_15_bins": expected_calibration_error(probs, test_y, bins=15),
              "test_nll": nll, "test_mean_entropy": float(predictive_entropy(probs).mean()),
              "test_samples": samples}
    digits = data.test[:rotated]
    per_angle = {}
    for angle in sorted(set(VIOLIN_ANGLES) | set(ENTROPY_ANGLES)):
        p = model.predict_proba(rotate_images(digits, angle), samples=rotated_samples,
                                seed=seed + angle)
        per_angle[str(angle)] = {"mean_entropy": float(predictive_entropy(p).mean()),
                                 "accuracy": accuracy(p, test_y[:rotated])}
    result["rotated_entropy_60_180"] = float(np.mean(
        [per_angle[str(a)]["mean_entropy"] for a in ENTROPY_ANGLES]))
    result["rotated_per_angle"] = per_angle
    result["eval_seconds"] = time.time() - start
    return result


def plot_rotation(digit: np.ndarray, mnf_probs: np.ndarray, lenet_probs: np.ndarray,
                  path: Path, label: int) -> None:
    """Thumbnails of the rotated digit; MNF violins and LeNet softmax per angle."""
    k = len(VIOLIN_ANGLES)
    classes = np.arange(mnf_probs.shape[-1])
    fig, axes = plt.subplots(3, k, figsize=(2.0 * k, 6.4),
                             gridspec_kw={"height_ratios": [1.0, 1.6, 1.6]})
    colors = plt.cm.tab10(classes)
    for j, angle in enumerate(VIOLIN_ANGLES):
        ax = axes[0, j]
        ax.imshow(rotate_images(digit[None], angle)[0, :, :, 0], cmap="gray_r")
        ax.set_title(f"{angle}°", fontsize=10)
        ax.axis("off")
        ax = axes[1, j]
        parts = ax.violinplot([mnf_probs[j, :, c] for c in classes], positions=classes,
                              widths=0.9, showextrema=False, showmedians=True)
        for body, color in zip(parts["bodies"], colors, strict=True):
            body.set_facecolor(color)
            body.set_alpha(0.8)
        ax = axes[2, j]
        ax.bar(classes, lenet_probs[j], color=colors, width=0.8)
        for row in (1, 2):
            axes[row, j].set_ylim(-0.02, 1.02)
            axes[row, j].set_xticks(classes)
            axes[row, j].tick_params(labelsize=7)
            if j:
                axes[row, j].set_yticklabels([])
    axes[1, 0].set_ylabel("MNF LeNet\np(class), posterior draws", fontsize=9)
    axes[2, 0].set_ylabel("LeNet\nsoftmax", fontsize=9)
    fig.suptitle(f"Test digit {label} rotated counter-clockwise: predicted class probabilities "
                 f"({mnf_probs.shape[1]} MNF posterior draws per angle)", fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each model")
    parser.add_argument("--lenet-epochs", type=int, default=None,
                        help="epochs of the plain LeNet (default: --epochs)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="KL warm-up epochs of MNF (KLAnnealing; 0: full KL throughout)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--flow", default="realnvp", choices=["realnvp", "maf"])
    parser.add_argument("--flow-layers", type=int, default=2)
    parser.add_argument("--aux-flow-layers", type=int, default=2)
    parser.add_argument("--flow-hidden", type=int, default=50)
    parser.add_argument("--prior-stddev", type=float, default=1.0)
    parser.add_argument("--init-log-var", type=float, default=-6.0,
                        help="initial log-variance of the weights and of z_0")
    parser.add_argument("--test-samples", type=int, default=10,
                        help="posterior draws per test digit (MNF)")
    parser.add_argument("--test-subset", type=int, default=None,
                        help="evaluate on the first N test digits only (quick checks)")
    parser.add_argument("--models", default="lenet,mnf_lenet",
                        help="comma-separated subset of lenet,mnf_lenet")
    parser.add_argument("--rotated", type=int, default=300,
                        help="first test digits rotated for the entropy")
    parser.add_argument("--rotated-samples", type=int, default=10)
    parser.add_argument("--violin-samples", type=int, default=500)
    parser.add_argument("--select", choices=["best", "last"], default="best",
                        help="keep each model's epoch with the best validation accuracy, or the "
                             "last epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" /
                                             "mnf_rotation.json"))
    parser.add_argument("--figure", default=str(ROOT / "visualizations" / "mnf_rotation.png"))
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    wall = time.time()

    data = nf.data.load("mnist", data_dir=args.data_dir, form="dequantized", flatten=False,
                        seed=args.seed)
    if args.test_subset:
        data = data._replace(test=data.test[:args.test_subset],
                             labels=(*data.labels[:2], data.labels[2][:args.test_subset]))
    train_size = len(data.train)
    print(f"MNIST: {train_size} training, {len(data.val)} validation, {len(data.test)} test "
          f"digits (source {data.info.get('source')})", flush=True)
    models = {
        "lenet": LeNet(seed=args.seed),
        "mnf_lenet": MNFLeNet(train_size=train_size, seed=args.seed, flow=args.flow,
                              flow_layers=args.flow_layers,
                              aux_flow_layers=args.aux_flow_layers,
                              flow_hidden_units=(args.flow_hidden,),
                              prior_stddev=args.prior_stddev, init_log_var=args.init_log_var),
    }
    results: dict = {"data": {"train": train_size, "val": len(data.val), "test": len(data.test),
                              "source": data.info.get("source"),
                              "note": data.info.get("split_note")},
                     "config": vars(args), "models": {}}
    chosen = args.models.split(",")
    for name in chosen:
        if name not in models:
            raise SystemExit(f"--models: unknown model {name!r}; expected lenet and/or mnf_lenet")
    models = {name: model for name, model in models.items() if name in chosen}
    for name, model in models.items():
        epochs = args.epochs if name == "mnf_lenet" else (args.lenet_epochs or args.epochs)
        print(f"== {name}: {nf.diagnostics.count_parameters(model):,} trainable parameters, "
              f"{epochs} epochs", flush=True)
        fit = train(model, data, epochs=epochs, lr=args.lr, batch_size=args.batch_size,
                    warmup=args.warmup, seed=args.seed, verbose=args.verbose,
                    select=args.select)
        stochastic = name == "mnf_lenet"
        metrics = evaluate(model, data, samples=args.test_samples if stochastic else 1,
                           rotated=args.rotated,
                           rotated_samples=args.rotated_samples if stochastic else 1,
                           seed=args.seed)
        results["models"][name] = {
            "trainable_parameters": nf.diagnostics.count_parameters(model), "epochs": epochs,
            "kept_epoch": fit["kept_epoch"],
            "val_accuracy": fit["history"]["val_accuracy"][fit["kept_epoch"] - 1], **metrics,
            "train_seconds": fit["train_seconds"], "history": fit["history"]}
        if stochastic:
            results["models"][name]["kl_bound_nats"] = float(model.kl_divergence(args.seed))
        print(json.dumps({k: v for k, v in results["models"][name].items()
                          if k not in ("history", "rotated_per_angle")}), flush=True)

    figure = Path(args.figure)
    if len(models) == 2:
        nines = np.flatnonzero(data.labels[2] == 9)
        digit = data.test[nines[0]]
        rotated = np.stack([rotate_images(digit[None], a)[0] for a in VIOLIN_ANGLES])
        mnf_probs = np.swapaxes(models["mnf_lenet"].predict_samples(
            rotated, samples=args.violin_samples, seed=args.seed), 0, 1)  # [angles, draws, 10]
        lenet_probs = models["lenet"].predict_proba(rotated, samples=1)
        figure.parent.mkdir(parents=True, exist_ok=True)
        plot_rotation(digit, mnf_probs, lenet_probs, figure, label=9)
        results["violin"] = {"test_index": int(nines[0]), "angles": list(VIOLIN_ANGLES),
                             "mnf_mean_probs": mnf_probs.mean(axis=1).round(4).tolist(),
                             "mnf_std_probs": mnf_probs.std(axis=1).round(4).tolist(),
                             "lenet_probs": lenet_probs.round(4).tolist()}
    else:
        print("one model only: no figure")
    results["wall_seconds"] = time.time() - wall
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out)
    summary = {name: {k: m[k] for k in ("test_accuracy", "test_ece_15_bins",
                                         "rotated_entropy_60_180", "trainable_parameters")}
               for name, m in results["models"].items()}
    print(json.dumps(summary, indent=2))
    print(f"wrote {out} (and the figure {figure} when both models ran) in "
          f"{results['wall_seconds']:.0f} s")
    return results


if __name__ == "__main__":
    main()
