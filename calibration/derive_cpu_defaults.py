"""Fit the CPU kind's default efficiency curves from a calibration's single-op samples.

    python calibration/derive_cpu_defaults.py [profile.yaml samples.csv[.gz]] [--flop-per-cycle 64]

Per op family, Hockney's two-parameter model of a vector or parallel operation (R. W. Hockney,
"The n1/2 method of algorithm analysis", 1983): a call costs a fixed startup plus its work at an
asymptotic rate. For an eager CPU op that is

    time = dispatch + max(FLOPs / (peak x e_compute), bytes / memory rate) + steps x startup

with dispatch = the profile's host_per_op (the measured floor), peak = threads x clock x FLOP/cycle
of the ISA (what a datasheet profile states), memory rate = the bandwidth a datasheet profile of
this host states (the measured copy bandwidth) x the default memory efficiency, and steps = 1
except for fused RNNs (one small GEMM per step, layer and direction). e_compute (products only)
and startup >= 0 are fitted in log space (relative error). The startup is printed in dispatches
(startup / host_per_op): thread fork/join, packing and loop setup are instruction-bound host work,
like the dispatch, so the ratio carries to another CPU whose profile states its own host_per_op.

Default reference: calibration/reference/xeon-2c.* (hwcost calibrate, 300 s, 2-core Xeon with
AVX-512 at 2.6 GHz, PyTorch 2.13), whose output is in hwcost/device_profiles/_defaults.yaml.
"""
from __future__ import annotations

import argparse
import gzip
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from hwcost.calibration.samples import read_samples
from hwcost.formulas import PRODUCT_FAMILIES

HERE = Path(__file__).resolve().parent
DEFAULT_MEMORY_EFFICIENCY = 0.70  # the cpu kind's default (STREAM vs wire rate), held fixed here


def read_text(path: Path) -> str:
    return gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()


def serial_steps(features: dict[str, float], family: str) -> float:
    if family != "rnn":
        return 1.0
    steps = round(2 ** features["log_spatial_in"] - 1)   # features store log2(x + 1)
    return steps * max(1.0, features["kernel"])          # kernel = layers x directions


def fit_family(flops, traffic, time_s, steps, peak, mem_rate, floor_s, product: bool) -> tuple[float | None, float]:
    compute = flops / peak
    memory = traffic / mem_rate

    def model(p):
        e = np.exp(p[0]) if product else np.inf
        return floor_s + np.maximum(compute / e, memory) + np.exp(p[1]) * steps

    res = least_squares(lambda p: np.log(model(p) / time_s), [np.log(0.5), np.log(5e-6)],
                        bounds=([np.log(1e-3), np.log(1e-9)], [0.0, np.log(1.0)]))
    err = np.abs(model(res.x) / time_s - 1)
    return (float(np.exp(res.x[0])) if product else None), float(np.exp(res.x[1])), float(np.median(err))


def round_sig(x: float, digits: int = 2) -> float:
    """What _defaults.yaml states: two significant figures (the fit is not better than that)."""
    return float(f"{x:.{digits}g}")


def derive(profile: Path, samples: Path, flop_per_cycle: int = 64, verbose: bool = False) -> dict[str, dict]:
    """Per family: e_compute (products only), startup_dispatches and the median single-op error."""
    prof = yaml.safe_load(profile.read_text())
    cal = prof["calibration"]
    peak = cal["threads"] * cal["host"]["cpu_freq_mhz"] * 1e6 * flop_per_cycle
    floor_s = prof["overhead_us"]["host_per_op"] * 1e-6
    mem_rate = prof["memory"]["bandwidth_gbps"] * 1e9 * DEFAULT_MEMORY_EFFICIENCY
    if verbose:
        print(f"reference: {cal['host']['cpu']}, {cal['threads']} threads, peak {peak / 1e9:.1f} GFLOP/s, "
              f"memory {mem_rate / 1e9:.1f} GB/s, dispatch {floor_s * 1e6:.3f} us")
    by_family = defaultdict(list)
    for s in read_samples(read_text(samples)):
        if not s.family.startswith("_"):
            by_family[s.family].append(s)
    out = {}
    for fam, ss in sorted(by_family.items()):
        arr = lambda f: np.array([f(s) for s in ss], dtype=float)  # noqa: E731
        e, startup_s, err = fit_family(arr(lambda s: s.flops), arr(lambda s: s.bytes_read + s.bytes_written),
                                       arr(lambda s: s.time_s), arr(lambda s: serial_steps(s.features, fam)),
                                       peak, mem_rate, floor_s, fam in PRODUCT_FAMILIES)
        out[fam] = {"cases": len(ss), "e_compute": e, "startup_us": startup_s * 1e6,
                    "startup_dispatches": startup_s / floor_s, "median_error": err}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?", type=Path, default=HERE / "reference/xeon-2c.yaml")
    ap.add_argument("samples", nargs="?", type=Path, default=HERE / "reference/xeon-2c.samples.csv.gz")
    ap.add_argument("--flop-per-cycle", type=int, default=64, help="per core: 64 AVX-512, 32 AVX2, 8 NEON")
    args = ap.parse_args()
    fits = derive(args.profile, args.samples, args.flop_per_cycle, verbose=True)
    print(f"{'family':16s} {'cases':>5s} {'e_compute':>9s} {'startup us':>10s} {'dispatches':>10s} {'median err':>10s}")
    for fam, r in fits.items():
        e = r["e_compute"]
        print(f"{fam:16s} {r['cases']:5d} {'-' if e is None else f'{round_sig(e):.2f}':>9s} {r['startup_us']:10.1f} "
              f"{round_sig(r['startup_dispatches']):10g} {r['median_error']:10.0%}")


if __name__ == "__main__":
    main()
