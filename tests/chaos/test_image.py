"""``raftkv-chaos image build``'s plan, with a recorded host: no engine needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from chaos import image
from chaos.image import Host, ImageError, build, debian_mirror, source_digest


def test_the_mirror_is_read_from_apt_in_either_format(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert debian_mirror([tmp_path / "missing.list", d]) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# deb http://old.example/debian bookworm main\n"
                        "deb [signed-by=/k.gpg] https://one.example/debian bookworm main\n")
    assert debian_mirror([one_line, d]) == "https://one.example/debian"
    (tmp_path / "empty.list").write_text("deb-src http://src.example/debian bookworm main\n")
    with pytest.raises(ImageError, match="no Debian mirror"):
        debian_mirror([tmp_path / "empty.list"])


class Recorded:
    """Answers commands like an engine with ``present`` images and no registry."""

    def __init__(self, present: set[str], labels: dict[str, str] | None = None) -> None:
        self.present = present
        self.labels = labels or {}
        self.commands: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.commands.append(argv)
        code, out = 0, ""
        if argv[1:3] == ["image", "inspect"]:
            code = 0 if argv[-1] in self.present else 1
            out = self.labels.get(argv[-1], "")
        elif argv[1:2] == ["pull"]:
            code = 125
        return subprocess.CompletedProcess(argv, code, out, "registry unreachable" * code)


def host(tmp_path: Path, run: Recorded) -> Host:
    return Host(run=run, conf_path=tmp_path / "containers.conf", log=lambda line: None)


def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "raftkv").mkdir(parents=True, exist_ok=True)
    (ctx / "raftkv" / "a.py").write_text("x = 1\n")
    (ctx / "Dockerfile").write_text("FROM x\n")
    return ctx


def test_without_a_registry_it_writes_the_config_makes_the_base_and_builds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "debian_mirror", lambda: "http://mirror.example/debian")
    run = Recorded(present=set())
    result = build("podman", context=context(tmp_path), host=host(tmp_path, run))
    conf = (tmp_path / "containers.conf").read_text()
    assert 'runtime = "runc"' in conf and "nofile=1024:1024" in conf
    assert result.config_written and result.built and result.base == image.LOCAL_BASE
    tools = [c[0] if c[0] != sys.executable else "pip" for c in run.commands]
    assert run.commands[0] == ["podman", "info"]
    assert tools == (["podman"] * 4 + ["debootstrap", "tar", "podman"]
                     + ["podman"] * 2 + ["pip", "podman", "podman"])
    debootstrap = run.commands[4]
    assert debootstrap[1:3] == ["--variant=minbase", "--include=python3,python3-venv,"
                                                     "ca-certificates"]
    assert debootstrap[-1] == "http://mirror.example/debian"
    assert run.commands[6][:2] == ["podman", "import"] and run.commands[6][-1] == image.LOCAL_BASE
    final = run.commands[-2]
    assert run.commands[-1][1:3] == ["image", "prune"]
    assert final[:4] == ["podman", "build", "--format", "docker"]
    assert f"BASE={image.LOCAL_BASE}" in final and "raftkv:latest" in final


def test_an_existing_config_and_base_are_kept_and_an_unchanged_image_is_not_rebuilt(
        tmp_path: Path) -> None:
    (tmp_path / "containers.conf").write_text("# mine\n")
    ctx = context(tmp_path)
    digest = source_digest(ctx, image.LOCAL_BASE)
    run = Recorded(present={image.LOCAL_BASE, "raftkv:latest"},
                   labels={"raftkv:latest": digest + "\n"})
    result = build("podman", context=ctx, host=host(tmp_path, run))
    assert (tmp_path / "containers.conf").read_text() == "# mine\n"
    assert not result.config_written and not result.built
    assert not any(c[1] in ("build", "import", "pull") for c in run.commands)
    # A changed source changes the digest: then it builds.
    (ctx / "raftkv" / "a.py").write_text("x = 2\n")
    assert source_digest(ctx, image.LOCAL_BASE) != digest
    run2 = Recorded(present={image.LOCAL_BASE, "raftkv:latest"},
                    labels={"raftkv:latest": digest})
    assert build("podman", context=ctx, host=host(tmp_path, run2)).built


def test_docker_with_a_given_base_writes_no_podman_config(tmp_path: Path) -> None:
    run = Recorded(present=set())
    result = build("docker", base="python:3.11-slim", context=context(tmp_path),
                   host=host(tmp_path, run))
    assert not (tmp_path / "containers.conf").exists() and not result.config_written
    assert run.commands[-2][:3] == ["docker", "build", "--build-arg"]


def test_a_failing_step_says_which_and_why(tmp_path: Path) -> None:
    def broken(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 125, "", 'runtime "crun" not found')
    with pytest.raises(ImageError, match=r'(?s)starting podman.*failed.*"crun" not found'):
        build("podman", context=context(tmp_path),
              host=Host(run=broken, conf_path=tmp_path / "c", log=lambda line: None))

    def fail(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        code = 0 if argv[1:2] == ["info"] else 1
        return subprocess.CompletedProcess(list(argv), code, "", "Error: no space left")
    with pytest.raises(ImageError, match=r"(?s)building the wheels.*failed.*no space left"):
        build("docker", base="b", context=context(tmp_path),
              host=Host(run=fail, conf_path=tmp_path / "c", log=lambda line: None))


def test_the_image_a_rebuild_replaces_is_removed(tmp_path: Path) -> None:
    class Rebuilt(Recorded):
        ids = iter(["old-id", "new-id"])

        def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
            if "{{.Id}}" in argv:
                self.commands.append(list(argv))
                return subprocess.CompletedProcess(list(argv), 0, next(self.ids) + "\n", "")
            return super().__call__(argv)

    run = Rebuilt(present={image.LOCAL_BASE, "raftkv:latest"})
    assert build("podman", context=context(tmp_path), host=host(tmp_path, run)).built
    assert run.commands[-2] == ["podman", "rmi", "old-id"]
