"""What this machine's resources measure now, one at a time: its caches as they behave (copy and
matrix-vector sweeps over growing working sets), and compute, last-level-cache and DRAM rates.

Beside the speed probe (hwcost.probe), three single-resource readings (``resource_rates``) say which
resource moved: on this project's KVM host a cache-resident matmul stayed within 2% for minutes while
copying an 8 MiB working set (inside the shared L3, outside the private L2) ran 39-61 GB/s within one
minute: the other tenants of a shared last-level cache slow memory-bound ops, not arithmetic, so a
network probe alone tracks a compute-bound model and a depthwise-heavy one differently.
"""
from __future__ import annotations

import math
import os
import statistics

import torch

from .context import LlcSweep, llc_fit_from_sweep, llc_from_sweep, llc_miss_from_sweep
from .devices import calibration_rates
from .timing import synchronizer, time_callable


def cache_bytes_at_level(level: int | None = None) -> float:
    """Size of one CPU cache from Linux sysfs (cpu0's view; ``None``: the last level), 0.0 where the
    platform does not say."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    sizes: dict[int, float] = {}
    try:
        for entry in sorted(e for e in os.listdir(base) if e.startswith("index")):
            with open(f"{base}/{entry}/level") as f:
                lvl = int(f.read().strip())
            with open(f"{base}/{entry}/type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(f"{base}/{entry}/size") as f:
                size = f.read().strip().upper()
            units = {"K": 1024, "M": 1024**2, "G": 1024**3}
            sizes[lvl] = float(size[:-1]) * units[size[-1]] if size[-1] in units else float(size)
    except (OSError, ValueError):
        return 0.0
    if not sizes:
        return 0.0
    return sizes.get(max(sizes) if level is None else level, 0.0)


# copy sweeps whose per-size median rates the cache's figures come from: on this project's VM five single sweeps
# at 2 threads put the share of a 128 MiB cyclic read from DRAM at 0.32-0.45 within five seconds, medians of five
# sweeps at 0.30-0.33, so one sweep decided a calibration's streamed share by the moment it ran
LLC_SWEEPS = 5


def measured_llc(backend: str = "cpu", start_bytes: float = 4 * 1024**2,
                 max_bytes: float = 1024**3, sweeps: int = LLC_SWEEPS) -> LlcSweep:
    """The last-level cache as the machine behaves, not as sysfs reports it (knee, fit and miss shares): a virtual
    machine may show the host's whole L3 (a 2-vCPU KVM guest here: sysfs 480 MB; copies at 1 thread ran
    29-30 GB/s up to 64 MB, 24 at 128, 17 at 256 and DRAM's 15 from 512 MB; a day before, 21 at 64 MB:
    other tenants share it), and then no network's weights ever count as streamed. Copies working sets
    (source + destination) doubling from ``start_bytes`` (past the private caches) up to four times what
    sysfs says (at least 256 MiB, at most ``max_bytes`` and an eighth of the free memory), ~0.1 s each,
    median; llc_from_sweep picks the knee, llc_fit_from_sweep where the band ends, llc_miss_from_sweep
    the share of reads from DRAM at each size, all from each size's median rate over ``sweeps`` sweeps run
    back to back (LLC_SWEEPS). CPU only (a GPU reports its L2 exactly); zeros and no shares where no cache
    band shows."""
    if backend != "cpu":
        return LlcSweep(0.0, 0.0, [])
    import psutil

    top = min(max(4 * cache_bytes_at_level(None), 256 * 1024**2), max_bytes, psutil.virtual_memory().available / 8)
    # one allocation of the largest working set, sliced: a buffer per size left the freed ones in a
    # heap that the retained allocator (hwcost.allocator) does not give back, ~4 GB per sweep here
    src_all = torch.ones(int(top / 8))   # float32: top / 2 bytes each way
    dst_all = torch.empty_like(src_all)

    def copy_at(ws: float):
        src, dst = src_all[: int(ws / 8)], dst_all[: int(ws / 8)]
        return (lambda: dst.copy_(src)), ws, 2 * src.numel() * 4

    runs = [_rate_sweep(copy_at, start_bytes, top, 2.0) for _ in range(max(1, sweeps))]
    sizes, rates = runs[0][0], [statistics.median(at_size) for at_size in zip(*(r for _, r in runs))]
    return LlcSweep(llc_from_sweep(sizes, rates), llc_fit_from_sweep(sizes, rates), llc_miss_from_sweep(sizes, rates))


def _rate_sweep(at, start_bytes: float, top: float, factor: float) -> tuple[list[float], list[float]]:
    """(sizes, GB/s) over working sets growing by ``factor`` from ``start_bytes`` to ``top``: ``at(ws)`` gives
    the call to time there, the size to record and the bytes a call moves; each ~0.1 s of calls' median."""
    sizes, rates, ws = [], [], float(start_bytes)
    with torch.inference_mode():
        while ws <= top:
            call, size, moved = at(ws)
            t = time_callable(call, warmup=2, repeats=30, max_seconds=0.1).median_s
            sizes.append(size)
            rates.append(moved / t / 1e9)
            ws *= factor
    return sizes, rates


MATVEC_WIDTH = 1024   # the product's inner dimension: a decoder's projections and LM heads are 256-8192 wide


