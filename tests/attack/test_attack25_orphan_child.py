"""attack25: a stopped (or wedged) snapshot child outlives a node killed with -9, for good.

A child that is still encoding when its node dies ends when it next writes (EPIPE,
SIGPIPE); one that never writes again (SIGSTOP, or stuck) is never told: nothing ties it
to its parent (no PR_SET_PDEATHSIG). `raftkv serve` started in its own session (as
`raftkv up` and chaos' LocalCluster start it) leaves an orphaned process group that the
kernel does not SIGHUP, since it was orphaned from the start. The child stays, re-parented
to init, holding its copy-on-write image of the dead node's memory (tests/attack/
chaos_snapshot_child.py: three such stopped children after 40 s of kills, ppid 1, state T).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

NODE = """
import os, signal, trio
from raftkv.node.snapshot_child import SnapshotChild

def encode():
    os.kill(os.getpid(), signal.SIGSTOP)  # as `kill -STOP <child>` from outside
    return b"x"

async def main():
    child = SnapshotChild(encode)
    print(child.pid, flush=True)
    await child.stream_to(list)

trio.run(main)
"""


def state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll another process's state (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout} s")
        time.sleep(0.01)


def test_a_stopped_child_does_not_outlive_its_killed_node() -> None:
    node = subprocess.Popen([sys.executable, "-c", NODE], stdout=subprocess.PIPE,
                            start_new_session=True, env={**os.environ})
    assert node.stdout is not None
    child = int(node.stdout.readline())
    try:
        wait_for(lambda: state(child) == "T", "the child did not stop")
        node.kill()  # kill -9 of the node's pid
        node.wait(timeout=15)
        # Gone (or a zombie about to be reaped by init) soon after its node.
        wait_for(lambda: state(child) in (None, "Z"),
                 f"the stopped child {child} still exists (state {state(child)})")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        node.kill()
        node.wait(timeout=15)
