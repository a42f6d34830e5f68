"""Roofline chart of a prediction: the device's ceilings and one dot per layer (needs matplotlib)."""
from __future__ import annotations

from .errors import HwcostError
from .predict import Prediction


def plot_roofline(p: Prediction, out: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise HwcostError("the roofline chart needs matplotlib: pip install 'hwcost[plot]' (or matplotlib)") from e
    d = p.device
    dtype = p.analysis.dtype
    peak = d.peak_flops(dtype) / 1e9
    bw = d.bandwidth_gbps
    layers = [r for r in p.layers if r.flops > 0 and r.memory_traffic_bytes > 0 and r.latency_ms > 0]
    ais = [r.arithmetic_intensity for r in layers] or [1.0]
    lo, hi = min(ais + [d.ridge_flop_per_byte]) / 4, max(ais + [d.ridge_flop_per_byte]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    ax.plot(xs, [min(peak, bw * x) for x in xs], color="black", lw=2,
            label=f"peak: {peak:,.0f} GFLOP/s ({dtype}), {bw:,.1f} GB/s")
    eff_m = d.memory_efficiency
    eff_c = d.compute_efficiency.get("conv", 1.0)
    ax.plot(xs, [min(peak * eff_c, bw * eff_m * x) for x in xs], color="gray", ls="--", lw=1,
            label=f"attainable: conv efficiency {eff_c:.2f}, memory efficiency {eff_m:.2f}")
    colors = {"compute": "tab:blue", "memory": "tab:orange", "overhead": "tab:red"}
    for bound, color in colors.items():
        sel = [r for r in layers if r.bound == bound]
        if sel:
            ax.scatter([r.arithmetic_intensity for r in sel], [r.attained_gflops for r in sel],
                       s=[20 + 6 * r.share_pct for r in sel], c=color, alpha=0.7, edgecolors="k",
                       linewidths=0.3, label=f"{bound}-bound layers ({len(sel)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of memory traffic)")
    ax.set_ylabel("attained GFLOP/s (predicted)")
    skipped = len(p.layers) - len(layers)
    ax.set_title(f"{p.analysis.model_name} on {d.name}: {p.latency_ms:,.2f} ms, batch {p.batch_size}"
                 + (f"  ({skipped} layers without FLOPs not shown)" if skipped else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
