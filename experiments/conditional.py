"""conditional: conditional MAF on two 2-D conditional toy tasks, per-context test log-likelihoods.

One command (from the repository root):

    python experiments/conditional.py            # the full run (about 3 min on 2 CPUs)
    python experiments/conditional.py --quick    # a smoke run (about 30 s; *_quick files)

Tasks:

- ``banana``: the MAF paper's banana with its curvature as the context,
  ``p(x | k) = N(x2 | 0, 2^2) N(x1 | k x2^2 / 4, 1)`` with ``k ~ U[-1, 1]`` per training point
  (``k = 1`` is the banana of the MAF paper, ``nf.data.toy.banana``). The conditional density
  is known in closed form, so for each test context ``k`` in {-1, -0.5, 0, 0.5, 1} the test
  log-likelihood (fresh points drawn at that ``k``) stands next to the exact ``E[log p(x | k)]``
  on the same points (analytically ``-log(4 pi e) = -3.531`` for every ``k``) and the gap.
- ``moons``: class-conditional two moons (``nf.data.toy.moons``' centred definition, noise
  0.05, with the label of each point: 0 = upper moon, 1 = lower moon), the one-hot label as the
  context. Reported: the per-class test log-likelihood, and the marginal
  ``log p(x) = log sum_y p(x | y) / 2`` (``Flow.log_prob_marginal``, the MAF paper's way of
  evaluating conditional models) next to an unconditional MAF of the same size trained on the
  same points without labels. The exact densities (Gaussian noise around a uniformly drawn arc
  point) come from a 2,000-point midpoint quadrature along each arc.

Both tasks train ``maf`` (5 layers, 2 x 64 hidden units, alternating orders) with
``nf.training.fit`` (Adam 1e-3, cosine schedule, batch 512, best validation epoch, XLA).
Writes ``experiments/results/conditional.csv`` (``conditional_quick.csv`` with ``--quick``),
``visualizations/conditional_banana.png`` (model density per ``k`` above the exact density) and
``visualizations/conditional_moons.png`` (per-class, marginal and unconditional densities
above the exact ones and the data).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import normalizingflows as nf  # noqa: E402

__all__ = ["BANANA_CONTEXTS", "FULL", "QUICK", "banana_log_prob", "banana_sample",
           "labelled_moons", "moons_log_prob", "run_banana", "run_moons", "main"]

BANANA_CONTEXTS = (-1.0, -0.5, 0.0, 0.5, 1.0)
BANANA_BOUND = 7.0
MOONS_BOUND = 1.8
MOONS_NOISE = 0.05
# The exact E[log p(x | k)] of the banana: -H(N(0, 4)) - H(N(0, 1)) = -log(4 pi e), any k.
BANANA_ENTROPY = math.log(4.0 * math.pi * math.e)
FIELDS = ["task", "context", "model", "test_log_likelihood", "test_se", "exact", "gap",
          "gap_se", "grid_integral", "n_test", "parameters", "epochs", "best_epoch",
          "train_seconds"]

FLOW = {"layers": 5, "hidden_units": 64}
FULL = {"n_banana": 50_000, "n_moons": 40_000, "n_val": 5_000, "n_test": 5_000,
        "epochs": 30, "batch_size": 512, "lr": 1e-3, "resolution": 160, "banana_grid": 400,
        "moons_grid": 300, "jit_compile": True, "suffix": ""}
QUICK = {"n_banana": 2_000, "n_moons": 2_000, "n_val": 500, "n_test": 500,
         "epochs": 2, "batch_size": 256, "lr": 1e-3, "resolution": 40, "banana_grid": 80,
         "moons_grid": 80, "jit_compile": False, "suffix": "_quick"}


# ----------------------------------------------------------------------------- the banana task

def banana_sample(k: np.ndarray, *, seed: int) -> np.ndarray:
    """One point of ``p(x | k)`` per entry of ``k``: ``x2 = 2 e2``, ``x1 = k x2^2 / 4 + e1``.

    Args:
        k: Curvatures, shape ``[N]``.
        seed: Seed of the generator.

    Returns:
        ``float32`` array ``[N, 2]`` (columns ``x1``, ``x2``).
    """
    rng = np.random.default_rng(seed)
    k = np.asarray(k, dtype=np.float64)
    x2 = 2.0 * rng.standard_normal(k.shape)
    x1 = k * x2**2 / 4.0 + rng.standard_normal(k.shape)
    return np.stack([x1, x2], axis=1).astype(np.float32)


def banana_log_prob(x: np.ndarray, k: float | np.ndarray) -> np.ndarray:
    """Exact ``log p(x | k) = log N(x2 | 0, 4) + log N(x1 | k x2^2 / 4, 1)`` in float64.

    Args:
        x: Points ``[N, 2]``.
        k: One curvature, or one per point ``[N]``.

    Returns:
        Array ``[N]``.
    """
    x = np.asarray(x, dtype=np.float64)
    x1, x2 = x[:, 0], x[:, 1]
    mean = np.asarray(k, dtype=np.float64) * x2**2 / 4.0
    return (-0.5 * math.log(2.0 * math.pi * 4.0) - x2**2 / 8.0
            - 0.5 * math.log(2.0 * math.pi) - 0.5 * (x1 - mean) ** 2)


# ------------------------------------------------------------------------------ the moons task

def _arc(label: int, t: np.ndarray) -> np.ndarray:
    """The noise-free point at angle ``t`` of moon ``label`` (0 upper, 1 lower), centred as in
    ``nf.data.toy.moons``."""
    if label == 0:
        points = np.stack([np.cos(t), np.sin(t)], axis=-1)
    else:
        points = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=-1)
    return points - np.array([0.5, 0.25])


def labelled_moons(n: int, *, seed: int, noise: float = MOONS_NOISE
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Two moons with labels: ``n // 2`` points per moon (angle uniform on [0, pi]) plus noise.

    Args:
        n: Number of points.
        seed: Seed of the generator.
        noise: Std of the Gaussian noise on each coordinate.

    Returns:
        ``(x float32 [n, 2], labels int64 [n])``, shuffled together.
    """
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) >= n // 2).astype(np.int64)
    t = np.pi * rng.random(n)
    clean = np.where(labels[:, None] == 0, _arc(0, t), _arc(1, t))
    x = clean + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return x[order].astype(np.float32), labels[order]


