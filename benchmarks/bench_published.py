"""Uncalibrated predictions against published measured latencies on shipped devices.

    python benchmarks/bench_published.py [--reference calibration/reference/h100_torchvision_eager.json]

Every pair is eager PyTorch (not TensorRT), batch 1 unless said, 224x224. Decided by source before any
profile changed: a pair tagged "fit" set a number of its profile (named in that profile's sources);
every other pair is check-only, and the summary reports the two apart.

Sources:
  [rpi]  PyTorch tutorial "Real Time Inference on Raspberry Pi 4 and 5" (T. Rice,
         pytorch/tutorials intermediate_source/realtime_rpi.rst): "Model Time (ms/frame)" on a
         Raspberry Pi 4 Model B 4GB, batch 1, 224x224; mobilenet_v2/v3 are the qnnpack-quantized
         (int8) versions, the rest float32. (Its Pi 5 figure, "~41 fps", is left out: the loop
         captures at a camera FrameRate of 36, so it bounds the latency from above only.) All
         check-only. The tutorial (February 2022) ran pip's aarch64 wheels of that time, which had no
         oneDNN: the profile's grouped_conv: per_group states that build, whose costs come from
         calibration/derive_per_group_conv.py (x86, oneDNN off); no number is fitted to these pairs.
  [nano] NVIDIA-AI-IOT/torch2trt, benchmarks/JETSON_NANO.md: "Latency (PyTorch)" in ms of torchvision
         models on a Jetson Nano, float16 (the PyTorch column of its PyTorch-vs-TensorRT table; the
         README's FPS table is the same runs). vgg11 (device-heavy: conv efficiency) and densenet121
         (host-heavy: host time per op) set the jetson-nano profile (calibration/derive_jetson_nano.py
         fits the two together): tagged "nano fit"; the other 16
         are check-only. (resnet18 was the first choice for the host time; it is device-bound at any
         host time the DenseNets allow, so it could not set it.)
  [ultralytics] Ultralytics docs, guides/raspberry-pi.md: "Inference time (ms/im)" of the PyTorch format,
         FP32, image size 640, batch 1 (its `yolo benchmark` validation run; conv and batch norm fused), three
         tables from the guide's history: "Raspberry Pi 5 YOLO11 Benchmarks" (Ultralytics 8.3.39), "Raspberry
         Pi 5 YOLO26 Benchmarks" (8.4.108), and "Raspberry Pi 5 vs Raspberry Pi 4 YOLOv8 Benchmarks" (the
         guide before YOLO11's release, 2024). Check-only; built from the ultralytics package's model YAMLs
         (skipped where it does not import), fused as that run fuses them, at 640 x 640 (the validation
         letterboxes each image to its own multiple of 32, at most 640 x 640: the counted work is an upper
         bound).
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
import sys
from pathlib import Path

import hwcost
from hwcost.loaders import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration"))
from derive_gpu_overheads import FIT_MODELS  # noqa: E402  (the fit set the H100 profile's derivation uses)

RPI = [
    # device, model, dtype, measured ms, source
    ("raspberry-pi-4", "resnet18", "float32", 100.3, "rpi"),
    ("raspberry-pi-4", "resnet50", "float32", 225.2, "rpi"),
    ("raspberry-pi-4", "shufflenet_v2_x1_0", "float32", 37.7, "rpi"),
    ("raspberry-pi-4", "mobilenet_v2", "int8", 26.4, "rpi"),
    ("raspberry-pi-4", "mobilenet_v3_large", "int8", 30.7, "rpi"),
    # the rest of the tutorial's table (built-in zoo versions since the fifteenth session; before, skipped
    # without torchvision)
    ("raspberry-pi-4", "resnext101_32x8d", "float32", 885.3, "rpi"),
    ("raspberry-pi-4", "inception_v3", "float32", 195.5, "rpi"),
    ("raspberry-pi-4", "googlenet", "float32", 132.0, "rpi"),
    ("raspberry-pi-4", "shufflenet_v2_x0_5", "float32", 18.2, "rpi"),
    ("raspberry-pi-4", "shufflenet_v2_x1_5", "float32", 56.3, "rpi"),
    ("raspberry-pi-4", "shufflenet_v2_x2_0", "float32", 82.7, "rpi"),
]
NANO = [
    # model, measured ms (float16, batch 1), role
    ("alexnet", 22.1, "nano"), ("squeezenet1_0", 24.2, "nano"), ("squeezenet1_1", 14.0, "nano"),
    ("resnet18", 34.7, "nano"), ("resnet34", 64.8, "nano"), ("resnet50", 81.7, "nano"),
    ("resnet101", 141.0, "nano"), ("resnet152", 204.0, "nano"), ("densenet121", 84.5, "nano fit"),
    ("densenet169", 118.0, "nano"), ("densenet201", 141.0, "nano"), ("densenet161", 247.0, "nano"),
    ("vgg11", 114.0, "nano fit"), ("vgg13", 156.0, "nano"), ("vgg16", 201.0, "nano"), ("vgg11_bn", 117.0, "nano"),
    ("vgg13_bn", 162.0, "nano"), ("vgg16_bn", 207.0, "nano"),
]


ULTRALYTICS = [
    # device, model, dtype, measured ms, source
    ("raspberry-pi-5", "yolo11n", "float32", 405.238, "ultralytics"),
    ("raspberry-pi-5", "yolo11s", "float32", 1011.60, "ultralytics"),
    ("raspberry-pi-5", "yolo26n", "float32", 299.09, "ultralytics"),
    ("raspberry-pi-5", "yolo26s", "float32", 848.65, "ultralytics"),
    ("raspberry-pi-5", "yolov8n", "float32", 508.61, "ultralytics"),
    ("raspberry-pi-5", "yolov8s", "float32", 969.49, "ultralytics"),
    ("raspberry-pi-4", "yolov8n", "float32", 1068.42, "ultralytics"),
    ("raspberry-pi-4", "yolov8s", "float32", 2589.58, "ultralytics"),
]


def ultralytics_model(name: str):
    """The detector as the Ultralytics benchmark ran it (conv and batch norm fused), or None without the package."""
    try:
        from ultralytics.nn.tasks import DetectionModel
    except Exception:
        return None
    return DetectionModel(f"{name}.yaml", verbose=False).eval().fuse(verbose=False)


def in_zoo(model: str) -> bool:
    try:
        load_model(model)
        return True
    except hwcost.UnknownModelError:
        return False


def h100_pairs(path: Path) -> list[tuple]:
    pairs = []
    for r in json.loads(path.read_text()):
        try:
            load_model(r["model"])
        except hwcost.UnknownModelError:
            continue  # not in the zoo
        tag = "h100 fit" if r["model"] in FIT_MODELS else "h100"
        pairs.append(("h100", r["model"], r["dtype"], r["ms_median"], tag, r["batch"], r["J_per_inf"]))
    return pairs


def main() -> None:
    here = Path(__file__).resolve()
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path,
                    default=here.parents[1] / "calibration/reference/h100_torchvision_eager.json")
    args = ap.parse_args()
    pairs = [(d, m, dt, ms, src, 1, None) for d, m, dt, ms, src in RPI if in_zoo(m)]
    skipped_rpi = [m for _, m, *_ in RPI if not in_zoo(m)]
    skipped_nano = [m for m, _, _ in NANO if not in_zoo(m)]
    pairs += [("jetson-nano", m, "float16", ms, src, 1, None) for m, ms, src in NANO if in_zoo(m)]
    built = {m: ultralytics_model(m) for _, m, *_ in ULTRALYTICS}
    pairs += [(d, m, dt, ms, src, 1, None) for d, m, dt, ms, src in ULTRALYTICS if built[m] is not None]
    skipped_yolo = [f"{m} ({d})" for d, m, *_ in ULTRALYTICS if built[m] is None]
    if args.reference.exists():
        pairs += h100_pairs(args.reference)
    else:
        print(f"(no {args.reference}: H100 pairs skipped)")
    print(f"{'device':16s} {'model':20s} {'batch':>5s} {'dtype':8s} {'measured':>9s} {'predicted':>9s} "
          f"{'ratio':>6s}  {'J meas':>7s} {'J pred':>7s}  source")
    groups: dict[str, list[float]] = {}
    energy_ratios: list[float] = []
    by_run: dict[tuple, dict[str, tuple[float, float]]] = {}   # one source's run of a model on several devices
    for device, model, dtype, ms, src, batch, joules in pairs:
        net, shape = (built[model], (3, 640, 640)) if src == "ultralytics" else (load_model(model).model, (3, 224, 224))
        p = hwcost.predict(net, shape, device=device, dtype=dtype, batch_size=batch)
        ratio = p.latency_ms / ms
        groups.setdefault(src, []).append(ratio)
        by_run.setdefault((src, model, dtype, batch), {})[device] = (ms, p.latency_ms)
        j = f"{joules:7.3f} {p.energy_mj / 1000:7.3f}" if joules else f"{'':7s} {'':7s}"
        if joules:
            energy_ratios.append(p.energy_mj / 1000 / joules)
        print(f"{device:16s} {model:20s} {batch:5d} {dtype:8s} {ms:9.2f} {p.latency_ms:9.2f} {ratio:6.2f}  {j}  {src}")
    print()
    for src, ratios in groups.items():
        err = [max(r, 1 / r) for r in ratios]
        print(f"{src:9s} pairs {len(ratios):3d}  within 1.3x: {sum(e <= 1.3 for e in err) / len(err):5.0%}  "
              f"within 1.5x: {sum(e <= 1.5 for e in err) / len(err):5.0%}  within 2x: {sum(e <= 2 for e in err) / len(err):5.0%}  "
              f"median |log ratio| -> {statistics.median(err):.2f}x  worst {max(err):.2f}x")
    for (src, model, _, _), runs in by_run.items():
        # profiles off by the same factor on two boards for one source's runs point at the workload or
        # the software those runs used, not at either board's numbers
        if len(runs) == 2:
            (d1, (m1, p1)), (d2, (m2, p2)) = sorted(runs.items())
            print(f"{src:9s} {model} on {d2} over {d1}: measured {m2 / m1:.2f}x, predicted {p2 / p1:.2f}x")
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
    for label, keep in (("fit", lambda s: s.endswith("fit")), ("check-only", lambda s: not s.endswith("fit"))):
        rs = [r for s, rr in groups.items() if keep(s) for r in rr]
        err = [max(r, 1 / r) for r in rs]
        devices = sorted({d for d, _, _, _, s, *_ in pairs if keep(s)})
        print(f"{label:10s} pairs {len(err):3d} on {len(devices)} devices  within 1.3x: "
              f"{sum(e <= 1.3 for e in err) / len(err):5.0%}  within 1.5x: {sum(e <= 1.5 for e in err) / len(err):5.0%}  "
              f"within 2x: {sum(e <= 2 for e in err) / len(err):5.0%}  worst {max(err):.2f}x")
    for label, names in (("rpi", skipped_rpi), ("nano", skipped_nano)):
        if names:
            print(f"{label}: {len(names)} published models not in the zoo (torchvision not importable), "
                  f"skipped: {', '.join(names)}")
    if skipped_yolo:
        print(f"ultralytics: does not import here; {len(skipped_yolo)} Raspberry Pi pairs skipped: {', '.join(skipped_yolo)}")


if __name__ == "__main__":
    main()
