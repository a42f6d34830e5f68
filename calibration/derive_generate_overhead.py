"""Measure what transformers' generate() spends around the model's forwards — per new token, per 1,000
vocabulary entries on top, and per call before the first forward — in dispatches (multiples of the
dispatch floor: a ReLU module call on an 8-element tensor), on this host.

    python calibration/derive_generate_overhead.py [--rounds 5]

The ratios are what hwcost.generation.GENERATE_STEP_DISPATCHES, GENERATE_VOCAB_DISPATCHES_PER_1K and
GENERATE_CALL_DISPATCHES hold for profiles whose calibration did not measure generate() (datasheet
profiles): all three are host work in Python, so they scale together with the host's single-core speed.
They are timed alternately, so a slow phase of a shared machine falls on all of them.
"""
import argparse
import statistics

import torch
import torch.nn as nn
import transformers

from hwcost.calibration.generate_overhead import measure_generate_step
from hwcost.timing import time_callable


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    relu, x = nn.ReLU(), torch.zeros(8)
    steps, vocab, calls = [], [], []
    for _ in range(args.rounds):
        floor = time_callable(lambda: relu(x), warmup=20, repeats=400).median_s
        m = measure_generate_step("cpu", rounds=1)
        steps.append(m.step_s / floor)
        vocab.append(m.step_per_vocab_s * 1000 / floor)
        calls.append(m.call_s / floor)
        print(f"generate() step {m.step_s * 1e6:8.1f} us + {m.step_per_vocab_s * 1e9:6.2f} us per 1k vocabulary, "
              f"call {m.call_s * 1e6:8.1f} us, dispatch floor {floor * 1e6:5.2f} us, "
              f"ratios {steps[-1]:6.1f} / {vocab[-1]:5.2f} / {calls[-1]:6.1f}")
    print(f"median ratios: {statistics.median(steps):.1f} dispatches per step, {statistics.median(vocab):.2f} per step "
          f"per 1,000 vocabulary entries, {statistics.median(calls):.1f} per call "
          f"(transformers {transformers.__version__}, torch {torch.__version__}, 1 thread)")


if __name__ == "__main__":
    main()