def moons_log_prob(x: np.ndarray, label: int | None, *, m: int = 2000, chunk: int = 1000,
                   noise: float = MOONS_NOISE) -> np.ndarray:
    """``log p(x | y)`` of one moon (or the equal mixture for ``label=None``) by quadrature.

    ``p(x | y) = (1 / pi) int_0^pi N(x | arc_y(t), noise^2 I) dt``, a midpoint rule with ``m``
    nodes (spacing ``pi / m``, far below the noise for the default ``m``).

    Args:
        x: Points ``[N, 2]``.
        label: 0, 1, or ``None`` for ``log (p(x | 0) + p(x | 1)) / 2``.
        m: Quadrature nodes per arc.
        chunk: Points per vectorised block.
        noise: Std of the noise.

    Returns:
        Float64 array ``[N]``.
    """
    x = np.asarray(x, dtype=np.float64)
    t = (np.arange(m) + 0.5) * np.pi / m
    labels = (0, 1) if label is None else (int(label),)
    nodes = np.concatenate([_arc(y, t) for y in labels])
    log_w = -math.log(len(nodes))
    out = []
    for i in range(0, len(x), chunk):
        d2 = ((x[i:i + chunk, None, :] - nodes[None]) ** 2).sum(-1)
        a = log_w - d2 / (2.0 * noise**2) - math.log(2.0 * math.pi * noise**2)
        top = a.max(1, keepdims=True)
        out.append(top[:, 0] + np.log(np.exp(a - top).sum(1)))
    return np.concatenate(out)


# --------------------------------------------------------------------------------------- shared

def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def _row(task: str, context: str, model: str, ll: np.ndarray, exact: np.ndarray | None,
         *, integral: float | None, parameters: int, result: object) -> dict:
    mean, se = _mean_se(ll)
    row = {"task": task, "context": context, "model": model,
           "test_log_likelihood": round(mean, 4), "test_se": round(se, 4),
           "exact": "", "gap": "", "gap_se": "",
           "grid_integral": "" if integral is None else round(integral, 4),
           "n_test": len(ll), "parameters": parameters,
           "epochs": result.epochs_run, "best_epoch": result.best_epoch,
           "train_seconds": round(result.seconds, 1)}
    if exact is not None:
        e_mean, _ = _mean_se(exact)
        gap, gap_se = _mean_se(np.asarray(exact, np.float64) - np.asarray(ll, np.float64))
        row.update(exact=round(e_mean, 4), gap=round(gap, 4), gap_se=round(gap_se, 4))
    print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def _train(flow: nf.flows.Flow, train: object, val: object, cfg: dict, seed: int) -> object:
    return nf.training.fit(flow, train, val=val, epochs=cfg["epochs"],
                           batch_size=cfg["batch_size"], lr=cfg["lr"], schedule="cosine",
                           seed=seed, verbose=0, jit_compile=cfg["jit_compile"])


def _log_prob(flow: nf.flows.Flow, x: np.ndarray, context: np.ndarray | None = None
              ) -> np.ndarray:
    if context is None:
        return flow.log_prob(tf.constant(x)).numpy()
    return flow.log_prob(tf.constant(x), context=tf.constant(context, tf.float32)).numpy()


