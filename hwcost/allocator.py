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

They hold it for their own duration only (``held``): kept memory is never given back, and across
many calibrations in one process (the test suite) the heap's fragments grew to 20 GB of a 24 GB
machine, where ``malloc_trim`` afterwards returns all but ~0.6 GB. On leaving, the thresholds go back
to glibc's defaults and the freed memory is returned.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import InputError

MODES = ("retain", "system")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
RETAIN_BYTES = 2**31 - 1          # mallopt takes an int
GLIBC_DEFAULT_BYTES = 128 * 1024  # DEFAULT_MMAP_THRESHOLD_MIN and DEFAULT_TRIM_THRESHOLD in glibc's malloc
_retained = False


def _libc(symbol: str):
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), symbol, None)   # glibc (musl has mallopt, and ignores it)
    except OSError:
        return None


def apply(mode: str) -> str:
    """Put the allocator in ``mode`` for this process; returns what is in force (see ``state``).

    ``retain`` stays until ``release`` (``held`` releases on leaving), so ``system`` after ``retain``
    reports ``retain``."""
    global _retained
    if mode not in MODES:
        raise InputError(f"unknown allocator mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "retain" and not _retained:
        mallopt = _libc("mallopt")
        if mallopt is not None and mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES) and mallopt(_M_TRIM_THRESHOLD,
                                                                                          RETAIN_BYTES):
            _retained = True
    return state()


def state() -> str:
    """``retain`` once glibc was told to keep freed memory here, else ``system``."""
    return "retain" if _retained else "system"


def release() -> None:
    """Undo ``retain``: glibc's default thresholds (fixed ones: glibc has no call that turns its dynamic
    mmap threshold back on) and the freed memory returned to the system."""
    global _retained
    if not _retained:
        return
    mallopt, trim = _libc("mallopt"), _libc("malloc_trim")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, GLIBC_DEFAULT_BYTES)
        mallopt(_M_TRIM_THRESHOLD, GLIBC_DEFAULT_BYTES)
    if trim is not None:
        trim(0)
    _retained = False


@contextmanager
def held(mode: str) -> Iterator[str]:
    """``mode`` in force for the block (yields what is in force); what this block retained is released on
    leaving, what was retained before it (an enclosing block, a caller's ``apply``) is left as it was."""
    was_retained = _retained
    in_force = apply(mode)
    try:
        yield in_force
    finally:
        if not was_retained:
            release()
