"""The ticker keeps its ticks on a grid of the tick interval (raftkv/node/ticker.py)."""

from __future__ import annotations

import trio
import trio.testing

from raftkv.node.ticker import Ticker


class SlowCore:
    """Each tick takes ``work`` seconds of the loop (the mock clock jumps by it)."""

    def __init__(self, clock: trio.testing.MockClock, work: float) -> None:
        self.clock, self.work, self.at = clock, work, []  # type: ignore[var-annotated]

    def tick(self) -> None:
        self.at.append(round(trio.current_time(), 6))
        self.clock.jump(self.work)


def run_ticker(work: float, until: float, stall_at: int = -1,
               stall: float = 0.0) -> list[float]:
    clock = trio.testing.MockClock(autojump_threshold=0)
    core = SlowCore(clock, work)

    def tick() -> None:
        SlowCore.tick(core)
        if len(core.at) == stall_at:
            clock.jump(stall)

    core.tick = tick  # type: ignore[method-assign]

    async def main() -> None:
        with trio.move_on_after(until):
            await Ticker().run(core, 10.0, lambda: None)  # type: ignore[arg-type]

    trio.run(main, clock=clock)
    start = core.at[0] - 0.01
    return [round(t - start, 6) for t in core.at]


def test_work_between_ticks_does_not_stretch_the_interval() -> None:
    # 6 ms of loop work per 10 ms tick: with a sleep per tick, a tick every 16 ms (a
    # 5-tick heartbeat every 80 ms instead of 50).
    at = run_ticker(work=0.006, until=1.001)
    assert at[:5] == [0.01, 0.02, 0.03, 0.04, 0.05]
    assert len(at) == 100


def test_a_stall_skips_the_points_it_missed_without_a_burst() -> None:
    at = run_ticker(work=0.0, until=2.001, stall_at=3, stall=1.005)
    # Ticks at 10, 20, 30 ms; the loop held 1.005 s: the next is the first point after it.
    assert at[:5] == [0.01, 0.02, 0.03, 1.04, 1.05]
    assert len(at) == 3 + 97  # 1.04 .. 2.0: no point before the stall's end is made up


def test_work_longer_than_an_interval_skips_points() -> None:
    at = run_ticker(work=0.013, until=1.001)  # each tick's work is over one interval
    assert at[:4] == [0.01, 0.03, 0.05, 0.07]
    assert len(at) == 50
