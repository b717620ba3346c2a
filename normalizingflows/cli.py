"""Command line: ``python -m normalizingflows {list,demo} ...``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "demo"]


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m normalizingflows``."""
    parser = argparse.ArgumentParser(prog="normalizingflows", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the catalog flows and the datasets")
    p_demo = sub.add_parser("demo", help="train a flow on two moons, write a density heatmap")
    p_demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p_demo.add_argument("--flow", default="maf", help="catalog flow name (default maf)")
    p_demo.add_argument("--epochs", type=int, default=100)
    p_demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from . import data, flows

    if args.command == "list":
        for name, entry in sorted(flows.entries().items()):
            print(f"{name:20s} fast: {entry.fast_direction:8s} {entry.paper} ({entry.arxiv})")
        print("datasets:", ", ".join(data.names()))
        return 0
    if args.flow not in flows.catalog():
        parser.error(f"unknown --flow {args.flow!r}; choose from {sorted(flows.catalog())}")
    metrics = demo(args.out, flow=args.flow, epochs=args.epochs, seed=args.seed, verbose=2)
    print(f"test log-likelihood: {metrics['test_log_likelihood']:.4f} "
          f"+/- {metrics['test_log_likelihood_2se']:.4f} nats "
          f"({metrics['epochs_run']} epochs, {metrics['train_seconds']} s)")
    print(f"wrote {Path(args.out) / 'density.png'} and {Path(args.out) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
