"""A forked snapshot refused mid-stream by the free-space check, for real (attack25). Not a
test; needs root (mounts a small tmpfs):

    python tests/attack/disk_full_snapshot_stream.py

One `raftkv serve` node with its data directory on a tmpfs; enough keys that the snapshot
is several MiB; a filler file takes the space so that free space passes the check at the
first pieces and fails further on (SNAPSHOT_HEADROOM 16 MiB). Expected: RAFT SNAPSHOT
answers an error, the node keeps serving, no temp file and no child are left, and once
the filler is gone the next RAFT SNAPSHOT succeeds and the node restarts from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import redis

from chaos.cluster import free_ports

MIB = 1 << 20


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def start(client: int, peer: int, data: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "raftkv", "serve", "--id", "1",
         "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
         "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", data, "--fsync", "never",
         "--snapshot-entries", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_serving(r: redis.Redis) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            r.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> int:
    mnt = tempfile.mkdtemp(prefix="a25-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt], check=True)
    problems = []
    node = None
    try:
        data = os.path.join(mnt, "node")
        client, peer = free_ports(2)
        node = start(client, peer, data)
        r = redis.Redis(port=client, socket_timeout=30)
        wait_serving(r)
        value = b"v" * 1000
        for lo in range(0, 12_000, 500):  # ~12 MiB of state: a ~12 MiB snapshot
            r.mset({f"key:{i}": value for i in range(lo, lo + 500)})
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        # Leave room for the headroom and ~4 MiB of the snapshot: it fails part way.
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (free - 16 * MIB - 4 * MIB))
        try:
            got: object = r.execute_command("RAFT", "SNAPSHOT")
        except redis.ResponseError as exc:
            got = f"error: {exc}"
        print("RAFT SNAPSHOT with the disk nearly full ->", got)
        if isinstance(got, int):
            problems.append("the snapshot was taken although the space was not there")
        print("node serves:", r.set("after", "1"), "children:", children(node.pid),
              "files:", sorted(os.listdir(data)))
        if any(n.endswith(".tmp") and not n.startswith("spare") for n in os.listdir(data)):
            problems.append("a temp file was left")
        os.unlink(filler)
        r.set("more", "1")
        got = r.execute_command("RAFT", "SNAPSHOT")
        print("RAFT SNAPSHOT after freeing space ->", got)
        if not isinstance(got, int):
            problems.append(f"no snapshot after the space came back: {got!r}")
        node.terminate()
        node.wait(timeout=15)
        node = start(client, peer, data)
        wait_serving(r)
        n = sum(1 for lo in range(0, 12_000, 1000)
                for v in r.mget([f"key:{i}" for i in range(lo, lo + 1000)]) if v == value)
        print("after a restart: keys", n, "of 12000")
        if n != 12_000:
            problems.append(f"restart lost keys: {n}")
    finally:
        if node is not None:
            node.kill()
            node.wait(timeout=15)
        subprocess.run(["umount", mnt], check=False)
        os.rmdir(mnt)
    print("OK" if not problems else f"FAILED {problems}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