def _callable(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[object], np.ndarray]:
    """A numpy log-density as the ``x [N, 2] -> [N]`` callable the plot functions take."""
    return lambda x: fn(np.asarray(x, dtype=np.float64))


def _tidy(ax: plt.Axes, fontsize: int = 9) -> None:
    ax.title.set_fontsize(fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    plt.close(fig)


def run_banana(cfg: dict, seed: int, png: Path) -> list[dict]:
    """Train the conditional MAF on the curvature-conditioned banana; rows per context + figure.

    Args:
        cfg: :data:`FULL` or :data:`QUICK` (or a variant).
        seed: Seed of data, weights and shuffling.
        png: Where the figure goes.

    Returns:
        One row per test context (and one for contexts drawn from ``U[-1, 1]``).
    """
    rng = np.random.default_rng(seed)
    k_train = rng.uniform(-1.0, 1.0, cfg["n_banana"])
    k_val = rng.uniform(-1.0, 1.0, cfg["n_val"])
    k_mix = rng.uniform(-1.0, 1.0, cfg["n_test"])
    x_train = banana_sample(k_train, seed=seed + 1)
    x_val = banana_sample(k_val, seed=seed + 2)
    flow = nf.flows.build("maf", 2, context_features=1, seed=seed, **FLOW)
    result = _train(flow, (x_train, k_train[:, None]), (x_val, k_val[:, None]), cfg, seed)
    params = nf.diagnostics.count_parameters(flow)
    rows = []
    for i, k in enumerate(BANANA_CONTEXTS):
        x = banana_sample(np.full(cfg["n_test"], k), seed=seed + 100 + i)
        ll = _log_prob(flow, x, np.full((len(x), 1), k))
        integral = nf.diagnostics.grid_integral(flow, bound=14.0,
                                                resolution=cfg["banana_grid"], context=[k])
        rows.append(_row("banana", f"k={k:g}", "maf (conditional)", ll,
                         banana_log_prob(x, k), integral=integral, parameters=params,
                         result=result))
    x = banana_sample(k_mix, seed=seed + 99)
    rows.append(_row("banana", "k~U[-1,1]", "maf (conditional)",
                     _log_prob(flow, x, k_mix[:, None]), banana_log_prob(x, k_mix),
                     integral=None, parameters=params, result=result))

    n = len(BANANA_CONTEXTS)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 6.4), squeeze=False)
    for j, (k, row) in enumerate(zip(BANANA_CONTEXTS, rows, strict=False)):
        nf.plot.density_heatmap(flow, bound=BANANA_BOUND, resolution=cfg["resolution"],
                                ax=axes[0, j], context=[k],
                                title=f"MAF, k = {k:g}\nLL {row['test_log_likelihood']:.3f} "
                                      f"(gap {row['gap']:.3f})")
        nf.plot.density_heatmap(_callable(lambda x, k=k: banana_log_prob(x, k)),
                                bound=BANANA_BOUND, resolution=cfg["resolution"],
                                ax=axes[1, j], title=f"exact, k = {k:g}\n"
                                                     f"E log p {row['exact']:.3f}")
        _tidy(axes[0, j])
        _tidy(axes[1, j])
    fig.suptitle("banana p(x | k) = N(x2 | 0, 4) N(x1 | k x2^2/4, 1): conditional MAF (top), "
                 f"exact (bottom); x1 across, x2 up, [-{BANANA_BOUND:g}, {BANANA_BOUND:g}]^2",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, png)
    return rows


