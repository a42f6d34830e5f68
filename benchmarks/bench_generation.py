"""LLM generation on this CPU: predicted vs measured time to first token and per-token decode.

    python benchmarks/bench_generation.py --profile benchmarks/out/this-cpu-2t.yaml [--new 32] [--rounds 15]

For three Llama-style models built from transformers configs (random weights) and two prompt lengths:
transformers' generate(), greedy, KV cache on, a fixed number of new tokens. Time to first token =
generate(max_new_tokens=1); per-token decode = (generate(N) - generate(1)) / (N - 1). Each round times
generate(1) and generate(N) back to back, warm (after an untimed generate(N)), between two blocks of a
probe network timed at calibration (each block warmed by one untimed call), so the difference and the
probe see the same seconds; both figures are reported raw (median over rounds) and drift-adjusted: the
median over rounds of the figure / a probe's time, times that probe's time at calibration. Both figures are
adjusted by the calibration's CNN probe (hwcost.probe.probe_network), the reference the held-out benchmark,
hwcost validate and hwcost measure --reference use, since the forty-seventh session (rule C in
docs/accuracy.md). Printed beside, per figure, for the record: each figure adjusted by the decode probe
(hwcost.calibration.suite.decode_probe_network: a fixed decode step of a 4-layer Llama-style model with a
32,000-token head, 45 MB of weights) and the calibration's DRAM-bandwidth copy
(hwcost.resources.calibration_dram_probe) together, weighted by the prediction's share of the figure's time
spent reading weights from DRAM (dram_share; 0 for the 15M model, whose 45 MB of weights stay cached) -- the
method reported from the thirty-fifth (decode probe) and thirty-seventh (with the copy) sessions to the
forty-sixth, chosen because this VM's compute speed and memory bandwidth drift apart (one minute the CNN probe
ran 1.25x faster than at calibration while the decode probe ran 1.04x slower) -- and by each probe alone. Over
runs Q-Y the mix and the CNN probe alone put 192 and 189 of 216 figures within +-15%, over runs Z-CC 71 and 91
of 96 (in run CC at 2 threads the copy alone put 0 of 12 within, median error 30%: its reading at calibration
and beside the figures disagreed about the machine with the CNN probe by that much). Timed under the
calibration's allocator condition (hwcost.allocator).
Predictions: hwcost.predict_generation on the calibrated profile (which measured generate()'s own time
per step and per call).
"""
from __future__ import annotations

import argparse
import statistics

import torch

import hwcost
from hwcost.allocator import apply as apply_allocator
from hwcost.calibration.suite import decode_probe_network
from hwcost.probe import calibration_decode_probe_ms, calibration_probe_ms, probe_network
from hwcost.resources import calibration_dram_probe
from hwcost.timing import flush_subnormals_now, time_callable, timed_call

SIZES = {   # name: (hidden, layers, heads, kv heads, ffn)
    "llama-15m": (256, 4, 4, 2, 704),
    "llama-45m": (512, 6, 8, 4, 1408),
    "llama-110m": (768, 12, 12, 4, 2048),
}
PROMPTS = (32, 128)


def config(name: str):
    import transformers as tf

    h, layers, heads, kv, ffn = SIZES[name]
    return tf.LlamaConfig(vocab_size=32000, hidden_size=h, intermediate_size=ffn, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=2048)


