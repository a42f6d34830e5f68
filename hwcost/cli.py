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
            raise InputError(f"cannot read input shape {p!r}: write it as 3,224,224 (or 128:int64 for token ids)") from None
        if not shape or any(d <= 0 for d in shape):
            raise InputError(f"input shape {p!r} must be positive integers, e.g. 3,224,224")
        if dtype_text:
            dt = getattr(torch, dtype_text.strip(), None)
            if not isinstance(dt, torch.dtype):
                raise InputError(f"unknown input dtype {dtype_text!r} in {p!r}; use int64, int32 or float32")
            inputs.append(torch.zeros((1, *shape), dtype=dt))  # token ids 0: values a trace can read
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
    p.add_argument("--trace", choices=["auto", "meta", "values"], default="auto",
                   help="meta: shapes only (no weights); values: real CPU tensors; auto: meta unless the model "
                        "needs values (default)")


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
    return analyze(loaded.model, example, batch_size=args.batch, dtype=args.dtype, model_name=loaded.name,
                   trace=getattr(args, "trace", "auto"))


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
        from .report import to_csv_text

        _emit(to_csv_text([r.as_dict() for r in p.aggregate(args.depth)]), args.out)
    else:
        _emit(p.table(depth=args.depth), args.out)


def cmd_compare(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .predict import predict_analysis
    from .report import format_table

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
    from .report import format_table

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
    from .plot import plot_roofline

    p = _prediction(args, args.device)
    print(f"wrote {plot_roofline(p, args.out)}  ({p.analysis.model_name} on {p.device.name}: "
          f"{p.latency_ms:,.3f} ms)")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from .calibration import calibrate, refit

    if not args.name and not (args.refit and args.out):
        raise InputError("calibrate needs --name (or, with --refit, the --out profile to refit)")
    if args.refit:
        p = refit(args.out or args.name + ".yaml")
        print(f"refitted {p.path} from its samples (chain error {p.calibration['context']['median_abs_error_pct']}%)")
        return
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    p = calibrate(name=args.name, backend=args.backend, out=args.out, budget_s=args.budget, quick=args.quick,
                  threads=args.threads, dtypes=dtypes, base=args.base, progress=not args.no_progress,
                  allocator=args.allocator)
    cal = p.calibration or {}
    ctx = cal.get("context", {})
    print(f"wrote {args.out or args.name + '.yaml'} ({cal.get('cases')} cases, "
          f"{ctx.get('chains', 0)} chains, chain error {ctx.get('median_abs_error_pct')}%)")
    from .probe import calibration_steadiness_note

    if (note := calibration_steadiness_note(cal)) is not None:
        print(note)
    print(f"use it: hwcost predict resnet50 --device {args.out or args.name + '.yaml'}")


def _measurement(args: argparse.Namespace, name: str, batch: int | None):
    from .loaders import load_model
    from .measure import measure

    loaded = load_model(name, meta=False)
    example = parse_input(args.input) if getattr(args, "input", None) else loaded.example
    return loaded, example, measure(loaded.model, example, backend=args.backend, batch_size=batch,
                                    dtype=args.dtype, per_layer=getattr(args, "per_layer", False),
                                    repeats=args.repeats, threads=args.threads, model_name=loaded.name,
                                    allocator=args.allocator)


def cmd_measure(args: argparse.Namespace) -> None:
    _, _, m = _measurement(args, args.model, args.batch)
    if args.format == "json":
        import json

        _emit(json.dumps(m.to_dict(), indent=1), args.out)
    else:
        _emit(m.table(), args.out)


def cmd_validate(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .measure import UNSTEADY_SPREAD
    from .predict import predict
    from .report import format_table

    profile = load_device(args.device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    batches = [int(b) for b in str(args.batch).split(",")]
    rows, errors, unsteady = [], [], []
    drift = None
    cal_threads = (profile.calibration or {}).get("threads")
    if args.threads is None and cal_threads:
        args.threads = int(cal_threads)  # a calibrated profile describes this machine at that thread count
    if profile.calibration and profile.calibration.get("probe"):
        from .probe import drift_line, probe_ms, resource_rates
        from .measure import fixed_threads

        with fixed_threads(args.threads):   # the same conditions the models are measured under
            drift = drift_line(profile.calibration, probe_ms(args.backend, args.allocator),
                               resource_rates(args.backend))
    for name in names:
        for b in batches:
            loaded, example, m = _measurement(args, name, b)
            p = predict(loaded.model, example, device=profile, batch_size=b, dtype=args.dtype, model_name=name)
            err = 100 * (p.latency_ms / m.latency_ms - 1)
            errors.append(err)
            rows.append([name, b, m.latency_ms, f"x{m.spread:.2f}", p.latency_ms, f"{err:+.1f}%"])
            if not m.steady:
                unsteady.append(f"{name} b{b}")
    print(format_table(["model", "batch", "measured (ms)", "p90/p10", "predicted (ms)", "error"], rows))
    within = lambda t: sum(abs(e) <= t for e in errors) / len(errors)  # noqa: E731
    cal_alloc = ((profile.calibration or {}).get("host") or {}).get("allocator")
    if cal_alloc and cal_alloc != m.allocator:
        print(f"note: {profile.name} was calibrated with allocator {cal_alloc!r}, measured here with {m.allocator!r}")
    if drift:
        print(drift)
    if unsteady:
        print(f"warning: runs varied more than x{UNSTEADY_SPREAD} between p10 and p90 for {', '.join(unsteady)}: "
              "the machine's speed was not steady, and errors up to that spread are the measurement's")
    print(f"measured with {m.threads} threads" + (" (the profile's calibration)" if cal_threads == m.threads else ""))
    print(f"device profile: {profile.name} ({'calibrated' if profile.calibration else 'datasheet'})   "
          f"within ±10%: {within(10):.0%}   within ±20%: {within(20):.0%}   "
          f"mean |error|: {sum(abs(e) for e in errors) / len(errors):.1f}%")


def cmd_search(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .specialize import LatencyLUT, search
    from .spaces import SPACES
    from .report import format_table

    if args.space not in SPACES:
        raise InputError(f"unknown search space {args.space!r}; spaces: {', '.join(SPACES)}")
    device_names = [d.strip() for d in (args.devices or args.device or "").split(",") if d.strip()]
    if not device_names:
        raise InputError("give --device NAME or --devices A,B,C")
    try:
        budgets = [float(b) for b in str(args.latency_ms).split(",") if b.strip()]
    except ValueError:
        raise InputError(
            f"--latency-ms must be numbers in milliseconds, e.g. 40 or 10,20,40; got {args.latency_ms!r}") from None
    rows = []
    for name in device_names:
        profile = load_device(name)
        space = SPACES[args.space]()
        lut = LatencyLUT(space, profile, args.batch, args.dtype)
        for b in budgets:
            r = search(space, profile, b, population=args.population, generations=args.generations, seed=args.seed,
                       batch_size=args.batch, dtype=args.dtype, lut=lut)
            rows.append([profile.name, b, r.best_latency_ms, lut.macs(r.best) / 1e6, r.evaluated,
                         round(r.per_second), r.description])
    print(format_table(["device", "budget (ms)", "latency (ms)", "MMACs", "evaluated", "per s", "sub-network"], rows))
    print("objective: capacity proxy log10(MACs), NOT accuracy: pass your accuracy predictor through the "
          "Python API (hwcost.search(..., objective=fn)); see examples/specialize.py")


def cmd_zoo(args: argparse.Namespace) -> None:
    from .report import format_table
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

    def allocator_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--allocator", choices=["retain", "system"], default="retain",
                       help="retain: keep freed host memory, no page-fault storms (default, as calibration); "
                            "system: malloc as it is")

    p = sub.add_parser("calibrate", help="microbenchmark this machine and write a calibrated profile")
    p.add_argument("--name", help="profile name (required unless --refit with --out)")
    p.add_argument("--out", help="profile YAML to write (default NAME.yaml); samples and model go beside it")
    p.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--budget", type=float, default=None, help="seconds for the suite (default 300; --quick 45)")
    p.add_argument("--quick", action="store_true", help="a smaller sweep, for CI and a first look")
    p.add_argument("--threads", type=int, default=None, help="fixed thread count (default: torch's)")
    p.add_argument("--dtypes", default="float32", help="comma-separated dtypes to measure peak rates for")
    p.add_argument("--base", help="datasheet profile to take power and energy figures from")
    p.add_argument("--no-progress", action="store_true")
    allocator_arg(p)
    p.add_argument("--refit", action="store_true", help="fit the model again from the stored samples, no measuring")
    p.set_defaults(func=cmd_calibrate)

    def timing_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
        p.add_argument("--dtype", default="float32")
        p.add_argument("--repeats", type=int, default=20)
        p.add_argument("--threads", type=int, default=None)
        allocator_arg(p)

    p = sub.add_parser("measure", help="real latency of a model here (median, p10, p90), optionally per layer")
    p.add_argument("model")
    p.add_argument("--input")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--per-layer", action="store_true", help="leaf-module durations (seed 001's duration %%)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--out")
    timing_args(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("validate", help="predicted vs measured latency for several models on this machine")
    p.add_argument("--device", required=True, help="profile (calibrated on this machine) to validate")
    p.add_argument("--models", required=True, help="comma-separated model names")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes, e.g. 1,8")
    timing_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("search", help="best sub-network of a space under a latency budget (Once-for-All style)")
    p.add_argument("--space", default="ofa-mbv3", help="ofa-mbv3 or resnet")
    p.add_argument("--device", help="one device profile")
    p.add_argument("--devices", help="comma-separated device profiles (a table)")
    p.add_argument("--latency-ms", required=True, help="budget(s) in ms, comma-separated")
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--generations", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="float32")
    p.set_defaults(func=cmd_search)

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
