"""Uncalibrated predictions against published measured latencies on shipped devices.

    python benchmarks/bench_published.py [--reference calibration/reference/h100_torchvision_eager.json]

Sources:
  [rpi]  PyTorch tutorial "Real Time Inference on Raspberry Pi 4 and 5" (T. Rice,
         pytorch/tutorials intermediate_source/realtime_rpi.rst): "Model Time (ms/frame)" on a
         Raspberry Pi 4 Model B 4GB, batch 1, 224x224; mobilenet_v2/v3 are the qnnpack-quantized
         (int8) versions, the rest float32. (Its Pi 5 figure, "~41 fps", is left out: the loop
         captures at a camera FrameRate of 36, so it bounds the latency from above only.)
  [h100] calibration/reference/h100_torchvision_eager.json: eager PyTorch 2.11 on an H100 SXM, median of
         50 runs after warm-up. resnet18/50, mobilenet_v2, efficientnet_b0 and vit_b_16 were used to
         fit the H100 profile's conv efficiency and per-op overheads (calibration/
         derive_gpu_overheads.py, which also reads h100_host_vs_device.txt): they are marked
         "fit"; the other models are held out. Where a run is in both reference files, the
         script prints how far the two disagree: the measurement noise a prediction cannot beat.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import hwcost
from hwcost.loaders import load_model

RPI = [
    # device, model, dtype, measured ms, source
    ("raspberry-pi-4", "resnet18", "float32", 100.3, "rpi"),
    ("raspberry-pi-4", "resnet50", "float32", 225.2, "rpi"),
    ("raspberry-pi-4", "shufflenet_v2_x1_0", "float32", 37.7, "rpi"),
    ("raspberry-pi-4", "mobilenet_v2", "int8", 26.4, "rpi"),
    ("raspberry-pi-4", "mobilenet_v3_large", "int8", 30.7, "rpi"),
]
H100_FIT = {"resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b_16"}


def h100_pairs(path: Path) -> list[tuple]:
    pairs = []
    for r in json.loads(path.read_text()):
        try:
            load_model(r["model"])
        except hwcost.UnknownModelError:
            continue  # not in the zoo
        tag = "h100 fit" if r["model"] in H100_FIT else "h100"
        pairs.append(("h100", r["model"], r["dtype"], r["ms_median"], tag, r["batch"], r["J_per_inf"]))
    return pairs


def main() -> None:
    here = Path(__file__).resolve()
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path,
                    default=here.parents[1] / "calibration/reference/h100_torchvision_eager.json")
    args = ap.parse_args()
    pairs = [(d, m, dt, ms, src, 1, None) for d, m, dt, ms, src in RPI]
    if args.reference.exists():
        pairs += h100_pairs(args.reference)
    else:
        print(f"(no {args.reference}: H100 pairs skipped)")
    print(f"{'device':16s} {'model':20s} {'batch':>5s} {'dtype':8s} {'measured':>9s} {'predicted':>9s} "
          f"{'ratio':>6s}  {'J meas':>7s} {'J pred':>7s}  source")
    groups: dict[str, list[float]] = {}
    energy_ratios: list[float] = []
    for device, model, dtype, ms, src, batch, joules in pairs:
        p = hwcost.predict(load_model(model).model, (3, 224, 224), device=device, dtype=dtype, batch_size=batch)
        ratio = p.latency_ms / ms
        groups.setdefault(src, []).append(ratio)
        j = f"{joules:7.3f} {p.energy_mj / 1000:7.3f}" if joules else f"{'':7s} {'':7s}"
        if joules:
            energy_ratios.append(p.energy_mj / 1000 / joules)
        print(f"{device:16s} {model:20s} {batch:5d} {dtype:8s} {ms:9.2f} {p.latency_ms:9.2f} {ratio:6.2f}  {j}  {src}")
    print()
    for src, ratios in groups.items():
        err = [max(r, 1 / r) for r in ratios]
        print(f"{src:9s} pairs {len(ratios):3d}  within 1.3x: {sum(e <= 1.3 for e in err) / len(err):5.0%}  "
              f"within 2x: {sum(e <= 2 for e in err) / len(err):5.0%}  "
              f"median |log ratio| -> {statistics.median(err):.2f}x  worst {max(err):.2f}x")
    hvd = args.reference.with_name("h100_host_vs_device.txt")
    if args.reference.exists() and hvd.exists():
        e2e = {(m[1], int(m[2])): float(m[3]) for m in re.finditer(r"(\S+)\s+b(\d+)\s+e2e\s+([\d.]+)", hvd.read_text())}
        both = [r["ms_median"] / e2e[(r["model"], r["batch"])] for r in json.loads(args.reference.read_text())
                if r["dtype"] == "float32" and (r["model"], r["batch"]) in e2e]
        spread = [max(x, 1 / x) for x in both]
        print(f"reference noise: {len(both)} float32 runs in both H100 files differ by median "
              f"{statistics.median(spread):.2f}x, worst {max(spread):.2f}x; "
              f"{sum(x <= 1.3 for x in spread)} of {len(spread)} agree within 1.3x")
    if energy_ratios:  # no energy figure was fitted to these runs: the profile's datasheet idle and max power
        err = [max(r, 1 / r) for r in energy_ratios]
        print(f"{'energy':9s} pairs {len(err):3d}  within 1.3x: {sum(e <= 1.3 for e in err) / len(err):5.0%}  "
              f"within 1.5x: {sum(e <= 1.5 for e in err) / len(err):5.0%}  median ratio {statistics.median(energy_ratios):.2f}  "
              f"(NVML J per inference; predicted from datasheet idle/max power and the device-busy time)")
    held_out = [r for s, rs in groups.items() if s != "h100 fit" for r in rs]
    err = [max(r, 1 / r) for r in held_out]
    print(f"{'held out':9s} pairs {len(err):3d}  within 1.3x: {sum(e <= 1.3 for e in err) / len(err):5.0%}  "
          f"within 2x: {sum(e <= 2 for e in err) / len(err):5.0%}")


if __name__ == "__main__":
    main()
