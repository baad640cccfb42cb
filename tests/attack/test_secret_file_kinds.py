"""Secret files that are pipes (attack5 branch, round 5). Failed before the fix.

``--peer-secret-file <(vault read ...)`` (a shell's process substitution: a pipe at
``/dev/fd/N``) is a natural way to hand a node a secret. The CLI check read the pipe,
then the node read it again at start, found it empty and died with a traceback saying
"/dev/fd/63 holds 0 bytes; at least 16 are needed (e.g. `openssl rand -hex 32 >
/dev/fd/63`)". ``--metrics-token-file`` the same. (A named FIFO without a writer blocked
the CLI in ``open``.)

A secret is read more than once (the check, the start), so like ``--acl-file`` (round 3)
it must be a regular file: anything else is refused by the check, with one usage error
naming the flag, before anything starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.cluster import free_ports

pytestmark = pytest.mark.timeout(60)

SECRET = b"0123456789abcdef0123456789abcdef\n"


@pytest.mark.parametrize("flag", ["--peer-secret-file", "--metrics-token-file"])
def test_a_pipe_is_refused_with_one_usage_error(tmp_path: Path, flag: str) -> None:
    client, peer, metrics = free_ports(3)
    read, write = os.pipe()
    os.write(write, SECRET)
    os.close(write)
    extra = ["--metrics-addr", f"127.0.0.1:{metrics}", "--metrics-plain-http"] if (
        flag == "--metrics-token-file") else []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "raftkv", "serve", "--id", "1", "--fsync", "never",
             "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
             "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(tmp_path / "d"),
             *extra, flag, f"/dev/fd/{read}"],
            pass_fds=[read], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the node started: {exc.stderr!r:.600}")
    finally:
        os.close(read)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert flag in done.stderr and "not a regular file" in done.stderr, done.stderr[-1500:]
