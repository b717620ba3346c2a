"""Tabular density estimation: the MAF paper's benchmarks (its Table 2) and the NSF paper's.

One command per (dataset, model) trains with the paper's recipe and appends (or replaces) a row
of ``experiments/results/tabular.csv``: the test log-likelihood in nats with +/- 2 standard
errors over test points (the MAF/NSF convention), the epochs, the wall-clock of this run and
of the whole run across resumes, the parameter count, the machine and the command.

Recipes (``MODELS``, ``DATASETS``):

* MAF paper: Adam, batch 100, learning rate 1e-3 for MADE and MADE-MoG and 1e-4 for the flows,
  L2 penalty 1e-6 on the weights, early stopping after 30 epochs without a better validation
  log-likelihood (the best epoch is kept), batch norm between the layers of MAF, MAF-MoG and
  RealNVP with full-training-set statistics at test time (and before every validation), the
  order reversed between layers; two hidden layers, POWER 100 ReLU, GAS 100 tanh, HEPMASS and
  MINIBOONE 512 ReLU, BSDS300 512 ReLU (``--hidden 1024`` for the paper's larger variant);
  mixtures of 10 components.
* NSF paper (the spline flows): cosine learning-rate schedule, gradient clipping at norm 5,
  splines on [-3, 3], an LU-decomposed linear layer before every spline layer and after the
  last (``lu_layers=True``), residual conditioners (``residual=True``: residual nets for the
  coupling flow, ResMADEs for the autoregressive one) with dropout while training; per
  dataset (``NSF_DATASETS``) the width, residual blocks, layers, bins, dropout, batch size and
  learning rate of the paper's hyperparameter table (appendix). Those values were taken from a
  third-party reimplementation's per-dataset settings of RQ-NSF (C), which match the table as
  we remember it; they were not checked against the paper's text here, and RQ-NSF (AR) uses the
  same ones. No fixed number of steps: early stopping (patience 30) as for the MAF models.
* Gaussian: the maximum-likelihood full-covariance Gaussian of the training set (closed form).

Data (``nf.data.load``): POWER, GAS, HEPMASS, MINIBOONE with the MAF preprocessing once the
MAF archive is in ``<data-dir>/<name>/``; BSDS300 from ``BSDS300.hdf5`` or, without it, 8x8
patches regenerated from the raw images (1,000,000 / 50,000 / 250,000 as published, not
bit-identical to the MAF file). MINIBOONE's standardized split files without a training split
(all this project has) run under the protocol ``val-as-train``: the validation split is cut
90/10 (seeded) into training and early-stopping rows, the test split is the test set.

Long runs: ``--max-minutes`` stops after the epoch that passes the budget and ``--resume``
continues from the per-epoch checkpoint in ``--checkpoint-dir`` (``nf.training.fit``); each
run's row records its own seconds and the total over the run so far.

Deviations from a recipe (``--lr``, ``--batch-size``, ``--schedule``, ``--hidden``, ``--dtype``,
``--no-jit``) are named in the row's protocol and train in a checkpoint folder of their own,
so they sit next to the recipe's row in the CSV and never replace it. A cosine schedule decays
to zero over ``--epochs``, so a spline flow's run with fewer epochs than the default bound is a
deviation of that kind too (``cosine schedule over N epochs``).

Examples::

    PYTHONPATH=. python experiments/tabular.py --dataset miniboone --model maf5
    PYTHONPATH=. python experiments/tabular.py --dataset bsds300 --model maf10 \\
        --max-minutes 60 --resume           # again with --resume to continue
    PYTHONPATH=. python experiments/tabular.py --dataset bsds300 --model maf10 \\
        --lr 1e-3 --batch-size 256 --schedule cosine --epochs 10   # a faster schedule
    PYTHONPATH=. python experiments/tabular.py --table   # the markdown table of the CSV
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from common import TimeLimit, batched_log_prob  # noqa: E402

import normalizingflows as nf  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "tabular.csv"

#: Conditioner width and activation per dataset (MAF paper, section 4.2).
DATASETS = {
    "power": {"hidden": 100, "activation": "relu"},
    "gas": {"hidden": 100, "activation": "tanh"},
    "hepmass": {"hidden": 512, "activation": "relu"},
    "miniboone": {"hidden": 512, "activation": "relu"},
    "bsds300": {"hidden": 512, "activation": "relu"},
}

_MAF = {"batch_size": 100, "l2": 1e-6, "patience": 30, "schedule": None, "clipnorm": None}
_NSF = {"l2": 0.0, "patience": 30, "schedule": "cosine", "clipnorm": 5.0, "bound": 3.0,
        "lu_layers": True, "residual": True, "activation": "relu"}
#: NSF paper hyperparameters per dataset (see the module docstring for where they come from):
#: conditioner width, residual blocks, flow layers, bins, dropout, batch size, learning rate.
NSF_DATASETS = {
    "power": {"hidden": 256, "blocks": 2, "layers": 10, "bins": 8, "dropout": 0.0,
              "batch_size": 512, "lr": 5e-4},
    "gas": {"hidden": 256, "blocks": 2, "layers": 10, "bins": 8, "dropout": 0.1,
            "batch_size": 512, "lr": 5e-4},
    "hepmass": {"hidden": 128, "blocks": 1, "layers": 20, "bins": 8, "dropout": 0.2,
                "batch_size": 256, "lr": 5e-4},
    "miniboone": {"hidden": 32, "blocks": 1, "layers": 10, "bins": 4, "dropout": 0.2,
                  "batch_size": 128, "lr": 3e-4},
    "bsds300": {"hidden": 128, "blocks": 1, "layers": 20, "bins": 8, "dropout": 0.2,
                "batch_size": 512, "lr": 5e-4},
}
#: Model recipes: the catalog flow, its constructor keywords and the optimisation.
MODELS: dict[str, dict[str, Any]] = {
    "gaussian": {"flow": None},
    "made": {"flow": "made", "lr": 1e-3, **_MAF},
    "made_mog": {"flow": "made_mog", "components": 10, "lr": 1e-3, **_MAF},
    "realnvp5": {"flow": "realnvp", "layers": 5, "batch_norm": True, "lr": 1e-4, **_MAF},
    "realnvp10": {"flow": "realnvp", "layers": 10, "batch_norm": True, "lr": 1e-4, **_MAF},
    "maf5": {"flow": "maf", "layers": 5, "batch_norm": True, "lr": 1e-4, **_MAF},
    "maf10": {"flow": "maf", "layers": 10, "batch_norm": True, "lr": 1e-4, **_MAF},
    "maf_mog5": {"flow": "maf_mog", "layers": 5, "components": 10, "batch_norm": True,
                 "lr": 1e-4, **_MAF},
    "nsf_coupling": {"flow": "nsf_coupling", **_NSF},
    "nsf_autoregressive": {"flow": "nsf_autoregressive", **_NSF},
}
#: The default bound on epochs (early stopping ends a recipe's run first).
EPOCHS = 1000
_TRAINING_KEYS = ("lr", "batch_size", "l2", "patience", "schedule", "clipnorm")

#: Published test log-likelihoods (nats, +/- 2 standard errors): MAF paper Table 2
#: (Papamakarios et al. 2017) and NSF paper Table 1 (Durkan et al. 2019), for the two
#: datasets this project can run.
PUBLISHED = {
    "bsds300": {"gaussian": (96.67, 0.25), "made": (148.85, 0.28), "made_mog": (153.71, 0.28),
                "realnvp5": (152.97, 0.28), "realnvp10": (153.28, 1.78),
                "maf5": (155.69, 0.28), "maf10": (154.93, 0.28), "maf_mog5": (156.36, 0.28),
                "nsf_coupling": (157.54, 0.28), "nsf_autoregressive": (157.31, 0.28)},
    "miniboone": {"gaussian": (-37.24, 1.07), "made": (-15.59, 0.50),
                  "made_mog": (-12.27, 0.47), "realnvp5": (-13.55, 0.49),
                  "realnvp10": (-13.84, 0.52), "maf5": (-11.75, 0.44), "maf10": (-12.24, 0.45),
                  "maf_mog5": (-11.68, 0.44), "nsf_coupling": (-9.67, 0.47),
                  "nsf_autoregressive": (-9.22, 0.48)},
}

COLUMNS = ["dataset", "model", "protocol", "train_rows", "val_rows", "test_rows",
           "test_loglik", "test_pm2se", "val_loglik", "epochs_run", "best_epoch", "ended",
           "parameters", "seconds", "total_seconds", "published", "data_source", "machine",
           "date", "command"]


def load_data(name: str, data_dir: str | None, seed: int, n_train: int | None,
              trust_pickle: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, str]:
    """``(train, val, test, protocol, source)`` of a dataset, as the recipe uses it."""
    if name == "gas":
        splits = nf.data.load("gas", data_dir=data_dir, trust_pickle=trust_pickle)
    elif name == "bsds300":
        splits = nf.data.load("bsds300", data_dir=data_dir, seed=seed, cache=False)
    elif name == "miniboone":
        splits = nf.data.load("miniboone", data_dir=data_dir, allow_missing_splits=True)
    else:
        splits = nf.data.load(name, data_dir=data_dir)
    train, val, test = splits.train, splits.val, splits.test
    info = splits.info
    source = str(info.get("source") or info.get("layout") or "")
    protocol = "published splits"
    if name == "bsds300" and info.get("source") == "images":
        protocol = "patches regenerated from the raw images"
    if len(train) == 0:
        # MINIBOONE split files without the training split: train on the validation split.
        order = np.random.default_rng(seed).permutation(len(val))
        cut = int(round(0.9 * len(val)))
        train, val = val[order[:cut]], val[order[cut:]]
        protocol = "val-as-train: validation split cut 90/10 into train/early stopping"
    if n_train is not None and n_train < len(train):
        train = train[:n_train]
        protocol += f"; first {n_train} training rows"
    return (np.asarray(train, np.float32), np.asarray(val, np.float32),
            np.asarray(test, np.float32), protocol, source)


def gaussian_loglik(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Log-density of ``x`` under the maximum-likelihood full-covariance Gaussian of ``train``."""
    t = train.astype(np.float64)
    mean = t.mean(0)
    cov = np.cov(t, rowvar=False, bias=True)
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x.astype(np.float64) - mean).T)
    d = t.shape[1]
    return (-0.5 * np.sum(z ** 2, 0) - np.sum(np.log(np.diag(chol)))
            - 0.5 * d * math.log(2 * math.pi))


