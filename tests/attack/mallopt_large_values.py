"""CPU and page faults of a 3-node cluster's nodes under large SETs, with and without the
fixed glibc mmap threshold (attack25; raftkv.node.large_blocks). Not a test:

    [A25_KEYS=20] python tests/attack/mallopt_large_values.py on|off VALUE_BYTES REQUESTS [PIPELINE]

``off`` runs a copy of this tree (``git archive HEAD``) whose ``run_node`` does not call
``fix_mmap_threshold``; it prints, per node, the CPU seconds (user+sys) and minor page
faults the run cost, and the run's wall time.

Result: no difference. -d 2000000 (2 pairs): ~2650-3100 faults/SET and 10-12.8 ms CPU/SET
per node either way; 38c61b2^ (before the change) the same. -d 300000 -P 8: ~210-290
faults/SET either way. (A first version made ``off`` by patching the function from a
``sitecustomize`` that imported raftkv.serve before ``-m raftkv`` ran: that gave ~1000
faults/SET and ~35% less CPU, but importing the same way with the threshold fixed gave
~3000 again, and a plain start without it too: glibc's dynamic threshold ends up
differently with another heap history, and a normal start does not get the cheap one.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chaos.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
CALL = "    fix_mmap_threshold()  # (process-wide: raftkv.node.large_blocks)\n"


def tree_without_mallopt(into: Path) -> Path:
    """This tree's HEAD, with ``run_node``'s call of ``fix_mmap_threshold`` removed."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    serve = into / "raftkv" / "serve.py"
    text = serve.read_text()
    if CALL not in text:
        raise SystemExit("run_node's fix_mmap_threshold() call not found")
    serve.write_text(text.replace(CALL, "    pass  # (no mallopt)\n"))
    return into


def stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, minor faults) of ``pid`` and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, int(fields[7])


def main(mode: str, size: int, requests: int, pipeline: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as code:
        if mode == "off":  # (LocalCluster's nodes inherit the environment)
            os.environ["PYTHONPATH"] = str(tree_without_mallopt(Path(code)))
        with LocalCluster(Path(tmp), fsync="never",
                          extra_args=["--snapshot-entries", "100000"]) as c:
            run(c, mode, size, requests, pipeline)


def run(c: LocalCluster, mode: str, size: int, requests: int, pipeline: int) -> None:
    leader = c.wait_for_leader()
    host, port = c.client_addr(leader)
    pids = {i: n.proc.pid for i, n in c.nodes.items() if n.proc}
    bench = ["redis-benchmark", "-h", host, "-p", str(port), "-t", "set", "-c", "2",
             "-r", os.environ.get("A25_KEYS", "20"), "-d", str(size), "-P", str(pipeline),
             "-q"]
    subprocess.run([*bench, "-n", str(max(10, requests // 10))], check=True,
                   capture_output=True)  # warm-up: the threshold's state settles
    before = {i: stat(p) for i, p in pids.items()}
    t0 = time.monotonic()
    out = subprocess.run([*bench, "-n", str(requests)], check=True,
                         capture_output=True, text=True).stdout
    wall = time.monotonic() - t0
    after = {i: stat(p) for i, p in pids.items()}
    print(f"mode={mode} size={size} n={requests} P={pipeline} wall={wall:.2f}s "
          f"{out.strip().splitlines()[-1] if out.strip() else ''}")
    for i in sorted(pids):
        cpu = after[i][0] - before[i][0]
        faults = after[i][1] - before[i][1]
        role = "leader" if i == leader else "follower"
        print(f"  node {i} ({role}): cpu {cpu:.2f}s ({1000 * cpu / requests:.2f} ms/SET) "
              f"minflt {faults} ({faults / requests:.0f}/SET)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
         int(sys.argv[4]) if len(sys.argv) > 4 else 1)
