"""Analysis speed: hwcost vs thop, ptflops, fvcore, torchinfo and FlopCounterMode, in one run.

    pip install -r benchmarks/requirements.txt     # the other counters: not hwcost dependencies
    python benchmarks/bench_analyze.py [--repeats 5] [--batch 32]

Every tool sees its own fresh copy of the model (thop adds buffers to the modules it profiles) and
real CPU tensors, as its users run it; hwcost takes the same model and traces it on meta stand-ins.
Times are medians after one warm-up run. "GMAC" is what each tool reports (fvcore's "flops" are
MACs; thop/ptflops/torchinfo count module hooks only). Then a Llama-2-70B-shaped decoder is built
on the meta device and analyzed in a fresh process, for its wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any, Callable

import torch

import hwcost
from hwcost.loaders import load_model

warnings.filterwarnings("ignore")


def bert_base() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig()).eval(), {"input_ids": torch.randint(0, 30000, (1, 128))}


def zoo_model(name: str) -> Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor]]]:
    def build():
        return load_model(name, meta=False).model.eval(), {"x": torch.randn(1, 3, 224, 224)}

    return build


MODELS: dict[str, Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor]]]] = {
    "resnet50": zoo_model("resnet50"),
    "mobilenet_v2": zoo_model("mobilenet_v2"),
    "vit_b_16": zoo_model("vit_b_16"),
    "bert_base": bert_base,
}


def _batched(inputs: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    return {k: v.expand(batch, *v.shape[1:]).contiguous() for k, v in inputs.items()}


def _positional(inputs: dict[str, torch.Tensor]) -> tuple:
    return tuple(inputs.values())


# ---------------------------------------------------------------- one function per tool: -> GMAC


def run_hwcost(model, inputs):
    example = inputs if "input_ids" in inputs else _positional(inputs)
    return hwcost.analyze(model, example).total.macs / 1e9


def run_flop_counter(model, inputs):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(**inputs) if "input_ids" in inputs else model(*_positional(inputs))
    return fc.get_total_flops() / 2e9


def run_thop(model, inputs):
    import thop

    macs, _ = thop.profile(model, inputs=_positional(inputs), verbose=False)
    return macs / 1e9


def run_ptflops(model, inputs):
    from ptflops import get_model_complexity_info

    shape = tuple(next(iter(inputs.values())).shape[1:])
    kw: dict[str, Any] = dict(as_strings=False, print_per_layer_stat=False, verbose=False)
    kw["input_constructor"] = lambda _: inputs if "input_ids" in inputs else _positional(inputs)[0]
    macs, _ = get_model_complexity_info(model, shape, **kw)
    return macs / 1e9


def run_fvcore(model, inputs):
    from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(model, _positional(inputs))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return fca.total() / 1e9


def run_torchinfo(model, inputs):
    from torchinfo import summary

    data = inputs if "input_ids" in inputs else _positional(inputs)
    return summary(model, input_data=data, verbose=0).total_mult_adds / 1e9


TOOLS = {
    "hwcost": run_hwcost,
    "FlopCounterMode": run_flop_counter,
    "thop": run_thop,
    "ptflops": run_ptflops,
    "fvcore": run_fvcore,
    "torchinfo": run_torchinfo,
}


def time_tool(fn, model, inputs, repeats: int) -> tuple[float | None, float | None, str]:
    try:
        with torch.no_grad():
            gmac = fn(model, inputs)  # warm-up, and the figure it reports
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn(model, inputs)
                times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000, gmac, ""
    except ImportError as e:
        return None, None, f"not installed ({e.name})"
    except Exception as e:  # a tool that cannot handle a model is part of the result
        return None, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:60]}"


LLAMA_CODE = """
import resource, sys, time, torch, hwcost
from hwcost.loaders import load_model
from hwcost.zoo import ZOO
if sys.argv[1] == "zoo":
    t = time.perf_counter()
    model = load_model("llama2_70b").model          # built on the meta device: no weights
    a = hwcost.analyze(model, ZOO["llama2_70b"].example())
