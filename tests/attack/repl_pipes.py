"""raftkv-cli's REPL driven on pipes, for the attack tests that type into it."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading


class Repl:
    """raftkv-cli's REPL on pipes: one line in, its reply's first non-empty line out."""

    def __init__(self, endpoints: str, timeout: float = 20) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "client", "-e", endpoints, "--timeout", str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line:
                self.lines.put(line)

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=60)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
