"""keep_freed_memory: big freed blocks are reused instead of mapped and faulted in again."""

import json
import os
import platform
import subprocess
import sys

import pytest

from sddpm.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, user_set

# allocate 100 MB tensors: glibc's mmapped bytes while one is alive (mallinfo2's hblkhd,
# which huge pages do not blur as they do page-fault counts), and the minor page faults
# per allocation once the heap has settled
PROBE = """
import ctypes, json, resource, sys, torch
from sddpm.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
                .split()]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
kept = keep_freed_memory() if sys.argv[1] == "keep" else {}
n = 100 * 2**20 // 4
for _ in range(10):  # glibc settles its heap over the first few blocks
    torch.ones(n)
alive = torch.ones(n)
mapped = mallinfo2().hblkhd
del alive
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(n)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"kept": kept, "mapped": mapped, "faults_per_alloc": (after - before) / 5}))
"""
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


def probe(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env},
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_activation_memory_is_reused_not_faulted_in_again():
    block, pages = 100 * 2**20, 100 * 2**20 / os.sysconf("SC_PAGE_SIZE")
    system, kept = probe("plain"), probe("keep")
    assert system["kept"] == {}
    assert kept["kept"]["trim_threshold"] == TRIM_THRESHOLD
    assert system["mapped"] >= block      # glibc's default: a fresh mapping per block
    assert kept["mapped"] < block         # kept: the block lives in the heap
    assert kept["faults_per_alloc"] < 0.1 * pages


@glibc_only
def test_the_users_malloc_settings_win(monkeypatch):
    for var in MALLOC_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not user_set("mmap") and not user_set("trim")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")  # not a threshold
    assert not user_set("mmap")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert user_set("mmap") and not user_set("trim")
    # the user's mmap threshold stays, the trim threshold is still raised
    assert probe("keep", MALLOC_MMAP_THRESHOLD_="65536")["kept"] == {
        "trim_threshold": TRIM_THRESHOLD}


@glibc_only
def test_this_glibc_takes_the_full_threshold():
    # glibc 2.36 (Debian 12, the development machine) does; older ones cap it at 32 MB
    # and keep_freed_memory falls back to that
    if tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 36):
        pytest.skip("older glibc")
    assert probe("keep")["kept"]["mmap_threshold"] == MMAP_THRESHOLD


def test_release_before_a_fork_says_whether_the_heap_was_kept(monkeypatch):
    from sddpm import allocator

    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    kept = bool(allocator.keep_freed_memory())
    assert allocator.release_freed_memory() is kept
    assert allocator.release_freed_memory() is False  # nothing kept any more
    allocator.keep_freed_memory()  # as the commands leave it
