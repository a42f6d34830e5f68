"""Fit the cost of PyTorch's per-group convolution path (CPU builds without oneDNN) in dispatches.

    python calibration/derive_per_group_conv.py [--measure] [--threads 2]

A PyTorch build without oneDNN (aarch64 Linux wheels before 1.13, and 1.13.1 and 2.0.0) runs a CPU
convolution with groups through a backend that has no groups of its own (ConvBackend::Slow2d,
aten/src/ATen/native/Convolution.cpp, "Handle backends that don't natively support groups > 1"): one
slow_conv2d per group (im2col into a column buffer, then a GEMM) on narrowed views, and a cat of the
outputs. A depthwise convolution of C channels is C such calls. Its time is

    time = floor x (startup + groups x per_group + columns x per_column) + FLOPs / (peak x e_conv)

columns = C_in x kernel x output positions x batch (the im2col buffer's elements over all groups),
floor = the dispatch floor (a ReLU module call on 8 elements), peak = threads x 2.6 GHz x 64 FLOP/cycle
and e_conv the cpu kind's default convolution efficiency (device_profiles/_defaults.yaml), held fixed.
startup, per_group and per_column >= 0 are fitted in log space and printed in dispatches: the loop,
the views, each group's allocations and the column copy are host-core work that scales with the core
like the dispatch, which is how a datasheet profile (its own host_per_op) carries them to another CPU.

--measure times the cases on this host with oneDNN switched off (torch.backends.mkldnn.flags) and
writes them to calibration/reference/per_group_conv.csv; without it the stored cases are fitted.
"""
from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

HERE = Path(__file__).resolve().parent
CASES = HERE / "reference" / "per_group_conv.csv"
CLOCK_HZ, FLOP_PER_CYCLE = 2.6e9, 64   # the reference host (calibration/reference/README.md)
FIELDS = ("groups", "c_in", "c_out", "kernel", "stride", "size", "out_positions", "macs", "columns", "time_s",
          "floor_s", "threads")


def _best_s(fn, calls: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def measure(threads: int) -> list[dict]:
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    relu, tiny = torch.nn.ReLU(), torch.randn(8)
    rows = []
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        for group_size in (1, 4, 16):
            for c in (16, 32, 64, 128, 256):
                for size in (7, 14, 28, 56):
                    for stride in (1, 2):
                        for k in (3, 5):
                            conv = torch.nn.Conv2d(c, c, k, stride, k // 2, groups=c // group_size, bias=False)
                            x = torch.randn(1, c, size, size)
                            out = (size + 2 * (k // 2) - k) // stride + 1
                            macs = c * group_size * out * out * k * k
                            floor_s = _best_s(lambda: relu(tiny), 2000)
                            t = _best_s(lambda: conv(x), 5 if macs > 5e6 else 30)
                            rows.append({"groups": c // group_size, "c_in": c, "c_out": c, "kernel": k * k,
                                         "stride": stride, "size": size, "out_positions": out * out, "macs": macs,
                                         "columns": c * k * k * out * out, "time_s": t, "floor_s": floor_s,
                                         "threads": threads})
    return rows


def fit(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    from hwcost.devices import _defaults

    e_conv = _defaults()["kinds"]["cpu"]["compute"]["conv"]
    t = np.array([float(r["time_s"]) for r in rows])
    floor = np.array([float(r["floor_s"]) for r in rows])
    peak = np.array([int(r["threads"]) * CLOCK_HZ * FLOP_PER_CYCLE for r in rows])
    compute = 2.0 * np.array([float(r["macs"]) for r in rows]) / (peak * e_conv)
    design = np.array([[1.0, float(r["groups"]), float(r["columns"])] for r in rows])

    def model(p):
        return floor * (design @ np.exp(p)) + compute

    res = least_squares(lambda p: np.log(model(p) / t), np.log([5.0, 2.0, 1e-4]),
                        bounds=(np.log([1e-3, 1e-3, 1e-9]), np.log([1e3, 1e3, 1.0])))
    return np.exp(res.x), model(res.x) / t - 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure", action="store_true", help="time the cases on this host and store them")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.measure:
        rows = measure(args.threads)
        with CASES.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {len(rows)} cases to {CASES}")
    rows = list(csv.DictReader(CASES.open()))
    (startup, per_group, per_column), err = fit(rows)
    print(f"{len(rows)} cases, floor median {1e6 * float(np.median([float(r['floor_s']) for r in rows])):.2f} us")
    print(f"per_group_conv: {{startup_dispatches: {startup:.2f}, group_dispatches: {per_group:.2f}, "
          f"column_dispatches: {per_column:.3g}}}")
    for size in sorted({int(r["c_in"]) // int(r["groups"]) for r in rows}):
        e = [abs(x) for x, r in zip(err, rows) if int(r["c_in"]) // int(r["groups"]) == size]
        print(f"  {size:2d} channels per group: median |error| {100 * np.median(e):.0f}%, worst {100 * max(e):.0f}% "
              f"({len(e)} cases)")


if __name__ == "__main__":
    main()
