"""The probe networks read in a process that has run nothing else, the state every process a user times a
model in starts from: ``python -m hwcost.calibration.fresh`` prints their readings as JSON, and
``fresh_probe_readings`` runs it as a child of a calibration.

A calibrating process ages. In four 300 s calibrations on this project's 2-vCPU Intel guest (1 thread),
the CNN probe's ratio to the reference workload crept up over the run: median 40.4-40.6 over its first
ten readings, 42.8-43.3 over all of them; the decode probe's 28-29 over its first three, 31-37 over all.
The cases aged less: out-of-fold residuals of the fitted trees by position in the run were 2.6-3.2% fast
in the first eighth and flat after it. Models timed afterwards in a fresh process (the accuracy
benchmark) ran as predicted raw (signed median +1.2%), while the probe ran 0.93-0.94x its calibration
time, so every drift-adjusted time came out ~6% slow and every error as much too fast (signed median
-3.9%). In two calibrations with these readings, the fresh CNN-probe time sat 5-7% under the in-run one at 1 thread
and 2-3% at 2, and over their 208 benchmark pairs the drift-adjusted signed median error went from -4.5%
(in-run) to +0.4%. But the fresh readings are eleven readings in five seconds: one round of a ratio that
moves 5-13% from round to round here. In a third calibration (1 thread) they came out 1-6% above the
in-run ones, and in a fourth 7-17% below (the decode probe 2.27 against 2.65 ms), where the models ran as
predicted raw (signed median -1.3%) and the fresh readings put them +8.3% slow. Over the seven benchmarked
calibrations (364 pairs) the in-run readings scored 72% within ±10%, median 6.6%, against the fresh
ones' 68% and 6.8%, so the in-run readings adjusted from the thirty-fourth session, these on the profile's
record (``probe.fresh_during_ms`` and the like). With two more calibrations (572 pairs) the two tied on
±10% (72%), median 6.4% against 6.5%. Ten more (runs Q-U, 520 pairs re-predicted by the forty-third session's
code): fresh 79% within ±10%, median 5.40%, signed +2.7%, in-run 75%, 5.56%, -4.2%; their 120 generation
figures 112 within ±15% either way. Since the forty-third session the fresh readings adjust (by a rule
written before the generation figures were looked at; docs/accuracy.md), and the fresh process runs twice,
at the start of the run and at its end, its readings pooled by their median (samples.probe_during): one
child alone is one round of a ratio that moves 5-13% from round to round. The two benchmarks after the switch
(runs V and W) scored the two readings alike on held-out models (157 and 158 of 208 within ±10%) and the in-run
ones better on generation (47 against 44 of 48) and on the isolated-op audit: the choice is open again. The
next two (runs X and Y, each held-out model timed in a process of its own): held-out 171 by the fresh readings
against 155 by the in-run ones of 208, the audit alike (81 and 80% against 81 and 81%), generation 43 against 45."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import torch

FRESH_READINGS = 11       # of the CNN probe; each followed by one of the decode or the larger-batch probe
FRESH_TIMEOUT_S = 180.0   # a child that has not finished by then is given up (the in-run readings stand)


def fresh_probe_readings(threads: int, allocator: str, flush_subnormals: bool,
                         timeout_s: float = FRESH_TIMEOUT_S) -> tuple[dict[str, float], str | None]:
    """The readings of ``read_probes`` taken in a child process under the calibration's thread count,
    allocator and subnormal setting; ({}, why) when the child fails, and the caller keeps its in-run
    readings and says so."""
    cmd = [sys.executable, "-m", "hwcost.calibration.fresh", "--threads", str(threads), "--allocator", allocator]
    if flush_subnormals:
        cmd.append("--flush-subnormals")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as e:
        return {}, f"could not run {' '.join(cmd)}: {e}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {}, f"{' '.join(cmd)} exited {done.returncode}: {tail}"
    try:
        return {k: float(v) for k, v in json.loads(lines[-1]).items()}, None
    except (ValueError, AttributeError) as e:
        return {}, f"{' '.join(cmd)} printed no readings ({e})"


def read_probes(readings: int = FRESH_READINGS) -> dict[str, float]:
    """The CNN probe's median ratio to the reference workload (probe_fresh_reference_ratio), and the
    decode and larger-batch probes' median time over the CNN probe's reading just before each
    (probe_decode_fresh_bridge, probe_b<batch>_fresh_bridge): what samples.probe_during puts on the
    samples' scale in place of the in-run readings. Each network is called a few times first, so that
    oneDNN's first-call setup is not in any reading."""
    from ..probe import PROBE_BATCHES, probe_network
    from .bench import _beside_reference
    from .suite import decode_probe_network

    batch = PROBE_BATCHES[-1]
    nets = {"probe": probe_network(), "probe_decode": decode_probe_network(), f"probe_b{batch}": probe_network(batch)}
    with torch.inference_mode():
        for net, x in nets.values():
            for _ in range(3):
                net(x)
    ratios: list[float] = []
    bridges: dict[str, list[float]] = {"probe_decode": [], f"probe_b{batch}": []}
    for i in range(readings):
        cnn = _beside_reference(*nets["probe"], "probe")
        ratios.append(cnn["probe_reference_ratio"])
        other = "probe_decode" if i % 2 == 0 else f"probe_b{batch}"
        bridges[other].append(_beside_reference(*nets[other], other)[f"{other}_during_ms"] / cnn["probe_during_ms"])
    return {"probe_fresh_reference_ratio": statistics.median(ratios),
            **{f"{name}_fresh_bridge": statistics.median(v) for name, v in bridges.items() if v}}


def main(argv: list[str] | None = None) -> int:
    from ..allocator import held
    from ..timing import fixed_threads, flush_subnormals_now

    ap = argparse.ArgumentParser(prog="python -m hwcost.calibration.fresh", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--allocator", default="retain")
    ap.add_argument("--flush-subnormals", action="store_true")
    args = ap.parse_args(argv)
    if args.flush_subnormals:
        flush_subnormals_now()   # before any parallel op, as the calibrating process did
    with held(args.allocator), fixed_threads(args.threads):
        print(json.dumps(read_probes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
