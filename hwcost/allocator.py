"""The host allocator as a measurement condition, like the thread count.

Eager CPU inference allocates every activation afresh. With glibc's default malloc, blocks above
the dynamic mmap threshold (128 KiB, raised to the largest freed block up to 32 MiB) are mapped
fresh and unmapped on free, and the heap top is trimmed back to the OS, so the next pass takes a
page fault per 4 KiB touched: measured here at ~1 us per page, 13 ms on a 1x1 convolution whose
own work takes 2 ms. Which blocks fault depends on the whole allocation history (oneDNN's reorder
buffers included), so it is noise to a per-op model, not signal.

``retain`` makes glibc keep freed memory in the process (no mmap below 2 GiB, no trimming), the
steady state that jemalloc / tcmalloc and tuned deployments (MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_) give. Calibration and measurement use it by default so that what is fitted
and what is validated run under the same allocator; ``system`` leaves the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util

from .errors import InputError

MODES = ("retain", "system")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
RETAIN_BYTES = 2**31 - 1          # mallopt takes an int
_retained = False


def _libc_mallopt():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), "mallopt", None)   # glibc (and musl, which ignores it)
    except OSError:
        return None


def apply(mode: str) -> str:
    """Put the allocator in ``mode`` for this process; returns what is in force (see ``state``).

    ``retain`` cannot be undone within a process (glibc has no call that restores its dynamic
    threshold), so ``system`` after ``retain`` reports ``retain``."""
    global _retained
    if mode not in MODES:
        raise InputError(f"unknown allocator mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "retain" and not _retained:
        mallopt = _libc_mallopt()
        if mallopt is not None and mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES) and mallopt(_M_TRIM_THRESHOLD,
                                                                                          RETAIN_BYTES):
            _retained = True
    return state()


def state() -> str:
    """``retain`` once glibc was told to keep freed memory here, else ``system``."""
    return "retain" if _retained else "system"
