"""Where a node's event loop stalls: a trio instrument loaded into node processes.

Use: ``PYTHONPATH=tests/bench/stalltrace RAFTKV_STALLTRACE=DIR`` for the processes to trace
(every Python process started with them; without ``RAFTKV_STALLTRACE`` nothing happens).
Each process writes ``DIR/<pid>.trace``: its command line, then one line per

- task step of the loop longer than ``RAFTKV_STALLTRACE_MS`` (default 20): the task's name,
  wall ms, the loop thread's CPU ms in it, and its run-queue wait (``schedstat``: time it was
  runnable but had no core); wall - cpu - runq is time blocked (the GIL held by another
  thread, or a blocking call);
- I/O wait that returned that much later than its timeout (the loop was idle, then could
  not run: no core, or the GIL);
- full garbage collection of that length;
- ``snapshot ...`` log records of the node (INFO), for their times.

Times are ``time.time()`` seconds. Measuring only: no node runs this unless asked.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time

_DIR = os.environ.get("RAFTKV_STALLTRACE")

if _DIR:
    import trio

    _MS = float(os.environ.get("RAFTKV_STALLTRACE_MS", "20"))
    _out = open(os.path.join(_DIR, f"{os.getpid()}.trace"), "a", buffering=1)  # noqa: SIM115
    _out.write(f"argv {' '.join(sys.argv)}\n")
    _lock = threading.Lock()

    def _w(line: str) -> None:
        with _lock:
            _out.write(f"{time.time():.3f} {line}\n")

    _fds: dict[int, int] = {}

    def _sched() -> tuple[float, float]:
        """(cpu s, run-queue wait s) of the calling thread (its schedstat, kept open)."""
        ident = threading.get_ident()
        fd = _fds.get(ident)
        if fd is None:
            fd = _fds[ident] = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        run, wait, _ = os.pread(fd, 100, 0).split()
        return int(run) / 1e9, int(wait) / 1e9

    class StallTrace(trio.abc.Instrument):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.s0 = (0.0, 0.0)
            self.timeout = 0.0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.t0 = time.perf_counter()
            self.s0 = _sched()

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            ms = (time.perf_counter() - self.t0) * 1000
            if ms > _MS:
                cpu, runq = _sched()
                frame = task.coro.cr_frame if hasattr(task.coro, "cr_frame") else None
                where = (f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}"
                         if frame is not None else "?")
                _w(f"step ms={ms:.1f} cpu_ms={(cpu - self.s0[0]) * 1000:.1f} "
                   f"runq_ms={(runq - self.s0[1]) * 1000:.1f} task={task.name} at={where}")

        def before_io_wait(self, timeout: float) -> None:
            self.timeout = timeout
            self.t0 = time.perf_counter()
            self.s0 = _sched()

        def after_io_wait(self, timeout: float) -> None:
            ms = (time.perf_counter() - self.t0 - self.timeout) * 1000
            if ms > _MS:
                cpu, runq = _sched()
                _w(f"iowait_over ms={ms:.1f} cpu_ms={(cpu - self.s0[0]) * 1000:.1f} "
                   f"runq_ms={(runq - self.s0[1]) * 1000:.1f} timeout_ms={timeout * 1000:.1f}")

    _gc_t0 = [0.0]

    def _gc(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            _gc_t0[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - _gc_t0[0]) * 1000
            if ms > _MS / 2:
                _w(f"gc2 ms={ms:.1f} collected={info.get('collected')}")

    gc.callbacks.append(_gc)

    class _SnapLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if "snapshot" in msg or "stalled" in msg or "garbage" in msg:
                _w(f"log {msg[:200]}")

    logging.getLogger("raftkv").addHandler(_SnapLog())

    _run = trio.run

    def _traced_run(*args: object, **kw: object) -> object:
        kw["instruments"] = [*kw.get("instruments", ()), StallTrace()]  # type: ignore[misc]
        return _run(*args, **kw)  # type: ignore[arg-type]

    trio.run = _traced_run  # type: ignore[assignment]
