#!/usr/bin/python3
"""Reference side of bench/compare_curvature.sh: times torch/scipy/numpy on the shapes a JMH
run just used, then appends Java vs reference rows, with ratios against the DESIGN §6 targets,
to a markdown table (header written when the file is new) and prints them.

    compare_curvature.py JMH_JSON OUT_MD
"""
import json
import os
import sys
import time

import numpy as np
import scipy.linalg
import torch

torch.set_num_threads(os.cpu_count())


def timed(fn, warmup, reps):
    """Best of reps: on a shared machine the fastest run is the one least disturbed by others."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_addmm(tokens, dim):
    x = torch.rand(tokens, dim) * 2 - 1
    a = torch.zeros(dim, dim)
    one = timed(lambda: a.addmm_(x.T, x), 1, 1)
    reps = max(3, min(30, int(2.0 / max(one, 1e-4))))
    return timed(lambda: a.addmm_(x.T, x), 2, reps)


def scipy_eigh(n, precision):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (2 * n, n))
    f = x.T @ x / (2 * n)
    if precision == "FLOAT32":
        f = f.astype(np.float32)  # scipy then calls ssyevd
    return timed(lambda: scipy.linalg.eigh(f, driver="evd"), 1, 2 if n >= 4096 else 3)


def numpy_selection(rows, cols, rho):
    rng = np.random.default_rng(3)
    lam = np.sort(rng.pareto(1.3, rows) + 1e-6)[::-1]
    mu = np.sort(rng.pareto(1.3, cols) + 1e-6)[::-1]

    def run():
        p = np.outer(lam, mu).ravel()
        order = np.argsort(-p)
        cs = np.cumsum(p[order])
        k = int(np.argmax(cs >= rho * lam.sum() * mu.sum()))
        return p >= p[order][k]

    return timed(run, 0, 1)


def numpy_edit(d):
    rng = np.random.default_rng(4)
    u = rng.uniform(-1, 1, (d, d))
    w = rng.uniform(-1, 1, (d, d))
    m = np.ones((d, d))
    return timed(lambda: u @ ((u.T @ w @ u) * m) @ u.T, 1, 2)


def main():
    jmh = json.load(open(sys.argv[1]))
    rows = []
    for r in jmh:
        name = r["benchmark"].rsplit(".", 2)[-2]
        p = r["params"]
        # best JMH iteration, matching the best-of timing on the reference side
        ms = min(v for fork in r["primaryMetric"]["rawData"] for v in fork)
        if name == "AccumulationBenchmark":
            t, d = int(p["tokens"]), int(p["dim"])
            ref = torch_addmm(t, d) * 1e3
            flops = 2.0 * t * d * d
            jg, tg = flops / ms / 1e6, flops / ref / 1e6
            rows.append(("accumulate fp32 (" + p["input"].lower() + ")", f"tokens={t} d={d}",
                         f"{ms:.1f} ms = {jg:.0f} GFLOP/s", f"torch addmm_ {ref:.1f} ms = {tg:.0f} GFLOP/s",
                         jg / tg, ">= 0.9", jg / tg >= 0.9))
        elif name == "EighBenchmark":
            n = int(p["n"])
            ref = scipy_eigh(n, p["precision"]) * 1e3
            rows.append((f"eigh {p['precision']}", f"n={n}", f"{ms:.0f} ms", f"scipy evd {p['precision'].lower()} {ref:.0f} ms", ms / ref,
                         "<= 1.2", ms / ref <= 1.2))
        elif name == "SelectionBenchmark":
            rr, cc, rho = int(p["rows"]), int(p["columns"]), float(p["rho"])
            ref = numpy_selection(rr, cc, rho) * 1e3
            rows.append(("keep-mass selection", f"{rr}x{cc} rho={rho}", f"{ms:.1f} ms", f"numpy sort+cumsum {ref:.0f} ms",
                         ms / ref, "< 1000 ms", ms < 1000))
        elif name == "EditBenchmark":
            d = int(p["d"])
            ref = numpy_edit(d) * 1e3
            rows.append(("edit fp64", f"{d}x{d}", f"{ms:.0f} ms", f"numpy 4 matmuls {ref:.0f} ms", ms / ref, "(none)",
                         None))
    lines = []
    if not os.path.exists(sys.argv[2]):
        lines += ["| benchmark | shape | Java (curvature) | reference | Java/ref | target | met |",
                  "|---|---|---|---|---|---|---|"]
    for name, shape, java, ref, ratio, target, met in rows:
        ratio_text = f"{ratio:.2f}" + (" (throughput)" if name.startswith("accumulate") else " (time)")
        lines.append(f"| {name} | {shape} | {java} | {ref} | {ratio_text} | {target} | "
                     f"{'-' if met is None else ('yes' if met else '**no**')} |")
    table = "\n".join(lines)
    print(table)
    with open(sys.argv[2], "a") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