def measured_matvec_stream_bytes(backend: str = "cpu", start_bytes: float = 4 * 1024**2,
                                 max_bytes: float = 128 * 1024**2) -> float:
    """The weight size past which a matrix-vector product (a linear layer on one row, as a decode step runs
    its projections and LM head) reads its weights from DRAM even run again at once: the knee (llc_from_sweep)
    of its weight bytes per second over weights growing by sqrt(2) from ``start_bytes`` to ``max_bytes``. The
    copy sweep says little about it: on this project's VM copies kept the cache's speed to 16 MB and slowed
    gradually to 64, these products fell from 50 to 19 GB/s at 12-16 MB (1 thread; 33 to 13 at 10-12 MB, 2);
    a 15M Llama's 33 MB LM head streamed alone and in the pass. CPU only (0.0 on a GPU or with no cache band)."""
    if backend != "cpu":
        return 0.0
    import psutil

    top = min(max_bytes, psutil.virtual_memory().available / 8)
    x = torch.ones(1, MATVEC_WIDTH)
    # one weight of the largest size, sliced by rows: a buffer per size would leave the retained
    # allocator's heap (hwcost.allocator) holding every one of them
    w_all = torch.full((int(top / 4 / MATVEC_WIDTH), MATVEC_WIDTH), 0.01)

    def product_at(ws: float):
        w = w_all[: int(ws / 4 / MATVEC_WIDTH)]
        return (lambda: torch.nn.functional.linear(x, w)), w.numel() * 4.0, w.numel() * 4

    return llc_from_sweep(*_rate_sweep(product_at, start_bytes, top, math.sqrt(2)))


def resource_rates(backend: str = "cpu", llc_bytes: float | None = None) -> dict[str, float]:
    """This machine's speed now, one resource at a time (each the median of about 0.2 s of calls):
    ``compute_gflops`` a float32 matmul whose operands stay in the private cache (on a GPU one big
    enough to fill the device), ``cache_gbps`` copying a working set that fits in the last-level
    cache (half of it; omitted where its size is unknown), ``dram_gbps`` copying one four times
    the last-level cache (at least 64 MiB each way). Bandwidth counts bytes read plus written.
    ``llc_bytes``: the last-level cache to size them by (calibration's measured one,
    calibration_cache_bytes); else the GPU's L2 or what sysfs reports, which a VM may inflate (480 MB
    here, where both copies then streamed from DRAM and the second took 2 x 1.9 GB)."""
    sync = synchronizer(backend)
    out: dict[str, float] = {}
    n = 4096 if backend == "cuda" else 384
    with torch.inference_mode():
        a, b = torch.randn(n, n, device=backend), torch.randn(n, n, device=backend)
        t = time_callable(lambda: a @ b, warmup=3, repeats=200, sync=sync, max_seconds=0.2).median_s
        out["compute_gflops"] = 2 * n**3 / t / 1e9
        if llc_bytes:
            llc = float(llc_bytes)
        elif backend == "cuda":
            llc = float(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
        else:
            llc = cache_bytes_at_level(None)
        for key, nbytes in copy_working_sets(llc).items():
            if nbytes <= 0:
                continue
            copy, moved = copy_call(nbytes, backend)
            t = time_callable(copy, warmup=2, repeats=200, sync=sync, max_seconds=0.2).median_s
            out[key] = moved / t / 1e9
    return out


def copy_working_sets(llc_bytes: float) -> dict[str, float]:
    """Bytes each way of the copies resource_rates times, by reading: half the last-level cache
    (``cache_gbps``) and four times it, at least 64 MiB (``dram_gbps``)."""
    return {"cache_gbps": llc_bytes / 4, "dram_gbps": max(4 * llc_bytes, 64 * 1024**2)}


def copy_call(nbytes: float, backend: str = "cpu"):
    """A float32 copy of about ``nbytes`` into a second buffer, ready to time, and the bytes it moves
    (read plus written)."""
    src = torch.randn(int(nbytes) // 4, device=backend)
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), 2 * src.numel() * 4


def calibration_dram_probe(calibration: dict | None):
    """The copy a calibration read DRAM bandwidth with (resource_rates' ``dram_gbps``, four times its
    last-level cache), ready to time beside a model, and its milliseconds then (at the mean of the start
    and end readings); None where the profile recorded no such reading or no cache size. A decode step
    that streams its weights from DRAM follows it, not the network probes: over six benchmarked
    calibrations a 110M Llama's decode step (400 MB of weights) measured 32.7-35.7 ms raw at 1 thread,
    while the decode probe (45 MB, cached) read from 0.81x to 1.11x its calibration time beside it."""
    llc = calibration_cache_bytes(calibration)
    gbps = calibration_rates(calibration).get("dram_gbps")
    if not llc or not gbps:
        return None
    copy, moved = copy_call(copy_working_sets(llc)["dram_gbps"])
    return copy, moved / (gbps * 1e9) * 1e3


def calibration_cache_bytes(calibration: dict | None) -> float | None:
    """The last-level cache size a calibration sized its resource readings by (``probe.cache_mb``), so
    that later readings (validate) copy the same working sets; None for profiles that did not record it
    (they read by sysfs, as resource_rates does without a size)."""
    mb = ((calibration or {}).get("probe") or {}).get("cache_mb")
    return float(mb) * 1e6 if mb else None