def timed_rounds(one, many, new: int, probes: dict, rounds: int, probe_calls: int = 5) -> list:
    """Per round of generate(1) and generate(new) back to back: each figure's seconds (ttft, decode) and
    each probe's (``probes``: name -> callable), the mean of the probe blocks just before and just after
    the round (each an untimed call, then the median of ``probe_calls``): generate(new) lasts up to a second, and
    one 4 ms probe call after it read that second's speed less well (the same figure moved 17.8-18.3 ms
    over three runs so, 18.3-20.3 with one call after). Two untimed rounds first (with one, the first
    model's probe read up to 1.3x slow in its first rounds: the heap still growing to its steady state).
    Each round starts with an untimed generate(new), so the timed calls run warm, as predictions (from
    samples timed back to back) and the held-out benchmark's measurements are: after the probes,
    generate(1) of the 15M model took 7.0, 6.9, 6.2, 5.9 ms in four calls in a row, 5.8 timed back to
    back and 5.9 right after a generate(32) (the probes evict what it keeps warm, as the probe did the
    keyword spotter's: hwcost.measure.MODEL_WARMUP_S; one untimed call is not enough)."""
    def probe_blocks() -> dict[str, float]:
        return {k: time_callable(p, warmup=1, repeats=probe_calls).median_s for k, p in probes.items()}

    for _ in range(2):
        one(), many(), *(p() for p in probes.values())
    rows = []
    before = probe_blocks()
    for _ in range(rounds):
        many()
        t1, tn = timed_call(one), timed_call(many)
        after = probe_blocks()
        rows.append(({"ttft": t1, "decode": (tn - t1) / (new - 1)}, {k: (before[k] + after[k]) / 2 for k in probes}))
        before = after
    return rows


def adjusted_ms(rows: list, figure: str, mix: dict[str, float], then_ms: dict[str, float]) -> float:
    """The median over rounds of a figure scaled, per round, by each probe's time at calibration over its
    time in that round, the probes weighted by ``mix`` (name -> weight, summing to 1)."""
    return statistics.median(r[0][figure] * 1e3 * sum(w * then_ms[q] / (r[1][q] * 1e3) for q, w in mix.items() if w)
                             for r in rows)


def context_model(profile):
    """The profile's fitted context model (its caches and miss shares), read once per run."""
    from hwcost.timemodel import calibration_text, rates_of, time_model_for

    return time_model_for(calibration_text(profile, "model"), rates_of(profile)).context


def dram_share(g, figure: str, profile, context) -> float:
    """The share of a figure's predicted time (ttft or decode) spent reading weights from DRAM: the bytes
    its pass reads from there (``context``.dram_weight_bytes) at the profile's bandwidth over that time,
    at most 1. It weights the DRAM probe against the decode probe in the figure's drift adjustment."""
    pred = g.prefill if figure == "ttft" else g.steps[max(g.steps)]
    total_ms = g.ttft_ms if figure == "ttft" else g.decode_ms_per_token
    dram_ms = context.dram_weight_bytes([t.cost for t in pred.ops]) / (profile.bandwidth_gbps * 1e9) * 1e3
    return min(dram_ms / total_ms, 1.0) if total_ms > 0 else 0.0


