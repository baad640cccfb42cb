"""Large blocks stay mappings of their own once the threshold is fixed (raftkv.node.large_blocks).

Each case runs in a fresh interpreter: the allocator's thresholds are process-wide and
one-way. The first case shows the behaviour the module exists for (glibc moves a block it
would once have mapped into the heap after one like it was freed); without it the second
would prove nothing.
"""

from __future__ import annotations

import subprocess
import sys

# Allocates and frees one 5 MiB block (the size of a 100k-key dict's table), then allocates
# another and prints whether its address lies in the process's [heap] (brk) segment.
PROBE = r"""
import sys
from raftkv.node.large_blocks import fix_mmap_threshold

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(), "mallopt refused"
SIZE = 5 << 20

def heap_range():
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[heap]"):
                lo, hi = line.split()[0].split("-")
                return int(lo, 16), int(hi, 16)
    return 0, 0

first = bytearray(SIZE)
del first  # a mapped block freed: glibc raises its threshold past SIZE unless fixed
second = bytearray(SIZE)
second[:] = b"x" * SIZE  # (resident, as a dict copy's table is)
lo, hi = heap_range()
import ctypes
address = ctypes.addressof(ctypes.c_char.from_buffer(second))
print("heap" if lo <= address < hi else "mapped")
"""


def where_second_block_lands(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_glibc_moves_a_large_block_into_the_heap_after_one_was_freed() -> None:
    assert where_second_block_lands("default") == "heap"


def test_fixed_threshold_keeps_large_blocks_mapped_so_freeing_returns_them() -> None:
    assert where_second_block_lands("fixed") == "mapped"


def test_run_node_fixes_the_threshold_before_the_loop_starts(monkeypatch) -> None:
    import raftkv.serve as serve

    calls: list[str] = []
    monkeypatch.setattr(serve, "fix_mmap_threshold", lambda: calls.append("fixed") or True)
    monkeypatch.setattr(serve.trio, "run", lambda *a, **k: calls.append("loop"))
    serve.run_node(None)  # type: ignore[arg-type]
    assert calls == ["fixed", "loop"]
