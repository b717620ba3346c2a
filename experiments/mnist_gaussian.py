"""The linear baseline for the MNIST table: a full-covariance Gaussian in logit space.

Fits the mean and covariance of the MNIST training digits here (logit space, lambda = 1e-6),
with the covariance shrunk towards ``shrink`` times its mean variance on the diagonal, and
prints test bits/dim on the 10,000 test digits for a few ``shrink`` values.

    PYTHONPATH=. .venv/bin/python experiments/mnist_gaussian.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import normalizingflows as nf
from normalizingflows.data.preprocess import LAMBDA_MNIST, bits_per_dim, inverse_logit_transform


def main() -> dict[float, float]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    data_dir = os.environ.get("NF_DATA_DIR") or (str(shared) if shared.is_dir() else None)
    splits = nf.data.load("mnist", data_dir=data_dir, seed=0, form="logit")
    xtr, xte = splits.train.astype(np.float64), splits.test.astype(np.float64)
    mean, cov = xtr.mean(0), np.cov(xtr, rowvar=False)
    d = xtr.shape[1]
    pixels = inverse_logit_transform(xte, LAMBDA_MNIST)
    out = {}
    for shrink in (1e-3, 1e-2, 1e-1):
        chol = np.linalg.cholesky(cov + shrink * np.trace(cov) / d * np.eye(d))
        z = np.linalg.solve(chol, (xte - mean).T).T
        log_prob = (-0.5 * (z ** 2).sum(1) - np.log(np.diag(chol)).sum()
                    - 0.5 * d * np.log(2 * np.pi))
        out[shrink] = float(bits_per_dim(log_prob, pixels, LAMBDA_MNIST).mean())
        print(f"shrink {shrink:g}: test {out[shrink]:.4f} bits/dim "
              f"({len(xtr)} training digits, {len(xte)} test digits)")
    return out


if __name__ == "__main__":
    main()
