"""Measure what transformers' generate() spends around the model's forwards — per new token, and per call
before the first forward — in dispatches (multiples of the dispatch floor: a ReLU module call on an
8-element tensor), on this host.

    python calibration/derive_generate_overhead.py [--rounds 5]

The ratios are what hwcost.generation.GENERATE_STEP_DISPATCHES and GENERATE_CALL_DISPATCHES hold for
profiles whose calibration did not measure generate() (datasheet profiles): both are host work in Python,
so they scale together with the host's single-core speed. They are timed alternately, so a slow phase of a
shared machine falls on both.
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
    steps, calls = [], []
    for _ in range(args.rounds):
        floor = time_callable(lambda: relu(x), warmup=20, repeats=400).median_s
        m = measure_generate_step("cpu", rounds=1)
        steps.append(m.step_s / floor)
        calls.append(m.call_s / floor)
        print(f"generate() step {m.step_s * 1e6:8.1f} us, call {m.call_s * 1e6:8.1f} us, dispatch floor "
              f"{floor * 1e6:5.2f} us, ratios {steps[-1]:6.1f} / {calls[-1]:6.1f}")
    print(f"median ratios: {statistics.median(steps):.1f} dispatches per step, {statistics.median(calls):.1f} per call "
          f"(transformers {transformers.__version__}, torch {torch.__version__}, 1 thread)")


if __name__ == "__main__":
    main()
