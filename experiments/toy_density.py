"""toy_density: catalog flows x 2-D toy sets -> test log-likelihood against the best possible.

One command (from the repository root):

    python experiments/toy_density.py            # the full table (about 30-40 min on 2 CPUs)
    python experiments/toy_density.py --quick    # a smoke run (a minute or two)

Writes (or, for a subset of flows/sets, updates the matching rows of)
``experiments/results/toy_density.csv`` (``toy_density_quick.csv`` with ``--quick``) and
the heatmap grid ``visualizations/toy_density_grid.png`` (data | one column per flow).

The best possible test log-likelihood of a set is E_p[log p(x)] (minus its differential
entropy): ``nf.data.toy.best_log_likelihood(name)`` where known; for ``moons`` and ``rings``,
whose densities are Gaussian noise around curves, it is computed here by Monte Carlo over
fresh points (200,000 for rings with its closed-form ring density, a Bessel function;
50,000 for moons with log p(x) from a 4,000-point quadrature along the two arcs).
Every flow trains with ``nf.training.fit`` (Adam, cosine schedule, best validation epoch).
"""

from __future__ import annotations

import argparse
import csv
import math
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

import normalizingflows as nf  # noqa: E402

__all__ = ["FLOWS", "SETS", "best_log_likelihood", "run"]

SETS = ("8gaussians", "checkerboard", "moons", "rings")
# name -> (constructor kwargs, fit kwargs); budgets: 1-6 minutes each on 2 shared CPU cores.
FLOWS: dict[str, tuple[dict, dict]] = {
    "maf": ({"layers": 5, "hidden_units": 128}, {"epochs": 20, "lr": 1e-3}),
    "realnvp": ({"layers": 8, "hidden_units": 128}, {"epochs": 15, "lr": 1e-3}),
    "nsf_coupling": ({"layers": 4, "hidden_units": 128, "bins": 24, "bound": 5.0},
                     {"epochs": 30, "lr": 1e-3}),
    "nsf_autoregressive": ({"layers": 4, "hidden_units": 128, "bins": 24, "bound": 5.0},
                           {"epochs": 50, "lr": 1e-3}),
}
BOUNDS = {"8gaussians": 4.0, "checkerboard": 4.4, "moons": 1.8, "rings": 3.6}


def _curves(name: str, m: int = 2000) -> tuple[np.ndarray, np.ndarray, float]:
    """Points along the noise-free curves of ``name``, their log-weights, and the noise std."""
    t = (np.arange(m) + 0.5) / m
    if name == "moons":
        a = np.pi * t
        outer = np.stack([np.cos(a), np.sin(a)], 1)
        inner = np.stack([1.0 - np.cos(a), 0.5 - np.sin(a)], 1)
        points = np.concatenate([outer, inner]) - np.array([0.5, 0.25])
        return points, np.full(2 * m, -math.log(2 * m)), 0.05
    raise ValueError(f"no curve model for {name!r}")


def _log_i0(z: np.ndarray) -> np.ndarray:
    """log I0(z), z >= 0: exact below 500, the asymptotic series above (no overflow)."""
    small = np.minimum(z, 500.0)
    big = np.maximum(z, 500.0)
    asym = big - 0.5 * np.log(2 * np.pi * big) + np.log1p(1 / (8 * big) + 9 / (128 * big**2))
    return np.where(z < 500.0, np.log(np.i0(small)), asym)


def _rings_log_prob(x: np.ndarray, sigma: float = 0.08) -> np.ndarray:
    """Equal mixture of circles (radius 0.75, 1.5, 2.25, 3) with Gaussian noise: averaging the
    2-D Gaussian over the angle gives exp(-(rho^2 + r^2) / 2 s^2) I0(rho r / s^2) / (2 pi s^2)."""
    rho = np.sqrt((x**2).sum(1))[:, None]
    r = np.array([0.75, 1.5, 2.25, 3.0])[None]
    a = (-(rho**2 + r**2) / (2 * sigma**2) + _log_i0(rho * r / sigma**2)
         - math.log(2 * math.pi * sigma**2) - math.log(4.0))
    top = a.max(1, keepdims=True)
    return top[:, 0] + np.log(np.exp(a - top).sum(1))


