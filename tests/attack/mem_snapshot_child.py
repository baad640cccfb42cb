"""Memory of a node and of its snapshot child while RAFT SNAPSHOT encodes 100k keys
(attack25). Not a test:

    python tests/attack/mem_snapshot_child.py fork|thread [KEYS] [VALUE_BYTES]

One ``raftkv serve`` node (fsync never); KEYS keys written with MSET; then RAFT SNAPSHOT
while a client PINGs and this samples, every ~2 ms, the node's RSS and the child's RSS, Pss
and private bytes (/proc/PID/smaps_rollup). Prints the node's RSS before and its peak, and the
child's peaks: what the machine holds for a snapshot, not only the node.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time

import redis
from proc_tree import children

from chaos.cluster import free_ports


def rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) // 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out




def main(mode: str, keys: int, size: int) -> None:
    client, peer = free_ports(2)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "raftkv", "serve", "--id", "1",
               "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
               "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", tmp, "--fsync", "never",
               "--snapshot-entries", "0", f"--snapshot-{mode}"]
        node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cli = ["redis-cli", "-p", str(client)]
            while subprocess.run([*cli, "PING"], capture_output=True).stdout.strip() != b"PONG":
                time.sleep(0.1)
            r = redis.Redis(port=client, socket_timeout=30)
            value = b"v" * size
            for lo in range(0, keys, 1000):
                r.mset({f"key:{i}": value for i in range(lo, min(lo + 1000, keys))})
            print("DBSIZE", subprocess.run([*cli, "DBSIZE"], capture_output=True,
                                           text=True).stdout.strip())
            time.sleep(1)
            base = rollup(node.pid)
            peak = dict(base)
            kid_peak: dict[str, int] = {}
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    for k, v in rollup(node.pid).items():
                        peak[k] = max(peak.get(k, 0), v)
                    for kid in children(node.pid):
                        for k, v in rollup(kid).items():
                            kid_peak[k] = max(kid_peak.get(k, 0), v)
                    time.sleep(0.002)

            rtts: list[float] = []

            def ping() -> None:  # the loop's responsiveness while the snapshot runs
                pr = redis.Redis(port=client, socket_timeout=30)
                while not done.is_set():
                    t1 = time.perf_counter()
                    pr.ping()
                    rtts.append(time.perf_counter() - t1)

            t = threading.Thread(target=sample)
            t.start()
            pinger = threading.Thread(target=ping)
            pinger.start()
            time.sleep(0.3)
            idle = sorted(rtts)
            t0 = time.monotonic()
            r = subprocess.run([*cli, "RAFT", "SNAPSHOT"], capture_output=True, text=True)
            took = time.monotonic() - t0
            time.sleep(0.5)
            done.set()
            t.join()
            pinger.join()
            during = sorted(rtts[len(idle):])
            print(f"mode={mode} keys={keys} RAFT SNAPSHOT -> {r.stdout.strip()} in {took:.2f}s")
            print(f"  node Rss {base.get('Rss')} -> peak {peak.get('Rss')} MiB "
                  f"(Private_Dirty {base.get('Private_Dirty')} -> {peak.get('Private_Dirty')})")
            print(f"  PING max {1000 * max(idle):.1f} ms idle, {1000 * during[-1]:.1f} ms "
                  f"around the snapshot (p99 {1000 * during[int(len(during) * 0.99)]:.1f} ms, "
                  f"{len(during)} pings)")
            if kid_peak:
                print(f"  child peak Rss {kid_peak.get('Rss')} Pss {kid_peak.get('Pss')} "
                      f"Private_Dirty {kid_peak.get('Private_Dirty')} MiB")
        finally:
            node.terminate()
            node.wait(timeout=15)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
         int(sys.argv[3]) if len(sys.argv) > 3 else 100)
