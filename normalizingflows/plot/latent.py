"""The latent-space diagnostic of the MAF paper: data mapped to the base should look N(0, I)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..diagnostics import normality_test  # noqa: E402

__all__ = ["latent_space"]


def latent_space(flow: Any, x: Any, *, bins: int = 50, quantiles: int = 200) -> Figure:
    """Data mapped to the latent space by ``flow.to_base``, against the N(0, I) base.

    Three panels: the first two latent coordinates (with the 1 and 2 sigma circles), a histogram
    of all latent coordinates over the N(0, 1) density, and a QQ plot of the latent quantiles
    against N(0, 1) quantiles. The suptitle reports the smallest per-dimension KS p-value and
    max |cov - I| of :func:`normalizingflows.diagnostics.normality_test`.

    Args:
        flow: A Flow (anything with ``to_base``).
        x: Data, shape ``[N, D]``.
        bins: Histogram bins.
        quantiles: Points of the QQ plot.

    Returns:
        The Figure.

    References:
        Papamakarios, Pavlakou and Murray, "Masked Autoregressive Flow for Density
        Estimation", 2017. https://arxiv.org/abs/1705.07057

    Example:
        >>> import numpy as np
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("maf", 2, layers=1, hidden_units=4)
        >>> x = np.random.default_rng(0).normal(size=(200, 2)).astype("float32")
        >>> len(latent_space(flow, x).axes)
        3
    """
    z = np.asarray(flow.to_base(x), dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    result = normality_test(z)
    fig = Figure(figsize=(12, 4))
    ax_z, ax_h, ax_q = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))

    z1 = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
    ax_z.scatter(z[:, 0], z1, s=1, alpha=0.5)
    t = np.linspace(0.0, 2.0 * np.pi, 200)
    for r in (1.0, 2.0):
        ax_z.plot(r * np.cos(t), r * np.sin(t), "k--", lw=0.8)
    lim = max(3.5, float(np.quantile(np.abs(z[:, :2]), 0.995)))
    ax_z.set_xlim(-lim, lim)
    ax_z.set_ylim(-lim, lim)
    ax_z.set_aspect("equal")
    ax_z.set_xlabel("z1")
    ax_z.set_ylabel("z2" if z.shape[1] > 1 else "")
    ax_z.set_title("latent codes")

    flat = z.ravel()
    ax_h.hist(flat, bins=bins, range=(-lim, lim), density=True, alpha=0.6, label="latent")
    grid = np.linspace(-lim, lim, 300)
    ax_h.plot(grid, np.exp(-0.5 * grid ** 2) / np.sqrt(2.0 * np.pi), "k", label="N(0, 1)")
    ax_h.legend(fontsize="small")
    ax_h.set_title("all latent coordinates")

    probs = (np.arange(quantiles) + 0.5) / quantiles
    theory = tf.math.ndtri(tf.constant(probs, tf.float64)).numpy()
    ax_q.plot(theory, np.quantile(flat, probs), ".", ms=3)
    ax_q.plot(theory[[0, -1]], theory[[0, -1]], "k--", lw=0.8)
    ax_q.set_xlabel("N(0, 1) quantiles")
    ax_q.set_ylabel("latent quantiles")
    ax_q.set_title("QQ plot")

    fig.suptitle(f"min KS p-value {result.min_p_value:.3g}, "
                 f"max |cov - I| {result.max_cov_error:.3g}")
    fig.tight_layout()
    return fig
