"""This machine, described: CPU model, instruction set, cores, memory, torch (and the GPU on CUDA);
and whether a device profile describes it, so a validation never compares this host with a profile of
another machine."""
from __future__ import annotations

import platform
from typing import Any

import torch

from .devices import DeviceProfile

_ISA_ALIASES = {"arm64": "aarch64", "armv8l": "aarch64", "amd64": "x86_64", "x64": "x86_64"}


def isa() -> str:
    """This CPU's instruction set, in the names profiles use (aarch64, x86_64, ...)."""
    m = platform.machine().lower()
    return _ISA_ALIASES.get(m, m)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith(("model name", "Model")))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def host_info(backend: str) -> dict[str, Any]:
    import psutil

    from .allocator import state as allocator_state

    freq = psutil.cpu_freq()
    info = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "cpu_freq_mhz": round(freq.max or freq.current, 1) if freq else None,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "allocator": allocator_state(),
    }
    if backend == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = str(torch.cuda.get_device_name(0))
        info["gpu_memory_gb"] = round(props.total_memory / 1024**3, 1)
        info["cuda"] = str(torch.version.cuda)
    return info


def describes_this_machine(profile: DeviceProfile, backend: str) -> tuple[bool | None, str]:
    """(True, why) when the profile was calibrated on this very CPU/GPU, (False, why) when it describes
    another machine for certain, (None, why) when only the instruction set could be checked (a datasheet
    profile of a machine of the same kind: say so loudly, but it may be this one)."""
    cal = profile.calibration or {}
    want_gpu = profile.kind == "gpu"
    if want_gpu != (backend == "cuda"):
        return False, (f"{profile.name} describes a {'GPU' if want_gpu else 'CPU'}, and the measurement runs on "
                       f"this machine's {'GPU' if backend == 'cuda' else 'CPU'} (--backend {backend})")
    host = cal.get("host") or {}
    if host:
        if backend == "cuda":
            then, now = host.get("gpu"), str(torch.cuda.get_device_name(0))
        else:
            then, now = host.get("cpu"), cpu_model()
        if then and then != now:
            return False, f"{profile.name} was calibrated on {then!r}; this machine is {now!r}"
        return True, f"calibrated on this {'GPU' if backend == 'cuda' else 'CPU'} ({now})"
    if profile.isa and backend == "cpu" and profile.isa != isa():
        return False, f"{profile.name} describes an {profile.isa} CPU; this machine is {isa()} ({cpu_model()})"
    if profile.isa and backend == "cuda" and profile.isa != "cuda":
        return False, f"{profile.name} describes an {profile.isa} GPU, which PyTorch's CUDA backend does not run"
    what = f"instruction set {profile.isa}" if profile.isa else "kind"
    return None, (f"{profile.name} is a datasheet profile of '{profile.description}': only its {what} matches "
                  f"this machine ({cpu_model() if backend == 'cpu' else torch.cuda.get_device_name(0)}), so errors "
                  "may be the two machines differing")


# other processes may use this share of the machine's CPU time while calibration measures (a quiet VM's
# background stays near 1-3%; one busy loop on a 2-core VM is 50%)
OTHER_LOAD_LIMIT = 0.10


class OtherLoad:
    """CPU time other processes took while a block ran, as a share of the machine's capacity
    (wall time x logical CPUs): what tells a quiet machine from a busy one, whatever this process does."""

    def __init__(self, min_window_s: float = 0.0):
        # CPU times tick at 10 ms: a block shorter than a few ticks reads nothing, so the reading is made
        # to last this long (idle here: what it sees is the others')
        self.min_window_s = min_window_s

    def __enter__(self) -> "OtherLoad":
        import time

        import psutil

        self._psutil, self._time = psutil, time
        self.share = 0.0
        self._t0 = time.perf_counter()
        self._busy0 = self._busy_s()
        self._own0 = self._own_s()
        return self

    def _busy_s(self) -> float:
        t = self._psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0) - getattr(t, "guest", 0.0) \
            - getattr(t, "guest_nice", 0.0)

    def _own_s(self) -> float:
        t = self._psutil.Process().cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __exit__(self, *exc) -> None:
        short_s = self.min_window_s - (self._time.perf_counter() - self._t0)
        if short_s > 0:
            self._time.sleep(short_s)
        wall = self._time.perf_counter() - self._t0
        others = (self._busy_s() - self._busy0) - (self._own_s() - self._own0)
        capacity = wall * (self._psutil.cpu_count(logical=True) or 1)
        self.share = max(0.0, others / capacity) if capacity > 0 else 0.0
