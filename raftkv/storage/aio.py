"""An fsync the kernel runs for us: Linux native AIO's ``IOCB_CMD_FDSYNC`` / ``FSYNC``.

Why: every write waits for a WAL fsync on the leader and on a follower. Run on the event
loop, the fsync holds the loop for the disk's time; run in a worker thread, each one costs
two GIL hand-offs, a futex wake of the thread and a write to trio's wake-up socket: about
50 us more CPU per fsync than the same fsync on the loop (``bench_sync_handoff.py``), and
at one client three fsyncs make a write. Submitted here, the kernel runs the same
``vfs_fsync`` in one of its workers (``aio_fsync_work``, Linux >= 4.18) and signals an
eventfd when it is done: the loop neither blocks nor wakes a Python thread. The result is
reaped with ``io_getevents``; a negative ``res`` is the fsync's error, as ``os.fsync``
would have raised it.

Only the fsync goes through AIO; the group's ``pwrite`` stays where it was. Nothing here
decides durability: the caller treats the data as durable only once ``reap`` returned
without raising, exactly as after ``os.fdatasync`` returned.

``AioFsync.open()`` returns None where native AIO is unavailable (another architecture,
no ``io_setup``: seccomp, ``aio-max-nr`` exhausted). A kernel or file system that refuses
the fsync opcode fails ``submit`` with ``EINVAL``/``EOPNOTSUPP`` before anything ran: the
caller then fsyncs the usual way and stops using AIO.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

IOCB_CMD_FSYNC = 2
IOCB_CMD_FDSYNC = 3
IOCB_FLAG_RESFD = 1  # signal aio_resfd (an eventfd) on completion

# (io_setup, io_destroy, io_getevents, io_submit) by machine: the generic table (aarch64,
# riscv64) and x86-64's own.
_SYSCALLS = {
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "riscv64": (0, 1, 4, 2),
}
# Errors of io_submit meaning "this kernel or file system does not do that": nothing was
# submitted, so the caller may fsync another way.
UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS})


class _Iocb(ctypes.Structure):  # struct iocb, little-endian layout (linux/aio_abi.h)
    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
                ("aio_rw_flags", ctypes.c_int32), ("aio_lio_opcode", ctypes.c_uint16),
                ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
                ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
                ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32)]


class _IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


class _AioRing(ctypes.Structure):  # struct aio_ring (fs/aio.c): the completion ring's header
    _fields_ = [("id", ctypes.c_uint32), ("nr", ctypes.c_uint32), ("head", ctypes.c_uint32),
                ("tail", ctypes.c_uint32), ("magic", ctypes.c_uint32),
                ("compat_features", ctypes.c_uint32), ("incompat_features", ctypes.c_uint32),
                ("header_length", ctypes.c_uint32)]


AIO_RING_MAGIC = 0xA10A10A1
_NO_WAIT = (ctypes.c_long * 2)(0, 0)  # io_getevents' timeout: never wait (it is const)


def _user_ring(ctx: int) -> tuple[_AioRing, ctypes.Array[_IoEvent]] | None:
    """The context's completion ring, mapped in our memory (io_setup's context id is its
    address: the kernel ABI libaio and fio reap from), where it can be read safely: x86-64
    (stores are seen in order, so an event is complete once ``tail`` is past it) and the
    header the kernel writes (its magic, no incompatible features)."""
    if platform.machine() != "x86_64" or not ctx:
        return None
    ring = _AioRing.from_address(ctx)
    if (ring.magic != AIO_RING_MAGIC or ring.incompat_features != 0 or ring.nr == 0
            or ring.header_length != ctypes.sizeof(_AioRing)):
        return None
    return ring, (_IoEvent * ring.nr).from_address(ctx + ring.header_length)


class AioFsync:
    """One AIO context and its eventfd; one fsync in flight at a time (``submit``, wait
    until ``fileno()`` is readable, ``reap``)."""

    def __init__(self, syscall: ctypes._CFuncPtr, numbers: tuple[int, int, int, int],
                 ctx: ctypes.c_ulong, efd: int) -> None:
        self._syscall = syscall
        self._setup, self._destroy, self._getevents, self._submit = numbers
        self._ctx = ctx
        self._efd = efd
        self._iocb = _Iocb()
        self._iocb.aio_flags = IOCB_FLAG_RESFD
        self._iocb.aio_resfd = efd
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        self._event = (_IoEvent * 1)()
        self._ring = _user_ring(ctx.value or 0)
        self.in_flight = False

    @classmethod
    def open(cls) -> AioFsync | None:
        """A context, or None where native AIO cannot be had (the module docstring)."""
        numbers = _SYSCALLS.get(platform.machine())
        if numbers is None or not hasattr(os, "eventfd"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
        except (OSError, AttributeError):
            return None
        syscall.restype = ctypes.c_long
        ctx = ctypes.c_ulong(0)
        if syscall(numbers[0], 4, ctypes.byref(ctx)) != 0:
            return None
        try:
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            syscall(numbers[1], ctx)
            return None
        return cls(syscall, numbers, ctx, efd)

    def fileno(self) -> int:
        """The eventfd: readable once the submitted fsync is done."""
        return self._efd

    def submit(self, fd: int, datasync: bool) -> None:
        """Start an fdatasync (``datasync``) or fsync of ``fd``. Raises OSError if nothing
        was submitted (``errno in UNSUPPORTED``: fsync another way)."""
        if self.in_flight:
            raise RuntimeError("an AIO fsync is already in flight")
        cb = self._iocb
        cb.aio_fildes = fd
        cb.aio_lio_opcode = IOCB_CMD_FDSYNC if datasync else IOCB_CMD_FSYNC
        if self._syscall(self._submit, self._ctx, 1, self._iocbs) != 1:
            err = ctypes.get_errno()
            raise OSError(err, f"io_submit: {os.strerror(err)}")
        self.in_flight = True

    def reap(self) -> bool:
        """After ``fileno()`` was readable: True once the fsync is done (raises its error,
        an OSError, if it failed); False if it is not done yet (a spurious wake-up)."""
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return False
        # The kernel puts the event in the ring before it signals the eventfd: take it from
        # there, as io_getevents would (the kernel reads the head we move when it counts
        # free slots), without that syscall (one fewer a WAL fsync on every node, and a
        # ctypes call: ~1.5 us of the loop; perf-follow). Else (no usable ring, or nothing
        # in it) io_getevents, which does not wait: the fsync is done.
        user = self._ring
        if user is not None and (ring := user[0]).head != ring.tail:
            head = ring.head % ring.nr
            res = user[1][head].res
            ring.head = (head + 1) % ring.nr
            self.in_flight = False
            if res < 0:
                raise OSError(-res, os.strerror(-res))
            return True
        n = self._syscall(self._getevents, self._ctx, 1, 1, self._event, _NO_WAIT)
        if n != 1:
            err = ctypes.get_errno() if n < 0 else errno.EIO
            self.in_flight = False  # (the context is unusable: the caller fails the disk)
            raise OSError(err, f"io_getevents returned {n}: {os.strerror(err)}")
        self.in_flight = False
        res = self._event[0].res
        if res < 0:
            raise OSError(-res, os.strerror(-res))
        return True

    def close(self) -> None:
        """Free the context (the kernel waits for an fsync still in flight) and the fd."""
        if self._efd >= 0:
            self._ring = None  # (unmapped by io_destroy)
            self._syscall(self._destroy, self._ctx)
            os.close(self._efd)
            self._efd = -1
