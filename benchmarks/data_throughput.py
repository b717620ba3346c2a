"""Throughput of every data loader (examples per second), printed as a Markdown table.

Real files are read from ``--shared`` (default ``../shared/data`` next to the checkout, or
``$NF_SHARED_DATA``); POWER, GAS-free recipes and HEPMASS run on synthetic files of the real
size/format written to a temporary folder, since the real files are not available here.

Usage:
    PYTHONPATH=. python benchmarks/data_throughput.py [--shared DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _time(fn: Callable[[], int], repeat: int = 1) -> tuple[int, float]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t)
    return n, best


def main() -> None:
    """Run the benchmarks and print a Markdown table."""
    here = Path(__file__).resolve()
    default_shared = os.environ.get("NF_SHARED_DATA", str(here.parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=default_shared)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    import normalizingflows.data as nfd
    from normalizingflows.data.mnist import read_idx

    shared = Path(args.shared)
    rows: list[tuple[str, str, int, float]] = []

    def record(name: str, what: str, fn: Callable[[], int], repeat: int = 1) -> None:
        n, sec = _time(fn, repeat)
        rows.append((name, what, n, sec))
        print(f"{name:<28} {what:<52} {n:>10,} {sec:8.3f}s {n / sec:14,.0f}/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        n_power = 200_000 if args.quick else 2_049_280
        (tmp / "power").mkdir()
        raw = np.column_stack([rng.random((n_power, 7)) * 10, rng.random(n_power) * 1440])
        np.save(tmp / "power/data.npy", raw)
        del raw
        record("power (maf recipe)", f"synthetic data.npy {n_power:,} x 8 -> 6 dims",
               lambda: sum(map(len, nfd.load("power", data_dir=tmp)[:3])))
        (tmp / "miniboone").mkdir()
        np.save(tmp / "miniboone/data.npy", rng.normal(size=(36_488, 43)))
        record("miniboone (maf recipe)", "synthetic data.npy 36,488 x 43",
               lambda: sum(map(len, nfd.load("miniboone", data_dir=tmp)[:3])), repeat=3)
        n_hep = 20_000 if args.quick else 200_000
        (tmp / "hepmass").mkdir()
        tab = np.column_stack([np.arange(n_hep) % 2, rng.normal(size=(n_hep, 27))])
        header = "# label," + ",".join(f"f{i}" for i in range(27))
        np.savetxt(tmp / "hepmass/1000_train.csv", tab, delimiter=",", fmt="%.6g",
                   header=header, comments="")
        np.savetxt(tmp / "hepmass/1000_test.csv", tab[: n_hep // 2], delimiter=",",
                   fmt="%.6g", header=header, comments="")
        record("hepmass (maf recipe)", f"synthetic CSVs {n_hep:,} + {n_hep // 2:,} rows (all)",
               lambda: n_hep + n_hep // 2 if nfd.load("hepmass", data_dir=tmp) else 0)

        if (shared / "miniboone/val.npy").is_file():
            record("miniboone (split layout)", "real val.npy + test.npy",
                   lambda: sum(map(len, nfd.load("miniboone", data_dir=shared,
                                                 allow_missing_splits=True)[:3])), repeat=3)
        if (shared / "mnist/t10k-images-idx3-ubyte.gz").is_file():
            record("mnist IDX reader", "real t10k-images (gz)",
                   lambda: len(read_idx(shared / "mnist/t10k-images-idx3-ubyte.gz")), repeat=3)
            record("mnist (partial: csv + idx)", "real 5k CSV + 10k test, uint8",
                   lambda: sum(map(len, nfd.load("mnist", data_dir=shared)[:3])), repeat=3)
            record("mnist form=logit", "same + dequantise + logit",
                   lambda: sum(map(len, nfd.load("mnist", data_dir=shared, form="logit")[:3])))
        if (shared / "BSDS300/images/train").is_dir():
            n_b = 20_000 if args.quick else 200_000
            kw = dict(data_dir=shared, n_train=n_b, n_val=n_b // 20, n_test=n_b // 4,
                      cache=False)
            record("bsds300 (from images)", "decode 300 JPEGs + random patches",
                   lambda: sum(map(len, nfd.load("bsds300", **kw)[:3])))
        if (shared / "celeba/img_align_celeba").is_dir():
            def celeba_epoch(size: int, cache: object, epochs: int) -> int:
                s = nfd.load("celeba", data_dir=shared, size=size, cache=cache, batch_size=256)
                n = 0
                for _ in range(epochs):
                    for part in s[:3]:
                        for b in part:
                            n += int(b.shape[0])
                return n

            record("celeba tf.data 64x64", "4,000 JPEGs: decode+crop+resize, 1 pass",
                   lambda: celeba_epoch(64, None, 1))
            record("celeba tf.data 64x64 cached", "2 passes, 2nd from memory cache",
                   lambda: celeba_epoch(64, "memory", 2))
            record("celeba tf.data 32x32", "4,000 JPEGs, 1 pass",
                   lambda: celeba_epoch(32, None, 1))
        x = rng.normal(size=(1_000_000, 6)).astype(np.float32)

        def drain(batch: int) -> int:
            n = 0
            for b in nfd.as_dataset(x, batch_size=batch, seed=0):
                n += int(b.shape[0])
            return n

        record("as_dataset", "1,000,000 x 6 float32, shuffle, batch 512", lambda: drain(512))
        record("as_dataset", "1,000,000 x 6 float32, shuffle, batch 4096", lambda: drain(4096))

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, tensorflow "
          f"{tf.__version__}; date {time.strftime('%Y-%m-%d')}")
    print()
    print("| loader | what | examples | seconds | examples/s |")
    print("|---|---|---:|---:|---:|")
    for name, what, n, sec in rows:
        print(f"| {name} | {what} | {n:,} | {sec:.3f} | {n / sec:,.0f} |")


if __name__ == "__main__":
    main()
