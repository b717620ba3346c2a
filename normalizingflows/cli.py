"""Command line: ``python -m normalizingflows {list,demo,train,fit-energy,evaluate,sample}``.

Every command that writes a folder writes it under a temporary name next to it and renames it
when complete, so ``OUT`` is never left half-written. Bad input (unknown names, ``--epochs 0``,
NaN data, a ``--resume`` of a different run, a corrupt checkpoint) gives one line on stderr
and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "demo", "train", "fit_energy", "evaluate", "sample", "CLIError"]


class CLIError(Exception):
    """A user-facing failure: printed as one line on stderr, exit status 2."""


def demo(out: str | Path = "demo_out", *, flow: str = "maf", epochs: int = 100, seed: int = 0,
         verbose: int = 1) -> dict:
    """Train a flow on two moons with Keras ``fit``; write a heatmap and ``metrics.json``.

    Returns:
        The metrics written (test log-likelihood in nats among them).
    """
    import numpy as np
    import tf_keras

    from . import data, flows, plot

    tf_keras.utils.set_random_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = data.load("moons", n=12_000, seed=seed)
    model = flows.build(flow, 2, seed=seed)
    model.compile(tf_keras.optimizers.Adam(1e-3), jit_compile=True)
    start = time.perf_counter()
    history = model.fit(
        splits.train, batch_size=256, epochs=epochs, verbose=verbose,
        validation_data=(splits.val,),
        callbacks=[tf_keras.callbacks.EarlyStopping(patience=15, restore_best_weights=True)])
    seconds = time.perf_counter() - start
    test_ll = model.log_prob(splits.test).numpy()
    metrics = {
        "flow": flow, "data": "moons", "seed": seed, "epochs_run": len(history.history["loss"]),
        "train_seconds": round(seconds, 2), "test_log_likelihood": float(test_ll.mean()),
        "test_log_likelihood_2se": float(2 * test_ll.std() / np.sqrt(len(test_ll))),
        "sizes": splits.info["sizes"],
    }
    samples = model.sample(4000, seed=seed).numpy()
    fig = plot.density_vs_data(model, data.toy.moons(100_000, seed=seed + 1), samples=samples,
                               bound=2.5, title=f"{flow} on two moons: test log-likelihood "
                               f"{metrics['test_log_likelihood']:.3f} nats")
    fig.savefig(out / "density.png", dpi=110)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.save(out / "checkpoint")
    return metrics


# ---------------------------------------------------------------------------------- helpers
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {value}")
    return value


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out`` (replacing an earlier ``out``)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staged(out: Path, *, keep: Path | None = None) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; rename it to ``out`` on success, remove it on
    failure (``keep``: a folder to use instead, which is left in place on failure)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = keep or out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, out)


def _write_json(path: Path, obj: Any) -> None:
    from .training import atomic_write_json

    atomic_write_json(path, obj)


def _load_splits(name: str, *, seed: int, n: int | None) -> Any:
    """``nf.data.load(name)``, or an ``.npy``/``.csv`` file split 80/10/10 by ``seed``."""
    import numpy as np

    from . import data

    path = Path(name)
    if path.suffix in (".npy", ".csv"):
        if not path.is_file():
            raise CLIError(f"--data {name}: no such file")
        try:
            x = (np.load(path, allow_pickle=False) if path.suffix == ".npy"
                 else np.loadtxt(path, delimiter=",", ndmin=2))
        except ValueError as err:
            raise CLIError(f"--data {name}: cannot read it as a numeric array ({err})") from err
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) < 10:
            raise CLIError(f"--data {name}: expected an array [N >= 10, D]; got shape "
                           f"{list(x.shape)}")
        x = x[np.random.default_rng(seed).permutation(len(x))]
        n_test = n_val = max(1, len(x) // 10)
        info = {"name": path.name, "features": x.shape[1], "source": str(path)}
        return data.Splits(x[n_test + n_val:], x[n_test:n_test + n_val], x[:n_test], info)
    if name in data.images.IMAGE_SETS:
        return data.images.load_image_rows(name, seed=seed, limit=n)
    if name not in data.names():
        raise CLIError(f"unknown dataset --data {name!r}; choose one of {data.names()}, an "
                       f"image set {sorted(data.images.IMAGE_SETS)}, or an .npy/.csv file")
    options = {} if n is None else {"n": n}
    return data.load(name, seed=seed, **options)


def _flow_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {k: getattr(args, k) for k in ("layers", "hidden_units", "bins", "dtype")
              if getattr(args, k, None) is not None}
    kwargs["seed"] = args.seed
    return kwargs


def _make_strategy(name: str | None) -> Any:
    """``--strategy``: the ``tf.distribute`` strategy, or a CLIError."""
    from .training import STRATEGIES, make_strategy

    if name is not None and name not in STRATEGIES:
        raise CLIError(f"unknown strategy --strategy {name!r}; choose one of {list(STRATEGIES)}")
    try:
        return make_strategy(name)
    except (RuntimeError, ValueError) as err:  # e.g. TF_CONFIG unreadable, TF started already
        first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise CLIError(f"--strategy {name}: {first}") from err


def _build_flow(name: str, features: int, kwargs: dict, *, sampling: bool = False) -> Any:
    import inspect

    from . import flows

    entries = flows.entries()
    if name not in entries:
        raise CLIError(f"unknown flow --flow {name!r}; choose one of {sorted(entries)}")
    entry = entries[name]
    if sampling and entry.fast_direction == "density":
        if "invert" not in inspect.signature(entry.constructor).parameters:
            raise CLIError(f"--flow {name!r} samples slowly (D passes) and has no invert "
                           "switch; choose a flow that samples fast, e.g. realnvp, "
                           "nsf_coupling, iaf, planar, radial")
        kwargs = {**kwargs, "invert": True}
    try:
        return flows.build(name, features, **kwargs)
    except (TypeError, ValueError) as err:
        raise CLIError(f"--flow {name}: {err}") from err


def _log_likelihood(flow: Any, x: Any, batch: int = 20_000) -> Any:
    import numpy as np

    return np.concatenate([flow.log_prob(x[i:i + batch]).numpy()
                           for i in range(0, len(x), batch)])


def _bound(x: Any) -> float:
    import numpy as np

    return float(np.ceil(10 * 1.1 * np.quantile(np.abs(x), 0.998)) / 10)


def _loss_figure(history: dict, title: str = "") -> Any:
    from . import plot

    fig = plot.loss_curves(history)
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------------- commands
def train(args: argparse.Namespace) -> dict:
    """``train``: fit a catalog flow to a dataset; write metrics, plots and the checkpoint.

    With ``--strategy multiworker`` every worker runs the same command (its ``TF_CONFIG``
    differs); the chief writes ``OUT``, the other workers train in step with it and write their
    copy of the outputs to a private temporary folder that is removed at the end (on
    ``--resume`` they read the chief's checkpoints: ``OUT`` must be on a shared file system).
    """
    import numpy as np

    from .training.distribute import barrier, is_chief

    strategy = _make_strategy(args.strategy)  # first: a multi-worker strategy must be
    out = Path(args.out)                       # created before TensorFlow runs anything
    work = out.with_name(f".{out.name}.partial")
    from . import flows

    if args.flow not in flows.catalog():
        raise CLIError(f"unknown flow --flow {args.flow!r}; choose one of "
                       f"{sorted(flows.catalog())}")
    splits = _load_splits(args.data, seed=args.seed, n=args.n)
    features = int(np.asarray(splits.train).shape[-1])
    kwargs = _flow_kwargs(args)
    if "image_shape" in splits.info:
        if flows.entries()[args.flow].image_shapes:
            kwargs["image_shape"] = splits.info["image_shape"]
    with strategy.scope():
        flow = _build_flow(args.flow, features, kwargs)
    if not is_chief(strategy):
        barrier(strategy)  # the chief has prepared its work folder
        with tempfile.TemporaryDirectory(prefix="nf-worker-") as private:
            return _train_into(Path(private), args, flow, splits, features, strategy,
                               checkpoint_dir=work / "checkpoints")
    copied = False
    if args.resume:
        if not (work / "checkpoints").exists() and (out / "checkpoints").exists():
            shutil.copytree(out / "checkpoints", work / "checkpoints")  # resume a finished run
            copied = True
    elif work.exists():
        shutil.rmtree(work)  # a killed run nobody asked to resume
    # An interrupted run's folder survives failures of a resume (and Ctrl-C) so that it can
    # be resumed again; anything else that fails leaves no folder behind.
    keep_on_failure = (work / "checkpoints").exists() and not copied
    work.mkdir(parents=True, exist_ok=True)
    barrier(strategy)  # the other workers may read the checkpoints now
    try:
        metrics = _train_into(work, args, flow, splits, features, strategy)
    except KeyboardInterrupt:
        raise
    except BaseException:
        if not keep_on_failure:
            shutil.rmtree(work, ignore_errors=True)
        raise
    _publish(work, out)
    return metrics


def _train_into(tmp: Path, args: argparse.Namespace, flow: Any, splits: Any, features: int,
                strategy: Any, checkpoint_dir: Path | None = None) -> dict:
    import numpy as np

    from . import data, diagnostics, plot, training

    result = training.fit(
        flow, splits.train, val=splits.val, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, schedule=args.schedule, patience=args.patience,
        checkpoint_dir=checkpoint_dir or tmp / "checkpoints", resume=args.resume,
        seed=args.seed, verbose=args.verbose, jit_compile=args.jit, strategy=strategy)
    if result.nonfinite is not None:
        raise CLIError(result.nonfinite["message"])
    test = training.check_array(splits.test, "test", features)
    ll = _log_likelihood(flow, test, batch=500 if "image_shape" in splits.info else 20_000)
    name = splits.info.get("name", args.data)
    metrics = {
        "flow": args.flow, "data": name, "seed": args.seed, "config": flow.get_config(),
        "test_log_likelihood": float(ll.mean()),
        "test_log_likelihood_se": float(ll.std() / math.sqrt(len(ll))),
        "best_log_likelihood": splits.info.get("best_log_likelihood"),
        "parameters": diagnostics.count_parameters(flow),
        "train_seconds": round(result.seconds, 2), "epochs": result.epochs_run,
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.initial_epoch, "sizes": [len(s) for s in splits[:3]],
        "strategy": args.strategy, "replicas": result.replicas, "jit_compile": result.jit_compile,
        "history": result.history,
    }
    title = f"{args.flow} on {name}: test LL {metrics['test_log_likelihood']:.3f} nats"
    if "image_shape" in splits.info:
        bpd = data.images.bits_per_dim(ll, test, splits.info)
        metrics.update(data.images.bits_per_dim_summary(bpd, "test_bits_per_dim"))
        title = f"{args.flow} on {name}: test {metrics['test_bits_per_dim']:.3f} bits/dim"
        panels = [data.images.to_pixels(flow.sample(32, seed=args.seed, temperature=t),
                                        splits.info) for t in (0.7, 1.0)]
        fig = plot.image_grid(panels + [data.images.to_pixels(test[:32], splits.info)],
                              titles=["samples, T=0.7", "samples, T=1.0", "test images"],
                              scale=0.6)
        fig.suptitle(title)
        fig.savefig(tmp / "samples.png", dpi=100)
    elif features == 2:
        samples = flow.sample(4000, seed=args.seed).numpy()
        bound = _bound(test)
        truth = (data.toy.sample(name, 100_000, seed=args.seed + 1)
                 if name in data.toy.names() else np.asarray(splits.train))
        fig = plot.density_vs_data(flow, truth, samples=samples, bound=bound, title=title)
        fig.savefig(tmp / "density.png", dpi=100)
        plot.samples_scatter(samples, data=test, bound=bound, title=title).savefig(
            tmp / "samples.png", dpi=100)
    else:
        dims = flow.sample(4000, seed=args.seed).numpy()[:, :2]
        plot.samples_scatter(dims, data=test[:, :2], bound=_bound(test[:, :2]),
                             title=f"{title} (first two dimensions)").savefig(
            tmp / "samples.png", dpi=100)
    _loss_figure(result.history, title).savefig(tmp / "loss.png", dpi=100)
    flow.save(tmp / "flow")
    _write_json(tmp / "metrics.json", metrics)
    return metrics


def fit_energy(args: argparse.Namespace) -> dict:
    """``fit-energy``: fit a flow to exp(-U) by reverse KL; write log Z, ESS and plots."""
    from . import diagnostics, plot, training

    try:
        from .data import energy as energies
    except ImportError as err:  # pragma: no cover - the module ships with the package
        raise CLIError(f"energies are unavailable: {err}") from err
    try:
        energy = energies.get(args.energy)
    except ValueError as err:
        raise CLIError(f"--energy: {err}") from err
    flow = _build_flow(args.flow, 2, _flow_kwargs(args), sampling=True)
    out = Path(args.out)
    with _staged(out) as tmp:
        result = training.fit_reverse_kl(flow, energy, steps=args.steps,
                                         batch_size=args.batch_size, lr=args.lr,
                                         seed=args.seed, eval_samples=args.eval_samples,
                                         verbose=args.verbose, jit_compile=args.jit)
        if result.nonfinite is not None:
            raise CLIError(result.nonfinite["message"])
        metrics = {"flow": args.flow, "energy": energy.name, "seed": args.seed,
                   "config": flow.get_config(), "parameters": diagnostics.count_parameters(flow),
                   "train_seconds": round(result.seconds, 2), **result.to_dict()}
        metrics.pop("seconds")
        bound = float(getattr(energy, "bound", 4.0))
        samples = flow.sample(4000, seed=args.seed).numpy()
        title = (f"{args.flow} on {energy.name}: log Z {result.log_z_estimate:.3f} "
                 f"(ref {result.log_z_reference}), ESS {100 * result.ess_fraction:.1f}%")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
        plot.density_heatmap(lambda x: -energy.energy(x), bound=bound, ax=axes[0],
                             title="target exp(-U)")
        plot.density_heatmap(flow, bound=bound, ax=axes[1], title="model density")
        axes[2].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
        axes[2].set_xlim(-bound, bound)
        axes[2].set_ylim(-bound, bound)
        axes[2].set_aspect("equal")
        axes[2].set_title("model samples")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(tmp / "density.png", dpi=100)
        _loss_figure(result.history, title).savefig(tmp / "loss.png", dpi=100)
        flow.save(tmp / "flow")
        _write_json(tmp / "metrics.json", metrics)
    return metrics


def _load_flow(path: str) -> Any:
    from .flows import load

    path = Path(path)
    if not (path / "config.json").exists() and (path / "flow" / "config.json").exists():
        path = path / "flow"
    try:
        return load(path)
    except FileNotFoundError as err:
        raise CLIError(f"--checkpoint {path}: {err}") from err
    except Exception as err:  # TF raises OpError, IndexError, ... on a damaged file
        first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise CLIError(f"--checkpoint {path} is corrupt or unreadable: {first}") from err


def evaluate(args: argparse.Namespace) -> dict:
    """``evaluate``: log-likelihood of a saved flow on a split of a dataset."""
    from . import training

    flow = _load_flow(args.checkpoint)
    splits = _load_splits(args.data, seed=args.seed, n=args.n)
    x = {"train": splits.train, "val": splits.val, "test": splits.test}[args.split]
    x = training.check_array(x, f"{args.data} {args.split}", flow.features)
    ll = _log_likelihood(flow, x)
    result = {"data": args.data, "split": args.split, "n": len(ll),
              "log_likelihood": float(ll.mean()),
              "log_likelihood_se": float(ll.std() / math.sqrt(len(ll)))}
    if "image_shape" in splits.info:
        from .data import images

        result.update(images.bits_per_dim_summary(images.bits_per_dim(ll, x, splits.info)))
    return result


def sample(args: argparse.Namespace) -> dict:
    """``sample``: draw ``--n`` samples of a saved flow into an ``.npy`` or ``.csv`` file."""
    import numpy as np

    out = Path(args.out)
    if out.suffix not in (".npy", ".csv"):
        raise CLIError(f"--out {out}: expected a file name ending in .npy or .csv")
    flow = _load_flow(args.checkpoint)
    x = flow.sample(args.n, seed=args.seed).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}{out.suffix}")
    try:
        if out.suffix == ".npy":
            np.save(tmp, x)
        else:
            np.savetxt(tmp, x, delimiter=",")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"out": str(out), "n": int(len(x)), "finite": bool(np.isfinite(x).all())}


# ---------------------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normalizingflows", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the catalog flows and the datasets")
    p = sub.add_parser("demo", help="train a flow on two moons, write a density heatmap")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--flow", default="maf", help="catalog flow name (default maf)")
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument("--seed", type=int, default=0)

    def flow_args(p: argparse.ArgumentParser, default_flow: str | None) -> None:
        p.add_argument("--flow", required=default_flow is None, default=default_flow,
                       help="catalog flow name (see `list`)")
        p.add_argument("--layers", type=_positive_int, help="flow layers")
        p.add_argument("--hidden-units", type=_positive_int, dest="hidden_units",
                       help="width of the conditioner's two hidden layers")
        p.add_argument("--bins", type=int, help="spline bins (spline flows)")
        p.add_argument("--dtype", choices=("float32", "mixed_bfloat16"), default=None,
                       help="mixed_bfloat16: the networks in bfloat16, log-dets in float32")
        p.add_argument("--lr", type=_positive_float, default=1e-3, help="learning rate")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
        p.add_argument("--no-jit", action="store_false", dest="jit",
                       help="do not compile the training step with XLA")

    p = sub.add_parser("train", help="fit a flow to a dataset (maximum likelihood)")
    flow_args(p, None)
    p.add_argument("--data", required=True,
                   help="dataset name (see `list`), image set (mnist, celeba64, celeba32, "
                   "shapes) or .npy/.csv file")
    p.add_argument("--n", type=_positive_int,
                   help="points to generate (toy sets); images per split (image sets)")
    p.add_argument("--epochs", type=_positive_int, default=50)
    p.add_argument("--batch-size", type=_positive_int, default=256, dest="batch_size")
    p.add_argument("--schedule", choices=("cosine", "plateau"), default=None)
    p.add_argument("--patience", type=_positive_int, default=None,
                   help="early-stopping patience in epochs (default: none)")
    p.add_argument("--out", default="train_out", help="output folder (default train_out)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted (or finished) run of the same config in OUT")
    p.add_argument("--strategy", default=None,
                   help="train with tf.distribute: mirrored (all local GPUs, else the logical "
                   "CPUs) or multiworker (TF_CONFIG; run the command on every worker); "
                   "--batch-size is the global batch")

    p = sub.add_parser("fit-energy", help="fit a flow to exp(-U) by reverse KL")
    flow_args(p, "realnvp")
    p.add_argument("--energy", required=True, help="energy name (nf.data.energy.names())")
    p.add_argument("--steps", type=_positive_int, default=2000)
    p.add_argument("--batch-size", type=_positive_int, default=256, dest="batch_size")
    p.add_argument("--eval-samples", type=_positive_int, default=20_000, dest="eval_samples")
    p.add_argument("--out", default="energy_out", help="output folder (default energy_out)")

    p = sub.add_parser("evaluate", help="log-likelihood of a saved flow on a dataset")
    p.add_argument("--checkpoint", required=True, help="folder written by train (or its flow/)")
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--n", type=_positive_int, help="points to generate (toy sets)")
    p.add_argument("--seed", type=int, default=0, help="data seed (as in train)")

    p = sub.add_parser("sample", help="draw samples of a saved flow into .npy or .csv")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=_positive_int, required=True)
    p.add_argument("--out", required=True, help="file ending in .npy or .csv")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m normalizingflows``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    from . import data, flows
    from .data.files import DataError

    try:
        if args.command == "list":
            for name, entry in sorted(flows.entries().items()):
                print(f"{name:20s} fast: {entry.fast_direction:8s} {entry.paper} ({entry.arxiv})")
            print("datasets:", ", ".join(data.names()))
            print("image sets (train --data):", ", ".join(sorted(data.images.IMAGE_SETS)))
            return 0
        if args.command == "demo":
            if args.flow not in flows.catalog():
                raise CLIError(f"unknown --flow {args.flow!r}; choose from "
                               f"{sorted(flows.catalog())}")
            metrics = demo(args.out, flow=args.flow, epochs=args.epochs, seed=args.seed,
                           verbose=2)
            print(f"test log-likelihood: {metrics['test_log_likelihood']:.4f} "
                  f"+/- {metrics['test_log_likelihood_2se']:.4f} nats "
                  f"({metrics['epochs_run']} epochs, {metrics['train_seconds']} s)")
            print(f"wrote {Path(args.out) / 'density.png'} and {Path(args.out) / 'metrics.json'}")
            return 0
        if args.command == "train":
            m = train(args)
            bpd = (f", {m['test_bits_per_dim']:.4f} bits/dim" if "test_bits_per_dim" in m
                   else "")
            print(f"test log-likelihood: {m['test_log_likelihood']:.4f} +/- "
                  f"{m['test_log_likelihood_se']:.4f} nats{bpd} (1 s.e.; {m['epochs']} epochs, "
                  f"{m['train_seconds']} s); wrote {args.out}/")
            return 0
        if args.command == "fit-energy":
            m = fit_energy(args)
            print(f"log Z estimate {m['log_z_estimate']:.4f} +/- {m['log_z_se']:.4f} "
                  f"(reference {m['log_z_reference']}), ESS {100 * m['ess_fraction']:.1f}%, "
                  f"loss {m['loss']:.4f}; wrote {args.out}/")
            return 0
        result = evaluate(args) if args.command == "evaluate" else sample(args)
        print(json.dumps(result))
        return 0
    except (CLIError, ValueError, TypeError, DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
