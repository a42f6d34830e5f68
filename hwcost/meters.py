"""Energy counters: Intel/AMD RAPL (powercap sysfs) on CPUs, the NVML total-energy counter on GPUs."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Callable


@dataclass
class EnergyMeter:
    name: str
    read_j: Callable[[], float | None]

    @staticmethod
    def detect(backend: str, powercap_root: str = "/sys/class/powercap") -> "EnergyMeter | None":
        return nvml_meter() if backend == "cuda" else rapl_meter(powercap_root)


def rapl_meter(root: str = "/sys/class/powercap") -> EnergyMeter | None:
    """Sum of the package-level RAPL domains (intel-rapl:N), handling counter wrap-around."""
    domains = sorted(d for d in glob.glob(os.path.join(root, "intel-rapl:*")) if d.count(":") == 1)
    readable = []
    for d in domains:
        try:
            with open(os.path.join(d, "energy_uj")) as f:
                int(f.read())
            with open(os.path.join(d, "max_energy_range_uj")) as f:
                wrap = int(f.read())
            readable.append((d, wrap))
        except (OSError, ValueError):
            continue
    if not readable:
        return None
    last: dict[str, int] = {}
    total = [0.0]

    def read() -> float | None:
        for d, wrap in readable:
            try:
                with open(os.path.join(d, "energy_uj")) as f:
                    now = int(f.read())
            except (OSError, ValueError):
                return None
            if d in last:
                delta = now - last[d]
                total[0] += (delta if delta >= 0 else delta + wrap) * 1e-6
            last[d] = now
        return total[0]

    read()  # prime
    return EnergyMeter(f"RAPL ({len(readable)} package domain{'s' if len(readable) > 1 else ''})", read)


def nvml_meter(index: int = 0) -> EnergyMeter | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # no pynvml, no driver, or a GPU without the counter
        return None
    return EnergyMeter("NVML total energy counter",
                       lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) * 1e-3)
