"""Where one XLA ``log_prob`` call of MAF(5) spends its time, from the TensorFlow profiler.

By default MAF(5), D = 43, MADE 2 x 512, batch 256 (the configuration of ``speed.py``). Runs
``--calls`` calls under ``tf.profiler``, then sums, per call, the thread time of the XLA ops by
kind (dots, mask selects, concats, the rest) and sets it against the wall time of the calls. The
ratio is how busy the cores were: XLA's CPU runtime runs independent ops at once, one per
thread.

    PYTHONPATH=. .venv/bin/python benchmarks/profile_log_prob.py

The reading of a run is in ``benchmarks/RESULTS.md`` (the last section).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import normalizingflows as nf

#: Op kinds, by the prefix of the XLA op names (the rest go to "other"). The mask selects read
#: each kernel block out of MADE's packed variable ("select_bitcast_fusion"; a broadcast of the
#: mask when MADE kept one variable per block).
KINDS = {"dot": ("MatMul",), "mask_select": ("broadcast_select_fusion", "select_bitcast_fusion"),
         "concat": ("maximum_concatenate_fusion", "concatenate_slice_fusion")}
#: Profiler events that are not XLA ops (the Python and eager call, the executor, waits): not
#: counted as work.
NOT_OPS = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "MemoryAllocation",
           "MemoryDeallocation",
           "CpuExecutable", "end: ", "log_prob", "TFE_", "Eager", "__inference", "BlockUntilReady",
           "ValidateInput")
CALL = "CpuExecutable::ExecuteAsyncOnStream"


def kind(name: str) -> str:
    return next((k for k, prefixes in KINDS.items() if name.startswith(prefixes)), "other")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--features", type=int, default=43)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512])
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)

    flow = nf.flows.build("maf", args.features, layers=args.layers, hidden_units=args.hidden,
                          seed=0)
    log_prob = tf.function(flow.log_prob, jit_compile=True)
    x = tf.constant(np.random.default_rng(0).standard_normal((args.batch, args.features)),
                    tf.float32)
    for _ in range(20):  # compile and warm up
        log_prob(x).numpy()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.calls):
            out = log_prob(x)
        out.numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())

    work: collections.Counter[str] = collections.Counter()
    wall = 0.0
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name = names[event.metadata_id].name
                us = event.duration_ps / 1e6 / args.calls
                if name == CALL:
                    wall += us
                elif not name.startswith(NOT_OPS):
                    work[kind(name)] += us
    total = sum(work.values())
    hidden = " x ".join(map(str, args.hidden))
    print(f"MAF({args.layers}), D = {args.features}, {hidden}, batch {args.batch}, "
          f"{args.calls} XLA log_prob calls ({os.cpu_count()} cores)")
    print("| thread time per call | us |\n|---|---:|")
    for k in (*KINDS, "other"):
        print(f"| {k.replace('_', ' ')} | {work[k]:,.0f} |")
    print(f"| all | {total:,.0f} |")
    print(f"wall time per call: {wall:,.0f} us; work / wall: {total / wall:.2f} threads busy")
    return {"wall_us": wall, **{f"{k}_us": work[k] for k in (*KINDS, "other")}}


if __name__ == "__main__":
    main()
