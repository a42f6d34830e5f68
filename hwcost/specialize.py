"""hwcost.search: Once-for-All-style specialization: the best sub-network under a latency budget.

Latency lookup table: each distinct block (by signature: channels, kernel, expand, stride,
resolution, ...) is built once on the meta device and timed op by op with the device model; a
candidate's latency replays its blocks' op timings through the same execution model as
``hwcost.predict`` (a sum on sequential CPUs, the host/device queue on GPUs), so it agrees with a
full prediction of the built network while costing microseconds.

Evolutionary search as in Once-for-All (Cai et al. 2020): a population of sub-networks that meet
the budget; each generation keeps the best quarter as parents, and fills the rest with mutations
(each choice resampled with probability 0.1) and crossovers of parents, rejecting any child over
the budget. Deterministic for a seed.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .version import __version__
from .analysis import OpCounts, count_ops
from .devices import DeviceProfile, load_device, profile_fingerprint
from .errors import InputError
from .execution import add_framework_overhead, replay_s, time_ops
from .spaces import SPACES, Block, SearchSpace


@dataclass
class BlockCost:
    host_s: list[float]
    kernel_s: list[float]
    total_s: float               # sequential execution: dispatch + kernels
    macs: int
    params: int


class LatencyLUT:
    """Block signature -> op timings on one device, at one batch size and dtype.

    ``LatencyLUT.shared`` returns one table per (space, profile content, batch, dtype, hwcost version)
    for the whole process, so repeated searches (budgets, seeds, objectives) pay for each block once;
    the traced counts of a block are shared between devices too (they do not depend on the device)."""

    def __init__(self, space: SearchSpace, device: str | DeviceProfile, batch_size: int = 1, dtype: str = "float32"):
        self.space, self.device = space, load_device(device)
        self.batch_size, self.dtype = batch_size, dtype
        self.table: dict[tuple, BlockCost] = {}
        self.build_s = 0.0
        self._last: tuple[Any, list[BlockCost]] | None = None   # a search asks latency, then MACs, of one config

    @classmethod
    def shared(cls, space: SearchSpace, device: str | DeviceProfile, batch_size: int = 1,
               dtype: str = "float32") -> "LatencyLUT":
        profile = load_device(device)
        key = (space_key(space), profile_fingerprint(profile), batch_size, dtype, __version__)
        lut = _LUTS.get(key)
        if lut is None:
            lut = _LUTS[key] = cls(space, profile, batch_size, dtype)
        return lut

    def block(self, blk: Block) -> BlockCost:
        cost = self.table.get(blk.signature)
        if cost is None:
            t0 = time.perf_counter()
            counts, params = _block_counts(blk, self.batch_size, self.dtype)
            timings = time_ops(counts.ops, self.device, counts.dtype)
            add_framework_overhead(timings, counts, self.device)
            cost = BlockCost([t.overhead_s for t in timings], [t.kernel_s for t in timings],
                             replay_s([t.overhead_s for t in timings], [t.kernel_s for t in timings], "sequential"),
                             counts.macs, params)
            self.table[blk.signature] = cost
            self.build_s += time.perf_counter() - t0
        return cost

    def costs(self, config: Any) -> list[BlockCost]:
        if self._last is not None and self._last[0] == config:
            return self._last[1]
        table = self.table
        costs = [table.get(b.signature) or self.block(b) for b in self.space.blocks(config)]
        self._last = (config, costs)
        return costs

    def latency_ms(self, config: Any) -> float:
        costs = self.costs(config)
        if self.device.execution != "async":
            return sum(c.total_s for c in costs) * 1e3
        return replay_s([h for c in costs for h in c.host_s], [k for c in costs for k in c.kernel_s], "async",
                        self.device.launch_blocking) * 1e3

    def macs(self, config: Any) -> int:
        return sum(c.macs for c in self.costs(config))


# process-wide caches: latency tables by everything their numbers depend on, traced block counts by
# what they depend on (block signature, batch, dtype), built modules by what they depend on
_LUTS: dict[tuple, LatencyLUT] = {}
_COUNTS: dict[tuple, tuple[OpCounts, int]] = {}   # the traced counts and the block's parameters
_MODULES: dict[tuple, torch.nn.Module] = {}


def space_key(space: SearchSpace) -> tuple:
    """A space by its class and settings (a dataclass's fields), so two equal spaces share a table."""
    fields = getattr(space, "__dataclass_fields__", None)
    settings = tuple((f, repr(getattr(space, f))) for f in fields) if fields else (id(space),)
    return (type(space).__module__, type(space).__qualname__, settings)


def _block_counts(blk: Block, batch_size: int, dtype: str) -> tuple[OpCounts, int]:
    key = (blk.signature, batch_size, dtype)
    found = _COUNTS.get(key)
    if found is None:
        module_key = blk.module_key if blk.module_key is not None else blk.signature
        module = _MODULES.get(module_key)
        if module is None:
            with torch.device("meta"):
                module = _MODULES[module_key] = blk.build()
        found = _COUNTS[key] = (count_ops(module, blk.input_shape, batch_size=batch_size, dtype=dtype),
                                sum(p.numel() for p in module.parameters()))
    return found


def capacity_proxy(lut: LatencyLUT) -> Callable[[Any], float]:
    """The default objective: log10 of the sub-network's MACs.

    NOT accuracy: it prefers the largest network that fits the budget, which tracks accuracy only
    loosely. Pass your accuracy predictor as ``objective`` for a real specialization."""
    return lambda config: math.log10(max(1, lut.macs(config)))


@dataclass
class Candidate:
    config: Any
    latency_ms: float
    objective: float


@dataclass
class SearchResult:
    space: str
    device: str
    budget_ms: float
    best: Any
    best_latency_ms: float
    best_objective: float
    pareto: list[Candidate]          # non-dominated: lower latency, higher objective
    evaluated: int                   # distinct candidates whose latency was looked up
    per_second: float                # candidates evaluated per second of search (LUT warm-up excluded)
    lut_blocks: int
    lut_build_s: float
    history: list[float] = field(default_factory=list)  # best objective per generation
    description: str = ""


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    front, best = [], -math.inf
    for c in sorted(cands, key=lambda c: (c.latency_ms, -c.objective)):
        if c.objective > best:
            front.append(c)
            best = c.objective
    return front


def search(
    space: SearchSpace | str,
    device: str | DeviceProfile,
    latency_ms: float,
    objective: Callable[[Any], float] | None = None,
    population: int = 100,
    generations: int = 30,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    mutate_prob: float = 0.1,
    seed: int = 0,
    batch_size: int = 1,
    dtype: str = "float32",
    max_tries: int = 500,
    lut: LatencyLUT | None = None,
) -> SearchResult:
    """Evolve sub-networks of ``space`` for the best ``objective`` with latency <= ``latency_ms``."""
    if isinstance(space, str):
        if space not in SPACES:
            raise InputError(f"unknown search space {space!r}; spaces: {', '.join(SPACES)}")
        space = SPACES[space]()
    if not latency_ms or latency_ms <= 0:
        raise InputError(f"the latency budget must be a positive number of milliseconds, got {latency_ms!r}")
    if population < 4 or generations < 1:
        raise InputError("population must be at least 4 and generations at least 1")
    lut = lut or LatencyLUT.shared(space, device, batch_size, dtype)
    objective = objective or capacity_proxy(lut)
    rng = random.Random(seed)
    seen: dict[Any, Candidate] = {}

    def evaluate(cfg: Any) -> Candidate:
        c = seen.get(cfg)
        if c is None:
            lat = lut.latency_ms(cfg)
            c = Candidate(cfg, lat, objective(cfg) if lat <= latency_ms else -math.inf)
            seen[cfg] = c
        return c

    fastest = evaluate(space.smallest())
    if fastest.latency_ms > latency_ms:
        raise InputError(
            f"no sub-network of {space.name} meets {latency_ms:g} ms on {lut.device.name} (batch {batch_size}, "
            f"{dtype}): the fastest reachable is {fastest.latency_ms:.3f} ms ({space.describe(fastest.config)}). "
            "Raise the budget, or search a smaller space."
        )
    start, t_lut0 = time.perf_counter(), lut.build_s

    def valid(make: Callable[[], Any]) -> Candidate | None:
        for _ in range(max_tries):
            c = evaluate(make())
            if c.latency_ms <= latency_ms:
                return c
        return None

    pop = [c for c in (valid(lambda: space.sample(rng)) for _ in range(population)) if c is not None]
    if not pop:
        pop = [fastest]  # the budget is so tight that random draws miss it; start from the smallest
    # the extremes seed the population: the largest sub-network often fits a generous budget, and random
    # draws (each choice from its range) almost never produce it
    largest = evaluate(space.largest())
    if largest.latency_ms <= latency_ms and largest not in pop:
        pop.append(largest)
    history = []
    n_parents = max(2, int(population * parent_ratio))
    n_mut = int(population * mutation_ratio)
    for _ in range(generations):
        parents = sorted(pop, key=lambda c: (-c.objective, c.latency_ms))[:n_parents]
        history.append(parents[0].objective)
        children = []
        for _ in range(n_mut):
            c = valid(lambda: space.mutate(rng.choice(parents).config, rng, mutate_prob))
            if c is not None:
                children.append(c)
        while len(children) < population - n_parents:
            c = valid(lambda: space.crossover(rng.choice(parents).config, rng.choice(parents).config, rng))
            if c is None:
                break
            children.append(c)
        pop = parents + children
    best = max(pop, key=lambda c: (c.objective, -c.latency_ms))
    elapsed = time.perf_counter() - start - (lut.build_s - t_lut0)
    feasible = [c for c in seen.values() if c.latency_ms <= latency_ms]
    return SearchResult(
        space=space.name, device=lut.device.name, budget_ms=latency_ms, best=best.config,
        best_latency_ms=best.latency_ms, best_objective=best.objective, pareto=pareto_front(feasible),
        evaluated=len(seen), per_second=len(seen) / max(elapsed, 1e-9), lut_blocks=len(lut.table),
        lut_build_s=lut.build_s, history=history, description=space.describe(best.config),
    )
