"""`raftkv secrets init` and docker-compose.secure.yml without an engine: the directory it
makes is complete, private and made once; the compose file names only serve options and
only files that directory holds; and `raftkv serve` configured exactly as a secured
container (its environment, the /secrets paths pointing at a real directory) passes
protected mode without --insecure, with TLS on the metrics port and a token."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import raftkv.serve
from raftkv import local_secrets
from raftkv.cli import main, serve
from raftkv.server.acl import AccessControl
from raftkv.server.http_auth import MetricsSecurity

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("ca.crt", "ca.key", "node.crt", "node.key", "client.crt", "client.key",
           "peer-secret", "metrics-token", "admin-password", "users.acl", "ready")


def secure_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.secure.yml").read_text())


def test_secrets_init_makes_everything_once_and_privately(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["secrets", "init", "--out", str(out), "--hosts",
                                       "node1,127.0.0.1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(SECRETS)
    for name in ("ca.key", "node.key", "client.key", "peer-secret", "metrics-token",
                 "admin-password", "users.acl"):
        assert (out / name).stat().st_mode & 0o077 == 0, name
    before = {name: (out / name).read_bytes() for name in SECRETS}
    again = CliRunner().invoke(main, ["secrets", "init", "--out", str(out)])
    assert again.exit_code == 0 and "nothing to make" in again.output
    assert {name: (out / name).read_bytes() for name in SECRETS} == before
    # The ACL file: the default user is off, admin logs in with the password file's
    # password, which the file itself does not hold.
    password = (out / "admin-password").read_text().strip()
    assert password not in (out / "users.acl").read_text()
    acl = AccessControl.configure("", str(out / "users.acl"))
    assert acl.required and acl.authenticate("admin", password.encode())
    assert not acl.authenticate("default", b"")
    assert not acl.authenticate("admin", b"wrong")


def test_secrets_init_completes_a_partial_directory_but_not_partial_certificates(
        tmp_path: Path) -> None:
    local_secrets.init(tmp_path / "a", ("127.0.0.1",))
    (tmp_path / "a" / "metrics-token").unlink()
    (tmp_path / "a" / "ready").unlink()
    assert [p.name for p in local_secrets.init(tmp_path / "a", ())] == ["metrics-token",
                                                                        "ready"]
    (tmp_path / "a" / "node.key").unlink()
    with pytest.raises(local_secrets.BadFiles, match=r"node\.key"):
        local_secrets.init(tmp_path / "a", ())
    bad = CliRunner().invoke(main, ["secrets", "init", "--out", str(tmp_path / "b"),
                                    "--user", "x y"])
    assert bad.exit_code == 2


def node_env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in secure_compose()["services"][name]["environment"].items()}


def test_the_secure_compose_file_names_only_serve_options_and_init_files() -> None:
    known = {p.envvar for p in serve.params if isinstance(p.envvar, str)}
    for name in ("node1", "node2", "node3"):
        env = node_env(name)
        assert set(env) <= known, set(env) - known
        assert "RAFTKV_INSECURE" not in env
        paths = {v for v in env.values() if v.startswith("/secrets/")}
        assert {Path(p).name for p in paths} <= set(SECRETS)
        assert {"RAFTKV_TLS_CERT", "RAFTKV_PEER_TLS_CA", "RAFTKV_PEER_SECRET_FILE",
                "RAFTKV_ACL_FILE", "RAFTKV_METRICS_TOKEN_FILE"} <= set(env)
        service = secure_compose()["services"][name]
        assert "secrets:/secrets:ro" in service["volumes"]
    init = secure_compose()["services"]["secrets"]
    assert init["entrypoint"][:3] == ["raftkv", "secrets", "init"]
    assert "secrets:/secrets" in init["volumes"]


def test_a_secured_container_configuration_starts_without_insecure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`raftkv serve` with node1's environment, /secrets mapped to a real directory."""
    local_secrets.init(tmp_path / "secrets", ("node1", "127.0.0.1"))
    env = {k: v.replace("/secrets/", f"{tmp_path}/secrets/").replace("/data",
                                                                      str(tmp_path / "data"))
           for k, v in node_env("node1").items()}
    started: list[Any] = []
    monkeypatch.setattr(raftkv.serve, "run_node", started.append)
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.output  # nothing insecure, nothing open
    [settings] = started
    assert settings.client_addr == "0.0.0.0:7001" and not settings.insecure
    security = MetricsSecurity.from_settings(settings)
    assert security.scheme == "https" and security.token is not None
    # Without the ACL file the same container must refuse to start (protected mode).
    del env["RAFTKV_ACL_FILE"]
    refused = CliRunner().invoke(main, ["serve"], env=env)
    assert refused.exit_code == 2 and "refusing to start" in refused.output


def test_docker_compose_config_accepts_the_secure_file() -> None:
    if not shutil.which("docker-compose"):
        raise AssertionError("no docker-compose (.ci/debian-packages installs it)")
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.secure.yml"),
                          "config"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert resolved["services"]["node2"]["container_name"] == "raftkv-secure-node2"
    assert resolved["services"]["node3"]["environment"]["RAFTKV_ID"] == "3"
