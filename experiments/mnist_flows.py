"""MNIST with image flows (Glow, multiscale RealNVP) and MAF on flattened pixels.

Trains one flow on the MNIST training digits available (``nf.data.load("mnist")``: the full
60,000 when the IDX files are present, else the 5,000-digit CSV split 4,167 train / 833
validation), dequantised and logit-transformed (lambda = 1e-6, as in the MAF paper), with Keras
``fit`` and early stopping on the validation loss; reports test bits/dim on the 10,000 test
digits and writes a sample grid next to real test digits. ``--conditional`` trains a
class-conditional flow (one-hot labels as context) and draws rows of the classes 2, 4, 7 and 8;
its bits/dim is reported both given the true label and for the marginal
log p(x) = log sum_y p(x | y) / 10 (the MAF paper's convention).

Example (the runs in experiments/README.md)::

    PYTHONPATH=. .venv/bin/python experiments/mnist_flows.py --flow glow --max-minutes 12
    PYTHONPATH=. .venv/bin/python experiments/mnist_flows.py --flow glow --conditional
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import tf_keras

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from common import (  # noqa: E402
    TimeLimit,
    add_temperature_argument,
    batched_log_prob,
    figure_temperatures,
)

import normalizingflows as nf  # noqa: E402
from normalizingflows.data.preprocess import (  # noqa: E402
    LAMBDA_MNIST,
    bits_per_dim,
    inverse_logit_transform,
)

SHAPE = (28, 28, 1)
CLASSES_SHOWN = (2, 4, 7, 8)
DEFAULTS = {  # per flow: constructor keywords
    "glow": {"layers": 8, "levels": 2, "hidden_units": 64, "blocks": 1},
    "realnvp_image": {"layers": 2, "levels": 2, "hidden_units": 32, "blocks": 1},
    "maf": {"layers": 5, "hidden_units": 1024},
    "realnvp": {"layers": 5, "hidden_units": 1024},
}
# per flow: (learning rate, batch size). The MLP flows on 784 pixels diverged at 1e-3 (MAF:
# 12.9 bits/dim); the MAF paper trains them with batches of 100.
OPTIMISATION = {"glow": (1e-3, 64), "realnvp_image": (1e-3, 64), "maf": (1e-4, 100),
                "realnvp": (1e-4, 100)}


class BitsPerDim(tf_keras.callbacks.Callback):
    """Adds ``bpd`` and ``val_bpd`` to the logs: the loss (nats, logit space) as bits/dim of
    the 256-level pixels, using the mean logit log-Jacobian of each split."""

    def __init__(self, ldj_train: float, ldj_val: float, dims: int) -> None:
        super().__init__()
        self.ldj = {"loss": ldj_train, "val_loss": ldj_val}
        self.dims = dims

    def on_epoch_end(self, epoch, logs=None):
        for key, out in (("loss", "bpd"), ("val_loss", "val_bpd")):
            if logs is not None and key in logs:
                nll_x = logs[key] - self.ldj[key]
                logs[out] = nll_x / (self.dims * math.log(2)) + 8.0
        print(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items()),
              flush=True)


def mean_logit_ldj(y: np.ndarray, lam: float = LAMBDA_MNIST) -> float:
    """Mean over rows of sum_i log|dy_i/dx_i| for logit-space rows ``y``."""
    x = inverse_logit_transform(y.astype(np.float64), lam)
    return float(nf.data.preprocess.logit_log_det_jacobian(x, lam).mean())


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs: int, max_minutes: float,
                           batch_size: int | None = None, lr: float | None = None) -> None:
    """The options every image experiment shares: training length and the flow's size."""
    per_flow = "default: per flow (OPTIMISATION)"
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=per_flow if batch_size is None else None)
    parser.add_argument("--lr", type=float, default=lr, help=per_flow if lr is None else None)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--global-clipnorm", type=float,
                        help="clip the gradients to this global norm (Adam's global_clipnorm; "
                        "default: none)")
    parser.add_argument("--augment", action="store_true",
                        help="train on nf.data.images.augmented_dataset: fresh dequantisation "
                        "noise every epoch instead of one fixed draw (CelebA: and random "
                        "mirrors instead of the fixed mirrored copies)")
    parser.add_argument("--max-minutes", type=float, default=max_minutes)
    parser.add_argument("--warm-start", metavar="TAG",
                        help="start from the flow an earlier run with tag TAG (and otherwise the "
                        "same flow options) saved under --out, with a fresh optimizer; the "
                        "result records that run's epochs and seconds")
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="mixed_bfloat16: the flow's networks in bfloat16 (log-dets float32)")
    parser.add_argument("--no-jit", dest="jit", action="store_false",
                        help="train and evaluate under a plain tf.function, not XLA (faster for "
                        "conv flows on CPUs, and with mixed_bfloat16 where oneDNN has AMX)")
    for key in ("layers", "levels", "hidden-units", "blocks"):
        parser.add_argument(f"--{key}", type=int, help="default: per flow (DEFAULTS)")
    parser.add_argument("--coupling-scale", choices=nf.bijectors.image.SCALES,
                        help="glow: the couplings' scale (default: the constructor's)")
    parser.add_argument("--no-split-prior", dest="split_prior", action="store_const",
                        const=False, help="glow: standard normal factored-out halves (default: "
                        "the learned split prior)")
    parser.add_argument("--results-dir", default=str(ROOT / "experiments" / "results"))
    parser.add_argument("--figures-dir", default=str(ROOT / "visualizations"))


