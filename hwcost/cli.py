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
