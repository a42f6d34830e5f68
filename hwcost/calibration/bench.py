"""Timing calibration's cases on this machine: one op case, a network-like chain (with its energy
where a sensor is readable), the fundamental rates (dispatch floor, matmul rate per dtype, copy
bandwidth), and the probe's speed readings. The samples they return are stored by samples.py.
Long because each timing protocol (case, chain, probe reading, cache sweep) sits with its reasons."""
from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable

import psutil
import torch
import torch.nn as nn

from ..analysis import analyze
from ..context import LlcSweep
from ..features import CACHE_FEATURES, KEY_FEATURES, op_key, shape_features
from ..formulas import PRODUCT_FAMILIES
from ..timing import summarize, synchronizer, time_callable, time_in_blocks
from ..probe import probe_ms, quick_probe_ms
from ..resources import cache_bytes_at_level, measured_llc, measured_matvec_stream_bytes, resource_rates
from .fit import dominant
from .generate_overhead import measure_generate_step
from .samples import Sample
from .suite import STREAM_POOL_BYTES, STREAM_POOL_LLC_MULTIPLE, chain_case
from .transformers_overhead import measure_transformers_forwards

CASE_SECONDS = 0.12       # timing budget per case after warm-up


def private_cache_bytes(backend: str, threads: int) -> float:
    """Cache an op's threads keep to themselves between two ops: L2 per core x threads on a CPU
    (Linux sysfs), the device L2 on a GPU. 0.0 where the platform does not say (bytes then uncapped)."""
    if backend == "cuda":
        return float(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
    return cache_bytes_at_level(2) * max(1, threads)


CUDA_GRAPH_CALLS = 20
COLD_BYTES_UNKNOWN_CACHE = 64 * 1024**2   # no cache size readable: weights past this are beyond any L3/L2


def _time_module_cuda(mod: nn.Module, inputs: tuple, calls: int = CUDA_GRAPH_CALLS) -> tuple[float, float, float, int]:
    """Device time per call: replay of a CUDA graph of ``calls`` launches (no host gaps), timed with
    CUDA events; if the op cannot be captured, back-to-back launches between two synchronizations."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            mod(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    run: Callable[[], Any]
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                mod(*inputs)
        run = graph.replay
    except Exception:  # not capturable: dynamic shapes, host syncs, CPU fallbacks
        def run():
            for _ in range(calls):
                mod(*inputs)
    samples = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        run()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / calls)
    st = summarize(samples)
    return st.median_s, st.p10_s, st.p90_s, len(st.samples_s) * calls


class ReferenceWorkload:
    """A fixed workload timed in blocks beside every CPU case and chain (timing.time_in_blocks): a 192^2
    matmul and an add over 128K floats, which every intra-op thread shares, so a vCPU taken away slows
    it as it slows the case. The case's time over the reference's is what calibration keeps
    (samples.steady); tried on 250 suite cases each timed twice a minute apart, this pair agreed
    better than a single-threaded 96^2 matmul or either half alone, at 1 and at 2 threads."""

    def __init__(self) -> None:
        self.a, self.b, self.c = torch.randn(192, 192), torch.randn(192, 192), torch.empty(192, 192)
        self.x = torch.randn(128 * 1024)
        self.y = torch.empty_like(self.x)

    def __call__(self) -> None:
        torch.mm(self.a, self.b, out=self.c)
        torch.add(self.x, 1.0, out=self.y)


_reference: ReferenceWorkload | None = None


def reference_workload() -> ReferenceWorkload:
    global _reference
    if _reference is None:
        _reference = ReferenceWorkload()
    return _reference


def _time_module(mod: nn.Module, inputs: tuple, backend: str) -> tuple[float, float, float, int, float, float]:
    """(median, p10, p90 seconds, calls, median ratio to the reference, the reference's median); on
    CUDA the device time of a graph replay, with no reference (0, 0)."""
    if backend == "cuda":
        return (*_time_module_cuda(mod, inputs), 0.0, 0.0)
    sync = synchronizer(backend)
    call = lambda: mod(*inputs)  # noqa: E731
    t0 = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - t0
    repeats = int(min(30, max(3, CASE_SECONDS / max(first, 1e-6))))
    call()
    paired = time_in_blocks(call, reference_workload(), repeats=repeats, sync=sync, max_seconds=CASE_SECONDS * 2)
    st = paired.model
    return st.median_s, st.p10_s, st.p90_s, len(st.samples_s), paired.ratio_median, paired.reference.median_s


_measured_llc: dict[int, LlcSweep] = {}   # per thread count, measured once per process
# sweeps before sysfs is believed: run N's 2-thread calibration (thirty-eighth session) found no cache band in its
# one sweep on the guest where every other calibration had found one, took sysfs's 480 MiB, and so predicted
# every pass's weights cached, a 110M Llama's 400 MB included
LLC_SWEEP_ATTEMPTS = 3


def _llc(backend: str) -> LlcSweep:
    threads = torch.get_num_threads()
    if threads not in _measured_llc:
        start = 2 * private_cache_bytes(backend, threads) or 4 * 1024**2
        for _ in range(LLC_SWEEP_ATTEMPTS):   # a sweep with no band: the machine's state for a moment, or no band
            sweep = measured_llc(backend, start_bytes=start)
            if sweep.knee_bytes > 0:
                break
        if sweep.knee_bytes <= 0:
            reported = cache_bytes_at_level(None)
            taken = (f"taken as the {reported / 2**20:.0f} MiB the platform reports, which a virtual machine may "
                     "inflate (every pass's weights then predicted cached)" if reported > 0 else
                     "unknown (no pass's weights predicted cold)")
            print(f"hwcost calibrate: {LLC_SWEEP_ATTEMPTS} copy sweeps at {threads} thread(s) found no cache band; "
                  f"the last-level cache is {taken}. Calibrate again on a quiet machine if predictions for models "
                  "with large weights come out fast", file=sys.stderr)
            sweep = sweep._replace(knee_bytes=reported)
        _measured_llc[threads] = sweep
    return _measured_llc[threads]


def last_level_cache_bytes(backend: str) -> float:
    """The cache every core (or SM) shares: a GPU's L2; on a CPU the working size a copy sweep finds
    (resources.measured_llc's knee, from twice the threads' private caches), else the last level sysfs
    reports. 0.0 unknown."""
    if backend == "cuda":
        return private_cache_bytes(backend, 1)
    return _llc(backend).knee_bytes


def llc_fit_bytes(backend: str) -> float:
    """The largest working set the last-level cache still serves at its own speed (resources.measured_llc's
    fit: where the copy sweep leaves the cache band), the limit past which a pass's weights stream from
    DRAM all or nothing where no miss shares are known (context.ContextModel.stream_share). 0.0 unknown or a
    GPU (whose L2 is exact): the knee serves."""
    return 0.0 if backend == "cuda" else _llc(backend).fit_bytes


def matvec_stream_bytes(backend: str) -> float:
    """The weight size past which a matrix product on one row streams its weights from DRAM however soon
    it runs again (resources.measured_matvec_stream_bytes, from twice the threads' private caches): such a
    product in a pass is predicted with cold weights whatever share of the pass's weights the cache keeps.
    0.0 on a GPU (its L2 is exact) or where the sweep shows no cache band. Taken once: on this project's
    Xeon guest it found a knee (74-75 MB) in 2 of 10 calibrations (runs K-P), both where the copy sweep's
    knee lay at 75-95 MB, and three sweeps at each thread count found none in run P (knees 99 and 133 MB):
    the sweep stops at 128 MB, so the miss is systematic there, not a moment's noise to retry."""
    if backend == "cuda":
        return 0.0
    return measured_matvec_stream_bytes(backend, start_bytes=2 * private_cache_bytes(backend, torch.get_num_threads())
                                        or 4 * 1024**2)


LLC_MISS_KEY = "llc_miss_at_"   # a fundamental per copy-sweep size: LLC_MISS_KEY + bytes -> share of reads from DRAM


def llc_miss_fundamentals(backend: str) -> dict[str, float]:
    """The copy sweep's share of reads from DRAM at each working set (context.llc_miss_from_sweep), as
    fundamentals; none on a GPU (whose L2 is exact) or where the sweep showed no cache band."""
    return {} if backend == "cuda" else {f"{LLC_MISS_KEY}{int(ws)}": share for ws, share in _llc(backend).miss}


def llc_miss_points(fundamentals: dict[str, float]) -> list[list[float]]:
    """llc_miss_fundamentals read back as [bytes, share] by size (none in samples before suite 28)."""
    return sorted([float(k[len(LLC_MISS_KEY):]), v] for k, v in fundamentals.items() if k.startswith(LLC_MISS_KEY))


def stream_pool_bytes(backend: str) -> float:
    """Bytes of weight copies a streamed case cycles through: STREAM_POOL_BYTES, or twice the last-level
    cache where that is larger (this VM: ~170 MB measured, so a 128 MB pool stayed partly cached, its
    samples counted warm, and cold layers were predicted from a few dozen samples), within 1/8 of free
    memory. Past twice the cache a cyclic read finds nothing cached (copies of 256 MB and more ran at
    DRAM speed in the sweep)."""
    pool = max(STREAM_POOL_BYTES, STREAM_POOL_LLC_MULTIPLE * (last_level_cache_bytes(backend) or 0.0))
    if backend == "cpu":
        pool = min(pool, max(STREAM_POOL_BYTES, psutil.virtual_memory().available / 8))
    return pool


def weights_cold(mod: nn.Module, weight_bytes: float, backend: str) -> bool:
    """Did each timed call of ``mod`` read its weights from beyond the last-level cache? Yes when the
    weights it cycles through (one set, or a StreamedLinear's copies) exceed that cache; a CUDA graph
    replays only the copies its ``CUDA_GRAPH_CALLS`` captured calls used."""
    copies = getattr(mod, "weight_copies", 1)
    if backend == "cuda":
        copies = min(copies, CUDA_GRAPH_CALLS)
    llc = last_level_cache_bytes(backend) or COLD_BYTES_UNKNOWN_CACHE
    return weight_bytes > 0 and weight_bytes * copies > llc


def measure_case(mod: nn.Module, inputs: tuple, case_id: str, backend: str) -> Sample | None:
    mod = mod.eval()
    a = analyze(mod, inputs if len(inputs) > 1 else inputs[0])
    main = dominant(a.ops)
    if main is None:
        return None
    device_inputs = tuple(x.to(backend) for x in inputs)
    if hasattr(mod, "extend_pool"):
        mod.extend_pool(stream_pool_bytes(backend))
    mod = mod.to(backend)
    with torch.inference_mode():
        med, p10, p90, n, ratio, ref_s = _time_module(mod, device_inputs, backend)
    working = [c for c in a.ops if c.launches]
    flops = sum(c.flops for c in working)
    read = sum(c.bytes_read for c in working)
    written = sum(c.bytes_written for c in working)
    feats = {k: v for k, v in shape_features(main).items() if k not in KEY_FEATURES + CACHE_FEATURES}
    feats["cold_weights"] = float(weights_cold(mod, main.weight_bytes, backend))
    return Sample(case_id, main.family, op_key(main), med, p10, p90, n, flops, read, written,
                  main.family in PRODUCT_FAMILIES, feats, ref_ratio=ratio, ref_s=ref_s)


def launch_issue_share(launches: int = 4, n: int = 2048) -> float:
    """How much of the time of a few long CUDA kernels their launches take to return: near 0 where
    the host queues work and runs ahead (discrete GPUs), near 1 where each launch returns only when
    its kernel is done (seen on integrated Tegra GPUs); the profile's `launch` follows it."""
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    a @ b
    torch.cuda.synchronize()
    shares = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(launches):
            a @ b
        issued = time.perf_counter() - t0
        torch.cuda.synchronize()
        shares.append(issued / (time.perf_counter() - t0))
    return statistics.median(shares)


def measure_fundamentals(backend: str, dtypes: list[str]) -> dict[str, float]:
    """Dispatch floor, matmul rate per dtype, copy bandwidth: the baseline's rates."""
    dev = backend
    sync = synchronizer(backend)
    res: dict[str, float] = {}
    with torch.inference_mode():
        tiny = nn.ReLU().to(dev)
        x = torch.zeros(8, device=dev)
        res["floor_s"] = time_callable(lambda: tiny(x), warmup=20, repeats=200, sync=sync).median_s
        # host costs that ops do not carry: nn.Module.__call__ (containers too), and view ops
        ident = nn.Identity()
        plain = lambda t: t  # noqa: E731
        direct = time_callable(lambda: plain(x), warmup=20, repeats=400).median_s
        res["module_call_s"] = max(0.0, time_callable(lambda: ident(x), warmup=20, repeats=400).median_s - direct)
        res["view_s"] = time_callable(lambda: x.view(-1), warmup=20, repeats=400).median_s
        if backend == "cuda":
            # host enqueue cost of an op: launches timed without waiting for the device
            def enqueue_many():
                for _ in range(200):
                    tiny(x)
            res["host_enqueue_s"] = time_callable(enqueue_many, warmup=2, repeats=10).median_s / 200
            res["launch_issue_share"] = launch_issue_share()
            torch.cuda.synchronize()
            res["floor_s"] = _time_module_cuda(tiny, (x,))[0]  # device-side cost of a tiny kernel
        for dt in dtypes:
            t = getattr(torch, dt)
            n = 2048 if backend == "cuda" else 1024
            a = torch.randn(n, n, device=dev).to(t)
            b = torch.randn(n, n, device=dev).to(t)
            st = time_callable(lambda: a @ b, warmup=3, repeats=10, sync=sync)
            res[f"matmul_flops_{dt}"] = 2 * n**3 / st.median_s
        big = torch.randn(32 * 1024**2 if backend == "cpu" else 256 * 1024**2, device=dev)
        st = time_callable(lambda: big.clone(), warmup=2, repeats=8, sync=sync)
        res["copy_bytes_per_s"] = 2 * big.numel() * 4 / st.median_s
    res["private_cache_bytes"] = private_cache_bytes(backend, torch.get_num_threads())
    res["chain_rotation_bytes"] = chain_rotation_bytes(backend)
    res["llc_bytes"] = last_level_cache_bytes(backend)
    res["llc_fit_bytes"] = llc_fit_bytes(backend)
    res.update(llc_miss_fundamentals(backend))
    res["matvec_stream_bytes"] = matvec_stream_bytes(backend)
    res["stream_pool_bytes"] = stream_pool_bytes(backend)
    step = measure_generate_step(backend)
    if step is not None:   # transformers importable: what generate() adds per token, for hwcost generate,
        res["generate_step_s"], res["generate_call_s"], res["hf_decode_forward_s"] = step[:3]
        res["generate_step_per_vocab_s"] = step.step_per_vocab_s
        res.update(measure_transformers_forwards(backend, res["private_cache_bytes"]))
    return res


ENERGY_SECONDS = 0.3      # run a chain at least this long between two energy readings


CHAIN_COPIES_MAX = 16


def chain_rotation_bytes(backend: str) -> float:
    """Weights a CPU chain's timing cycles through (twice the threads' private caches): a network's
    weights exceed those caches, so each op finds its weights in the last-level cache, not where they
    sat when the chain ran again at once; 0.0 on a GPU (its chains repeat as they are)."""
    return 2 * private_cache_bytes(backend, torch.get_num_threads()) if backend == "cpu" else 0.0


def chain_copies(weight_bytes: float, rotation_bytes: float) -> int:
    """How many copies of a chain (distinct weights) to run in turn so that together they hold at least
    ``rotation_bytes`` of weights: one when its own weights do (or no rotation is asked), at most
    CHAIN_COPIES_MAX. A chain of 0.8-1.6 MB under 1 ms ran 8-16% slower so, at 1 thread, than repeated as it was
    (rotating copies of 30 chains: median 2.4%, the longest ones ~0-5%; twenty-first session)."""
    if rotation_bytes <= 0 or weight_bytes >= rotation_bytes:
        return 1
    return min(CHAIN_COPIES_MAX, -(-int(rotation_bytes) // max(int(weight_bytes), 1)))


def measure_chain(seed: int, k: int, backend: str, meter: Any = None) -> Sample:
    """Time the k-th chain of the suite: on a CPU in blocks beside the reference workload, running
    chain_copies copies of it in turn (each call the next copy), so its weights come from beyond the
    private caches as a network's do."""
    import copy

    case = chain_case(seed, k)
    mod, inputs = case.build()
    mod = mod.eval().to(backend)
    inputs = tuple(x.to(backend) for x in inputs)
    weight_bytes = sum(p.numel() * p.element_size() for p in mod.parameters())
    copies = [mod] + [copy.deepcopy(mod) for _ in range(chain_copies(weight_bytes, chain_rotation_bytes(backend)) - 1)]
    turn = [0]

    def run():
        copies[turn[0] % len(copies)](*inputs)
        turn[0] += 1

    sync = synchronizer(backend)
    energy = energy_s = 0.0
    ratio = ref_s = 0.0
    with torch.inference_mode():
        if backend == "cpu":
            for _ in copies:
                run()
            paired = time_in_blocks(run, reference_workload(), repeats=8, sync=sync, max_seconds=1.0)
            st, ratio, ref_s = paired.model, paired.ratio_median, paired.reference.median_s
        else:
            st = time_callable(run, warmup=2, repeats=7, sync=sync, max_seconds=1.0)
        if meter is not None:
            runs = max(3, int(ENERGY_SECONDS / max(st.median_s, 1e-6)))
            sync()
            before, t0 = meter.read_j(), time.perf_counter()
            for _ in range(runs):
                run()
            sync()
            after, t1 = meter.read_j(), time.perf_counter()
            if before is not None and after is not None and after > before:
                energy, energy_s = (after - before) / runs, (t1 - t0) / runs
    return Sample(case.id, "_chain", "chain", st.median_s, st.p10_s, st.p90_s, len(st.samples_s), 0, 0, 0, False, {},
                  energy, energy_s, ratio, ref_s)


def speed_readings(when: str, backend: str, allocator: str) -> dict[str, float]:
    """The probe network's time and the single-resource rates, under the keys the samples file and
    ``_probe_record`` use (probe_start_ms, probe_start_compute_gflops, ...)."""
    readings = {f"probe_{when}_ms": probe_ms(backend, allocator)}
    llc = last_level_cache_bytes(backend)   # the measured one on a CPU: a VM's sysfs figure may be the host's
    readings.update({f"probe_{when}_{k}": v for k, v in resource_rates(backend, llc).items()})
    if llc:
        readings[f"probe_{when}_cache_mb"] = llc / 1e6
    return readings


DECODE_PROBE_EVERY = 4    # chains per decode-probe reading (~0.1 s each: ~50 in a 300 s run here, ~2% of it)
BATCH_PROBE_EVERY = 8     # chains per batch-8 probe reading (~0.3 s each at 1 thread: ~25 in a 300 s run, ~3%)


def _beside_reference(net: nn.Module, x: torch.Tensor, name: str) -> dict[str, float]:
    """A probe network timed in blocks beside the reference workload the cases are timed beside: its
    median (``name``_during_ms) and its median ratio to that workload (``name``_reference_ratio), which
    samples.probe_during puts on the samples' own scale."""
    with torch.inference_mode():
        paired = time_in_blocks(lambda: net(x), reference_workload(), repeats=6, rounds=2, reference_calls=3)
    return {f"{name}_during_ms": paired.model.median_s * 1e3, f"{name}_reference_ratio": paired.ratio_median}


def probe_reading(probe: tuple, sync, backend: str, decode_probe: tuple | None = None,
                  chain: int = 0, batch_probe: tuple | None = None) -> dict[str, float]:
    """One reading of the probe network between cases: on a CPU, beside the reference workload
    (_beside_reference); on CUDA, its median over a few calls. Every DECODE_PROBE_EVERY-th chain, the
    decode probe's reading too (suite.decode_probe_network: the generation benchmark's speed reference),
    and every BATCH_PROBE_EVERY-th (half-way between), the probe network at a larger batch
    (``batch_probe``, read as ``probe_b<batch>``: the reference of compute-bound models, hwcost.probe)."""
    if backend != "cpu":
        return {"probe_during_ms": quick_probe_ms(*probe, sync)}
    out = _beside_reference(*probe, "probe")
    if decode_probe is not None and chain % DECODE_PROBE_EVERY == 0:
        out.update(_beside_reference(*decode_probe, "probe_decode"))
    if batch_probe is not None and chain % BATCH_PROBE_EVERY == BATCH_PROBE_EVERY // 2:
        out.update(_beside_reference(*batch_probe, f"probe_b{batch_probe[1].shape[0]}"))
    return out
