"""Command line: ``hwcost analyze|zoo|...`` (``python -m hwcost`` is the same)."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import torch

from .errors import HwcostError, InputError


def parse_input(text: str) -> Any:
    """``3,224,224`` -> a float input of that shape; ``128:int64`` -> token ids of shape (batch, 128).

    Several inputs are separated by ``;``.
    """
    parts = [p.strip() for p in text.split(";") if p.strip()]
    inputs = []
    for p in parts:
        shape_text, _, dtype_text = p.partition(":")
        try:
            shape = tuple(int(d) for d in shape_text.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise InputError(f"cannot read input shape {p!r}: write it as 3,224,224 (or 128:int64 for token ids)")
        if not shape or any(d <= 0 for d in shape):
            raise InputError(f"input shape {p!r} must be positive integers, e.g. 3,224,224")
        if dtype_text:
            dt = getattr(torch, dtype_text.strip(), None)
            if not isinstance(dt, torch.dtype):
                raise InputError(f"unknown input dtype {dtype_text!r} in {p!r}; use int64, int32 or float32")
            inputs.append(torch.zeros((1, *shape), dtype=dt, device="meta"))
        else:
            inputs.append(shape)
    if not inputs:
        raise InputError("--input is empty; write a shape such as 3,224,224")
    return inputs[0] if len(inputs) == 1 else tuple(inputs)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo name (see `hwcost zoo`), torchvision:NAME, timm:NAME or file.py:function")
    p.add_argument("--input", help="input shape without batch, e.g. 3,224,224; 128:int64 for token ids; ';' between inputs")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 or int8")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--out", help="write the result to this file instead of standard output")


def _emit(text: str, out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        print(f"wrote {out}")
    else:
        print(text)


def _analysis(args: argparse.Namespace):
    from .analysis import analyze
    from .loaders import load_model

    loaded = load_model(args.model)
    example = parse_input(args.input) if args.input else loaded.example
    return analyze(loaded.model, example, batch_size=args.batch, dtype=args.dtype, model_name=loaded.name)


def cmd_analyze(args: argparse.Namespace) -> None:
    a = _analysis(args)
    if args.format == "json":
        _emit(a.to_json(), args.out)
    elif args.format == "csv":
        _emit(a.to_csv(depth=args.depth), args.out)
    else:
        _emit(a.table(depth=args.depth), args.out)


def _prediction(args: argparse.Namespace, device: str):
    from .devices import load_device
    from .predict import predict_analysis

    profile = load_device(device)  # a bad device fails before any tracing
    return predict_analysis(_analysis(args), profile)


def cmd_predict(args: argparse.Namespace) -> None:
    p = _prediction(args, args.device)
    if args.format == "json":
        _emit(p.to_json(), args.out)
    elif args.format == "csv":
        from .table import to_csv_text

        _emit(to_csv_text([r.as_dict() for r in p.aggregate(args.depth)]), args.out)
    else:
        _emit(p.table(depth=args.depth), args.out)


def cmd_compare(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .predict import predict_analysis
    from .table import format_table

    names = [d.strip() for d in args.devices.split(",") if d.strip()]
    if not names:
        raise InputError("--devices is empty; give a comma-separated list such as raspberry-pi-4,h100")
    profiles = [load_device(n) for n in names]
    a = _analysis(args)
    preds = [predict_analysis(a, prof) for prof in profiles]
    if args.format == "json":
        import json

        _emit(json.dumps([p.to_dict() for p in preds], indent=1), args.out)
        return
    rows = []
    for p in preds:
        b = p.bound_shares()
        top = max(p.layers, key=lambda r: r.latency_ms)
        rows.append([p.device.name, p.device.kind, p.latency_ms, p.fps, p.energy_mj, p.average_power_w,
                     f"{b['compute']:.0f}/{b['memory']:.0f}/{b['overhead']:.0f}",
                     f"{top.name} ({top.share_pct:.0f}%)"])
    headers = ["device", "kind", "latency (ms)", "FPS", "energy (mJ)", "avg power (W)",
               "compute/memory/overhead %", "slowest layer"]
    _emit(format_table(headers, rows) + f"\nmodel: {a.model_name}   batch: {a.batch_size}   dtype: {a.dtype}   "
          f"{a.total.macs / 1e9:,.3f} GMAC", args.out)


def cmd_devices(args: argparse.Namespace) -> None:
    from .devices import devices, load_device
    from .table import format_table

    profiles = [load_device(n) for n in devices()]
    if args.format == "json":
        import json

        print(json.dumps([{"name": p.name, "kind": p.kind, "description": p.description,
                           "matrix_tflops": p.matrix_tflops, "bandwidth_gbps": p.bandwidth_gbps,
                           "power_w": [p.power_idle_w, p.power_max_w], "sources": p.sources}
                          for p in profiles], indent=1))
        return
    rows = [p.summary_row() + [p.description] for p in profiles]
    print(format_table(["name", "kind", "fp32 TFLOP/s", "fp16", "int8 TOP/s", "GB/s", "idle/max W",
                        "profile", "description"], rows))
    print("sources: `hwcost devices --format json`, or the YAML files in hwcost/device_profiles/")


def cmd_roofline(args: argparse.Namespace) -> None:
    from .roofline import plot_roofline

    p = _prediction(args, args.device)
    print(f"wrote {plot_roofline(p, args.out)}  ({p.analysis.model_name} on {p.device.name}: "
          f"{p.latency_ms:,.3f} ms)")


def cmd_zoo(args: argparse.Namespace) -> None:
    from .table import format_table
    from .zoo import ZOO

    rows = []
    for e in ZOO.values():
        ex = e.example()
        shape = tuple(ex.shape[1:]) if isinstance(ex, torch.Tensor) else ex
        rows.append([e.name, str(shape), e.reference_params or "", e.description])
    print(format_table(["name", "input (no batch)", "reference params", "description"], rows))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwcost", description="Hardware-aware cost analysis of PyTorch models")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="count per-layer MACs, FLOPs, bytes and memory")
    _add_model_args(p)
    p.add_argument("--depth", type=int, default=None, help="aggregate rows to this module depth")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("predict", help="per-layer latency, share, bound and energy on a device")
    _add_model_args(p)
    p.add_argument("--device", default="raspberry-pi-4", help="shipped profile name (hwcost devices) or a YAML path")
    p.add_argument("--depth", type=int, default=None, help="aggregate rows to this module depth")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="one model on several devices, side by side")
    _add_model_args(p)
    p.add_argument("--devices", required=True, help="comma-separated profile names or YAML paths")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("devices", help="table of the shipped device profiles")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("roofline", help="PNG of each layer on the device's roofline")
    _add_model_args(p)
    p.add_argument("--device", required=True, help="profile name or YAML path")
    p.set_defaults(func=cmd_roofline, out="roofline.png")

    p = sub.add_parser("zoo", help="list the built-in reference architectures")
    p.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except HwcostError as e:
        print(f"hwcost: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
