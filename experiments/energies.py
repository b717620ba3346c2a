"""Density estimation and reverse-KL fits on Rezende & Mohamed's energies U1-U4 and U8.

For each energy: fit a 50-component Gaussian mixture to exp(-U) by reverse KL
(``nf.data.energy``), draw the dataset ``energy_<name>`` from it, train MADE, MAF(10) with a
fixed (``sequential``) order, MAF(10) with alternating orders, MADE-MoG and MAF-MoG on those
samples with Keras ``fit`` (early stopping on the validation split), and fit a RealNVP to
exp(-U) directly by reverse KL (``nf.training.fit_reverse_kl``). Writes
``experiments/results/energies.csv`` and ``visualizations/energies_<name>.png``.

Usage::

    python experiments/energies.py            # full run (about 25 CPU minutes)
    python experiments/energies.py --quick    # 2-minute smoke run (writes energies_quick.csv)
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

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import normalizingflows as nf  # noqa: E402
from normalizingflows.data import energy as energies  # noqa: E402

__all__ = ["main", "MODELS"]

# label -> (catalog name, keyword arguments)
MODELS = {
    "MADE": ("made", {}),
    "MAF(10) sequential": ("maf", {"layers": 10, "order": "sequential"}),
    "MAF(10) alternating": ("maf", {"layers": 10, "order": "alternating"}),
    "MADE-MoG": ("made_mog", {"components": 10}),
    "MAF-MoG(5)": ("maf_mog", {"layers": 5, "components": 10}),
}
REVERSE = ("realnvp", {"layers": 6})

FULL = {"n": 20_000, "gmm_steps": 1500, "epochs": 15, "patience": 4, "batch_size": 256,
        "reverse_steps": 800, "reverse_batch": 256, "resolution": 150,
        "energies": ["u1", "u2", "u3", "u4", "u8"], "csv": "energies.csv", "prefix": "energies_"}
QUICK = {"n": 2_000, "gmm_steps": 150, "epochs": 2, "patience": 1, "batch_size": 256,
         "reverse_steps": 50, "reverse_batch": 128, "resolution": 50,
         "energies": ["u1"], "csv": "energies_quick.csv", "prefix": "energies_quick_"}


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def _scatter(ax: plt.Axes, x: np.ndarray, bound: float, title: str) -> None:
    ax.scatter(x[:, 0], x[:, 1], s=0.5, alpha=0.4, rasterized=True)
    ax.set_xlim(-bound, bound)
    ax.set_ylim(-bound, bound)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def run_energy(name: str, cfg: dict, seed: int, out_png: Path) -> list[dict]:
    """Every model on one energy; returns the CSV rows and writes the figure."""
    energy = energies.get(name)
    bound, res = energy.bound, cfg["resolution"]
    rows: list[dict] = []
    t0 = time.perf_counter()
    splits = nf.data.load(f"energy_{name}", n=cfg["n"], steps=cfg["gmm_steps"], seed=seed)
    gmm, facts = energies.fitted_gmm(name, steps=cfg["gmm_steps"], seed=seed)
    best = splits.info["best_log_likelihood"]
    ll, se = _mean_se(gmm.log_prob(splits.test).numpy())
    rows.append({"energy": name, "model": "GMM(50) reverse KL", "objective": "reverse KL",
                 "test_ll": ll, "test_ll_se": se, "best_ll": best,
                 "reverse_kl_loss": facts["reverse_kl_loss"], "neg_log_z": -energy.log_z,
                 "log_z_estimate": "", "parameters": 50 * 6 - 1,
                 "epochs_or_steps": cfg["gmm_steps"],
                 "seconds": time.perf_counter() - t0})
    print(f"[{name}] GMM: test LL {ll:.4f}, reverse-KL loss {facts['reverse_kl_loss']:.4f} "
          f"(-log Z = {-energy.log_z:.4f})", flush=True)

    fig, axes = plt.subplots(3, 3, figsize=(10.5, 11))
    axes = axes.ravel()
    nf.plot.density_heatmap(energy.log_prob_unnormalized, bound=bound, resolution=res,
                            ax=axes[0], title=f"exp(-U), {name.upper()}")
    nf.plot.density_heatmap(gmm, bound=bound, resolution=res, ax=axes[1],
                            title=f"GMM(50) fit, KL {facts['reverse_kl_loss'] + energy.log_z:.3f}")
    _scatter(axes[2], splits.train[:5000], bound, "GMM samples (the data)")

    for i, (label, (flow_name, kw)) in enumerate(MODELS.items()):
        t0 = time.perf_counter()
        tf_keras.utils.set_random_seed(seed)
        flow = nf.flows.build(flow_name, 2, seed=seed, **kw)
        flow.compile(tf_keras.optimizers.Adam(1e-3), jit_compile=True)
        hist = flow.fit(splits.train, batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                        validation_data=(splits.val,), verbose=0, shuffle=True,
                        callbacks=[tf_keras.callbacks.EarlyStopping(
                            patience=cfg["patience"], restore_best_weights=True)])
        ll, se = _mean_se(flow.log_prob(tf.constant(splits.test)).numpy())
        rows.append({"energy": name, "model": label, "objective": "max likelihood",
                     "test_ll": ll, "test_ll_se": se, "best_ll": best, "reverse_kl_loss": "",
                     "neg_log_z": -energy.log_z, "log_z_estimate": "",
                     "parameters": nf.diagnostics.count_parameters(flow),
                     "epochs_or_steps": len(hist.history["loss"]),
                     "seconds": time.perf_counter() - t0})
        nf.plot.density_heatmap(flow, bound=bound, resolution=res, ax=axes[3 + i],
                                title=f"{label}: test LL {ll:.3f}")
        print(f"[{name}] {label}: test LL {ll:.4f} +- {se:.4f} (best {best:.4f}), "
              f"{rows[-1]['epochs_or_steps']} epochs, {rows[-1]['seconds']:.0f} s", flush=True)

    t0 = time.perf_counter()
    flow = nf.flows.build(REVERSE[0], 2, seed=seed, **REVERSE[1])
    result = nf.training.fit_reverse_kl(flow, energy, steps=cfg["reverse_steps"],
                                        batch_size=cfg["reverse_batch"], lr=1e-3, seed=seed,
                                        verbose=0)
    ll, se = _mean_se(flow.log_prob(tf.constant(splits.test)).numpy())
    rows.append({"energy": name, "model": "RealNVP(6) reverse KL", "objective": "reverse KL",
                 "test_ll": ll, "test_ll_se": se, "best_ll": best,
                 "reverse_kl_loss": result.loss, "neg_log_z": -energy.log_z,
                 "log_z_estimate": result.log_z_estimate,
                 "parameters": nf.diagnostics.count_parameters(flow),
                 "epochs_or_steps": cfg["reverse_steps"], "seconds": time.perf_counter() - t0})
    nf.plot.density_heatmap(flow, bound=bound, resolution=res, ax=axes[8],
                            title=f"RealNVP reverse KL: loss {result.loss:.3f}")
    print(f"[{name}] RealNVP reverse KL: loss {result.loss:.4f} (-log Z {-energy.log_z:.4f}), "
          f"IS log Z {result.log_z_estimate:.4f}", flush=True)

    fig.suptitle(f"{name.upper()}: unnormalised target, GMM fit and data, flows trained on the "
                 f"GMM samples, a flow trained by reverse KL")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, out_png)
    plt.close(fig)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the experiment; ``--quick`` for a smoke run, ``--energies u1 u2`` for a subset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-minute smoke run")
    parser.add_argument("--energies", nargs="*", help="subset of u1 u2 u3 u4 u8")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.energies:
        cfg["energies"] = args.energies
    start = time.perf_counter()
    rows = []
    for name in cfg["energies"]:
        rows += run_energy(name, cfg, args.seed, ROOT / "visualizations" /
                           f"{cfg['prefix']}{name}.png")
    out = ROOT / "experiments" / "results" / cfg["csv"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v
                             for k, v in row.items()})
    os.replace(tmp, out)
    print(f"wrote {out} in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