def recipe_of(model: str, dataset: str) -> dict[str, Any]:
    """A model's recipe on a dataset: the spline flows take the NSF paper's per-dataset values."""
    recipe = dict(MODELS[model])
    if model.startswith("nsf_"):
        recipe.update(NSF_DATASETS[dataset])
    return recipe


def build_flow(model: str, features: int, hidden: int, activation: str, seed: int,
               dtype: str = "float32", dataset: str | None = None) -> Any:
    """The catalog flow of a recipe, with the L2 penalty added to its training loss: two
    hidden layers of width ``hidden`` (the spline flows: ``blocks`` residual blocks)."""
    recipe = recipe_of(model, dataset) if dataset else MODELS[model]
    kwargs = {k: v for k, v in recipe.items()
              if k not in (*_TRAINING_KEYS, "flow", "hidden", "blocks", "activation")}
    flow = nf.flows.build(recipe["flow"], features,
                          hidden_units=[hidden] * int(recipe.get("blocks", 2)),
                          activation=recipe.get("activation", activation), seed=seed,
                          dtype=dtype, **kwargs)
    flow.log_prob(tf.zeros([2, features]))  # create every variable
    if recipe["l2"]:
        # The kernels of the other layers by name; a MADE keeps its kernels in one packed
        # variable with its biases, and gives them by kernels().
        named = [v for v in flow.trainable_variables if "kernel" in v.name]
        mades = [m for m in flow.submodules if isinstance(m, nf.nn.MADE)]
        l2 = float(recipe["l2"])
        flow.add_loss(lambda: l2 * tf.add_n([tf.reduce_sum(tf.square(k)) for k in named + [
            k for m in mades for k in m.kernels()]]))
    return flow