def _curve_log_prob(name: str, x: np.ndarray, chunk: int = 500) -> np.ndarray:
    if name == "rings":
        return _rings_log_prob(x)
    points, log_w, sigma = _curves(name)
    out = []
    for i in range(0, len(x), chunk):
        d2 = ((x[i:i + chunk, None, :] - points[None]) ** 2).sum(-1)
        a = log_w - d2 / (2 * sigma**2) - math.log(2 * math.pi * sigma**2)
        top = a.max(1, keepdims=True)
        out.append(top[:, 0] + np.log(np.exp(a - top).sum(1)))
    return np.concatenate(out)


def best_log_likelihood(name: str, n: int = 200_000) -> tuple[float, float]:
    """E_p[log p] of toy set ``name`` and its Monte Carlo standard error (0 when exact)."""
    known = nf.data.toy.best_log_likelihood(name)
    if known is not None:
        return float(known), 0.0
    n = n if name == "rings" else n // 4  # the moons quadrature costs more per point
    x = nf.data.toy.sample(name, n, seed=12345).astype(np.float64)
    lp = _curve_log_prob(name, x)
    return float(lp.mean()), float(lp.std() / math.sqrt(n))


def run(sets: list[str], flows: list[str], *, n: int, epochs: int | None, batch_size: int,
        seed: int, verbose: int, jit_compile: bool = True) -> tuple[list[dict], dict]:
    """Train every flow on every set; return one row per pair."""
    rows, models = [], {}
    for data_name in sets:
        best, best_se = best_log_likelihood(data_name)
        splits = nf.data.load(data_name, n=n, seed=seed)
        for flow_name in flows:
            flow_kwargs, fit_kwargs = FLOWS[flow_name]
            fit_kwargs = dict(fit_kwargs)
            if epochs is not None:
                fit_kwargs["epochs"] = epochs
            flow = nf.flows.build(flow_name, 2, seed=seed, **flow_kwargs)
            try:
                result = nf.training.fit(flow, splits.train, val=splits.val,
                                         batch_size=batch_size, schedule="cosine", seed=seed,
                                         verbose=verbose, jit_compile=jit_compile,
                                         **fit_kwargs)
            except Exception as err:  # one broken catalog entry must not sink the table
                lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
                message = next((ln for ln in reversed(lines) if "Error" in ln),
                               lines[-1] if lines else "")[:200]
                print(f"{data_name} {flow_name}: FAILED: {type(err).__name__}: {message}",
                      flush=True)
                rows.append({"dataset": data_name, "flow": flow_name,
                             "test_log_likelihood": math.nan, "test_se": math.nan,
                             "best_possible": round(best, 4),
                             "best_possible_se": round(best_se, 4), "gap": math.nan,
                             "parameters": nf.diagnostics.count_parameters(flow), "epochs": 0,
                             "best_epoch": None, "train_seconds": math.nan,
                             "n_train": len(splits.train), "n_test": len(splits.test),
                             "error": f"{type(err).__name__}: {message}"})
                continue
            ll = np.concatenate([flow.log_prob(splits.test[i:i + 20_000]).numpy()
                                 for i in range(0, len(splits.test), 20_000)])
            row = {"dataset": data_name, "flow": flow_name,
                   "test_log_likelihood": round(float(ll.mean()), 4),
                   "test_se": round(float(ll.std() / math.sqrt(len(ll))), 4),
                   "best_possible": round(best, 4), "best_possible_se": round(best_se, 4),
                   "gap": round(best - float(ll.mean()), 4),
                   "parameters": nf.diagnostics.count_parameters(flow),
                   "epochs": result.epochs_run, "best_epoch": result.best_epoch,
                   "train_seconds": round(result.seconds, 1), "n_train": len(splits.train),
                   "n_test": len(splits.test), "error": ""}
            rows.append(row)
            models[(data_name, flow_name)] = flow
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows, models


