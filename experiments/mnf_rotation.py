"""mnf_rotation: MNF LeNet-5 against a plain LeNet-5 on MNIST, and on rotated digits.

One command (from the repository root):

    PYTHONPATH=. .venv/bin/python experiments/mnf_rotation.py

Both models (``nf.layers.MNFLeNet`` and ``nf.layers.LeNet``: conv 20 5x5 - pool - conv 50 5x5 -
pool - dense 500 - dense 10) train with Keras ``fit`` (Adam, batch 100) on the MNIST data of
``--data-dir``: ``nf.data.load("mnist", form="dequantized", flatten=False)``, which on this
project's shared data is the partial layout (4,167 training / 833 validation digits, the
10,000 test digits). MNF minimises the negative ELBO per example (cross-entropy plus the
layers' KL bound divided by the training-set size; ``--warmup E`` ramps the KL in over ``E``
epochs with ``nf.layers.KLAnnealing``, off by default). Each model is evaluated twice: with
the weights of its last epoch and with those of its epoch with the best validation accuracy;
``--select`` picks the protocol of the headline numbers and of the figure (default ``best``).

Several seeds (``--seeds 0,1,2,3,4``) repeat the comparison per seed (data split,
initialisation, posterior draws; no figure) and write per-seed metrics of both protocols, their
means and standard deviations and the per-seed MNF-minus-LeNet differences to
``experiments/results/mnf_rotation_seeds.json``, and print them as a markdown table.

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


class BestWeights(tf_keras.callbacks.Callback):
    """Keeps a copy of the weights of the epoch with the highest validation accuracy (the
    first such epoch on ties), without restoring them: the caller evaluates the last epoch
    first and then ``model.set_weights(callback.weights)``."""

    def __init__(self, monitor: str = "val_accuracy") -> None:
        super().__init__()
        self.monitor = monitor
        self.best = -np.inf
        self.epoch = 0
        self.weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.epoch = float(value), epoch + 1
            self.weights = self.model.get_weights()


def train(model: tf_keras.Model, data: nf.data.Splits, *, epochs: int, lr: float,
          batch_size: int, warmup: int, seed: int, verbose: int) -> dict:
    """Keras ``fit`` with Adam; MNF with a KL warm-up. The model ends with its last epoch's
    weights; ``best_weights`` are those of the epoch with the best validation accuracy.
    Returns the history, that epoch, its weights and the seconds."""
    tf_keras.utils.set_random_seed(seed)
    model.compile(tf_keras.optimizers.Adam(lr),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    best = BestWeights("val_accuracy")
    callbacks = [best] + ([KLAnnealing(warmup)] if isinstance(model, MNFLeNet) else [])
    start = time.time()
    history = model.fit(data.train, data.labels[0], batch_size=batch_size, epochs=epochs,
                        validation_data=(data.val, data.labels[1]), callbacks=callbacks,
                        verbose=verbose)
    return {"history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
            "best_epoch": best.epoch, "best_weights": best.weights,
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
              # above the accuracy: overconfident on average; below: underconfident
              "test_mean_confidence": float(probs.max(axis=-1).mean()),
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
                        help="the protocol of the headline numbers and the figure: each "
                             "model's epoch with the best validation accuracy, or its last "
                             "epoch (both are always evaluated and recorded)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data split, the initialisation and the draws")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds: repeat the whole comparison once per seed "
                             "and write per-seed metrics of both protocols with their means, "
                             "standard deviations and MNF-minus-LeNet differences to --out "
                             "(default experiments/results/mnf_rotation_seeds.json); no figure")
    parser.add_argument("--out", default=None,
                        help="results JSON (default experiments/results/mnf_rotation.json)")
    parser.add_argument("--figure", default=str(ROOT / "visualizations" / "mnf_rotation.png"))
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    chosen = args.models.split(",")
    for name in chosen:
        if name not in ("lenet", "mnf_lenet"):
            raise SystemExit(f"--models: unknown model {name!r}; expected lenet and/or mnf_lenet")
    results_dir = ROOT / "experiments" / "results"
    if args.seeds is None:
        out = Path(args.out or results_dir / "mnf_rotation.json")
        results = run(args, args.seed, chosen, figure=Path(args.figure))
    else:
        seeds = [int(seed) for seed in args.seeds.split(",")]
        out = Path(args.out or results_dir / "mnf_rotation_seeds.json")
        results = run_seeds(args, seeds, chosen)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out} in {results['wall_seconds']:.0f} s")
    return results


SCALARS = ("test_accuracy", "test_ece_15_bins", "test_nll", "rotated_entropy_60_180")


def run(args: argparse.Namespace, seed: int, chosen: list[str],
        figure: Path | None = None) -> dict:
    """One comparison: train the chosen models with ``seed``, evaluate each at its last and at
    its best-validation epoch, and (both models, ``figure`` given) draw the rotated 9 with the
    ``--select`` protocol's weights."""
    wall = time.time()
    data = nf.data.load("mnist", data_dir=args.data_dir, form="dequantized", flatten=False,
                        seed=seed)
    if args.test_subset:
        data = data._replace(test=data.test[:args.test_subset],
                             labels=(*data.labels[:2], data.labels[2][:args.test_subset]))
    train_size = len(data.train)
    print(f"seed {seed}. MNIST: {train_size} training, {len(data.val)} validation, "
          f"{len(data.test)} test digits (source {data.info.get('source')})", flush=True)
    builders = {
        "lenet": lambda: LeNet(seed=seed),
        "mnf_lenet": lambda: MNFLeNet(train_size=train_size, seed=seed, flow=args.flow,
                                      flow_layers=args.flow_layers,
                                      aux_flow_layers=args.aux_flow_layers,
                                      flow_hidden_units=(args.flow_hidden,),
                                      prior_stddev=args.prior_stddev,
                                      init_log_var=args.init_log_var),
    }
    results: dict = {"data": {"train": train_size, "val": len(data.val), "test": len(data.test),
                              "source": data.info.get("source"),
                              "note": data.info.get("split_note")},
                     "config": {**vars(args), "seed": seed}, "select": args.select,
                     "models": {}}
    models = {}
    for name in chosen:
        model = models[name] = builders[name]()
        epochs = args.epochs if name == "mnf_lenet" else (args.lenet_epochs or args.epochs)
        print(f"== {name}: {nf.diagnostics.count_parameters(model):,} trainable parameters, "
              f"{epochs} epochs", flush=True)
        fit = train(model, data, epochs=epochs, lr=args.lr, batch_size=args.batch_size,
                    warmup=args.warmup, seed=seed, verbose=args.verbose)
        stochastic = name == "mnf_lenet"
        protocols = {}
        last_weights = model.get_weights()
        for protocol in ("last", "best"):  # the model holds its last epoch's weights first
            if protocol == "best":
                model.set_weights(fit["best_weights"])
            kept = fit["best_epoch"] if protocol == "best" else epochs
            metrics = evaluate(model, data, samples=args.test_samples if stochastic else 1,
                               rotated=args.rotated,
                               rotated_samples=args.rotated_samples if stochastic else 1,
                               seed=seed)
            protocols[protocol] = {"kept_epoch": kept,
                                   "val_accuracy": fit["history"]["val_accuracy"][kept - 1],
                                   **metrics}
            if stochastic:
                protocols[protocol]["kl_bound_nats"] = float(model.kl_divergence(seed))
        results["models"][name] = {
            "trainable_parameters": nf.diagnostics.count_parameters(model), "epochs": epochs,
            **protocols[args.select], "protocols": protocols,
            "train_seconds": fit["train_seconds"], "history": fit["history"]}
        if args.select == "last":  # the figure below uses the last epoch's weights
            model.set_weights(last_weights)
        print(json.dumps({protocol: {k: v for k, v in m.items() if k != "rotated_per_angle"}
                          for protocol, m in protocols.items()}), flush=True)

    if figure is not None and len(models) == 2:
        nines = np.flatnonzero(data.labels[2] == 9)
        digit = data.test[nines[0]]
        rotated = np.stack([rotate_images(digit[None], a)[0] for a in VIOLIN_ANGLES])
        mnf_probs = np.swapaxes(models["mnf_lenet"].predict_samples(
            rotated, samples=args.violin_samples, seed=seed), 0, 1)  # [angles, draws, 10]
        lenet_probs = models["lenet"].predict_proba(rotated, samples=1)
        figure.parent.mkdir(parents=True, exist_ok=True)
        plot_rotation(digit, mnf_probs, lenet_probs, figure, label=9)
        results["violin"] = {"test_index": int(nines[0]), "angles": list(VIOLIN_ANGLES),
                             "mnf_mean_probs": mnf_probs.mean(axis=1).round(4).tolist(),
                             "mnf_std_probs": mnf_probs.std(axis=1).round(4).tolist(),
                             "lenet_probs": lenet_probs.round(4).tolist()}
    elif figure is not None:
        print("one model only: no figure")
    results["wall_seconds"] = time.time() - wall
    summary = {name: {k: m[k] for k in (*SCALARS, "kept_epoch", "trainable_parameters")}
               for name, m in results["models"].items()}
    print(json.dumps(summary, indent=2), flush=True)
    return results


