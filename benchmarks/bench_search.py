"""Specialization speed and LUT fidelity.

    python benchmarks/bench_search.py [--subnets 200]

1. Candidates evaluated per second by hwcost.search (OFA-MobileNetV3, population 100, 30
   generations, LUT warm-up excluded), per device.
2. LUT latency vs a full hwcost.predict of the built sub-network, over random sub-networks.
"""
import argparse
import random
import statistics
import time

import torch

import hwcost
from hwcost.spaces import OFAMobileNetV3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subnets", type=int, default=200)
    args = ap.parse_args()
    space = OFAMobileNetV3()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    for device, budget in (("raspberry-pi-4", 60.0), ("jetson-orin-nano", 10.0), ("h100", 4.0)):
        lut = hwcost.LatencyLUT(space, device)
        t = time.perf_counter()
        r = hwcost.search(space, device, budget, population=100, generations=30, seed=0, lut=lut)
        wall = time.perf_counter() - t
        print(f"search {device:17s} budget {budget:5.1f} ms: {r.evaluated:5d} candidates, {r.per_second:8,.0f}/s "
              f"(LUT: {r.lut_blocks} blocks built in {r.lut_build_s:.1f} s; wall {wall:.1f} s) -> "
              f"{r.best_latency_ms:.2f} ms")
    print()
    for device in ("raspberry-pi-4", "h100"):
        lut = hwcost.LatencyLUT(space, device)
        rng = random.Random(0)
        errs = []
        for _ in range(args.subnets):
            cfg = space.sample(rng)
            with torch.device("meta"):
                net = space.build(cfg)
            full = hwcost.predict(net, space.input_shape(cfg), device=device).latency_ms
            errs.append(100 * abs(lut.latency_ms(cfg) / full - 1))
        print(f"LUT vs full predict on {device:15s} over {len(errs)} random sub-networks: "
              f"mean {statistics.mean(errs):.4f}%, max {max(errs):.4f}%")


if __name__ == "__main__":
    main()