class ComputeLog(tf_keras.callbacks.Callback):
    """Writes the run's total seconds (earlier pieces included) after every epoch, so the
    compute of a run that is killed, not only of one that stops on its own, is on record up to
    its last checkpoint."""

    def __init__(self, path: Path, before: float) -> None:
        super().__init__()
        self.path, self.before, self.start = path, float(before), time.time()

    def total(self) -> float:
        return self.before + time.time() - self.start

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        nf.training.atomic_write_json(self.path, {"seconds": self.total()})


def stats(loglik: np.ndarray) -> tuple[float, float]:
    """Mean and 2 standard errors over points."""
    return float(loglik.mean()), float(2 * loglik.std() / math.sqrt(len(loglik)))


def write_row(row: dict, path: Path = RESULTS) -> None:
    """Add ``row`` to the CSV, replacing an earlier row of the same dataset, model, protocol."""
    rows = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f)
                    if (r["dataset"], r["model"], r["protocol"])
                    != (row["dataset"], row["model"], row["protocol"])]
    rows.append({k: row.get(k, "") for k in COLUMNS})
    rows.sort(key=lambda r: (r["dataset"], list(MODELS).index(r["model"])
                             if r["model"] in MODELS else 99, r["protocol"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    nf.training.atomic_write_text(path, buf.getvalue())


def table(path: Path = RESULTS) -> str:
    """The results as a markdown table next to the published values."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = ["| dataset | model | protocol | train rows | test log-lik (nats) | published | "
           "epochs (best) | ended | parameters | compute |",
           "|---|---|---|---:|---:|---:|---|---|---:|---:|"]
    for r in rows:
        minutes = float(r["total_seconds"]) / 60
        # The name and the variations (hidden width, dtype, ...); the CSV has the whole text.
        protocol = "; ".join([r["protocol"].split(";")[0].split(":")[0].strip(),
                              *(p.strip() for p in r["protocol"].split(";")[1:])])
        out.append(f"| {r['dataset']} | {r['model']} | {protocol} | "
                   f"{int(r['train_rows']):,} | {float(r['test_loglik']):.2f} +/- "
                   f"{float(r['test_pm2se']):.2f} | {r['published'] or '-'} | "
                   f"{r['epochs_run']} ({r['best_epoch']}) | {r['ended']} | "
                   f"{int(r['parameters']):,} | {minutes:.1f} min |")
    return "\n".join(out)


def deviations(args: argparse.Namespace, hidden: int,
               recipe: dict[str, Any]) -> list[tuple[str, str]]:
    """How a run departs from its ``recipe``: (the protocol's words, the checkpoint folder's
    suffix) for each, so a variation is a row and a run of its own. A cosine schedule decays
    over ``--epochs``, so a cosine run names its length unless it is the recipe's own schedule
    over the default bound; the closed-form Gaussian trains nothing and has none."""
    if recipe["flow"] is None:
        return []
    out = []
    if args.hidden:
        out.append((f"hidden {hidden}", f"_h{hidden}"))
    if args.dtype != "float32":
        out.append((args.dtype, f"_{args.dtype}"))
    if args.no_jit:
        out.append(("no XLA", "_nojit"))
    if args.lr is not None:
        out.append((f"lr {args.lr:g}", f"_lr{args.lr:g}"))
    if args.batch_size is not None:
        out.append((f"batch {args.batch_size}", f"_b{args.batch_size}"))
    schedule = args.schedule or recipe["schedule"]
    if schedule == "cosine" and (recipe["schedule"] != "cosine" or args.epochs != EPOCHS):
        out.append((f"cosine schedule over {args.epochs} epochs", f"_cosine{args.epochs}"))
    elif args.schedule not in (None, "cosine"):
        out.append((f"{args.schedule} schedule", f"_{args.schedule}"))
    return out


def run(args: argparse.Namespace) -> dict:
    recipe = recipe_of(args.model, args.dataset)
    width = DATASETS[args.dataset]
    hidden = args.hidden or recipe.get("hidden", width["hidden"])
    variations = deviations(args, hidden, recipe)
    # Training overrides (named by deviations): never the recipe's row.
    overrides = {"lr": args.lr, "batch_size": args.batch_size, "schedule": args.schedule}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("schedule") == "constant":
        overrides["schedule"] = None
    recipe.update(overrides)
    train, val, test, protocol, source = load_data(args.dataset, args.data_dir, args.seed,
                                                   args.n_train, args.trust_pickle)
    protocol += "".join(f"; {text}" for text, _ in variations)
    features = train.shape[1]
    print(f"{args.dataset} / {args.model}: train {len(train):,}, val {len(val):,}, "
          f"test {len(test):,}, D = {features} ({protocol})", flush=True)
    start = time.time()
    row: dict[str, Any] = {"dataset": args.dataset, "model": args.model, "protocol": protocol,
                           "train_rows": len(train), "val_rows": len(val),
                           "test_rows": len(test), "data_source": source}
    if recipe["flow"] is None:
        test_ll, val_ll = gaussian_loglik(train, test), gaussian_loglik(train, val)
        row.update(epochs_run=0, best_epoch=0, ended="closed form",
                   parameters=features + features * (features + 1) // 2)
        seconds = total = time.time() - start
    else:
        flow = build_flow(args.model, features, hidden, width["activation"], args.seed,
                          args.dtype, dataset=args.dataset)
        # One folder per row of the CSV: a variation is a run of its own.
        variation = "".join(suffix for _, suffix in variations)
        checkpoint = Path(args.checkpoint_dir) / f"{args.dataset}_{args.model}{variation}"
        compute_file = checkpoint / "compute.json"
        before = 0.0
        if args.resume and compute_file.is_file():
            before = float(json.loads(compute_file.read_text())["seconds"])
        compute = ComputeLog(compute_file, before)
        limit = [TimeLimit(args.max_minutes)] if args.max_minutes else []
        result = nf.training.fit(
            flow, train, val=val, epochs=args.epochs, batch_size=recipe["batch_size"],
            lr=recipe["lr"], schedule=recipe["schedule"], clipnorm=recipe["clipnorm"],
            patience=recipe["patience"], checkpoint_dir=checkpoint, resume=args.resume,
            seed=args.seed, verbose=args.verbose, batch_norm="train",
            jit_compile=not args.no_jit,
            callbacks=[compute, *limit])
        if result.nonfinite:
            raise RuntimeError(result.nonfinite["message"])
        test_ll = batched_log_prob(flow, test, batch=args.eval_batch)
        val_ll = batched_log_prob(flow, val, batch=args.eval_batch)
        seconds = time.time() - start
        total = before + seconds  # this piece in full: loading, training and the test
        nf.training.atomic_write_json(compute_file, {"seconds": total})
        ended = ("early stopping" if result.stopped_early else
                 "epochs" if result.epochs_run >= args.epochs else "time limit")
        row.update(epochs_run=result.epochs_run, best_epoch=result.best_epoch, ended=ended,
                   parameters=int(sum(np.prod(v.shape) for v in flow.trainable_variables)))
    mean, pm = stats(test_ll)
    published = PUBLISHED.get(args.dataset, {}).get(args.model)
    row.update(test_loglik=f"{mean:.4f}", test_pm2se=f"{pm:.4f}",
               val_loglik=f"{float(np.mean(val_ll)):.4f}", seconds=f"{seconds:.0f}",
               total_seconds=f"{total:.0f}",
               published=f"{published[0]:.2f} +/- {published[1]:.2f}" if published else "",
               machine=f"{platform.machine()} CPU, {os.cpu_count()} cores",
               date=time.strftime("%Y-%m-%d"),
               command="PYTHONPATH=. python experiments/tabular.py " + " ".join(
                   shlex.quote(a) for a in _without_out(args.argv)))
    if not np.isfinite(mean):
        raise RuntimeError(f"non-finite test log-likelihood {mean}")
    write_row(row, Path(args.out))
    print(json.dumps(row, indent=2), flush=True)
    return row


def _without_out(argv: list[str]) -> list[str]:
    """The command line without ``--out PATH`` (where the CSV went is not part of the run)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> dict | str:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS))
    parser.add_argument("--model", choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help="upper bound; early stopping (patience 30) ends the run first")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after the epoch that passes this budget (resume later)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --checkpoint-dir")
    parser.add_argument("--hidden", type=int, default=None,
                        help="conditioner width (default: per dataset, DATASETS)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="use only the first N training rows (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="mixed_bfloat16: bfloat16 network matmuls, float32 log-dets")
    parser.add_argument("--no-jit", action="store_true",
                        help="train under a plain tf.function instead of XLA")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate instead of the recipe's (a run and row of its own)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size instead of the recipe's (a run and row of its own)")
    parser.add_argument("--schedule", default=None, choices=["constant", "cosine", "plateau"],
                        help="learning-rate schedule instead of the recipe's; cosine decays to "
                             "0 over --epochs (a run and row of its own)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="GAS: read ethylene_CO.pickle placed by hand (its checksum is "
                             "verified only when nf.data.download extracted it)")
    parser.add_argument("--eval-batch", type=int, default=10_000)
    parser.add_argument("--data-dir", default=os.environ.get("NF_DATA_DIR"))
    parser.add_argument("--checkpoint-dir", default=str(ROOT / "out" / "tabular"))
    parser.add_argument("--out", default=str(RESULTS), help="the results CSV")
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--table", action="store_true",
                        help="print the results CSV as a markdown table and exit")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.table:
        text = table(Path(args.out))
        print(text)
        return text
    if args.dataset is None or args.model is None:
        parser.error("--dataset and --model are required (or --table)")
    if args.data_dir is None and (ROOT.parent / "shared" / "data").is_dir():
        args.data_dir = str(ROOT.parent / "shared" / "data")
    return run(args)


if __name__ == "__main__":
    main()
