"""With SIGCHLD ignored, ``SnapshotChild.kill`` SIGKILLs whatever process took the
encoder's pid (attack25). Not a test; run as root in a pid namespace of its own (it steers
pid allocation through ns_last_pid, which must not touch anyone else's processes):

    unshare --pid --fork --mount-proc python tests/attack/pid_reuse_sigchld.py

The kernel reaps children itself when SIGCHLD is ignored, so the encoder's pid is free as
soon as it exits, while ``SnapshotChild.pid`` still holds it. When the consumer returns
without reading the pipe to its end (``prepare_compact``'s early returns: not newer, a
leader's snapshot meanwhile, no space for the first piece), ``stream_to``'s ``kill``
signals that pid: here an unrelated ``sleep`` given the same pid dies of SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import trio

from raftkv.node.snapshot_child import SnapshotChild


def main() -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # as inherited from a supervisor
    child = SnapshotChild(lambda: b"x")
    pid = child.pid
    while os.path.exists(f"/proc/{pid}"):  # exits at once; the kernel reaps it
        time.sleep(0.01)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # (so that we may wait for the victim)
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    victim = subprocess.Popen(["sleep", "60"])
    if victim.pid != pid:
        print(f"could not place the victim at {pid} (got {victim.pid})")
        victim.kill()
        return 2
    started = time.monotonic()
    trio.run(child.stream_to, lambda pieces: None)  # a consumer that returns early
    try:
        code = victim.wait(timeout=5)
    except subprocess.TimeoutExpired:
        victim.kill()
        print("OK: the victim still runs")
        return 0
    # (kill() also reaped it: Popen then reports 0, having lost the real status)
    print(f"FAILED: victim 'sleep 60' at the encoder's old pid {pid} ended after "
          f"{time.monotonic() - started:.2f} s (returncode {code}): SnapshotChild.kill() "
          "signalled (and reaped) an unrelated process")
    return 1


if __name__ == "__main__":
    sys.exit(main())
