"""``raftkv-chaos image build``: the raftkv:latest image, on machines with or without a registry.

Why it is more than ``docker build .``: these machines reach PyPI and Debian's mirror but no
container registry, and their sandbox forbids raising rlimits and crun's cgroup handling.
So, in order, each step only where it is needed:

1. podman only: ``/etc/containers/containers.conf`` with lowered default ulimits and
   ``runtime = "runc"``, written if the file is missing (an existing one is left alone).
2. The base image: ``python:3.11-slim`` if the engine has it or can pull it; otherwise
   ``localhost/raftkv-base`` made with debootstrap (Debian's minbase plus python3,
   python3-venv, ca-certificates) from the mirror apt already uses, and imported. It is
   kept, so later builds reuse it.
3. The project's wheels, built on the host (which reaches PyPI; a container cannot without
   the host's certificates) into ``.wheels/`` of the build context.
4. ``ENGINE build --build-arg BASE=... -t raftkv:latest .``: the Dockerfile installs those
   wheels with ``--no-index`` into a venv.

Every command goes through ``Host`` so tests can check the plan without an engine.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "raftkv:latest"
UPSTREAM_BASE = "python:3.11-slim"
LOCAL_BASE = "localhost/raftkv-base:bookworm"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
PODMAN_CONF = """\
# Written by `raftkv-chaos image build`: this sandbox forbids raising rlimits (so the
# defaults are lowered) and crun fails on its cgroup layout (so runc).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
SOURCE_LABEL = "raftkv.source-digest"
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "Dockerfile", ".dockerignore",
           "raftkv", "wire", "client", "chaos")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


class ImageError(Exception):
    """A build step failed; the message says which and why."""


def debian_mirror(sources: Iterable[Path] = APT_SOURCES) -> str:
    """The first Debian archive URI apt is configured with (one-line or deb822 format).

    Security and ports archives are skipped: debootstrap needs the main archive.
    """
    files: list[Path] = []
    for path in sources:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    for file in files:
        text = file.read_text(errors="replace")
        if file.suffix == ".sources":
            uris = [u for stanza in text.split("\n\n")
                    if re.search(r"^Types:.*\bdeb\b", stanza, re.M)
                    and not re.search(r"^Enabled:\s*no", stanza, re.M | re.I)
                    for m in re.finditer(r"^URIs:\s*(.+)$", stanza, re.M)
                    for u in m.group(1).split()]
        else:
            uris = [m.group(1) for m in re.finditer(
                r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)]
        for uri in uris:
            if uri.startswith(("http://", "https://", "file:")) and "security" not in uri:
                return uri
    raise ImageError("no Debian mirror found in the apt configuration "
                     f"({', '.join(map(str, sources))}): cannot debootstrap a base image")


Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run one command, output captured (the caller decides whether a failure is fatal)."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@attrs.define
class Host:
    """What the build touches outside Python: commands, and the engine's config file."""

    run: Run = run_command
    conf_path: Path = CONTAINERS_CONF
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)

    def check(self, argv: Sequence[str], what: str) -> str:
        self.log("+ " + " ".join(argv))
        out = self.run(argv)
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip().splitlines()[-15:]
            raise ImageError(f"{what} failed ({' '.join(argv[:3])}... exit "
                             f"{out.returncode}):\n" + "\n".join(detail))
        return out.stdout


@attrs.frozen
class BuildResult:
    base: str
    base_seconds: float  # 0 when an existing base image was used
    image_seconds: float
    config_written: bool
    built: bool = True  # False: the image was already built from the same sources