def grid_figure(sets: list[str], flows: list[str], rows: list[dict], models: dict, *, seed: int
                ) -> plt.Figure:
    """Rows: toy sets; columns: the data (2-D histogram) and each flow's density."""
    fig, axes = plt.subplots(len(sets), len(flows) + 1,
                             figsize=(2.6 * (len(flows) + 1), 2.6 * len(sets)), squeeze=False)
    lookup = {(r["dataset"], r["flow"]): r for r in rows}
    for i, data_name in enumerate(sets):
        bound = BOUNDS.get(data_name, 4.0)
        x = nf.data.toy.sample(data_name, 200_000, seed=seed + 7)
        edges = np.linspace(-bound, bound, 121)
        hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges], density=True)
        ax = axes[i, 0]
        ax.imshow(hist.T, origin="lower", extent=(-bound, bound, -bound, bound))
        ax.set_title(f"{data_name}\nbest {lookup[(data_name, flows[0])]['best_possible']:.3f}",
                     fontsize=9)
        for j, flow_name in enumerate(flows, start=1):
            r = lookup[(data_name, flow_name)]
            if (data_name, flow_name) not in models:
                axes[i, j].text(0.5, 0.5, f"{flow_name}\nfailed", ha="center", va="center")
                continue
            nf.plot.density_heatmap(models[(data_name, flow_name)], bound=bound, resolution=160,
                                    ax=axes[i, j], title=f"{flow_name}\n"
                                    f"{r['test_log_likelihood']:.3f} (gap {r['gap']:.3f})")
            axes[i, j].title.set_fontsize(9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets and no XLA compilation: a smoke run")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS))
    parser.add_argument("--n", type=int, default=None, help="points per set (80/10/10 split)")
    parser.add_argument("--epochs", type=int, default=None, help="override every flow's epochs")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    n = args.n or (4_000 if args.quick else 125_000)
    epochs = args.epochs or (2 if args.quick else None)
    suffix = "_quick" if args.quick else ""
    start = time.perf_counter()
    rows, models = run(args.sets, args.flows, n=n, epochs=epochs, batch_size=args.batch_size,
                       seed=args.seed, verbose=args.verbose, jit_compile=not args.quick)
    results = ROOT / "experiments" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"toy_density{suffix}.csv"
    # A run over some flows or sets replaces only its own rows of an existing table.
    keys = {(r["dataset"], r["flow"]) for r in rows}
    kept = []
    if out.exists():
        with open(out, newline="") as f:
            kept = [r for r in csv.DictReader(f) if (r["dataset"], r["flow"]) not in keys]
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept + rows)
    os.replace(tmp, out)
    fig = grid_figure(args.sets, args.flows, rows, models, seed=args.seed)
    partial = "" if (args.flows == list(FLOWS) and args.sets == list(SETS)) else \
        "_" + "_".join(args.flows)
    png = ROOT / "visualizations" / f"toy_density{suffix}{partial}_grid.png"
    png.parent.mkdir(exist_ok=True)
    tmp_png = png.with_name(f".{png.stem}.tmp.png")
    fig.savefig(tmp_png, dpi=90)
    os.replace(tmp_png, png)
    print(f"wrote {out} and {png} in {time.perf_counter() - start:.0f} s")
    for data_name in args.sets:
        done = [r for r in rows if r["dataset"] == data_name and not r["error"]]
        if not done:
            continue
        best = min(done, key=lambda r: r["gap"])
        print(f"{data_name}: best flow {best['flow']} gap {best['gap']:.3f} nats "
              f"({best['train_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
