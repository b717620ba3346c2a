"""CelebA faces with image flows (Glow, multiscale RealNVP): test bits/dim, samples, interpolations.

Trains one flow on the CelebA faces available (``nf.data.images.load_image_rows``: the central
148x148 crop resized to 32x32 or 64x64, dequantised, logit-transformed with lambda = 0.05 as in
RealNVP) with Keras ``fit``, early stopping on the validation loss and a wall-clock budget;
``--flip`` (on by default) adds the horizontally mirrored training faces, as the RealNVP and
Glow papers do. Reports test bits/dim on the held-out partition and writes two figures:
samples at two temperatures next to real test faces, and latent interpolations (the test faces
mapped to the base with ``flow.to_base``, linear interpolation between pairs, mapped back).

Example (the runs in experiments/README.md)::

    PYTHONPATH=. .venv/bin/python experiments/celeba_flows.py --data celeba32 --max-minutes 25
"""

from __future__ import annotations

import argparse
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
from mnist_flows import (  # noqa: E402
    BitsPerDim,
    add_training_arguments,
    constructor_kwargs,
    float32_copy,
    flow_kwargs,
    mean_logit_ldj,
    relative,
    run_record,
    warm_start,
    write_result,
)

import normalizingflows as nf  # noqa: E402

DEFAULTS = {  # per flow: constructor keywords
    "glow": {"layers": 8, "levels": 3, "hidden_units": 64, "blocks": 1},
    "realnvp_image": {"layers": 2, "levels": 3, "hidden_units": 32, "blocks": 2},
}


