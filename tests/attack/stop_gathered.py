"""attack24b: what clients of a single node get when it stops (SIGTERM) under a load of
lone SETs, with write runs gathered (default) and with ``--write-run 1``. Not a test:
``python tests/attack/stop_gathered.py [ROUNDS] [CLIENTS]``.

Each client sends ``SET k<i> <n>`` and waits for the reply, again and again; the node
gets SIGTERM. Per client the last request ends one of three ways: a reply (``+OK`` or an
error such as "TRYAGAIN the node is shutting down"), or the connection closed with no
reply. A write gathered for the ready loop's next look (raftkv.node.gathered) is in no
table ``Node.stop``'s ``fail_all`` answers, so with runs the closes without a reply grow.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

from chaos.cluster import free_ports
from wire.resp import encode_command


def client(port: int, i: int, out: Counter[str], go: threading.Event) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        out["no connection"] += 1
        return
    n = 0
    go.wait()
    while True:
        n += 1
        try:
            sock.sendall(encode_command(b"SET", b"k%d" % i, b"%d" % n))
        except OSError:
            out["send failed"] += 1
            return
        try:
            data = sock.recv(4096)
        except OSError:
            out["closed, no reply (reset)"] += 1
            return
        if not data:
            out["closed, no reply"] += 1
            return
        if not data.startswith(b"+OK"):
            out[data.split(b"\r\n")[0][:45].decode()] += 1
            return


def round_(write_run: int, clients: int) -> Counter[str]:
    peer, cport = free_ports(2)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raftkv", "serve", "--id", "1",
             "--client-addr", f"127.0.0.1:{cport}", "--peer-addr", f"127.0.0.1:{peer}",
             "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", tmp, "--fsync", "never",
             "--write-run", str(write_run)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    s = socket.create_connection(("127.0.0.1", cport), timeout=1)
                    s.sendall(encode_command(b"SET", b"warm", b"1"))
                    if s.recv(100).startswith(b"+OK"):
                        s.close()
                        break
                    s.close()
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("node did not start")
                time.sleep(0.1)
            out: Counter[str] = Counter()
            go = threading.Event()
            threads = [threading.Thread(target=client, args=(cport, i, out, go))
                       for i in range(clients)]
            for t in threads:
                t.start()
            go.set()
            time.sleep(0.7)
            proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(15)
            return out
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    for write_run in (32, 1):
        total: Counter[str] = Counter()
        for _ in range(rounds):
            total += round_(write_run, clients)
        print(f"--write-run {write_run}: {rounds} stops x {clients} clients: {dict(total)}")


if __name__ == "__main__":
    main()
