"""Command line: ``hwcost analyze|predict|compare|devices|roofline|calibrate|measure|validate|search|generate|zoo``
(``python -m hwcost`` is the same). Parses arguments, calls the library, prints what hwcost.report
renders; no workflow lives here.

Long because it declares eleven subcommands with a help line for every option.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

import torch

from . import report
from .errors import HwcostError, InputError, ProfileError
from .timing import flush_subnormals_now

DEFAULT_DEVICE = "raspberry-pi-4"
MODEL_HELP = ("zoo name (hwcost zoo), torchvision:NAME, timm:NAME, path/to/file.py:function, or a transformers "
              "config.json (or its folder)")


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


def _depth(text: str) -> int:
    try:
        d = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if d < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = the whole model, 1 = its children), got {d}")
    return d


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {n}")
    return n


def _names(text: str | None, what: str, example: str) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise InputError(f"{what} is empty; give a comma-separated list such as {example}")
    return names


def _emit(text: str, out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        print(f"wrote {out}")
    else:
        print(text)


def _model_args(p: argparse.ArgumentParser, formats: Sequence[str] = ("table", "json", "csv")) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--input", help="input shape without batch, e.g. 3,224,224; 128:int64 for token ids; ';' between "
                                   "inputs (default: the model's own example)")
    p.add_argument("--batch", type=_positive, default=None, help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 or int8 (default float32)")
    p.add_argument("--trace", choices=["auto", "meta", "values"], default="auto",
                   help="meta: shapes only (no weights); values: real CPU tensors; auto: meta unless the model "
                        "needs values (default)")
    if formats:
        p.add_argument("--format", choices=list(formats), default="table", help="output format (default table)")
        p.add_argument("--out", help="write the result to this file instead of standard output")


def _depth_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=_depth, default=None,
                   help="merge rows to this module depth (0 = whole model, 1 = its children; default: every layer)")


def _analysis(args: argparse.Namespace):
    from .analysis import analyze
    from .loaders import load_model

    loaded = load_model(args.model)
    example = parse_input(args.input) if args.input else loaded.default_input()
    return analyze(loaded.model, example, batch_size=args.batch, dtype=args.dtype, model_name=loaded.name,
                   trace=args.trace)


def cmd_analyze(args: argparse.Namespace) -> None:
    a = _analysis(args)
    text = {"json": a.to_json, "csv": lambda: a.to_csv(depth=args.depth)}.get(args.format, lambda: a.table(args.depth))()
    _emit(text, args.out)


def _device_name(args: argparse.Namespace) -> str:
    if args.device:
        return args.device
    print(f"hwcost: no --device given: predicting for {DEFAULT_DEVICE} (`hwcost devices` lists the others)",
          file=sys.stderr)
    return DEFAULT_DEVICE


def _prediction(args: argparse.Namespace, device: str):
    from .devices import load_device
    from .predict import predict_analysis

    profile = load_device(device)  # a bad device fails before any tracing
    return predict_analysis(_analysis(args), profile)


def cmd_predict(args: argparse.Namespace) -> None:
    p = _prediction(args, _device_name(args))
    if args.format == "json":
        _emit(p.to_json(), args.out)
    elif args.format == "csv":
        _emit(report.to_csv_text([r.as_dict() for r in p.aggregate(args.depth)]), args.out)
    else:
        _emit(p.table(depth=args.depth), args.out)


def cmd_compare(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .predict import predict_analysis

    profiles = [load_device(n) for n in _names(args.devices, "--devices", "raspberry-pi-4,h100")]
    a = _analysis(args)
    preds = [predict_analysis(a, prof) for prof in profiles]
    if args.format == "json":
        _emit(report.to_json_text([p.to_dict() for p in preds]), args.out)
    elif args.format == "csv":
        _emit(report.to_csv_text(report.compare_rows(preds)), args.out)
    else:
        _emit(report.compare_table(preds), args.out)


def cmd_devices(args: argparse.Namespace) -> None:
    from .devices import devices, load_device

    profiles = [load_device(n) for n in devices()]
    if args.format == "json":
        print(report.to_json_text([{"name": p.name, "kind": p.kind, "isa": p.isa, "description": p.description,
                                    "matrix_tflops": p.matrix_tflops, "bandwidth_gbps": p.bandwidth_gbps,
                                    "capacity_gb": p.capacity_gb, "power_w": [p.power_idle_w, p.power_max_w],
                                    "sources": p.sources} for p in profiles]))
    else:
        print(report.devices_table(profiles))


def cmd_roofline(args: argparse.Namespace) -> None:
    from .plot import plot_roofline

    if not args.out.lower().endswith(".png"):
        raise InputError(f"--out must name a .png file, got {args.out!r}")
    if os.path.exists(args.out) and not args.force:
        raise InputError(f"{args.out} exists; pass --force to overwrite it, or another --out")
    p = _prediction(args, args.device)
    print(f"wrote {plot_roofline(p, args.out)}  ({p.analysis.model_name} on {p.device.name}: "
          f"{p.latency_ms:,.3f} ms)")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from .calibration import calibrate, refit
    from .calibration.selfcheck import probe_self_check, self_check_note
    from .probe import calibration_steadiness_note

    if not args.name and not (args.refit and args.out):
        raise InputError("calibrate needs --name (or, with --refit, the --out profile to refit)")
    if args.refit:
        p = refit(args.out or args.name + ".yaml")
        print(f"refitted {p.path} from its samples (chain error {p.calibration['context']['median_abs_error_pct']}%)")
        if (note := self_check_note(probe_self_check(p))) is not None:
            print(note)
        return
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    p = calibrate(name=args.name, backend=args.backend, out=args.out, budget_s=args.budget, quick=args.quick,
                  threads=args.threads, dtypes=dtypes, base=args.base, progress=not args.no_progress,
                  allocator=args.allocator, allow_busy=args.allow_busy)
    cal = p.calibration or {}
    ctx = cal.get("context", {})
    print(f"wrote {args.out or args.name + '.yaml'} ({cal.get('cases')} cases, "
          f"{ctx.get('chains', 0)} chains, chain error {ctx.get('median_abs_error_pct')}%)")
    for note in (calibration_steadiness_note(cal), self_check_note(probe_self_check(p))):
        if note is not None:
            print(note)
    print(f"use it: hwcost predict resnet50 --device {args.out or args.name + '.yaml'}")


def cmd_measure(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .loaders import load_model
    from .measure import measure
    from .predict import predict
    from .probe import matching_reference, probe_reference

    loaded = load_model(args.model, meta=False)
    example = parse_input(args.input) if args.input else loaded.default_input()
    reference = None
    if args.reference:
        profile = load_device(args.reference)
        try:   # the probe nearest this model, as validate picks it: decided from its prediction on that profile
            reference = matching_reference(predict(loaded.model, example, device=profile, batch_size=args.batch,
                                                   dtype=args.dtype, model_name=loaded.name))
        except ProfileError:   # the profile cannot predict it (no rate for this dtype): the batch-1 probe
            reference = probe_reference(profile.calibration)
        if reference is None:
            raise InputError(f"{args.reference} records no probe time (a datasheet profile, or calibrated by an "
                             "older hwcost): the drift-adjusted latency needs one; recalibrate")
    m = measure(loaded.model, example, backend=args.backend, batch_size=args.batch, dtype=args.dtype,
                per_layer=args.per_layer, repeats=args.repeats, threads=args.threads, model_name=loaded.name,
                allocator=args.allocator, reference=reference)
    _emit(report.to_json_text(m.to_dict()) if args.format == "json" else m.table(), args.out)


def cmd_validate(args: argparse.Namespace) -> None:
    from .validate import validate

    batches = [_positive(b) for b in str(args.batch).split(",") if b.strip()]
    v = validate(args.device, _names(args.models, "--models", "mobilenet_v2,resnet18"), batches,
                 backend=args.backend, dtype=args.dtype, repeats=args.repeats, threads=args.threads,
                 allocator=args.allocator, force=args.force)
    print(v.table())


def cmd_search(args: argparse.Namespace) -> None:
    from .devices import load_device
    from .spaces import SPACES
    from .specialize import LatencyLUT, search

    if args.space not in SPACES:
        raise InputError(f"unknown search space {args.space!r}; spaces: {', '.join(SPACES)}")
    device_names = _names(args.devices or args.device, "--device/--devices", "raspberry-pi-4,h100")
    try:
        budgets = [float(b) for b in str(args.latency_ms).split(",") if b.strip()]
    except ValueError:
        raise InputError(
            f"--latency-ms must be numbers in milliseconds, e.g. 40 or 10,20,40; got {args.latency_ms!r}") from None
    if not budgets or any(b <= 0 for b in budgets):
        raise InputError(f"--latency-ms must be positive milliseconds, e.g. 40 or 10,20,40; got {args.latency_ms!r}")
    space = SPACES[args.space]()
    rows = []
    for name in device_names:
        profile = load_device(name)
        lut = LatencyLUT.shared(space, profile, args.batch, args.dtype)
        fastest = lut.latency_ms(space.smallest())
        for b in budgets:
            if fastest > b:   # one unreachable budget is one cell, not the end of the table
                rows.append({"device": profile.name, "budget_ms": b, "unreachable": True, "fastest_ms": fastest})
                continue
            r = search(space, profile, b, population=args.population, generations=args.generations, seed=args.seed,
                       batch_size=args.batch, dtype=args.dtype, lut=lut)
            rows.append({"device": profile.name, "budget_ms": b, "latency_ms": r.best_latency_ms,
                         "mmacs": lut.macs(r.best) / 1e6, "evaluated": r.evaluated, "per_s": r.per_second,
                         "subnet": r.description})
    if all(r.get("unreachable") for r in rows):
        worst = min(rows, key=lambda r: r["fastest_ms"])
        raise InputError(f"no sub-network of {space.name} meets {', '.join(f'{b:g}' for b in budgets)} ms on "
                         f"{', '.join(device_names)}: the fastest reachable is {worst['fastest_ms']:.3f} ms "
                         f"({worst['device']}); raise the budget")
    if args.format == "json":
        print(report.to_json_text(rows))
        return
    print(report.search_table(rows))
    print(f"sub-network: {space.notation}")
    print("objective: capacity proxy log10(MACs), NOT accuracy: pass your accuracy predictor through the "
          "Python API (hwcost.search(..., objective=fn)); see examples/specialize.py")


def cmd_generate(args: argparse.Namespace) -> None:
    from .generation import predict_generation

    devices = _names(args.devices or args.device or DEFAULT_DEVICE, "--devices", "raspberry-pi-5,h100")
    gens = [predict_generation(args.model, prompt_tokens=args.prompt, new_tokens=args.new, batch_size=args.batch,
                               device=d, dtype=args.dtype, weight_dtype=args.weight_dtype, kv_dtype=args.kv_dtype)
            for d in devices]
    if args.format == "json":
        _emit(report.to_json_text([g.to_dict() for g in gens] if len(gens) > 1 else gens[0].to_dict()), args.out)
    elif len(gens) == 1:
        g = gens[0]
        text = g.summary()
        if args.layers:
            text = g.prefill.table(depth=args.depth) + "\n\n" + g.decode_step(g.prompt_tokens).table(depth=args.depth) \
                + "\n\n" + text
        _emit(text, args.out)
    else:
        # what every device assumes once; a device's own figures (derived overheads) under its name
        common = [a for a in gens[0].assumptions if all(a in g.assumptions for g in gens)]
        _emit(report.generation_table(gens) + "".join(
            f"\nWARNING ({g.device.name}): {w}" for g in gens for w in g.warnings)
            + "".join(f"\nassumes: {a}" for a in common)
            + "".join(f"\nassumes ({g.device.name}): {a}" for g in gens for a in g.assumptions if a not in common),
            args.out)


def cmd_zoo(args: argparse.Namespace) -> None:
    from .zoo import ZOO

    entries = []
    for e in ZOO.values():
        ex = e.example()
        shape = tuple(ex.shape[1:]) if isinstance(ex, torch.Tensor) else ex
        entries.append((e.name, str(shape), e.reference_params, e.description))
    print(report.zoo_table(entries))


def _timing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default float32)")
    p.add_argument("--repeats", type=_positive, default=20, help="timed runs after warm-up (default 20)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="CPU threads (default: torch's; validate: the profile's calibration)")
    _allocator_arg(p)


def _allocator_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allocator", choices=["retain", "system"], default="retain",
                   help="retain: keep freed host memory, no page-fault storms (default, as calibration); "
                        "system: malloc as it is")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwcost", description="Hardware-aware cost analysis of PyTorch models")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="count per-layer MACs, FLOPs, bytes and memory")
    _model_args(p)
    _depth_arg(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("predict", help="per-layer latency, share, bound and energy on a device")
    _model_args(p)
    p.add_argument("--device", help=f"shipped profile name (hwcost devices) or a YAML path (default {DEFAULT_DEVICE})")
    _depth_arg(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="one model on several devices, side by side")
    _model_args(p)
    p.add_argument("--devices", required=True, help="comma-separated profile names or YAML paths")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("devices", help="table of the shipped device profiles")
    p.add_argument("--format", choices=["table", "json"], default="table", help="json: with descriptions and sources")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("roofline", help="PNG of each layer on the device's roofline (needs matplotlib)")
    _model_args(p, formats=())
    p.add_argument("--device", required=True, help="profile name or YAML path")
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=cmd_roofline)

    p = sub.add_parser("calibrate", help="microbenchmark this machine and write a calibrated profile")
    p.add_argument("--name", help="profile name (required unless --refit with --out)")
    p.add_argument("--out", help="profile YAML to write (default NAME.yaml); samples and model go beside it")
    p.add_argument("--backend", choices=["cpu", "cuda"], default="cpu", help="what to calibrate (default cpu)")
    p.add_argument("--budget", type=float, default=None, help="seconds for the suite (default 300; --quick 45)")
    p.add_argument("--quick", action="store_true", help="a smaller sweep, for CI and a first look")
    p.add_argument("--threads", type=_positive, default=None, help="fixed thread count (default: torch's)")
    p.add_argument("--dtypes", default="float32", help="comma-separated dtypes to measure rates for (default float32)")
    p.add_argument("--base", help="datasheet profile to take power and energy figures from")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-busy", action="store_true",
                   help="write the profile even though other processes kept the CPU busy while it was measured")
    _allocator_arg(p)
    p.add_argument("--refit", action="store_true", help="fit the model again from the stored samples, no measuring")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("measure", help="real latency of a model here (median, p10, p90), optionally per layer")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--input", help="input shape without batch, e.g. 3,224,224 (default: the model's own example)")
    p.add_argument("--batch", type=_positive, default=None, help="batch size (default 1)")
    p.add_argument("--per-layer", action="store_true", help="also time each leaf module (duration share per layer)")
    p.add_argument("--reference", help="a calibrated profile: time its probe network (at batch 1 or 8, whichever's "
                                       "kernels run nearest the model's as predicted) call by call between the "
                                       "model's, and report the drift-adjusted latency beside the raw one")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    p.add_argument("--out", help="write the result to this file instead of standard output")
    _timing_args(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("validate", help="predicted vs measured latency for several models on this machine")
    p.add_argument("--device", required=True, help="the profile of this machine (calibrated here) to validate")
    p.add_argument("--models", required=True, help="comma-separated model names")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes, e.g. 1,8 (default 1)")
    p.add_argument("--force", action="store_true", help="compare even when the profile describes another machine")
    _timing_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("search", help="best sub-network of a space under a latency budget (Once-for-All style)")
    p.add_argument("--space", default="ofa-mbv3", help="ofa-mbv3 or resnet (default ofa-mbv3)")
    p.add_argument("--device", help="one device profile")
    p.add_argument("--devices", help="comma-separated device profiles (a table)")
    p.add_argument("--latency-ms", required=True, help="budget(s) in ms, comma-separated")
    p.add_argument("--population", type=_positive, default=100, help="sub-networks per generation (default 100)")
    p.add_argument("--generations", type=_positive, default=30, help="generations (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch", type=_positive, default=1, help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 or int8 (default float32)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("generate", help="LLM generation: time to first token, per-token decode, tokens/s, memory, fit")
    p.add_argument("model", help="a zoo decoder (llama_tiny, llama_125m), or a transformers config.json path")
    p.add_argument("--device", help=f"one device profile (default {DEFAULT_DEVICE})")
    p.add_argument("--devices", help="comma-separated device profiles (a table)")
    p.add_argument("--prompt", type=_positive, default=512, help="prompt tokens (default 512)")
    p.add_argument("--new", type=_positive, default=128, help="new tokens to generate (default 128)")
    p.add_argument("--batch", type=_positive, default=1, help="sequences generated together (default 1)")
    p.add_argument("--dtype", default="float32", help="activations (and weights): float32, float16, bfloat16")
    p.add_argument("--weight-dtype", default=None, help="weight-only format of the linear layers: int8 or int4")
    p.add_argument("--kv-dtype", default=None, help="KV-cache element type (default --dtype)")
    p.add_argument("--layers", action="store_true", help="also the per-layer tables of the prefill and a decode step")
    _depth_arg(p)
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    p.add_argument("--out", help="write the result to this file instead of standard output")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("zoo", help="list the built-in reference architectures")
    p.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    flush_subnormals_now()   # before any parallel op, so the intra-op threads inherit it
    try:
        args.func(args)
    except HwcostError as e:
        print(f"hwcost: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    finally:
        flush_subnormals_now(False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
