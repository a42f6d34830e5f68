"""Once-for-All specialization for three devices: the best OFA-MobileNetV3 sub-network under each
device's latency budget, and how the chosen networks differ.

    python examples/specialize.py [--accuracy-predictor weights.json]

The default objective is hwcost's capacity proxy (log10 of MACs): it is NOT accuracy. To specialize
for accuracy, plug in an accuracy predictor: any callable config -> float. With
--accuracy-predictor, this script loads a linear predictor over Once-for-All's one-hot architecture
encoding (a JSON file {"weights": [...], "bias": b} that you trained on (config, accuracy) pairs
of your super-network) and searches with it.
"""
import json
import sys

import hwcost
from hwcost.spaces import OFAMobileNetV3

space = OFAMobileNetV3()


def ofa_encoding(config) -> list[float]:
    """One-hot encoding of a config as in OFA's accuracy predictor: per block slot, kernel and
    expand one-hot (zeros for skipped slots), then the resolution one-hot."""
    res, depths, kernels, expands = config
    x: list[float] = []
    for s, d in enumerate(depths):
        for i in range(space.max_depth):
            slot = s * space.max_depth + i
            active = i < d
            x += [float(active and kernels[slot] == k) for k in space.kernels]
            x += [float(active and expands[slot] == e) for e in space.expands]
    x += [float(res == r) for r in space.resolutions]
    return x


def load_accuracy_predictor(path):
    with open(path) as f:
        spec = json.load(f)
    w, b = spec["weights"], float(spec["bias"])
    if len(w) != len(ofa_encoding(space.smallest())):
        raise SystemExit(f"{path}: expected {len(ofa_encoding(space.smallest()))} weights")
    return lambda cfg: b + sum(wi * xi for wi, xi in zip(w, ofa_encoding(cfg)))


objective = None
if "--accuracy-predictor" in sys.argv:
    objective = load_accuracy_predictor(sys.argv[sys.argv.index("--accuracy-predictor") + 1])
    print("objective: your accuracy predictor")
else:
    print("objective: capacity proxy log10(MACs) - NOT accuracy (see --accuracy-predictor)")

targets = [("raspberry-pi-4", 60.0), ("jetson-orin-nano", 10.0), ("h100", 4.0)]
results = {}
for device, budget in targets:
    r = hwcost.search(space, device, budget, objective=objective, population=60, generations=15, seed=0)
    results[device] = r
    print(f"\n{device} (budget {budget:g} ms): {r.best_latency_ms:.2f} ms, objective {r.best_objective:.3f}, "
          f"{r.evaluated} candidates at {r.per_second:,.0f}/s")
    print(f"  {r.description}")

print("\nhow the chosen sub-networks differ:")
for device, r in results.items():
    res, depths, kernels, expands = r.best
    used = [(kernels[s * 4 + i], expands[s * 4 + i]) for s, d in enumerate(depths) for i in range(d)]
    mean_k = sum(k for k, _ in used) / len(used)
    mean_e = sum(e for _, e in used) / len(used)
    print(f"  {device:18s} resolution {res}, {sum(depths)} blocks (depths {depths}), mean kernel {mean_k:.1f}, "
          f"mean expand {mean_e:.1f}")