else:  # transformers' Llama with the 70B config, called as generate() does: an all-ones attention mask
    import transformers
    cfg = transformers.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                                   num_attention_heads=64, num_key_value_heads=8, vocab_size=32000)
    t = time.perf_counter()
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    a = hwcost.analyze(model, {"input_ids": torch.zeros(1, 2048, dtype=torch.long),
                               "attention_mask": torch.ones(1, 2048, dtype=torch.long)})
wall = time.perf_counter() - t
# VmHWM is this address space's peak; ru_maxrss would carry the parent's peak across exec
try:
    rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{wall:.2f} {rss:.0f} {a.total.params} {a.total.macs / 1e12:.2f} {len(a.ops)} {a.trace_mode}")
"""


def trace_modes(repeats: int) -> None:
    """BERT-base at sequence 128 with a padded attention mask: the meta trace (no weights touched, the
    mask's values carried beside) against the values trace (real CPU tensors, real weights)."""
    try:
        model, inputs = bert_base()
    except ImportError as e:
        print(f"trace modes: skipped ({e})")
        return
    inputs["attention_mask"] = torch.ones(1, 128, dtype=torch.long)
    inputs["attention_mask"][0, 100:] = 0
    print("BERT-base, sequence 128, padded attention mask:")
    for mode in ("meta", "values"):
        hwcost.analyze(model, inputs, trace=mode)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a = hwcost.analyze(model, inputs, trace=mode)
            times.append(time.perf_counter() - t)
        print(f"  trace={mode:6s} {statistics.median(times) * 1000:8.1f} ms  {a.total.macs / 1e9:.3f} GMAC")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32, help="large batch for the growth check (resnet50)")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} after warm-up\n")
    header = f"{'model':14s} {'batch':>5s} {'tool':16s} {'time ms':>10s} {'GMAC':>9s}  note"
    print(header + "\n" + "-" * len(header))
    results: dict[tuple[str, int, str], float | None] = {}
    cases = [(m, 1) for m in MODELS] + [("resnet50", args.batch)]
    for name, batch in cases:
        try:
            model, inputs = MODELS[name]()
        except ImportError as e:
            print(f"{name:14s} skipped: {e}")
            continue
        inputs = _batched(inputs, batch)
        for tool, fn in TOOLS.items():
            ms, gmac, note = time_tool(fn, copy.deepcopy(model), inputs,
                                       args.repeats if tool != "fvcore" else max(1, args.repeats // 2))
            results[(name, batch, tool)] = ms
            print(f"{name:14s} {batch:5d} {tool:16s} {ms if ms is not None else float('nan'):10.1f} "
                  f"{gmac if gmac is not None else float('nan'):9.3f}  {note}")
        others = [v for (n, b, t), v in results.items() if n == name and b == batch and t != "hwcost" and v]
        ours = results.get((name, batch, "hwcost"))
        if others and ours:
            print(f"{'':14s} {'':5s} hwcost / fastest other = {ours / min(others):.2f}x")
        print()
    r1, rb = results.get(("resnet50", 1, "hwcost")), results.get(("resnet50", args.batch, "hwcost"))
    tb = results.get(("resnet50", args.batch, "thop"))
    if r1 and rb:
        print(f"resnet50 hwcost time, batch {args.batch} / batch 1: {rb / r1:.2f}x (does not grow with batch)")
    if rb and tb:
        print(f"resnet50 at batch {args.batch}: hwcost is {tb / rb:.1f}x faster than thop")

    print()
    trace_modes(args.repeats)
    print("\nLlama-2-70B-shaped decoder (80 layers, d=8192, GQA 8 KV heads, FFN 28672, seq 2048, meta):")
    for kind, label in (("zoo", "hwcost zoo llama2_70b"), ("hf", "transformers Llama, all-ones attention mask")):
        out = subprocess.run([sys.executable, "-c", LLAMA_CODE, kind], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"  {label}: failed:", out.stderr[-300:])
            continue
        wall, rss, params, tmacs, nops, mode = out.stdout.split()
        print(f"  {label}: {int(params):,} parameters, {tmacs} TMAC, {nops} ops, trace {mode}; wall {wall} s "
              f"(build + analyze), peak RSS {rss} MB (whole process, torch import included)")


if __name__ == "__main__":
    main()
