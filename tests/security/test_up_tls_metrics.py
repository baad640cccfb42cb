"""``raftkv up --tls`` secures the metrics port too, and every line its banner prints works
as printed: redis-cli over TLS with the password, curl /metrics over HTTPS with the token,
curl /readyz without it; plain HTTP to the metrics port and /metrics without the token
get nothing. The banner shows neither the password nor the token."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from chaos.cluster import free_port_base, raftkv_up

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def run_line(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(line, shell=True, capture_output=True, text=True, timeout=30,
                          env=env, check=False)


def test_up_tls_prints_working_https_metrics_lines(tmp_path: Path) -> None:
    base = free_port_base(1)
    data = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    with raftkv_up(["--tls", "--nodes", "1", "--data-dir", str(data),
                    "--port-base", str(base), "--fsync", "never"], env) as (_, lines):
        banner = "".join(lines)
        token = (data / "metrics-token").read_text().strip()
        password = (data / "client-password").read_text().strip()
        assert (data / "metrics-token").stat().st_mode & 0o077 == 0
        assert token not in banner and password not in banner
        assert f"metrics: https://127.0.0.1:{base + 2001}/metrics" in banner

        def command(marker: str) -> str:
            return next(line.split("  ")[1] for line in lines if marker in line)

        metrics = run_line(command("/metrics") + " -sS -w '\\n%{http_code}'", env)
        assert metrics.stdout.endswith("\n200"), metrics
        assert "raftkv_is_leader 1.0" in metrics.stdout
        ready = run_line(command("/readyz") + " -sS -w '\\n%{http_code}'", env)
        assert ready.stdout.endswith("\n200"), ready
        redis = run_line(command("redis-cli --tls") + " SET up tls", env)
        assert redis.stdout.strip() == "OK", redis
        # Without the token /metrics is 401; plain HTTP gets no HTTP answer at all.
        ca = data / "certs" / "ca.crt"
        no_token = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--cacert", str(ca),
                                   f"https://127.0.0.1:{base + 2001}/metrics"],
                                  capture_output=True, text=True, timeout=30, check=False)
        assert no_token.stdout == "401", no_token
        plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                f"http://127.0.0.1:{base + 2001}/readyz"],
                               capture_output=True, text=True, timeout=30, check=False)
        assert plain.returncode != 0 and plain.stdout == "000", plain
