"""Measure what transformers' generate() spends per new token around the model's forward, in dispatches
(multiples of the dispatch floor: a ReLU module call on an 8-element tensor), on this host.

    python calibration/derive_generate_overhead.py [--rounds 5]

The ratio is what hwcost.generation.GENERATE_STEP_DISPATCHES holds for profiles whose calibration did not
measure generate() (datasheet profiles): both are host work in Python, so they scale together with the
host's single-core speed. The two are timed alternately, so a slow phase of a shared machine falls on both.
"""
import argparse
import statistics

import torch
import torch.nn as nn
import transformers

from hwcost.calibration.bench import measure_generate_step
from hwcost.timing import time_callable


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    relu, x = nn.ReLU(), torch.zeros(8)
    ratios = []
    for _ in range(args.rounds):
        floor = time_callable(lambda: relu(x), warmup=20, repeats=400).median_s
        step = measure_generate_step("cpu", rounds=1)[0]
        ratios.append(step / floor)
        print(f"generate() step {step * 1e6:8.1f} us, dispatch floor {floor * 1e6:5.2f} us, ratio {ratios[-1]:6.1f}")
    print(f"median ratio {statistics.median(ratios):.1f} dispatches per step (transformers {transformers.__version__}, "
          f"torch {torch.__version__}, 1 thread)")


if __name__ == "__main__":
    main()