def source_digest(context: Path, base: str) -> str:
    """A digest of everything the image is built from (the files the Dockerfile copies, the
    Dockerfile, the base's name): an image labelled with it need not be built again."""
    h = hashlib.sha256(base.encode())
    for name in SOURCES:
        path = context / name
        if not path.exists():
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            h.update(str(f.relative_to(context)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def image_id(engine: str, name: str, host: Host) -> str | None:
    out = host.run([engine, "image", "inspect", "--format", "{{.Id}}", name])
    return out.stdout.strip() or None if out.returncode == 0 else None


def image_label(engine: str, name: str, label: str, host: Host) -> str | None:
    out = host.run([engine, "image", "inspect", "--format",
                    "{{index .Config.Labels \"" + label + "\"}}", name])
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_engine_config(engine: str, host: Host) -> bool:
    """podman: write containers.conf if it is missing. True if it was written."""
    if engine != "podman" or host.conf_path.exists():
        return False
    host.conf_path.parent.mkdir(parents=True, exist_ok=True)
    host.conf_path.write_text(PODMAN_CONF)
    host.log(f"wrote {host.conf_path} (runc, lowered default ulimits)")
    return True


def image_exists(engine: str, name: str, host: Host) -> bool:
    return host.run([engine, "image", "inspect", name]).returncode == 0


def choose_base(engine: str, host: Host, base: str | None) -> str | None:
    """The base to use without building one: given, present, or pullable. None: build."""
    if base is not None:
        return base
    for name in (UPSTREAM_BASE, LOCAL_BASE):
        if image_exists(engine, name, host):
            return name
    pulled = host.run([engine, "pull", UPSTREAM_BASE])
    if pulled.returncode == 0:
        return UPSTREAM_BASE
    host.log(f"no registry answers ({(pulled.stderr or '').strip().splitlines()[-1:]}); "
             f"making {LOCAL_BASE} with debootstrap")
    return None


def build_local_base(engine: str, host: Host, mirror: str) -> None:
    """debootstrap a minimal Debian with Python into a temporary directory and import it."""
    if shutil.which("debootstrap") is None and host.run is run_command:
        raise ImageError("debootstrap is not installed (apt-get install debootstrap; "
                         ".ci/container-engine does it)")
    with tempfile.TemporaryDirectory(prefix="raftkv-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        host.check(["debootstrap", "--variant=minbase",
                    "--include=" + ",".join(BASE_PACKAGES), SUITE, str(rootfs), mirror],
                   "debootstrap of the base image")
        tarball = Path(tmp) / "rootfs.tar"
        host.check(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], "packing the base")
        host.check([engine, "import", "--change", 'CMD ["/bin/bash"]', str(tarball),
                    LOCAL_BASE], "importing the base image")


def build_wheels(host: Host, context: Path) -> Path:
    """The project's wheel and its dependencies' into ``context/.wheels`` (emptied first)."""
    wheels = context / ".wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    host.check([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
                str(context)], "building the wheels on the host")
    return wheels


def build(engine: str = "podman", base: str | None = None, tag: str = IMAGE,
          context: Path = ROOT, host: Host | None = None, force: bool = False) -> BuildResult:
    """Everything in the module docstring, in order; raises ImageError with the reason."""
    host = host or Host()
    if host.run is run_command and shutil.which(engine) is None:
        raise ImageError(f"{engine} is not installed (.ci/container-engine installs podman)")
    written = ensure_engine_config(engine, host)
    # A broken engine answers every later question "no such image": ask it first.
    host.check([engine, "info"], f"starting {engine} (`{engine} info`)")
    chosen = choose_base(engine, host, base)
    base_seconds = 0.0
    if chosen is None:
        start = time.monotonic()
        build_local_base(engine, host, debian_mirror())
        base_seconds = time.monotonic() - start
        chosen = LOCAL_BASE
    digest = source_digest(context, chosen)
    if not force and image_label(engine, tag, SOURCE_LABEL, host) == digest:
        host.log(f"{tag} is up to date (built from these sources on {chosen})")
        return BuildResult(chosen, base_seconds, 0.0, written, built=False)
    previous = image_id(engine, tag, host)
    start = time.monotonic()
    build_wheels(host, context)
    # podman writes OCI images by default, which have no HEALTHCHECK: ask for docker's.
    fmt = ["--format", "docker"] if engine == "podman" else []
    host.check([engine, "build", *fmt, "--build-arg", f"BASE={chosen}", "--tag", tag,
                "--label", f"{SOURCE_LABEL}={digest}",
                "--file", str(context / "Dockerfile"), str(context)], "building the image")
    seconds = time.monotonic() - start
    if previous and previous != image_id(engine, tag, host):
        # The image this tag named is now unnamed (~300 MB a build): drop it unless in use.
        host.run([engine, "rmi", previous])
    # So is the build stage's (only dangling ones go: the Dockerfile labels that stage).
    host.run([engine, "image", "prune", "--force", "--filter", "label=raftkv.stage=build"])
    return BuildResult(chosen, base_seconds, seconds, written)


def engine_default() -> str:
    """podman where it is installed (these machines), else docker."""
    return os.environ.get("RAFTKV_ENGINE") or ("podman" if shutil.which("podman")
                                                else "docker")
