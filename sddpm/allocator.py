"""Keep freed activation memory in the process instead of handing it back to the OS.

glibc's malloc serves every block above its mmap threshold (at most 32 MB with the
dynamic default) with a fresh ``mmap`` and returns it with ``munmap`` on free, and trims
the heap top above 128 kB. A spiking U-Net's activations carry the T axis: at batch 100
and T=4 one tensor of ``fmnist-small`` is about 105 MB, so every forward pass maps,
zero-faults and unmaps hundreds of MB, and on CPU the kernel's page faulting can take
more time than the convolutions (``benchmarks/sampling_batch.py`` measures it).

Raising both thresholds makes malloc reuse freed blocks. The price: the process keeps
its heap (holes included, so with varying batch sizes possibly more than its peak of live
memory) until it exits, which is what a training or sampling run wants anyway. A
threshold the user gave glibc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or
the same in ``GLIBC_TUNABLES``) wins; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

# above the activations of the shipped presets at `sddpm eval`'s batch of 250 (T=4: 260 MB)
MMAP_THRESHOLD = 2**30
# older glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2, which is 32 MB on 64-bit
MMAP_THRESHOLD_CAPPED = 32 * 2**20
TRIM_THRESHOLD = 2**31 - 1     # mallopt takes an int: keep up to 2 GB of free heap top

_M_TRIM_THRESHOLD = -1         # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3


def user_set(threshold: str) -> bool:
    """Whether the environment sets glibc's ``mmap`` or ``trim`` threshold."""
    return (f"MALLOC_{threshold.upper()}_THRESHOLD_" in os.environ
            or f"glibc.malloc.{threshold}_threshold" in os.environ.get("GLIBC_TUNABLES", ""))


def keep_freed_memory() -> dict:
    """Raise glibc's mmap and trim thresholds for this process, where the user did not.

    Returns the thresholds it set, by name (empty where it set none)."""
    if platform.libc_ver()[0] != "glibc":
        return {}
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    kept = {}
    if not user_set("mmap"):
        for value in (MMAP_THRESHOLD, MMAP_THRESHOLD_CAPPED):
            if mallopt(_M_MMAP_THRESHOLD, value):
                kept["mmap_threshold"] = value
                break
    if not user_set("trim") and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        kept["trim_threshold"] = TRIM_THRESHOLD
    _state["kept"] = bool(kept)
    return kept


_state = {"kept": False}  # whether keep_freed_memory is in force in this process


#: glibc's defaults (``mallopt(3)``): 128 kB for both thresholds
DEFAULT_THRESHOLD = 128 * 1024


def release_freed_memory() -> bool:
    """Hand the freed heap back to the OS; where :func:`keep_freed_memory` was in force,
    first set both thresholds to glibc's initial 128 kB.

    Before a process forks hundreds of children (Lava), every page it maps costs each
    child a copy of its page table entries, and the children inherit the thresholds: a
    kept heap is the wrong trade there. glibc's dynamic mmap threshold, off since the
    thresholds were set, stays off: the children serve allocations of 128 kB and more
    with mmap. Returns whether :func:`keep_freed_memory` was in force (call it again
    once the children are forked).
    """
    was_kept = _state["kept"]
    _state["kept"] = False
    if platform.libc_ver()[0] != "glibc":
        return was_kept
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return was_kept
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    if was_kept and not user_set("mmap"):
        libc.mallopt(_M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
    if was_kept and not user_set("trim"):
        libc.mallopt(_M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
    libc.malloc_trim(0)
    return was_kept
