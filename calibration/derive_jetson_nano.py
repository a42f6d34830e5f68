"""Fit the Jetson Nano profile's two eager-PyTorch constants from its two fit runs.

    python calibration/derive_jetson_nano.py

Source: NVIDIA-AI-IOT/torch2trt, benchmarks/JETSON_NANO.md, the "PyTorch" latency column (eager,
float16, batch 1) on a Jetson Nano. Of its 18 torchvision CNNs two set the profile (chosen by what they
stress, before any comparison; benchmarks/bench_published.py checks the other 16):

- vgg11, 114 ms: 29 ops, nearly all convolution FLOPs -> the convolutions' share of the FP16 peak;
- densenet121, 84.5 ms: ~430 ops of little work each -> the host's time per eager op.

The profile says `launch: blocking`: on Tegra the host does not run ahead of the GPU, so a run takes host
time plus device time (execution.py). Both constants move both runs a little, so they are solved
together, by fixed-point iteration on the full prediction (the memory-bound ops are left as they are).
"""
import dataclasses

import hwcost
from hwcost.loaders import load_model

FIT = {"vgg11": 114.0, "densenet121": 84.5}       # ms, torch2trt benchmarks/JETSON_NANO.md
PRODUCTS = ("conv", "grouped_conv", "depthwise_conv", "conv_transpose", "matmul", "attention")


def predict(device, name):
    return hwcost.predict(load_model(name).model, (3, 224, 224), device=device, dtype="float16")


def with_constants(base, host_us: float, efficiency: float):
    eff = dict(base.compute_efficiency)
    eff.update({f: efficiency for f in PRODUCTS})
    return dataclasses.replace(base, host_per_op_us=host_us, compute_efficiency=eff)


def main() -> None:
    base = hwcost.load_device("jetson-nano")
    if not base.launch_blocking:
        raise SystemExit("device_profiles/jetson-nano.yaml must say `launch: blocking` for this fit")
    host_us, eff = base.host_per_op_us, base.compute_efficiency["conv"]
    for _ in range(20):
        dev = with_constants(base, host_us, eff)
        eff *= predict(dev, "vgg11").latency_ms / FIT["vgg11"]      # device-bound: scales with 1/eff
        p = predict(with_constants(base, host_us, eff), "densenet121")
        ops = p.host_ms * 1e3 / host_us
        new_host = (FIT["densenet121"] - p.device_ms) * 1e3 / ops   # host ms = ops x host_per_op
        if abs(new_host - host_us) < 0.01:
            break
        host_us = new_host
    dev = with_constants(base, host_us, eff)
    for name, ms in FIT.items():
        print(f"{name:12s} measured {ms:6.1f} ms  predicted {predict(dev, name).latency_ms:6.1f} ms")
    print(f"host_per_op = {host_us:.1f} us; convolution/matmul efficiency = {eff:.3f} of the FP16 peak")


if __name__ == "__main__":
    main()
