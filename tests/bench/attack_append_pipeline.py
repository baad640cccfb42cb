"""Pipelined 1-byte APPENDs to an 8 MiB value stall every node's event loop (attack10).

Run: .venv/bin/python tests/bench/attack_append_pipeline.py [--appends 200] [--exec]
[--base-port 7760] [--baseline REF]

Values are immutable bytes, so each ``APPEND big y`` copies the whole value on every
replica when its entry applies (70-190 ms for 8 MiB on the shared 2-core machine); a
committed batch of entries is applied in one go on the event loop. So ``--appends`` such
commands sent pipelined (35 bytes each: 7 KB for 200) hold every node's loop for their sum.
With ``--exec`` they go as one MULTI/EXEC instead (bounded at 256 MiB of copies per
transaction, about 32 of them). A probe client meanwhile sends ``SET probe`` to a follower
every 100 ms. Printed: how long the appends took to be acknowledged, each node's
``event loop stalled`` maximum (its log) and term before/after, and the probe's slowest
round trip and failures. With ``--baseline REF`` the same run is done on REF's tree after
this one's, then this tree again (A B A).
"""

from __future__ import annotations

import argparse
import re
import socket
import tempfile
import threading
import time
from pathlib import Path

import redis
from common import BaselineCluster, export_tree, load_line

from chaos.cluster import LocalCluster

BIG = 8 * 1024 * 1024 - 64 * 1024


def _probe(host: str, port: int, stop: threading.Event, out: dict[str, float]) -> None:
    r = redis.Redis(host=host, port=port, socket_timeout=60)
    while not stop.is_set():
        t = time.perf_counter()
        try:
            r.set("probe", "x")
        except redis.RedisError:
            out["failed"] += 1
        out["slowest"] = max(out["slowest"], time.perf_counter() - t)
        stop.wait(0.1)


def run(c: LocalCluster, appends: int, as_exec: bool) -> None:
    c.start()
    while True:  # (a leader change at start answers TRYAGAIN: ask again)
        leader = c.wait_for_leader(timeout=30)
        host, port = c.client_addr(leader)
        try:
            redis.Redis(host=host, port=port, socket_timeout=60).set("big", b"x" * BIG)
            break
        except redis.RedisError:
            time.sleep(0.5)
    time.sleep(1)
    leader = c.wait_for_leader(timeout=30)
    host, port = c.client_addr(leader)
    terms = {i: int(c.info(i)["term"]) for i in c.nodes}
    follower = next(i for i in c.nodes if i != leader)
    stop, probe = threading.Event(), {"slowest": 0.0, "failed": 0}
    thread = threading.Thread(target=_probe, args=(*c.client_addr(follower), stop, probe))
    thread.start()
    time.sleep(0.5)
    one = b"*3\r\n$6\r\nAPPEND\r\n$3\r\nbig\r\n$1\r\ny\r\n"
    payload = (b"*1\r\n$5\r\nMULTI\r\n" + one * appends + b"*1\r\n$4\r\nEXEC\r\n"
               if as_exec else one * appends)
    want = appends + 2 if as_exec else appends
    started = time.perf_counter()
    with socket.create_connection((host, port)) as s:
        s.sendall(payload)
        got = b""
        while got.count(b"\r\n") < want:
            data = s.recv(1 << 16)
            if not data:
                break
            got += data
    took = time.perf_counter() - started
    time.sleep(2)
    stop.set()
    thread.join()
    print(f"  {appends} APPENDs ({len(payload)} bytes{', one EXEC' if as_exec else ''})"
          f" acknowledged in {took:.1f} s; probe slowest {probe['slowest']:.1f} s, "
          f"{probe['failed']} failed", flush=True)
    for i, node in c.nodes.items():
        log = node.log_path.read_text(errors="replace")
        lags = [float(x) for x in re.findall(r"stalled lag_ms=([0-9.]+)", log)]
        print(f"  node {i}: term {terms[i]} -> {int(c.info(i)['term'])}, longest loop "
              f"stall {max(lags, default=0) / 1000:.1f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument("--exec", action="store_true", help="one MULTI/EXEC of the appends")
    ap.add_argument("--base-port", type=int, default=7760)
    ap.add_argument("--baseline", default="")
    a = ap.parse_args()
    print(load_line())
    ports = [(a.base_port + 2 * i, a.base_port + 2 * i + 1) for i in range(3)]
    with tempfile.TemporaryDirectory(prefix="attack-append-") as tmp:
        d = Path(tmp)
        trees = [("this tree", None)]
        if a.baseline:
            trees += [(a.baseline, a.baseline), ("this tree", None)]
        for n, (name, ref) in enumerate(trees):
            print(f"[{name}]", flush=True)
            if ref is None:
                c: LocalCluster = LocalCluster(d / f"this{n}", ports=ports, fsync="never")
            else:
                c = BaselineCluster(d / "base", export_tree(ref, d / "src"), ports=ports,
                                    fsync="never")
            try:
                run(c, a.appends, a.exec)
            finally:
                c.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
