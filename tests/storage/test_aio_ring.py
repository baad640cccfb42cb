"""raftkv.storage.aio reaps a finished fsync from the context's completion ring in our
memory, not with io_getevents: every fsync still reaped exactly once, across many laps of
the ring (the kernel must see the slots we free, or io_submit would run out of them), and
io_getevents still does it when the ring is not usable."""

from __future__ import annotations

import os
import platform
import select
from pathlib import Path
from typing import Any

import pytest

from raftkv.storage.aio import AioFsync


def syscalls_of(aio: AioFsync) -> list[int]:
    """The syscall numbers ``aio`` makes from now on."""
    made: list[int] = []
    real = aio._syscall

    def spy(number: int, *args: Any) -> int:
        made.append(number)
        return real(number, *args)

    aio._syscall = spy  # type: ignore[assignment]
    return made


def fsync_and_reap(aio: AioFsync, fd: int, rounds: int) -> None:
    for i in range(rounds):
        os.pwrite(fd, b"%d" % i, 0)
        aio.submit(fd, True)
        readable, _, _ = select.select([aio.fileno()], [], [], 10)
        assert readable, "the kernel's fsync did not finish in 10 s"
        assert aio.reap() is True
        assert not aio.in_flight
        assert aio.reap() is False  # (nothing more: each completion is reaped once)


@pytest.fixture
def aio_and_file(tmp_path: Path) -> Any:
    aio = AioFsync.open()
    assert aio is not None  # (Linux >= 4.18: the machine the suite runs on)
    fd = os.open(tmp_path / "wal", os.O_CREAT | os.O_WRONLY, 0o600)
    yield aio, fd
    os.close(fd)
    aio.close()


def test_many_fsyncs_are_reaped_from_the_ring_without_io_getevents(aio_and_file: Any) -> None:
    aio, fd = aio_and_file
    assert (aio._ring is not None) == (platform.machine() == "x86_64")
    if aio._ring is None:
        return  # (elsewhere the syscall path below is the only one)
    laps = 3 * aio._ring[0].nr + 5
    made = syscalls_of(aio)
    fsync_and_reap(aio, fd, laps)
    assert made.count(aio._submit) == laps and aio._getevents not in made


def test_without_a_usable_ring_io_getevents_reaps(aio_and_file: Any) -> None:
    aio, fd = aio_and_file
    aio._ring = None
    made = syscalls_of(aio)
    fsync_and_reap(aio, fd, 5)
    assert made.count(aio._getevents) == 5
