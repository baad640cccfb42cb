"""Applying an entry must be deterministic; running out of memory is not (attack2 branch,
round 2). Fails today.

``KVStateMachine.apply`` and ``Applier._apply_one`` (raftkv.node.apply) turn *any*
exception into an error reply and go on applying ("a bug must not stop the apply loop;
every replica agrees"). A ``MemoryError`` is the exception replicas do not agree on: it
depends on the process's memory, not on the entry. A replica that fails to allocate one
SETRANGE/APPEND/MSET skips it, answers ``-ERR internal error``, and goes on with a state
that differs from its peers' for good (no checksum compares them; a snapshot it sends
spreads its version). Redis's answer to a failed allocation is to stop the process
(zmalloc's OOM handler); a stopped replica recovers from its log or a snapshot, a diverged
one never does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = """
    import resource
    from types import SimpleNamespace
    from raftkv.kv import KVStateMachine
    from raftkv.kv.codec import encode_entry
    from raftkv.node.apply import Applier
    from wire.raft import NORMAL

    fake = SimpleNamespace(kv=KVStateMachine())
    # The largest value applying may build (MAX_VALUE_LEN, 8 MiB), zero-filled and copied.
    entry = SimpleNamespace(kind=NORMAL, index=1, term=1,
                            data=encode_entry([b"SETRANGE", b"k", b"8388600", b"x"], 1))
    # Room for the interpreter, not for the value: a replica short of memory.
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size * 1024 + 4 * 1024 * 1024,
                                            resource.RLIM_INFINITY))
    try:
        reply = Applier._apply_one(fake, entry)
    except MemoryError:
        print("stopped")  # the node's task fails: it stops instead of diverging
    else:
        print("applied-as", repr(reply)[:100], "keys", len(fake.kv))
"""


def test_memory_error_while_applying_stops_the_node_instead_of_skipping_the_entry() -> None:
    """Replicas with enough memory store the 8 MiB value; this one must not carry on
    without it. Today the entry becomes ``-ERR internal error ...: MemoryError`` and the
    replica keeps applying later entries with the key missing."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD)],
                          capture_output=True, text=True, timeout=60)
    assert "stopped" in done.stdout, (done.stdout, done.stderr[-1000:])