def run_moons(cfg: dict, seed: int, png: Path) -> list[dict]:
    """Class-conditional two moons: conditional MAF per class and marginal, unconditional MAF.

    Args:
        cfg: :data:`FULL` or :data:`QUICK` (or a variant).
        seed: Seed of data, weights and shuffling.
        png: Where the figure goes.

    Returns:
        Rows: each class, the conditional flow's marginal, the unconditional flow.
    """
    x_train, y_train = labelled_moons(cfg["n_moons"], seed=seed + 10)
    x_val, y_val = labelled_moons(cfg["n_val"], seed=seed + 11)
    eye = np.eye(2, dtype=np.float32)
    cond = nf.flows.build("maf", 2, context_features=2, seed=seed, **FLOW)
    res_cond = _train(cond, (x_train, eye[y_train]), (x_val, eye[y_val]), cfg, seed)
    plain = nf.flows.build("maf", 2, seed=seed, **FLOW)
    res_plain = _train(plain, x_train, x_val, cfg, seed)
    p_cond = nf.diagnostics.count_parameters(cond)
    p_plain = nf.diagnostics.count_parameters(plain)

    rows, tests = [], []
    for y in (0, 1):
        x_all, labels = labelled_moons(2 * cfg["n_test"], seed=seed + 20 + y)
        x = x_all[labels == y]  # n_test fresh points of moon y
        tests.append(x)
        ll = _log_prob(cond, x, np.repeat(eye[y:y + 1], len(x), axis=0))
        integral = nf.diagnostics.grid_integral(cond, bound=MOONS_BOUND,
                                                resolution=cfg["moons_grid"], context=eye[y])
        rows.append(_row("moons", f"y={y}", "maf (conditional)", ll, moons_log_prob(x, y),
                         integral=integral, parameters=p_cond, result=res_cond))
    x = np.concatenate(tests)  # equal classes: a sample of the marginal
    exact = moons_log_prob(x, None)
    marginal = cond.log_prob_marginal(tf.constant(x)).numpy()
    integral = nf.diagnostics.grid_integral(_callable(
        lambda z: cond.log_prob_marginal(tf.constant(z, tf.float32)).numpy()),
        bound=MOONS_BOUND, resolution=cfg["moons_grid"])
    rows.append(_row("moons", "marginal", "maf (conditional), log_prob_marginal", marginal,
                     exact, integral=integral, parameters=p_cond, result=res_cond))
    integral = nf.diagnostics.grid_integral(plain, bound=MOONS_BOUND,
                                            resolution=cfg["moons_grid"])
    rows.append(_row("moons", "marginal", "maf (unconditional)", _log_prob(plain, x), exact,
                     integral=integral, parameters=p_plain, result=res_plain))

    res = cfg["resolution"]
    fig, axes = plt.subplots(2, 4, figsize=(12.4, 6.4), squeeze=False)
    for y in (0, 1):
        r = rows[y]
        nf.plot.density_heatmap(cond, bound=MOONS_BOUND, resolution=res, ax=axes[0, y],
                                context=eye[y],
                                title=f"MAF p(x | y={y})\nLL {r['test_log_likelihood']:.3f} "
                                      f"(gap {r['gap']:.3f})")
        nf.plot.density_heatmap(_callable(lambda z, y=y: moons_log_prob(z, y)),
                                bound=MOONS_BOUND, resolution=res, ax=axes[1, y],
                                title=f"exact p(x | y={y})\nE log p {r['exact']:.3f}")
    r = rows[2]
    nf.plot.density_heatmap(lambda z: cond.log_prob_marginal(z), bound=MOONS_BOUND,
                            resolution=res, ax=axes[0, 2],
                            title=f"MAF sum_y p(x | y) / 2\nLL {r['test_log_likelihood']:.3f} "
                                  f"(gap {r['gap']:.3f})")
    nf.plot.density_heatmap(_callable(lambda z: moons_log_prob(z, None)), bound=MOONS_BOUND,
                            resolution=res, ax=axes[1, 2],
                            title=f"exact p(x)\nE log p {r['exact']:.3f}")
    r = rows[3]
    nf.plot.density_heatmap(plain, bound=MOONS_BOUND, resolution=res, ax=axes[0, 3],
                            title=f"unconditional MAF p(x)\nLL {r['test_log_likelihood']:.3f} "
                                  f"(gap {r['gap']:.3f})")
    edges = np.linspace(-MOONS_BOUND, MOONS_BOUND, res // 2 + 1)
    hist, _, _ = np.histogram2d(x_train[:, 0], x_train[:, 1], bins=[edges, edges], density=True)
    axes[1, 3].imshow(hist.T, origin="lower", aspect="equal",
                      extent=(-MOONS_BOUND, MOONS_BOUND, -MOONS_BOUND, MOONS_BOUND))
    axes[1, 3].set_title(f"training data ({len(x_train):,} points)")
    for ax in axes.ravel():
        _tidy(ax)
    fig.suptitle("class-conditional two moons: conditional MAF (top) and the exact densities "
                 "(bottom)", fontsize=10)
    fig.tight_layout()
    _save(fig, png)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    """Write ``rows`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run both tasks; ``--quick`` for a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets and no XLA compilation: a smoke run (*_quick files)")
    parser.add_argument("--tasks", nargs="+", default=["banana", "moons"],
                        choices=["banana", "moons"])
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "visualizations")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    suffix = cfg["suffix"]
    start = time.perf_counter()
    rows: list[dict] = []
    if "banana" in args.tasks:
        rows += run_banana(cfg, args.seed, args.figures_dir / f"conditional{suffix}_banana.png")
    if "moons" in args.tasks:
        rows += run_moons(cfg, args.seed, args.figures_dir / f"conditional{suffix}_moons.png")
    out = args.results_dir / f"conditional{suffix}.csv"
    write_csv(rows, out)
    print(f"wrote {out} and the figures in {args.figures_dir} in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
