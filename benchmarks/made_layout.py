"""A/B of MADE's weight layouts: one packed variable (the default) against one variable per
kernel block, bias and context kernel (``nn.made.legacy_layout``, the layout before flow files
of version 4), for a catalog flow's XLA ``log_prob`` and train step.

Both flows are built in one process and timed in alternating bursts of synced calls, so the
load of a shared machine falls on both alike; samples/s at the fastest burst, the 10th
percentile and the median. First it prints what capturing the variables alone costs: an XLA
function that reads one element of each of the flow's variables (per-piece and packed) and
one that captures none, best of 15 rounds of 20 calls. Run:

    PYTHONPATH=. python benchmarks/made_layout.py [--flow maf] [--features 43]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf
import tf_keras

import normalizingflows as nf


def _burst(fn, arg, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        out = fn(arg)
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    return (time.perf_counter() - start) / n


def _dispatch_us(variables, x, rounds: int = 15, n: int = 20) -> tuple[int, float]:
    """(variables, us per call) of an XLA call that reads one element of each variable."""
    fn = tf.function(lambda x: tf.add_n([tf.reshape(v, [-1])[0] for v in variables]
                                        + [tf.reduce_sum(x)]), jit_compile=True)
    fn(x).numpy()
    best = min(_burst(fn, x, n) for _ in range(rounds))
    return len(variables), 1e6 * best


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="maf")
    parser.add_argument("--features", type=int, default=43)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=60, help="bursts per layout (log_prob; "
                        "the train step gets two thirds as many)")
    args = parser.parse_args(argv)

    x = tf.random.stateless_normal([args.batch, args.features], [1, 0])
    calls, flows = {}, {}
    for layout in ("pieces", "packed"):
        build = lambda: nf.flows.build(args.flow, args.features, layers=args.layers,  # noqa: E731
                                       hidden_units=args.hidden, seed=0)
        if layout == "pieces":
            with nf.nn.made.legacy_layout():
                flow = build()
        else:
            flow = build()
        flow.compile(tf_keras.optimizers.Adam(1e-3), jit_compile=True)
        log_prob = tf.function(flow.log_prob, jit_compile=True)
        train = tf.function(flow.train_step, jit_compile=True)
        log_prob(x), train((x,))  # compile
        captured = len(log_prob.get_concrete_function(x).captured_inputs)
        calls[layout] = (log_prob, train, captured)
        flows[layout] = flow
    gap = float(tf.reduce_max(tf.abs(calls["pieces"][0](x) - calls["packed"][0](x))))
    dispatch = {layout: _dispatch_us(flows[layout].trainable_variables, x)
                for layout in flows}
    dispatch["none"] = _dispatch_us([], x)
    print(f"{args.flow}({args.layers}), D = {args.features}, batch {args.batch}; log_prob "
          f"captures: pieces {calls['pieces'][2]}, packed {calls['packed'][2]}; "
          f"largest log_prob difference {gap:.3g}")
    print("a call that only reads one element of each variable, us: " + ", ".join(
        f"{layout} ({n} variables) {us:.0f}" for layout, (n, us) in dispatch.items()))
    times: dict[str, dict[str, list[float]]] = {}
    for metric, idx, arg, n, rounds in (("log_prob", 0, x, 10, args.rounds),
                                        ("train", 1, (x,), 5, max(2, 2 * args.rounds // 3))):
        times[metric] = {layout: [] for layout in calls}
        for r in range(rounds):
            for layout in (("pieces", "packed") if r % 2 else ("packed", "pieces")):
                times[metric][layout].append(_burst(calls[layout][idx], arg, n))
        for layout, t in times[metric].items():
            t = np.asarray(t)
            print(f"{metric:8s} {layout:6s} samples/s: fastest {args.batch / t.min():8,.0f}  "
                  f"p10 {args.batch / np.percentile(t, 10):8,.0f}  "
                  f"median {args.batch / np.median(t):8,.0f}")
    return times


if __name__ == "__main__":
    main()