def mirrored(rows: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The rows' images flipped left to right, as rows."""
    return rows.reshape(-1, *shape)[:, :, ::-1, :].reshape(len(rows), -1)


def interpolate(flow: nf.flows.Flow, a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Rows along the straight line between the latents of rows ``a`` and ``b`` (pairwise):
    ``[len(a) * steps, D]``, each pair's ``steps`` rows in order (ends included)."""
    za, zb = flow.to_base(a).numpy(), flow.to_base(b).numpy()
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    z = ((1 - t) * za[:, None, :] + t * zb[:, None, :]).reshape(-1, za.shape[-1])
    return flow.bijector.forward(z.astype(np.float32)).numpy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["celeba32", "celeba64"], default="celeba32")
    parser.add_argument("--flow", choices=sorted(DEFAULTS), default="glow")
    add_training_arguments(parser, epochs=100, max_minutes=25.0, batch_size=32, lr=1e-3)
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="train on the faces as they are (no mirrored copies; with --augment, "
                        "no random mirrors)")
    add_temperature_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="at most this many faces per split (quick runs)")
    parser.add_argument("--data-dir", default=os.environ.get("NF_DATA_DIR"))
    parser.add_argument("--out", default=str(ROOT / "out" / "celeba"),
                        help="folder of the checkpoint (not committed)")
    parser.add_argument("--tag", default="", help="suffix of the result and figure names")
    args = parser.parse_args(argv)
    if args.data_dir is None and (ROOT.parent / "shared" / "data" / "celeba").is_dir():
        args.data_dir = str(ROOT.parent / "shared" / "data")

    splits = nf.data.images.load_image_rows(args.data, data_dir=args.data_dir, seed=args.seed,
                                            limit=args.limit)
    info = splits.info
    shape, lam, dims = tuple(info["image_shape"]), info["lam"], int(info["features"])
    xtr, xva, xte = splits.train, splits.val, splits.test
    train = None
    if args.augment:  # the integer pixels of the same faces, drawn afresh every epoch
        loader, options, *_ = nf.data.images.IMAGE_SETS[args.data]
        raw = nf.data.load(loader, data_dir=args.data_dir, seed=args.seed, **options)
        train = nf.data.images.augmented_dataset(np.asarray(raw.train)[:args.limit], info,
                                                 batch_size=args.batch_size, seed=args.seed,
                                                 flip=args.flip)
    elif args.flip:
        xtr = np.concatenate([xtr, mirrored(xtr, shape)])

    kwargs = flow_kwargs(DEFAULTS[args.flow], args)
    flow = nf.flows.build(args.flow, dims, image_shape=shape, seed=args.seed, dtype=args.dtype,
                          **kwargs)
    params = nf.diagnostics.count_parameters(flow)
    name = f"{args.data}_{args.flow}{args.tag}"
    print(f"{name}: {params:,} parameters, train {len(xtr)} (flip={args.flip}), val {len(xva)}, "
          f"test {len(xte)}", flush=True)
    flow, before = warm_start(flow, args, name)

    flow.compile(tf_keras.optimizers.Adam(args.lr, global_clipnorm=args.global_clipnorm),
                 jit_compile=None if args.jit else False)
    callbacks = [BitsPerDim(mean_logit_ldj(xtr, lam), mean_logit_ldj(xva, lam), dims),
                 tf_keras.callbacks.EarlyStopping(patience=args.patience,
                                                  restore_best_weights=True),
                 TimeLimit(args.max_minutes)]
    start = time.time()
    history = flow.fit(xtr if train is None else train,
                       batch_size=args.batch_size if train is None else None, epochs=args.epochs,
                       validation_data=(xva,), callbacks=callbacks, verbose=0, shuffle=True)
    train_seconds = time.time() - start
    flow.save(Path(args.out) / name)

    bpd = nf.data.images.bits_per_dim(batched_log_prob(flow, xte, batch=100, jit=args.jit), xte,
                                      info)
    result = {
        "data": args.data, "flow": args.flow,
        "kwargs": constructor_kwargs(flow),
        "parameters": params, "train_faces": len(splits.train), "flip": args.flip,
        "train_rows": len(xtr), "augment": args.augment, "val_faces": len(xva),
        "test_faces": len(xte),
        "data_source": info.get("source"), "flow_input": info["flow_input"],
        **run_record(history, train_seconds, bpd, args),
        **({"warm_start": before} if before else {}),
    }
    if args.dtype != "float32":  # the same weights evaluated by the float32 flow
        full = float32_copy(flow, args.flow, dims, args.seed, {"image_shape": shape, **kwargs})
        b32 = nf.data.images.bits_per_dim(batched_log_prob(full, xte, batch=100, jit=args.jit),
                                          xte, info)
        result["test_bpd_float32_eval"] = round(float(b32.mean()), 4)

    def pixels(rows: np.ndarray) -> np.ndarray:
        return nf.data.images.to_pixels(rows, info)

    temperatures = figure_temperatures(args.temperature)
    panels = [pixels(flow.sample(32, seed=args.seed + 1, temperature=t).numpy())
              for t in temperatures]
    panels.append(pixels(xte[:32]))
    titles = [f"{args.flow} samples, T={t}" for t in temperatures] + ["test faces"]
    figures = {"samples": Path(args.figures_dir) / f"{name}_samples.png",
               "interpolations": Path(args.figures_dir) / f"{name}_interpolations.png"}
    figures["samples"].parent.mkdir(parents=True, exist_ok=True)
    nf.plot.image_grid(panels, titles=titles, scale=0.8).savefig(figures["samples"], dpi=110)

    steps, pairs = 8, 4
    rows = interpolate(flow, xte[0:2 * pairs:2], xte[1:2 * pairs:2], steps)
    recon = float(np.abs(flow.bijector.forward(flow.to_base(xte[:8])).numpy() - xte[:8]).max())
    result["reconstruction_max_abs_error"] = recon
    nf.plot.image_grid([pixels(rows)], titles=[
        f"{args.flow}: linear interpolation in the latent space between test faces "
        "(ends: the faces themselves)"], columns=steps, scale=0.9).savefig(
        figures["interpolations"], dpi=110)
    result["figures"] = {k: relative(v) for k, v in figures.items()}
    return write_result(name, result, args.results_dir)


if __name__ == "__main__":
    main()
