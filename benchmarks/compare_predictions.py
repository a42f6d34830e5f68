"""Counts and predictions of every zoo model on every shipped device (and any extra profiles), saved
to JSON or checked against a saved file to a relative 1e-9: proof that a refactor changed no number.

    python benchmarks/compare_predictions.py --save before.json [--profile my_calibrated.yaml]
    python benchmarks/compare_predictions.py --check before.json [--profile my_calibrated.yaml]
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import hwcost
from hwcost.loaders import load_model
from hwcost.zoo import ZOO

BATCHES = (1, 4)
REL_TOL = 1e-9


def snapshot(extra_profiles: list[str]) -> dict:
    devices = [hwcost.load_device(n) for n in hwcost.devices()] + [hwcost.load_device(p) for p in extra_profiles]
    out = {}
    for name in ZOO:
        for batch in BATCHES if name != "llama2_70b" else (1,):
            loaded = load_model(name)
            a = hwcost.analyze(loaded.model, loaded.example, batch_size=batch, model_name=name)
            key = f"{name}/b{batch}"
            out[key + "/count"] = {"total": a.total.as_dict(),
                                   "layers": [[r.name, r.macs, r.flops, r.bytes_read, r.bytes_written,
                                               r.activation_bytes, r.params] for r in a.layers],
                                   "module_calls": a.module_calls, "view_ops": a.view_ops}
            for d in devices:
                p = hwcost.predict_analysis(a, d)
                out[f"{key}/{d.name}"] = {"latency_ms": p.latency_ms, "energy_mj": p.energy_mj,
                                         "host_ms": p.host_ms, "device_ms": p.device_ms,
                                         "layers_ms": [r.latency_ms for r in p.layers],
                                         "layers_mj": [r.energy_mj for r in p.layers]}
    return out


def differences(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [f"{path}/{k}: only in one" for k in set(a) ^ set(b)]
        return diffs + [d for k in a if k in b for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0) else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save")
    g.add_argument("--check")
    ap.add_argument("--profile", action="append", default=[], help="extra profile YAML (e.g. a calibrated one)")
    args = ap.parse_args()
    now = snapshot(args.profile)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(now, f)
        print(f"saved {len(now)} entries to {args.save}")
        return 0
    with open(args.check) as f:
        before = json.load(f)
    diffs = differences(before, json.loads(json.dumps(now)))
    for d in diffs[:40]:
        print(d)
    print(f"{len(now)} entries, {len(diffs)} differences beyond a relative {REL_TOL:g}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