def summarize_seeds(per_seed: dict[int, dict]) -> dict:
    """Mean and sample standard deviation over seeds of each model's scalar metrics per
    protocol and, with both models, of the per-seed MNF-minus-LeNet differences, with the
    number of seeds in which MNF's ECE is the lower."""
    summary: dict = {}
    first = next(iter(per_seed.values()))
    for protocol in ("best", "last"):
        block: dict = {}
        for name in first:
            block[name] = {k: _mean_sd([r[name][protocol][k] for r in per_seed.values()])
                           for k in (*SCALARS, "kept_epoch")}
        if {"lenet", "mnf_lenet"} <= set(first):
            diffs = {k: [r["mnf_lenet"][protocol][k] - r["lenet"][protocol][k]
                         for r in per_seed.values()] for k in SCALARS}
            block["mnf_minus_lenet"] = {k: _mean_sd(v) for k, v in diffs.items()}
            block["seeds_mnf_ece_lower"] = int(sum(d < 0 for d in diffs["test_ece_15_bins"]))
            block["seeds"] = len(per_seed)
        summary[protocol] = block
    return summary


def seeds_table(summary: dict) -> str:
    """Markdown table of :func:`summarize_seeds`: mean +/- standard deviation over seeds."""
    names = {"lenet": "LeNet", "mnf_lenet": "MNF LeNet", "mnf_minus_lenet": "MNF - LeNet"}
    lines = ["| protocol | model | test accuracy (%) | test ECE | test NLL | "
             "entropy 60-180 deg (nats) | epoch kept (mean) |", "|---|---|---|---|---|---|---|"]
    for protocol, block in summary.items():
        for name, label in names.items():
            if name not in block:
                continue
            m = block[name]
            cells = [f"{100 * m['test_accuracy']['mean']:.2f} +/- "
                     f"{100 * m['test_accuracy']['sd']:.2f}"]
            cells += [f"{m[k]['mean']:.4f} +/- {m[k]['sd']:.4f}"
                      for k in ("test_ece_15_bins", "test_nll", "rotated_entropy_60_180")]
            cells.append(f"{m['kept_epoch']['mean']:.1f}" if "kept_epoch" in m else
                         f"MNF lower ECE in {block['seeds_mnf_ece_lower']} of "
                         f"{block['seeds']} seeds")
            lines.append(f"| {protocol} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "sd": sd, "values": values.tolist()}


def run_seeds(args: argparse.Namespace, seeds: list[int], chosen: list[str]) -> dict:
    """The comparison once per seed (no figure), and its summary over seeds."""
    wall = time.time()
    per_seed = {}
    for seed in seeds:
        result = run(args, seed, chosen)
        per_seed[seed] = {name: {protocol: {k: m["protocols"][protocol][k]
                                            for k in (*SCALARS, "kept_epoch")}
                                 for protocol in ("best", "last")}
                          for name, m in result["models"].items()}
        data = result["data"]
    summary = summarize_seeds(per_seed)
    print(seeds_table(summary), flush=True)
    return {"data": data, "config": vars(args), "seeds": seeds,
            "per_seed": {str(k): v for k, v in per_seed.items()}, "summary": summary,
            "wall_seconds": time.time() - wall}


if __name__ == "__main__":
    main()
