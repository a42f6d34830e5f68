"""Where a network's activations come from: the last-level cache or DRAM, by reuse distance.

Repeated alone, an op finds its input and its output buffer in the cache that holds its own working set.
In a network, an output goes into memory the allocator hands back from an earlier tensor, last touched
many ops ago, and an input may have been written long before (a skip connection): when the bytes touched
since exceed the last-level cache, those lines come from DRAM. A GELU on a 4.8 MB map ran 0.21 ms
repeated alone, 0.40 ms with its output buffer evicted and 0.58 ms with its input too (2 threads, this
project's Xeon guest); MobileNetV2's layers at batch 8 ran 1.3-1.4x their isolated time in the network.

The pass is simulated at tensor granularity, twice (the second, steady pass is the one read): each
activation storage is given a block by best fit among the blocks freed so far (an eager allocator
recycles freed memory of about the right size), every parameter its own block, and a least-recently-used
stack of blocks gives each touch its reuse distance: the bytes of other blocks touched since. The copy
sweep's miss share at that distance (context.miss_share_at) is the share of the touch that comes from
DRAM; what the op already missed repeated alone (the share at its own working set) is not counted again.
Plain arithmetic; no fitted term.
"""
from __future__ import annotations

import bisect

from .context import miss_share_at
from .records import OpCost

PASSES = 2   # the last is read: the first finds an empty heap


class _Fenwick:
    """Prefix sums over touch times: the bytes of blocks whose latest touch is at each time."""

    def __init__(self, n: int):
        self.tree = [0.0] * (n + 1)

    def add(self, i: int, v: float) -> None:
        i += 1
        while i < len(self.tree):
            self.tree[i] += v
            i += i & -i

    def prefix(self, i: int) -> float:   # sum over times < i
        s = 0.0
        while i > 0:
            s += self.tree[i]
            i -= i & -i
        return s


def _lifetimes(costs: list[OpCost]) -> tuple[dict[int, int], set[int]]:
    """Per storage, the op that last touches it; and the storages no op writes (parameters and the model's
    inputs: resident for the whole pass)."""
    last: dict[int, int] = {}
    for i, c in enumerate(costs):
        for s in [*c.record.inputs, *c.record.outputs]:
            last[s.storage_id] = i
    written = {s.storage_id for c in costs for s in c.record.outputs}
    fixed = {s.storage_id for c in costs for s in c.record.inputs if s.storage_id not in written}
    return last, fixed


def dram_activation_bytes(costs: list[OpCost], miss_points: list[list[float]]) -> list[float]:
    """Per op: bytes of its activations (inputs other than parameters, and outputs) that come from DRAM
    in a steady pass but would not when the op repeats alone; all zero where the sweep gave no miss shares.
    A block first touched in the last pass is memory the heap never handed out before: all of it DRAM."""
    if not miss_points or not costs:
        return [0.0] * len(costs)
    last, fixed = _lifetimes(costs)
    touches_per_pass = sum(len(c.record.inputs) + len(c.record.outputs) for c in costs) + len(fixed)
    fen = _Fenwick(PASSES * touches_per_pass + 2)
    when: dict[int, int] = {}        # block -> time of its latest touch
    size: dict[int, float] = {}      # block -> bytes
    free: list[tuple[float, int]] = []   # (bytes, block), sorted: best fit by bisect
    clock = 0
    total = 0.0                      # bytes of every block touched so far (each counted at its latest touch)

    def touch(block: int) -> float:
        """Record a touch of ``block``; return its reuse distance in bytes (inf for a first touch)."""
        nonlocal clock, total
        prev = when.get(block)
        if prev is None:
            dist = float("inf")
        else:
            dist = total - fen.prefix(prev + 1)
            fen.add(prev, -size[block])
            total -= size[block]
        when[block] = clock
        fen.add(clock, size[block])
        total += size[block]
        clock += 1
        return dist

    next_block = 0
    fixed_block: dict[int, int] = {}
    for sid in fixed:
        fixed_block[sid] = next_block
        next_block += 1

    out = [0.0] * len(costs)
    for run in range(PASSES):
        read = run == PASSES - 1   # the earlier passes only place blocks and touch them
        block_of: dict[int, int] = dict(fixed_block)
        for i, c in enumerate(costs):
            alone = miss_share_at(miss_points, c.bytes_read + c.bytes_written) if read else 0.0
            extra = 0.0
            for s in c.record.inputs:
                b = block_of.get(s.storage_id)
                if b is None:   # no op wrote it: an allocation that does no work (empty) and is read first
                    continue
                size.setdefault(b, float(s.storage_nbytes))
                d = touch(b)
                if read and s.storage_id not in fixed:
                    extra += s.read_bytes * max(miss_share_at(miss_points, d + size[b]) - alone, 0.0)
            for s in c.record.outputs:
                b = block_of.get(s.storage_id)
                if b is None:
                    nbytes = float(s.storage_nbytes)
                    k = bisect.bisect_left(free, (nbytes, -1))
                    if k < len(free):
                        b = free.pop(k)[1]
                    else:
                        b, next_block = next_block, next_block + 1
                        size[b] = nbytes
                    block_of[s.storage_id] = b
                d = touch(b)
                if read:
                    extra += s.nbytes * max(miss_share_at(miss_points, d + size[b]) - alone, 0.0)
            for s in {x.storage_id: x for x in [*c.record.inputs, *c.record.outputs]}.values():
                if last.get(s.storage_id) == i and s.storage_id not in fixed and s.storage_id in block_of:
                    b = block_of.pop(s.storage_id)
                    bisect.insort(free, (size[b], b))
            out[i] = extra
    return out


def dram_extra_s_per_byte(rates: dict[str, float]) -> float:
    """1 / DRAM rate - 1 / cache rate from a profile's recorded copy rates (devices.calibration_rates: a copy
    within the last-level cache and one four times its size, each the mean of calibration's start and end
    readings); 0.0 where either was not read (a GPU, older profiles) or the cache was no faster."""
    cache, dram = rates.get("cache_gbps", 0.0), rates.get("dram_gbps", 0.0)
    if cache <= 0 or dram <= 0:
        return 0.0
    return max(1.0 / dram - 1.0 / cache, 0.0) * 1e-9


def with_evicted(times: list[float], costs: list[OpCost], miss_points: list[list[float]],
                 extra_s_per_byte: float) -> list[float]:
    """``times`` (seconds per op) plus each op's evicted activation bytes (dram_activation_bytes) at
    ``extra_s_per_byte``; unchanged where the sweep measured no cache band or no penalty was measured."""
    if extra_s_per_byte <= 0 or not miss_points:
        return times
    return [t + b * extra_s_per_byte for t, b in zip(times, dram_activation_bytes(costs, miss_points))]
