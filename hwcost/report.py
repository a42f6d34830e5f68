"""Every table and text hwcost prints: plain-text tables (right-aligned numbers), CSV, JSON, and the
renderers of analyses, predictions, measurements, device lists, search and validation results.
Renderers take the records duck-typed, so this module sits below them and imports none (as fvcore's
renderers sit apart from its engine)."""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

from .conventions import MB


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) or r[i] is None for r in rows) and bool(rows) for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)]
        return "| " + " | ".join(parts) + " |"

    sep = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [sep, line(cells[0]), sep.replace("-", "=")]
    out += [line(r) for r in cells[1:]]
    out.append(sep)
    return "\n".join(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def save_text(text: str, path: str | None) -> str:
    """Write ``text`` to ``path`` when one is given; return the text either way."""
    if path:
        with open(path, "w") as f:
            f.write(text)
    return text


def to_csv_text(dicts: Sequence[dict[str, Any]]) -> str:
    if not dicts:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dicts[0].keys()), lineterminator="\n")
    w.writeheader()
    w.writerows(dicts)
    return buf.getvalue()


def to_json_text(obj: Any) -> str:
    """JSON with floats to 6 significant digits: what a prediction or a measurement can stand behind."""
    return json.dumps(_rounded(obj), indent=1)


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == 0 or not math.isfinite(obj) else float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def si(x: float, unit: str) -> str:
    """1.23 GMAC, 45.6 MFLOP, 789 MAC: a count with the prefix that keeps it readable."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:,.2f} {prefix}{unit}"
    return f"{x:,.0f} {unit}"


def _mb(nbytes: float) -> str:
    return f"{nbytes / MB:,.2f} MB" if nbytes >= MB / 100 or nbytes == 0 else f"{nbytes:,.0f} bytes"


# ------------------------------------------------------------------ analysis


def analysis_table(a: Any, depth: int | None = None) -> str:
    rows = [[r.name, r.type, r.params, r.macs / 1e6, r.flops / 1e6, r.bytes_read / MB, r.bytes_written / MB,
             r.storage_bytes / MB, r.activation_bytes / MB] for r in a.aggregate(depth)]
    headers = ["layer", "type", "params", "MACs (M)", "FLOPs (M)", "read (MB)", "write (MB)", "storage (MB)",
               "output (MB)"]
    return format_table(headers, rows) + "\n" + analysis_summary(a)


def analysis_summary(a: Any) -> str:
    t = a.total
    lines = [
        f"model: {a.model_name}   input: {', '.join(str(s) for s in a.input_shapes)}   "
        f"batch: {a.batch_size}   dtype: {a.dtype_label}",
        f"parameters:             {t.params:,}",
        f"storage:                {_mb(t.storage_bytes)} parameters (+ {_mb(t.buffer_bytes)} buffers)",
        f"MACs:                   {si(t.macs, 'MAC')}",
        f"FLOPs:                  {si(t.flops, 'FLOP')}",
        f"memory read + write:    {_mb(t.memory_traffic_bytes)} "
        f"(read {_mb(t.bytes_read)}, write {_mb(t.bytes_written)})",
        f"inference memory:       {_mb(t.inference_memory_bytes)} (sum of layer outputs)",
        f"peak activation memory: {_mb(t.peak_activation_bytes)} (live tensors, from lifetimes)",
        f"trace:                  {a.trace_mode} ({a.trace_note})",
    ]
    if a.unused_params:
        lines.append(f"parameters never used in forward: {a.unused_params:,}")
    if a.unsupported:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(a.unsupported.items()))
        lines.append(f"ops with no FLOP formula (bytes counted, FLOPs unknown): {ops}")
    if (w := a.value_dependence()) is not None:
        lines.append(f"note: {w}")
    return "\n".join(lines)


# ------------------------------------------------------------------ prediction


def prediction_table(p: Any, depth: int | None = None) -> str:
    rows = [[r.name, r.type, r.macs / 1e6, r.memory_traffic_bytes / MB, r.arithmetic_intensity, r.bound,
             r.latency_ms, r.share_pct, r.attained_gflops, r.energy_mj] for r in p.aggregate(depth)]
    headers = ["layer", "type", "MACs (M)", "traffic (MB)", "FLOP/B", "bound", "latency (ms)", "share %",
               "GFLOP/s", "energy (mJ)"]
    return format_table(headers, rows) + "\n" + prediction_summary(p)


def prediction_summary(p: Any) -> str:
    d, a = p.device, p.analysis
    b = p.bound_shares()
    lines = [
        f"model: {a.model_name}   device: {d.name} ({d.kind}, {d.execution}, "
        f"{'calibrated' if d.calibration else 'datasheet'} profile)   batch: {a.batch_size}   dtype: {a.dtype_label}",
        f"latency:        {p.latency_ms:,.3f} ms   ({p.fps:,.1f} FPS)",
        (f"energy:         {p.energy_mj:,.2f} mJ per batch, {p.energy_per_sample_mj:,.2f} mJ per sample, "
         f"average power {p.average_power_w:,.2f} W" + ("  (capped at max power)" if p.energy_capped else "")
         if p.energy_mj is not None else "energy:         unknown (this profile has no power figures)"),
        f"time bound by:  compute {b['compute']:.0f}%, memory {b['memory']:.0f}%, per-op overhead {b['overhead']:.0f}%",
        f"work:           {si(a.total.macs, 'MAC')}, {si(a.total.flops, 'FLOP')}, "
        f"{_mb(a.total.memory_traffic_bytes)} memory traffic",
    ]
    if d.execution == "async" and d.launch_blocking:
        lines.append(f"host launches:  {p.host_ms:,.3f} ms; device busy: {p.device_ms:,.3f} ms "
                     "(launches block until their kernel is done: the two add up)")
    elif d.execution == "async":
        lines.append(f"host enqueue:   {p.host_ms:,.3f} ms; device busy: {p.device_ms:,.3f} ms "
                     f"({'host' if p.host_ms > p.device_ms else 'device'}-bound)")
    if a.unsupported:
        lines.append("ops with no FLOP formula (bytes only): " + ", ".join(sorted(a.unsupported)))
    lines.extend(f"WARNING: {w}" for w in p.warnings)
    return "\n".join(lines)


def compare_table(preds: Sequence[Any]) -> str:
    rows = []
    for p in preds:
        b = p.bound_shares()
        top = max(p.layers, key=lambda r: r.latency_ms)
        rows.append([p.device.name, p.device.kind, p.latency_ms, p.fps, p.energy_mj, p.average_power_w,
                     f"{b['compute']:.0f}/{b['memory']:.0f}/{b['overhead']:.0f}",
                     f"{top.name} ({top.share_pct:.0f}%)"])
    headers = ["device", "kind", "latency (ms)", "FPS", "energy (mJ)", "avg power (W)",
               "compute/memory/overhead %", "slowest layer"]
    a = preds[0].analysis
    lines = [format_table(headers, rows),
             f"model: {a.model_name}   batch: {a.batch_size}   dtype: {a.dtype_label}   {si(a.total.macs, 'MAC')}"]
    lines.extend(f"WARNING ({p.device.name}): {w}" for p in preds for w in p.warnings)
    return "\n".join(lines)


def compare_rows(preds: Sequence[Any]) -> list[dict[str, Any]]:
    """One flat row per device, for CSV."""
    return [{"device": p.device.name, "kind": p.device.kind, "latency_ms": p.latency_ms, "fps": p.fps,
             "energy_mj": p.energy_mj, "average_power_w": p.average_power_w,
             **{f"{k}_bound_pct": v for k, v in p.bound_shares().items()},
             "warnings": " | ".join(p.warnings)} for p in preds]


# ------------------------------------------------------------------ measurement


def measurement_table(m: Any) -> str:
    lines = []
    if m.layers:
        rows = [[r.name, r.type, r.calls, r.latency_ms, r.share_pct] for r in m.layers]
        lines.append(format_table(["layer", "type", "calls", "latency (ms)", "duration %"], rows))
        lines.append("(per-layer times come from a separate run with hooks, which add their own overhead)")
    lines.append(f"model: {m.model_name}   backend: {m.backend} ({m.threads} threads)   batch: {m.batch_size}"
                 f"   dtype: {m.dtype}   allocator: {m.allocator}")
    lines.append(f"latency: {m.latency_ms:,.3f} ms median (p10 {m.p10_ms:,.3f}, p90 {m.p90_ms:,.3f}; "
                 f"{len(m.samples_ms)} runs)   {m.fps:,.1f} FPS")
    if (note := m.steadiness_note()) is not None:
        lines.append(note)
    if m.reference_ms is not None:
        lines.append(f"reference ({m.reference_name or 'probe network'}), timed call by call between the model's runs: {m.reference_ms:,.3f} ms; "
                     f"model / reference x{m.ratio_median:.3f} (p90/p10 of that ratio x{m.ratio_spread:.2f}"
                     + (f"; the steadiest of {m.paired_attempts} pairings" if m.paired_attempts > 1 else "") + ")")
        if m.drift_adjusted_ms is not None:
            lines.append(f"drift-adjusted latency: {m.drift_adjusted_ms:,.3f} ms (the reference ran {m.reference_then_ms:,.3f} "
                         f"ms at calibration; now x{m.machine_factor:.2f}, >1 = slower)")
    if m.energy_mj is not None:
        lines.append(f"energy: {m.energy_mj:,.2f} mJ per batch ({m.energy_source})")
    else:
        lines.append("energy: no readable power sensor (RAPL / NVML) on this machine")
    return "\n".join(lines)


# ------------------------------------------------------------------ devices, zoo, search


def devices_table(profiles: Sequence[Any]) -> str:
    rows = []
    for p in profiles:
        m = p.matrix_tflops
        rows.append([p.name, p.kind, m["float32"], m.get("float16"), m.get("int8"), p.bandwidth_gbps,
                     p.capacity_gb, f"{p.power_idle_w:g}/{p.power_max_w:g}" if p.has_energy else "-",
                     "calibrated" if p.calibration else "datasheet"])
    return (format_table(["name", "kind", "fp32 TFLOP/s", "fp16", "int8 TOP/s", "GB/s", "memory GB", "idle/max W",
                          "profile"], rows)
            + "\n'-': the profile has no figure (a dtype without one is refused). Descriptions and sources: "
              "hwcost devices --format json")


def zoo_table(entries: Sequence[tuple[str, str, int | None, str]]) -> str:
    return format_table(["name", "input (no batch)", "reference params", "description"],
                        [[n, shape, ref or "", desc] for n, shape, ref, desc in entries])


def search_table(rows: Sequence[dict[str, Any]]) -> str:
    """One row per device and budget; a budget no sub-network meets says so in its row."""
    out = []
    for r in rows:
        if r.get("unreachable"):
            out.append([r["device"], r["budget_ms"], None, None, None, None,
                        f"unreachable: fastest is {r['fastest_ms']:.3f} ms"])
        else:
            out.append([r["device"], r["budget_ms"], r["latency_ms"], r["mmacs"], r["evaluated"],
                        round(r["per_s"]), r["subnet"]])
    return format_table(["device", "budget (ms)", "latency (ms)", "MMACs", "evaluated", "per s", "sub-network"], out)


def validation_table(v: Any) -> str:
    rows = []
    for r in v.rows:
        m = r.measurement
        rows.append([r.model, r.batch_size, m.latency_ms, f"x{m.spread:.2f}",
                     None if m.machine_factor is None else
                     f"x{m.machine_factor:.2f}" + (f" ({m.reference_name})" if m.reference_name else ""), r.adjusted_ms, r.predicted_ms,
                     f"{r.error_pct:+.1f}%",
                     None if r.adjusted_error_pct is None else f"{r.adjusted_error_pct:+.1f}%"])
    lines = [format_table(["model", "batch", "measured (ms)", "p90/p10", "probe now/then", "adjusted (ms)",
                           "predicted (ms)", "error (raw)", "error (adjusted)"], rows)]
    if v.same_machine is not True:
        lines.append(f"WARNING: {v.machine_note}")
    lines.extend(n for n in v.notes if n)
    unsteady = [f"{r.model} b{r.batch_size}" for r in v.rows if not r.measurement.steady]
    if unsteady:
        lines.append(f"runs varied more than the steady limit between p10 and p90 for {', '.join(unsteady)}: this "
                     "machine's speed was not steady")
    unpaired = [f"{r.model} b{r.batch_size} (x{r.measurement.ratio_spread:.2f} after {r.measurement.paired_attempts} "
                "pairings)" for r in v.rows if not r.measurement.pairing_steady]
    if unpaired:
        lines.append(f"the model / probe ratio did not hold for {', '.join(unpaired)}: the machine slowed one more than "
                     "the other, so their drift-adjusted errors are not reliable either")
    cal_threads = (v.device.calibration or {}).get("threads")
    lines.append(f"measured with {v.threads} threads" + (" (the profile's calibration)" if cal_threads == v.threads else ""))
    believe = {"raw": "raw errors (the profile recorded no probe time, so the machine's drift is unknown)",
               "either": "either error (the machine runs as fast as when calibrated)",
               "drift-adjusted": "the drift-adjusted errors: the machine's speed moved since calibration, and the "
                                 "adjusted latency is what it would measure at its speed then"}[v.believe]
    lines.append(f"believe: {believe}")
    for label, adjusted in (("raw", False), ("drift-adjusted", True)):
        errs = v.errors(adjusted)
        if errs:
            within = lambda t: sum(abs(e) <= t for e in errs) / len(errs)  # noqa: E731
            lines.append(f"{label:>15}: within ±10% {within(10):.0%}, within ±20% {within(20):.0%}, "
                         f"median |error| {sorted(abs(e) for e in errs)[len(errs) // 2]:.1f}%")
    kind = "calibrated" if v.device.calibration else "datasheet"
    lines.append(f"device profile: {v.device.name} ({kind})")
    return "\n".join(lines)


def generation_summary(g: Any) -> str:
    gb = 1e9
    e = g.energy_mj_per_token
    mem = g.memory
    fit = {True: "fits", False: f"DOES NOT FIT ({mem.shortfall_bytes / gb:,.2f} GB short)", None: "fit unknown (no capacity)"}
    lines = [
        f"model: {g.model}   device: {g.device.name}   batch: {g.batch_size}   prompt: {g.prompt_tokens} tokens   "
        f"new: {g.new_tokens} tokens",
        f"dtypes: activations {g.dtype}, weights {g.weight_dtype}, KV cache {g.kv_dtype}",
        f"time to first token: {g.ttft_ms:,.2f} ms (generate() setup {g.call_overhead_ms:,.3f} ms + prefill "
        f"{g.prefill.latency_ms:,.2f} ms + {g.step_overhead_ms:,.3f} ms generate() per step)",
        f"decode:              {g.decode_ms_per_token:,.2f} ms per token on average "
        f"({g.decode_ms_at(g.prompt_tokens):,.2f} ms at {g.prompt_tokens} tokens of context, "
        f"{g.decode_ms_at(g.prompt_tokens + g.new_tokens - 2):,.2f} ms at {g.prompt_tokens + g.new_tokens - 2})",
        f"total:               {g.total_ms:,.1f} ms   {g.tokens_per_s:,.2f} tokens/s overall, "
        f"{g.decode_tokens_per_s:,.2f} tokens/s while decoding",
        "energy:              " + (f"{e:,.2f} mJ per token ({g.energy_mj:,.1f} mJ in all)" if e is not None
                                    else "unknown (this profile has no power figures)"),
        f"memory:              {mem.needed_bytes / gb:,.3f} GB = weights {g.weight_bytes / gb:,.3f} + KV cache "
        f"{g.kv_cache_bytes / gb:,.3f} (at {g.prompt_tokens + g.new_tokens} tokens) + activations "
        f"{g.activation_bytes / gb:,.3f}; device leaves "
        + (f"{mem.usable_bytes / gb:,.2f} GB: {fit[mem.fits]}" if mem.usable_bytes is not None else fit[None]),
    ]
    lines.extend(f"assumes: {a}" for a in g.assumptions)
    lines.extend(f"WARNING: {w}" for w in g.warnings)
    return "\n".join(lines)


def generation_table(gens: Sequence[Any]) -> str:
    rows = [[g.device.name, g.ttft_ms, g.decode_ms_per_token, g.tokens_per_s, g.decode_tokens_per_s,
             g.energy_mj_per_token, g.peak_memory_bytes / 1e9,
             {True: "yes", False: f"no ({g.memory.shortfall_bytes / 1e9:,.1f} GB short)", None: "?"}[g.fits]]
            for g in gens]
    g0 = gens[0]
    return (format_table(["device", "TTFT (ms)", "decode (ms/token)", "tokens/s", "decode tokens/s", "mJ/token",
                          "memory (GB)", "fits"], rows)
            + f"\nmodel: {g0.model}   batch: {g0.batch_size}   prompt: {g0.prompt_tokens}   new: {g0.new_tokens}   "
              f"dtype: {g0.dtype}, weights {g0.weight_dtype}, KV {g0.kv_dtype}")
