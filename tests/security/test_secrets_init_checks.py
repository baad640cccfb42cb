"""`raftkv secrets init` keeps only files a node would accept: a short peer secret, a
secret readable by others, a symbolic link (even a dangling one), a bad token, an ACL file
that does not let the admin in with admin-password, a certificate that does not load: each
is one line, nothing is written (not even `ready`), the exit code is 1; `--force` replaces
them (a link is removed, its target untouched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkv.cli import main
from raftkv.node.peer_auth import load_secret


def init(out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["secrets", "init", "--out", str(out), *extra])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete directory (certificates take a while to make), copied per test."""
    out = tmp_path_factory.mktemp("made") / "s"
    code, output = init(out)
    assert code == 0, output
    return out


def copy_of(made: Path, tmp_path: Path) -> Path:
    out = tmp_path / "s"
    out.mkdir()
    for path in made.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
        os.chmod(out / path.name, path.stat().st_mode & 0o777)
    return out


def test_a_complete_good_directory_is_kept(made: Path, tmp_path: Path) -> None:
    out = copy_of(made, tmp_path)
    assert init(out) == (0, f"{out}: complete, nothing to make\n")


def test_bad_files_are_refused_one_line_each_and_ready_is_not_written(
        made: Path, tmp_path: Path) -> None:
    out = copy_of(made, tmp_path)
    (out / "ready").unlink()
    (out / "peer-secret").write_text("short\n")  # 5 bytes: the node refuses it
    (out / "metrics-token").chmod(0o644)
    (out / "admin-password").unlink()
    (out / "admin-password").symlink_to(tmp_path / "nowhere")  # dangling
    (out / "node.key").write_text("not a key\n")
    code, output = init(out)
    assert code == 1, output
    lines = output.splitlines()
    assert any(f"peer secret file {out / 'peer-secret'} holds 5 bytes; at least 16" in line
               for line in lines), output
    assert any(f"{out / 'metrics-token'}: has mode 0644" in line for line in lines), output
    assert any(f"{out / 'admin-password'}: is a symbolic link" in line
               for line in lines), output
    assert any("node.key" in line and "cannot load" in line for line in lines), output
    assert "--force" in lines[-1]
    assert not os.path.lexists(out / "ready")
    assert (out / "peer-secret").read_text() == "short\n"
    assert not (tmp_path / "nowhere").exists()  # the link was not followed


def test_an_acl_file_that_does_not_match_the_password_is_refused(
        made: Path, tmp_path: Path) -> None:
    out = copy_of(made, tmp_path)
    (out / "admin-password").write_text("another password\n")
    code, output = init(out)
    assert code == 1
    assert f"{out / 'users.acl'}: does not let user admin in" in output


def test_a_link_to_a_good_file_is_refused_too(made: Path, tmp_path: Path) -> None:
    out = copy_of(made, tmp_path)
    (tmp_path / "elsewhere").write_bytes((out / "peer-secret").read_bytes())
    (tmp_path / "elsewhere").chmod(0o600)
    (out / "peer-secret").unlink()
    (out / "peer-secret").symlink_to(tmp_path / "elsewhere")
    code, output = init(out)
    assert code == 1 and "peer-secret: is a symbolic link" in output


def test_force_replaces_bad_files_and_never_touches_a_links_target(
        made: Path, tmp_path: Path) -> None:
    out = copy_of(made, tmp_path)
    target = tmp_path / "target"
    target.write_text("precious\n")
    (out / "peer-secret").unlink()
    (out / "peer-secret").symlink_to(target)
    (out / "admin-password").write_text("")  # empty: remade, and users.acl with it
    (out / "metrics-token").chmod(0o640)
    ca_before = (out / "ca.crt").read_bytes()
    code, output = init(out, "--force")
    assert code == 0, output
    assert target.read_text() == "precious\n"
    assert not (out / "peer-secret").is_symlink() and len(load_secret(out / "peer-secret")) >= 16
    assert (out / "metrics-token").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.crt").read_bytes() == ca_before  # good certificates kept
    assert init(out) == (0, f"{out}: complete, nothing to make\n")  # all consistent now
    (out / "client.crt").write_text("junk")
    code, output = init(out, "--force")
    assert code == 0, output
    assert (out / "ca.crt").read_bytes() != ca_before  # the whole set remade
    assert init(out)[0] == 0