def flow_kwargs(defaults: dict, args: argparse.Namespace) -> dict:
    """The flow's constructor keywords: ``defaults`` with the size options given overriding."""
    kwargs = dict(defaults)
    for key in ("layers", "levels", "hidden_units", "blocks", "coupling_scale", "split_prior"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    return kwargs


def constructor_kwargs(flow: nf.flows.Flow) -> dict:
    """The flow's constructor keywords as its config records them (the defaults whose value
    changed once included, e.g. Glow's ``coupling_scale``), less seed and dtype (recorded
    apart)."""
    return {k: v for k, v in flow.get_config()["kwargs"].items() if k not in ("seed", "dtype")}


def run_record(history: tf_keras.callbacks.History | None, train_seconds: float | None,
               bpd: np.ndarray, args: argparse.Namespace) -> dict:
    """The training and test figures every image experiment records (``history`` ``None``:
    a saved flow evaluated without training, whose training figures are ``None``)."""
    summary = nf.data.images.bits_per_dim_summary(bpd, "test_bpd")
    training = {"epochs_run": None, "best_epoch": None, "train_seconds": None,
                "seconds_per_epoch": None, "val_bpd_per_epoch": None}
    if history is not None:
        epochs = len(history.history["loss"])
        training = {
            "epochs_run": epochs, "best_epoch": int(np.argmin(history.history["val_loss"])) + 1,
            "train_seconds": round(train_seconds, 1),
            "seconds_per_epoch": round(train_seconds / epochs, 1),
            "val_bpd_per_epoch": [round(v, 4) for v in history.history.get("val_bpd", [])]}
    return {
        **training,
        "test_bpd": round(summary["test_bpd"], 4),
        "test_bpd_stderr": round(summary["test_bpd_se"], 4),
        # One unusual image can dominate the mean of an overfitted flow: the median and worst.
        "test_bpd_median": round(summary["test_bpd_median"], 4),
        "test_bpd_worst": summary["test_bpd_worst"],
        "test_bpd_worst_index": summary["test_bpd_worst_index"],
        "batch_size": args.batch_size, "lr": args.lr, "global_clipnorm": args.global_clipnorm,
        "seed": args.seed, "dtype": args.dtype,
        "jit_compile": args.jit,
        "machine": "2-core CPU (this project's CI-like machine)", "date": time.strftime("%Y-%m-%d"),
    }


def saved_flow(path: Path, flow: nf.flows.Flow) -> nf.flows.Flow:
    """The flow saved at ``path``, refused unless its config is ``flow``'s (the flow these
    options build)."""
    saved = nf.load(path)
    if saved.get_config() != flow.get_config():
        raise SystemExit(f"{path} does not hold the flow these options build: "
                         f"{saved.get_config()} against {flow.get_config()}")
    return saved


def warm_start(flow: nf.flows.Flow, args: argparse.Namespace, name: str
               ) -> tuple[nf.flows.Flow, dict | None]:
    """``flow``, or with ``--warm-start TAG`` the flow of the run named ``name`` with ``args.tag``
    replaced by TAG (loaded from ``--out``, same config), and the record of that run for the
    result (its recorded epochs and seconds where its result JSON exists)."""
    if args.warm_start is None:
        return flow, None
    source = name.removesuffix(args.tag) + args.warm_start
    if source == name:
        raise SystemExit("--warm-start needs a tag other than this run's --tag")
    flow = saved_flow(Path(args.out) / source, flow)
    record = {"from": source, "epochs_run": None, "train_seconds": None}
    earlier = Path(args.results_dir) / f"{source}.json"
    if earlier.is_file():
        before = json.loads(earlier.read_text())
        record.update(epochs_run=before.get("epochs_run"),
                      train_seconds=before.get("train_seconds"))
    print(f"warm start from {Path(args.out) / source} ({record['epochs_run']} epochs before)",
          flush=True)
    return flow, record


def relative(path: Path) -> str:
    """``path`` relative to the checkout where it lies inside it, else as given."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def float32_copy(flow: nf.flows.Flow, name: str, features: int, seed: int, kwargs: dict
                 ) -> nf.flows.Flow:
    """A float32 build of ``flow``'s configuration holding ``flow``'s weights (to evaluate a
    flow trained in mixed precision at full precision)."""
    full = nf.flows.build(name, features, seed=seed, **kwargs)
    full.set_weights(flow.get_weights())
    return full


def write_result(name: str, result: dict, results_dir: Path | str | None = None) -> dict:
    """``<results_dir>/<name>.json`` (default ``experiments/results``; also on stdout)."""
    out = Path(results_dir or ROOT / "experiments" / "results") / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)
    return result


def to_pixels(y: np.ndarray) -> np.ndarray:
    """Logit-space rows back to [0, 1] images ``[N, 28, 28]``."""
    x = inverse_logit_transform(np.clip(y.astype(np.float64), -30, 30), LAMBDA_MNIST)
    return np.clip(x, 0, 1).reshape(-1, 28, 28)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", choices=sorted(DEFAULTS), default="glow")
    parser.add_argument("--conditional", action="store_true")
    add_training_arguments(parser, epochs=12, max_minutes=30.0)
    parser.add_argument("--no-batch-norm", dest="batch_norm", action="store_false",
                        help="maf/realnvp: no batch norm between the layers")
    add_temperature_argument(parser)
    parser.add_argument("--marginal-test-rows", type=int, default=10_000,
                        help="test digits for the marginal bits/dim of a conditional flow")
    parser.add_argument("--max-shift", type=int, default=0,
                        help="with --augment: shift each training digit by up to this many "
                        "pixels along each axis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("NF_DATA_DIR"))
    parser.add_argument("--out", default=str(ROOT / "out" / "mnist"),
                        help="folder of the checkpoint (not committed)")
    parser.add_argument("--tag", default="", help="suffix of the result and figure names")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="do not train: load the flow an earlier run of the same options "
                        "saved under --out, and evaluate it and draw its figure")
    args = parser.parse_args(argv)
    if args.max_shift and not args.augment:
        parser.error("--max-shift needs --augment")
    if args.evaluate_only and args.warm_start is not None:
        parser.error("--evaluate-only and --warm-start exclude each other")
    lr, batch_size = OPTIMISATION[args.flow]
    args.lr = lr if args.lr is None else args.lr
    args.batch_size = batch_size if args.batch_size is None else args.batch_size
    if args.data_dir is None and (ROOT.parent / "shared" / "data" / "mnist").is_dir():
        args.data_dir = str(ROOT.parent / "shared" / "data")

    splits = nf.data.load("mnist", data_dir=args.data_dir, seed=args.seed, form="logit")
    xtr, xva, xte = splits.train, splits.val, splits.test
    eye = np.eye(10, dtype=np.float32)
    ctr, cva = (eye[y] if args.conditional else None for y in splits.labels[:2])

    kwargs = flow_kwargs(DEFAULTS[args.flow], args)
    if args.flow in ("glow", "realnvp_image"):
        kwargs["image_shape"] = SHAPE
    else:
        kwargs["batch_norm"] = args.batch_norm  # MAF paper: batch norm between the layers
    if args.conditional:
        kwargs["context_features"] = 10
    flow = nf.flows.build(args.flow, 784, seed=args.seed, dtype=args.dtype, **kwargs)
    params = int(sum(np.prod(v.shape) for v in flow.trainable_variables))
    name = f"mnist_{args.flow}{'_cond' if args.conditional else ''}{args.tag}"
    print(f"{name}: {params:,} parameters, train {len(xtr)}, val {len(xva)}, test {len(xte)}, "
          f"source {splits.info['source']}", flush=True)

    checkpoint = Path(args.out) / name
    before = None
    if args.evaluate_only:
        history = train_seconds = None
        flow = saved_flow(checkpoint, flow)
    else:
        flow, before = warm_start(flow, args, name)
        history, train_seconds = train_flow(flow, args, splits, xtr, xva, ctr, cva, checkpoint)
    return evaluate(flow, args, name, kwargs, params, history, train_seconds, splits,
                    {"warm_start": before} if before else {})


def train_flow(flow, args, splits, xtr, xva, ctr, cva, checkpoint):
    """Fit ``flow`` (early stopping, time limit), save it to ``checkpoint``; return the
    history and the training seconds."""
    flow.compile(tf_keras.optimizers.Adam(args.lr, global_clipnorm=args.global_clipnorm),
                 jit_compile=None if args.jit else False)
    train = arrays = (xtr, ctr) if args.conditional else xtr
    if args.augment:
        pixels = nf.data.load("mnist", data_dir=args.data_dir, seed=args.seed, form="uint8")
        train = nf.data.images.augmented_dataset(pixels.train, "mnist",
                                                 batch_size=args.batch_size, seed=args.seed,
                                                 context=ctr, max_shift=args.max_shift)
    val = ((xva, cva),) if args.conditional else (xva,)
    # With --augment the training rows change every epoch; the logit log-Jacobian of the fixed
    # rows stands in for theirs (measured: within 0.002 bits/dim of an augmented epoch's).
    callbacks = [BitsPerDim(mean_logit_ldj(xtr), mean_logit_ldj(xva), 784),
                 tf_keras.callbacks.EarlyStopping(patience=args.patience,
                                                  restore_best_weights=True),
                 TimeLimit(args.max_minutes)]
    if nf.training.batch_norm_layers(flow):
        # MAF paper: batch norm evaluated with the statistics of the whole training set,
        # before every validation and, after EarlyStopping put the best weights back, at the end.
        callbacks.append(nf.training.BatchNormStatistics(arrays))
    start = time.time()
    history = flow.fit(train, batch_size=None if args.augment else args.batch_size,
                       epochs=args.epochs,
                       validation_data=val, callbacks=callbacks, verbose=0, shuffle=True)
    train_seconds = time.time() - start
    flow.save(checkpoint)
    return history, train_seconds


def evaluate(flow, args, name, kwargs, params, history, train_seconds, splits, extra) -> dict:
    """Test bits/dim (given the label and marginal for a conditional flow), the float32
    evaluation of a mixed-precision flow, the sample figure; write and return the result
    (with the entries of ``extra``)."""
    xtr, xva, xte = splits.train, splits.val, splits.test
    yte = splits.labels[2]
    eye = np.eye(10, dtype=np.float32)
    cte = eye[yte] if args.conditional else None
    deq = inverse_logit_transform(xte.astype(np.float64), LAMBDA_MNIST)
    lp = batched_log_prob(flow, xte, cte, jit=args.jit)
    bpd = bits_per_dim(lp, deq, LAMBDA_MNIST)
    result = {
        "flow": args.flow, "conditional": args.conditional, "kwargs": constructor_kwargs(flow),
        "parameters": params, "train_digits": len(xtr), "val_digits": len(xva),
        "test_digits": len(xte), "data_source": splits.info["source"],
        "augment": ({"fresh_dequantisation": True, "max_shift": args.max_shift}
                    if args.augment else None),
        **run_record(history, train_seconds, bpd, args), **extra,
    }
    if args.dtype != "float32":  # the same weights evaluated by the float32 flow
        full = float32_copy(flow, args.flow, 784, args.seed, kwargs)
        b32 = bits_per_dim(batched_log_prob(full, xte, cte, jit=args.jit), deq, LAMBDA_MNIST)
        result["test_bpd_float32_eval"] = round(float(b32.mean()), 4)
    if args.conditional:
        result["test_bpd_given_label"] = result.pop("test_bpd")
        result["test_bpd_given_label_stderr"] = result.pop("test_bpd_stderr")
        m = min(args.marginal_test_rows, len(xte))
        per_class = np.stack([batched_log_prob(flow, xte[:m], np.repeat(eye[k:k + 1], m, 0),
                                               jit=args.jit)
                              for k in range(10)], axis=-1)
        marginal = np.logaddexp.reduce(per_class, axis=-1) - math.log(10)
        mb = bits_per_dim(marginal, deq[:m], LAMBDA_MNIST)
        result["test_bpd_marginal"] = round(float(mb.mean()), 4)
        result["test_bpd_marginal_stderr"] = round(float(mb.std() / math.sqrt(m)), 4)
        result["marginal_test_digits"] = m

    # Sample grids next to real test digits.
    panels, titles, labels = [], [], []
    temperatures = figure_temperatures(args.temperature)
    for temperature in temperatures:
        if args.conditional:
            context = np.repeat(eye[list(CLASSES_SHOWN)], 8, axis=0)
            s = flow.sample(len(context), context=context, seed=args.seed + 1,
                            temperature=temperature).numpy()
            labels.append([str(k) for k in CLASSES_SHOWN])
        else:
            s = flow.sample(32, seed=args.seed + 1, temperature=temperature).numpy()
            labels.append(None)
        panels.append(to_pixels(s))
        titles.append(f"{args.flow} samples, T={temperature}")
    real = xte[np.isin(yte, CLASSES_SHOWN)][:32] if args.conditional else xte[:32]
    panels.append(to_pixels(real))
    titles.append("test digits")
    labels.append(None)
    fig = nf.plot.image_grid(panels, titles=titles, row_labels=labels, scale=0.6)
    figure = Path(args.figures_dir) / f"{name}_samples.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    result["figure"] = relative(figure)
    result["figure_temperatures"] = temperatures
    return write_result(name, result, args.results_dir)


if __name__ == "__main__":
    main()
