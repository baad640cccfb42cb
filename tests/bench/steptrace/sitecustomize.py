"""Which trio task runs, and which wakes which, in node processes: a trio instrument.

Use: ``PYTHONPATH=tests/bench/steptrace:... RAFTKV_STEPTRACE=DIR`` for the processes to
count (every Python process started with them; without ``RAFTKV_STEPTRACE`` nothing
happens). ``tests/bench/count_task_steps.py`` drives it. Each process counts, per task
name, its steps, and who made each task runnable (``task_scheduled`` inside another
task's step: that task; outside any step: ``loop``, i.e. an I/O event, a timer, a
``run_sync_soon`` callback or an instrument hook such as the client poller's); and the
scheduler's passes (``before_io_wait``), those that blocked (timeout > 0). It keeps the
last ``RING`` events (step start/end, scheduled, I/O wait start/end) with
``time.monotonic_ns()`` stamps, which every process shares, so the traces of three nodes
merge into one timeline.

Control: whenever ``DIR/ctl`` changes (checked at most every 50 ms, before an I/O wait),
the process writes ``DIR/<pid>.<word>.counts`` (``<word>``: the file's first word), and
with a second word ``trace`` also ``DIR/<pid>.<word>.trace``. Measuring only: no node
runs this unless asked.
"""

from __future__ import annotations

import collections
import json
import os
import time

_DIR = os.environ.get("RAFTKV_STEPTRACE")

if _DIR:
    import trio

    RING = 60000
    _CTL = os.path.join(_DIR, "ctl")
    _now = time.monotonic_ns

    class StepTrace(trio.abc.Instrument):
        def __init__(self) -> None:
            self.steps: collections.Counter[str] = collections.Counter()
            self.wakes: collections.Counter[str] = collections.Counter()
            self.passes = self.blocking = 0
            self.ring: collections.deque[tuple[int, str, str, str]] = collections.deque(
                maxlen=RING)
            self.current = ""
            self.checked = 0
            self.seen = 0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            name = task.name
            self.current = name
            self.steps[name] += 1
            self.ring.append((_now(), "S", name, ""))

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            self.current = ""
            self.ring.append((_now(), "E", task.name, ""))

        def task_scheduled(self, task: trio.lowlevel.Task) -> None:
            waker = self.current or "loop"
            self.wakes[f"{task.name} <- {waker}"] += 1
            self.ring.append((_now(), "R", task.name, waker))

        def before_io_wait(self, timeout: float) -> None:
            self.passes += 1
            if timeout > 0:
                self.blocking += 1
                self.ring.append((_now(), "W", f"{timeout:.4f}", ""))
            now = _now()
            if now - self.checked > 50_000_000:
                self.checked = now
                self._control()

        def after_io_wait(self, timeout: float) -> None:
            if timeout > 0:
                self.ring.append((_now(), "w", "", ""))

        def _control(self) -> None:
            try:
                mtime = os.stat(_CTL).st_mtime_ns
            except OSError:
                return
            if mtime == self.seen:
                return
            self.seen = mtime
            try:
                with open(_CTL) as f:
                    words = f.read().split()
            except OSError:
                return
            if not words:
                return
            base = os.path.join(_DIR, f"{os.getpid()}.{words[0]}")
            with open(base + ".counts", "w") as f:
                json.dump({"steps": dict(self.steps), "wakes": dict(self.wakes),
                           "passes": self.passes, "blocking": self.blocking,
                           "at_ns": _now()}, f)
            if "trace" in words[1:]:
                with open(base + ".trace", "w") as f:
                    for t, kind, a, b in self.ring:
                        f.write(f"{t} {kind} {a} {b}\n")

    _run = trio.run

    def _traced_run(*args: object, **kw: object) -> object:
        kw["instruments"] = [*kw.get("instruments", ()), StepTrace()]  # type: ignore[misc]
        return _run(*args, **kw)  # type: ignore[arg-type]

    trio.run = _traced_run  # type: ignore[assignment]
