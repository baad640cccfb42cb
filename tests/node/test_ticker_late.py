"""The ticker tells the core how many intervals a tick came late (harden10): a leader's
heartbeat is then sent on time though its loop was starved, while every other clock of the
core still gets one tick per tick (RaftCore.heartbeat_late)."""

from __future__ import annotations

import trio
import trio.testing

from raftkv.node.ticker import Ticker


class _Core:
    def __init__(self) -> None:
        self.ticks = 0
        self.late: list[int] = []

    def tick(self) -> None:
        self.ticks += 1

    def heartbeat_late(self, ticks: int) -> None:
        self.late.append(ticks)


async def test_a_late_tick_reports_the_intervals_it_missed(
        mock_clock: trio.testing.MockClock) -> None:
    core, ticker = _Core(), Ticker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run, core, 10, lambda: None)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.0101)  # on time: one tick, nothing late
        await trio.testing.wait_all_tasks_blocked()
        assert core.ticks == 1 and core.late == []
        mock_clock.jump(0.055)  # the loop got to it 45 ms late: 4 whole intervals
        await trio.testing.wait_all_tasks_blocked()
        assert core.ticks == 2 and core.late == [4]  # still one tick, not five
        ticker.hold = True  # a held ticker tells the core nothing
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        assert core.ticks == 2 and core.late == [4]
        nursery.cancel_scope.cancel()
