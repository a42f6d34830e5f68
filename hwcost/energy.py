"""Energy of a predicted run: per op, idle power over its latency plus its dynamic energy; the
device profile says which dynamic model applies (DeviceProfile.energy_model)."""
from __future__ import annotations

from .devices import DeviceProfile
from .execution import OpTiming


def assign_energy(timings: list[OpTiming], device: DeviceProfile, total_s: float) -> tuple[float | None, bool]:
    """Idle power over each op's latency plus its dynamic energy (joules): on a GPU (max - idle)
    power over its kernel's busy time, on a CPU (or from a measured fit) energy per FLOP and per
    DRAM byte (DeviceProfile.energy_model says which and why).

    The sum is capped at max power x latency: a profile's energy-per-FLOP figure is a full-load
    average, and no device draws more than its maximum power. None when the profile has no power
    figures (a calibrated profile without a sensor or a datasheet base)."""
    model = device.energy_model
    if model is None:
        return None, False
    for t in timings:
        if model == "busy":
            dynamic = (device.power_max_w - device.power_idle_w) * t.kernel_s
        else:
            dynamic = (t.cost.flops * device.pj_per_flop + t.cost.memory_traffic_bytes * device.pj_per_byte) * 1e-12
        t.energy_j = dynamic + device.power_idle_w * t.latency_s
    total = sum(t.energy_j for t in timings)
    cap = device.power_max_w * total_s
    if total > cap > 0:
        for t in timings:
            t.energy_j *= cap / total
        return cap, True
    return total, False
