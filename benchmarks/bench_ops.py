"""Isolated-op audit: every distinct layer of real networks, timed alone and predicted alone.

    python benchmarks/bench_ops.py --device benchmarks/out/this-cpu.yaml [--models a,b] [--batch 1] [--worst 20]
                                   [--save ops.json] [--timed ops.json]

A calibrated profile predicts each op from a regression fitted on the suite's random single ops.
Whole-model errors mix that regression with the in-network context model and with the machine's
speed drifting between calibration and measurement. This audit isolates the first: it runs each
model once with forward pre-hooks to capture every leaf module's real inputs, then times each
distinct (module, input shapes) alone, as calibration times a suite case (warm-up, median of
repeats, the profile's thread count, the retain allocator), and compares that with the profile's
isolated prediction for the module's ops (no context costs; weights larger than the last-level cache
predicted cold, as they are on every repeat). Each op's timing lasts a fraction of a
second, so a slow phase of a shared host touches few of them. Drift-adjusted as bench_accuracy does:
each op is also timed in bursts of warm calls (about a millisecond each) alternating with the
calibration's probe network, and its adjusted time is the median of burst / probe over the pairs times
the probe's time at calibration, per call; both raw and adjusted figures are printed.

What it is for: finding shapes the suite does not cover. Its first run found the squeeze-excite
convolutions (1x1 convs on a pooled 1x1 map) predicted 4-7x slow, in-place activations ~2x slow,
and 3-channel 3D-conv stems 4x fast; a ratio far from 1 on a whole op type says the suite lacks it.
Prints, per module type, the median and p10/p90 of predicted / measured, the share of ops within
+-20% and the time-weighted error, then the worst ops.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hwcost  # noqa: E402
from bench_accuracy import MODELS, load  # noqa: E402
from hwcost.allocator import apply as apply_allocator  # noqa: E402
from hwcost.timemodel import calibration_text, rates_of, time_model_for  # noqa: E402
from hwcost.formulas import PRODUCT_FAMILIES  # noqa: E402
from hwcost.inputs import real_inputs  # noqa: E402
from hwcost.probe import calibration_probe_ms, probe_network  # noqa: E402
from hwcost.measure import REFERENCE_WARMUP_PER_PAIR  # noqa: E402
from hwcost.timing import flush_subnormals_now, fixed_threads, time_callable, time_interleaved  # noqa: E402

BURST_S = 5e-3   # warm calls per timed burst: enough to last about this long


def _burst(mod: torch.nn.Module, args: tuple, calls: int) -> None:
    """``calls`` calls, each output dropped before the next as in a timed repeat: a burst that kept its
    outputs (a list of them) wrote every one to fresh, cache-cold memory, and timed out-of-place
    activations and norms ~1.5x slower than their repeats."""
    for _ in range(calls):
        mod(*args)


def leaf_calls(model: torch.nn.Module, example, batch: int) -> list[tuple[torch.nn.Module, tuple]]:
    """Every leaf module's call in one forward pass, with copies of its tensor arguments."""
    calls = []

    def hook(mod, args):
        calls.append((mod, tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args)))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(hook) for m in leaves]
    try:
        args, kwargs = real_inputs(example, batch, torch.float32, "cpu")
        with torch.inference_mode():
            model.eval()(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return calls


def audit(profile, names: list[str], batch: int, timed: dict | None = None) -> list[dict]:
    """Per distinct op: the profile's isolated prediction and its measured (and drift-adjusted) time;
    with ``timed`` (rows of an earlier audit, by key) the measurements are taken from there instead."""
    tm = time_model_for(calibration_text(profile, "model"), rates_of(profile))
    probe_then_s = (calibration_probe_ms(profile.calibration) or 0.0) * 1e-3
    net, x = probe_network()
    probe = lambda: net(x)  # noqa: E731
    rows, seen = [], set()
    for name in names:
        loaded = load(name)
        for mod, args in leaf_calls(loaded.model, loaded.example, batch):
            if not args or not all(torch.is_tensor(a) for a in args):
                continue
            key = (repr(mod), tuple(tuple(a.shape) for a in args))
            if key in seen:
                continue
            seen.add(key)
            ops = [c for c in hwcost.analyze(mod, args if len(args) > 1 else args[0]).ops if c.launches]
            if not ops:
                continue
            # weights beyond the last-level cache come from DRAM on every repeat, as in a network whose
            # weights do not fit (a classifier's 9216x4096 layer alone): predicted cold (or partly) as predict would
            predicted = sum(w * sum(iso) for w, _, _, iso in
                            tm.by_condition(ops, "float32", [c.family in PRODUCT_FAMILIES for c in ops]))
            row = {"model": name, "type": type(mod).__name__, "module": repr(mod).split("\n")[0][:70],
                   "shapes": key[1], "predicted_s": predicted}
            if timed is not None:
                earlier = timed.get(_row_key(row))
                if earlier is not None:
                    rows.append({**row, "measured_s": earlier["measured_s"], "adjusted_s": earlier["adjusted_s"]})
                continue
            with torch.inference_mode():
                measured = time_callable(lambda: mod(*args), warmup=3, repeats=50, max_seconds=0.15).median_s
                adjusted = None
                if probe_then_s:
                    k = max(1, round(BURST_S / max(measured, 1e-7)))
                    paired = time_interleaved(lambda: _burst(mod, args, k), probe, warmup=1, repeats=9,
                                              max_seconds=0.5, reference_warmup=REFERENCE_WARMUP_PER_PAIR)
                    adjusted = paired.ratio_median * probe_then_s / k
            rows.append({**row, "measured_s": measured, "adjusted_s": adjusted})
    return rows


def _row_key(row: dict) -> str:
    return f"{row['model']}|{row['module']}|{[list(s) for s in row['shapes']]}"


def report(rows: list[dict], worst: int, key: str = "measured_s") -> None:
    rows = [{**r, "measured_s": r[key]} for r in rows if r.get(key)]

    def q(xs, p):
        return statistics.quantiles(xs, n=10)[p] if len(xs) > 1 else xs[0]

    by_type: dict[str, list[dict]] = {}
    for r in rows:
        by_type.setdefault(r["type"], []).append(r)
    print(f"{'type':22s} {'ops':>4s} {'median':>7s} {'p10':>6s} {'p90':>6s} {'±20%':>5s} {'time-weighted':>13s}")
    for t, rs in sorted(by_type.items(), key=lambda kv: -sum(r["measured_s"] for r in kv[1])):
        ratios = [r["predicted_s"] / r["measured_s"] for r in rs]
        within = sum(abs(x - 1) <= 0.2 for x in ratios) / len(ratios)
        weighted = sum(r["predicted_s"] for r in rs) / sum(r["measured_s"] for r in rs)
        print(f"{t:22s} {len(rs):4d} {statistics.median(ratios):6.2f}x {q(ratios, 0):5.2f}x {q(ratios, -1):5.2f}x "
              f"{100 * within:4.0f}% {weighted:12.2f}x")
    ratios = [r["predicted_s"] / r["measured_s"] for r in rows]
    print(f"\nall {len(rows)} distinct ops: median predicted/measured {statistics.median(ratios):.2f}x, "
          f"{100 * sum(abs(x - 1) <= 0.2 for x in ratios) / len(ratios):.0f}% within ±20%, "
          f"{100 * sum(abs(x - 1) <= 0.5 for x in ratios) / len(ratios):.0f}% within ±50%; summed predicted / "
          f"summed measured {sum(r['predicted_s'] for r in rows) / sum(r['measured_s'] for r in rows):.2f}x")
    print(f"\nworst {worst} (by |log ratio|):")
    for r in sorted(rows, key=lambda r: -abs(math.log(r["predicted_s"] / r["measured_s"])))[:worst]:
        print(f"  {r['predicted_s'] / r['measured_s']:5.2f}x  predicted {1e6 * r['predicted_s']:9.1f} us  measured "
              f"{1e6 * r['measured_s']:9.1f} us  {r['model']:18s} {r['module']}  {r['shapes']}")


def main() -> None:
    flush_subnormals_now()   # untrained held-out models: see hwcost.timing.subnormals_flushed
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", required=True, help="a calibrated profile (hwcost calibrate) of this machine")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="default: the profile's calibration threads")
    ap.add_argument("--worst", type=int, default=20)
    ap.add_argument("--save", help="write every op's prediction and timings to this JSON file")
    ap.add_argument("--timed", help="take the timings from an earlier --save file (predict only: after a refit)")
    args = ap.parse_args()
    profile = hwcost.load_device(args.device)
    if not profile.calibration:
        sys.exit(f"{args.device} is not a calibrated profile: run hwcost calibrate on this machine first")
    threads = args.threads or int(profile.calibration.get("threads") or torch.get_num_threads())
    apply_allocator(((profile.calibration.get("host") or {}).get("allocator")) or "retain")
    with fixed_threads(threads):
        timed = None
        if args.timed:
            try:
                timed = {_row_key(r): r for r in json.loads(Path(args.timed).read_text())["rows"]}
            except (OSError, ValueError, KeyError, TypeError) as e:
                sys.exit(f"--timed {args.timed}: not a bench_ops --save file ({type(e).__name__}: {e})")
        rows = audit(profile, [m for m in args.models.split(",") if m], args.batch, timed)
        if timed is not None and len(rows) < len(timed):
            print(f"{len(timed) - len(rows)} of the {len(timed)} ops in {args.timed} were not found among these "
                  "models' ops (other models or batch size, or another hwcost's traces): left out")
    if args.save:
        Path(args.save).write_text(json.dumps({"profile": args.device, "threads": threads, "batch": args.batch,
                                               "rows": rows}, indent=0))
    print(f"profile {profile.name} (suite {profile.calibration.get('suite_version')}), {threads} thread(s), "
          f"batch {args.batch}\n\n== raw: each op's median over warm repeats ==")
    report(rows, args.worst)
    if any(r["adjusted_s"] for r in rows):
        print(f"\n== drift-adjusted: median of burst / probe x the probe at calibration "
              f"({calibration_probe_ms(profile.calibration):.3f} ms) ==")
        report(rows, args.worst, "adjusted_s")


if __name__ == "__main__":
    main()