def main() -> None:
    import transformers as tf

    flush_subnormals_now()   # untrained held-out models: see hwcost.timing.subnormals_flushed
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, help="a profile calibrated on this machine")
    ap.add_argument("--new", type=int, default=32, help="new tokens per generation")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    profile = hwcost.load_device(args.profile)
    cal = profile.calibration or {}
    threads = int(cal.get("threads") or torch.get_num_threads())
    torch.set_num_threads(threads)
    # the allocator condition the profile (and its probe time) was measured under, as bench_ops and validate
    apply_allocator((cal.get("host") or {}).get("allocator") or "retain")
    cnn_net, cnn_x = probe_network()
    probes, probe_then = {"cnn": lambda: cnn_net(cnn_x)}, {"cnn": calibration_probe_ms(cal)}
    if calibration_decode_probe_ms(cal):   # profiles calibrated before the decode probe was read: the CNN probe
        dec_net, dec_x = decode_probe_network()
        probes["decode"], probe_then["decode"] = (lambda: dec_net(dec_x)), calibration_decode_probe_ms(cal)
    base = "decode" if "decode" in probes else "cnn"   # the mix printed beside: decode probe (or CNN) and DRAM copy
    dram = calibration_dram_probe(cal)
    if dram:   # profiles without the DRAM reading or the cache size: the mix is the base probe alone
        probes["dram"], probe_then["dram"] = dram
    context = context_model(profile) if dram else None   # read once: each figure's DRAM share needs it
    print(f"profile {profile.name}: {threads} threads, at calibration CNN probe {probe_then['cnn']:.3f} ms"
          + (f", decode probe {probe_then['decode']:.3f} ms" if "decode" in probes else "")
          + (f", DRAM copy {probe_then['dram']:.1f} ms" if dram else "")
          + "; each figure adjusted by the CNN probe; beside it (mix) by the " + base + " probe"
          + (" and the DRAM copy, weighted by the predicted share of time reading weights from DRAM (dram)" if dram else "")
          + f"; generate() step {profile.generate_step_us} us (measured)\n")
    print(f"{'model':11s} {'prompt':>6s} | {'TTFT meas':>9s} {'adj':>8s} {'pred':>8s} {'err raw':>8s} {'err adj':>8s} "
          f"{'dram':>5s} {'mix':>7s} | {'decode meas':>11s} {'adj':>8s} {'pred':>8s} {'err raw':>8s} {'err adj':>8s} "
          f"{'dram':>5s} {'mix':>7s}")
    errors = {"ttft": [], "decode": []}
    # each figure adjusted by every probe alone and by the mix too, for the record beside the CNN probe's
    by_probe: dict[tuple[str, str], list[float]] = {(k, q): [] for k in errors for q in [*probes, "mix"]}
    per_row: list[str] = []
    with torch.inference_mode():
        for name in SIZES:
            cfg = config(name)
            torch.manual_seed(0)
            model = tf.LlamaForCausalLM(cfg).eval()
            for prompt in PROMPTS:
                ids = torch.randint(1, cfg.vocab_size, (1, prompt))

                def gen(n: int):
                    return lambda: model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                                  min_new_tokens=n, max_new_tokens=n, pad_token_id=0)

                rows = timed_rounds(gen(1), gen(args.new), args.new, probes, args.rounds)
                g = hwcost.predict_generation(cfg, prompt_tokens=prompt, new_tokens=args.new, device=profile)
                pred = {"ttft": g.ttft_ms, "decode": g.decode_ms_per_token}
                raw = {k: statistics.median(r[0][k] for r in rows) * 1e3 for k in pred}
                alone = {q: {k: adjusted_ms(rows, k, {q: 1.0}, probe_then) for k in pred} for q in probes}
                adj = alone["cnn"]
                share = {k: dram_share(g, k, profile, context) if dram else 0.0 for k in pred}
                mix = {k: pred[k] / adjusted_ms(rows, k, {base: 1 - share[k], "dram": share[k]}, probe_then) - 1
                       for k in pred}
                for k in pred:
                    errors[k].append((pred[k] / raw[k] - 1, pred[k] / adj[k] - 1))
                    by_probe[k, "mix"].append(mix[k])
                    for q in probes:
                        by_probe[k, q].append(pred[k] / alone[q][k] - 1)
                per_row.append(f"{name:11s} {prompt:6d} | " + " | ".join(
                    " ".join(f"{q} {100 * by_probe[k, q][-1]:+6.1f}%" for q in probes) for k in pred))
                cells = [f"{raw[k]:{w}.2f} {adj[k]:8.2f} {pred[k]:8.2f} {100 * errors[k][-1][0]:+7.1f}% "
                         f"{100 * errors[k][-1][1]:+7.1f}% {share[k]:5.2f} {100 * mix[k]:+6.1f}%"
                         for k, w in (("ttft", 9), ("decode", 11))]
                print(f"{name:11s} {prompt:6d} | {cells[0]} | {cells[1]}", flush=True)

    def within(errs: list[float]) -> str:
        vals = [abs(v) * 100 for v in errs]
        return f"within ±15% {sum(v <= 15 for v in vals)}/{len(vals)}, median |error| {statistics.median(vals):.1f}%"

    print()
    for k, es in errors.items():
        for i, kind in enumerate(("raw", "drift-adjusted")):
            print(f"{k:6s} {kind:>14s}: {within([v[i] for v in es])}, worst {max(abs(v[i]) for v in es) * 100:.1f}%")
    print("\nerror adjusted by each probe alone (time to first token | decode):")
    print("\n".join(per_row))
    print()
    for (k, q), es in by_probe.items():
        print(f"{k:6s} adjusted by " + ("the mix" if q == "mix" else f"the {q} probe alone") + f": {within(es)}")


if __name__ == "__main__":
    main()
