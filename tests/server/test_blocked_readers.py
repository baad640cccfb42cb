"""Blocked XREAD readers (raftkv.server.blocked_readers): woken only by a change they want,
answered null at their deadline or when their client hangs up, bounded in number. Time is
trio's MockClock (autojump), so deadlines are exact and nothing sleeps for real."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.changes import Change
from raftkv.kv.feed import ChangeFeed
from raftkv.kv.glob import Glob
from raftkv.kv.sliced import SlicedRead
from raftkv.node.pending import Pending
from raftkv.server.acl import AccessControl
from raftkv.server.blocked_readers import EARLY_PASS_CHANGES, BlockedReaders, too_many
from raftkv.server.connection import Connection
from raftkv.server.streams import BUDGET, FEED, FeedReader, cmd_xread, parse_xread
from wire.reply import Encoded, ErrorReply
from wire.resp_reply import ReplyParser

T0 = 1_700_000_000_000


def change(index: int, key: bytes) -> Change:
    return Change(index, 0, "set", key, b"v", None)


class Answer(SlicedRead):
    """A read that takes ``slices`` steps, then answers ``value``."""

    __slots__ = ("slices", "value")

    def __init__(self, value: object, slices: int = 1) -> None:
        self.value = value
        self.slices = slices
        super().__init__()

    def _run(self):
        for _ in range(self.slices - 1):
            yield 1 << 20
        self.result = self.value


def answers(*values: object) -> Callable[[], SlicedRead]:
    queue = list(values)
    return lambda: Answer(queue.pop(0))


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_reader_is_read_for_after_each_applied_batch_until_it_finds_something(
        autojump_clock: trio.testing.MockClock) -> None:
    readers = BlockedReaders(limit=10)
    retries: list[int] = []
    answers_ = [None, b"answer"]

    def retry() -> SlicedRead:
        retries.append(1)
        return Answer(answers_.pop(0), slices=3)

    async with trio.open_nursery() as nursery:
        pending = readers.block(nursery.start_soon, 0, retry, [])
        await trio.testing.wait_all_tasks_blocked()
        assert retries == []  # nothing applied yet: not read
        readers.changes_applied([change(1, b"b"), change(2, b"c")])
        assert retries == []  # the applier only marks: no read, no matching in apply
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.done and retries == [1] and len(readers) == 1
        readers.changes_applied([change(3, b"b"), change(4, b"a")])
        assert await pending.wait() == b"answer"
    assert retries == [1, 1] and len(readers) == 0
    assert readers.stats["blocked_readers_served"] == 1


async def test_a_reader_with_nothing_new_is_not_read(
        autojump_clock: trio.testing.MockClock) -> None:
    readers = BlockedReaders(limit=10)
    news = [False, True]
    async with trio.open_nursery() as nursery:
        pending = readers.block(nursery.start_soon, 0,
                                lambda: Answer(b"second") if news.pop(0) else None, [])
        await trio.testing.wait_all_tasks_blocked()
        readers.changes_applied([change(1, b"a")])
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.done and news == [True]
        readers.changes_applied([change(2, b"a")])
        assert await pending.wait() == b"second"


async def test_the_deadline_answers_null(autojump_clock: trio.testing.MockClock) -> None:
    readers = BlockedReaders(limit=10)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        pending = readers.block(nursery.start_soon, 1500, answers(b"x"), [])
        assert await pending.wait() is None
        assert trio.current_time() - start == pytest.approx(1.5)
    assert len(readers) == 0 and readers.stats["blocked_readers_timed_out"] == 1


async def test_a_hang_up_frees_the_slot_and_the_limit_holds(
        autojump_clock: trio.testing.MockClock) -> None:
    readers = BlockedReaders(limit=2)
    ends: list[list[Callable[[], None]]] = [[], []]
    async with trio.open_nursery() as nursery:
        first = readers.block(nursery.start_soon, 0, answers(b"x"), ends[0])
        second = readers.block(nursery.start_soon, 0, answers(b"y"), ends[1])
        refused = readers.block(nursery.start_soon, 0, answers(b"z"), [])
        assert refused.done and refused.value == too_many(2)
        assert isinstance(refused.value, ErrorReply) and "max blocked" in refused.value.text
        await trio.testing.wait_all_tasks_blocked()
        callbacks, ends[0] = ends[0], []  # what Connection.input_ended does
        for callback in callbacks:
            callback()
        assert await first.wait() is None
        assert len(readers) == 1  # (at once: no task of its own to wake first)
        third = readers.block(nursery.start_soon, 0, answers(b"w"), [])
        assert not third.done
        readers.changes_applied([change(1, b"a")])
        assert await second.wait() == b"y" and await third.wait() == b"w"
        await trio.testing.wait_all_tasks_blocked()
        assert ends[1] == []  # a served reader unregisters its hang-up callback


async def test_a_failing_read_answers_an_error_and_the_node_lives_on(
        autojump_clock: trio.testing.MockClock) -> None:
    readers = BlockedReaders(limit=2)

    def broken() -> SlicedRead:
        raise KeyError("bug")

    async with trio.open_nursery() as nursery:
        pending = readers.block(nursery.start_soon, 0, broken, [])
        await trio.testing.wait_all_tasks_blocked()
        readers.changes_applied([change(1, b"a")])
        reply = await pending.wait()
    assert isinstance(reply, ErrorReply) and "KeyError" in reply.text


async def test_a_first_read_still_going_is_finished_before_waiting(
        autojump_clock: trio.testing.MockClock) -> None:
    readers = BlockedReaders(limit=2)
    async with trio.open_nursery() as nursery:
        found = readers.block(nursery.start_soon, 0, answers(),
                              [], first=Answer(b"found late", slices=5))
        assert await found.wait() == b"found late"
        empty = readers.block(nursery.start_soon, 0, answers(b"then"),
                              [], first=Answer(None, slices=5))
        await trio.testing.wait_all_tasks_blocked()
        assert not empty.done and len(readers) == 1  # nothing found: it waits
        readers.changes_applied([change(1, b"a")])
        assert await empty.wait() == b"then"


async def test_a_reader_behind_the_horizon_is_caught_up_without_waiting_for_the_window(
        autojump_clock: trio.testing.MockClock) -> None:
    """A watcher that got COUNT changes comes back for the rest of the window's: its read
    starts in its XREAD and, if one slice does not finish it, goes on in the readers'
    task at once, not at the next pass a window later (with 1 s windows 300 watchers of
    c50 SET fell 1-2 s behind, each such read parked a window)."""
    readers = BlockedReaders(limit=10, window=0.5, per_reader=0.5, max_window=0.5)
    async with trio.open_nursery() as nursery:
        served = readers.block(nursery.start_soon, 0, answers(b"x"), [])
        readers.changes_applied([])
        assert await served.wait() == b"x"  # a pass: the next is 0.5 s after it
        began = trio.current_time()
        behind = readers.block(nursery.start_soon, 0, answers(), [],
                               first=Answer(b"the rest", slices=5))
        assert await behind.wait() == b"the rest"
        assert trio.current_time() - began < 0.5
        empty = readers.block(nursery.start_soon, 0, answers(b"later"), [],
                              first=Answer(None, slices=5))
        await trio.testing.wait_all_tasks_blocked()
        assert not empty.done  # (nothing found: it waits for what is applied next)
        readers.changes_applied([change(1, b"a")])
        assert await empty.wait() == b"later"
        assert trio.current_time() - began >= 0.5  # (that one at the next pass)
        nursery.cancel_scope.cancel()


async def test_many_readers_with_many_globs_cost_the_apply_nothing_and_share_the_loop(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers x globs x keys of an applied MSET used to be matched inside apply, the loop
    held (1,000 x 32 x 1,000: 32 million matches). Now the apply only marks the readers;
    their reads run in the readers' task, and another task runs between any two slices
    of matcher work (counted in the matcher's own units, not in time)."""
    units = [0]
    real_steps = Glob.steps

    def counted(self: Glob, string: bytes):  # type: ignore[no-untyped-def]
        work = real_steps(self, string)
        try:
            while True:
                unit = next(work)
                units[0] += unit
                yield unit
        except StopIteration as done:
            return done.value

    monkeypatch.setattr(Glob, "steps", counted)
    feed = ChangeFeed()
    reader = FeedReader(feed, None, lambda key: False)
    readers = BlockedReaders(limit=100)
    streams = [b"__raftkv:changes:k%d:%d:?*" % (r, g) for r in range(8) for g in range(32)]
    gaps: list[int] = []
    async with trio.open_nursery() as nursery:
        pendings = []
        for r in range(8):
            names = streams[32 * r:32 * (r + 1)]
            request = parse_xread([b"XREAD", b"BLOCK", b"0", b"STREAMS", *names,
                                   *[b"$"] * len(names)])
            positions = reader.start(request)

            def retry(positions=positions):  # type: ignore[no-untyped-def]
                return reader.read(positions, 10, 2, advance=True) if reader.news(
                    positions) else None
            pendings.append(readers.block(nursery.start_soon, 0, retry, []))
        await trio.testing.wait_all_tasks_blocked()
        feed.append(1, [Change(1, i, "mset", b"other:%d" % i, b"v", None) for i in range(1000)])
        readers.changes_applied([])  # (what the applier does after the batch)
        assert units[0] == 0  # nothing matched in the apply path

        seen = 0
        while units[0] < 8 * 32 * 1000:  # every glob sees every key, in the readers' task
            await trio.lowlevel.checkpoint()  # (this task gets a turn between slices)
            gaps.append(units[0] - seen)
            seen = units[0]
        await trio.testing.wait_all_tasks_blocked()
        assert not any(p.done for p in pendings)  # (nothing matched)
        feed.append(2, [Change(2, r, "set", b"k%d:%d:x" % (r, r), b"v", None) for r in range(8)])
        readers.changes_applied([])
        for pending in pendings:
            reply = await pending.wait()
            assert reply is not None and b"k" in reply.data
    assert max(gaps) <= 2 * BUDGET, f"{max(gaps)} units of matching between two checkpoints"


class _Port:
    """What cmd_xread needs of the client port: its users and its blocked readers."""

    def __init__(self, blocked: BlockedReaders) -> None:
        self.acl = AccessControl.configure()
        self.blocked = blocked


class _Node:
    def __init__(self, kv: KVStateMachine, spawn: Callable[..., None]) -> None:
        self.kv = kv
        self.start_background = spawn
        self.removed = False  # (Node.removed: no longer a member)


def _entries(reply: object) -> list[bytes]:
    """The ids in an XREAD reply of one stream (None: no reply)."""
    if reply is None:
        return []
    assert isinstance(reply, Encoded)
    parser = ReplyParser()
    parser.feed(reply.data)
    value = parser.next_reply()
    return [entry[0] for entry in value[0][1]]


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # (no autojump: the test moves time itself)


async def test_blocked_xreads_are_woken_at_most_once_a_window_with_all_of_it(
        mock_clock: trio.testing.MockClock) -> None:
    """XREAD ... BLOCK wake-ups are coalesced: passes over the blocked readers start at
    least the window apart, and a blocked XREAD reads up to the feed's last id as of the
    last pass, so the batches applied within a window reach a watcher in one reply (one
    round trip, not one a batch). An XREAD without BLOCK, or with a BLOCK shorter than the
    window, still sees everything at once."""
    window = 0.05
    kv = KVStateMachine(feed=ChangeFeed())
    blocked = BlockedReaders(limit=10, window=window)
    conn = Connection(1, "127.0.0.1:1", user="default", server=_Port(blocked))  # type: ignore[arg-type]

    def apply(index: int) -> None:
        kv.apply(encode_entry([b"SET", b"k%d" % index, b"v"], T0), index=index)
        blocked.changes_applied(kv.last_changes)

    def xread(*args: bytes | str | int) -> Pending:
        return cmd_xread(node, conn, [str(a).encode() if not isinstance(a, bytes) else a
                                      for a in ("XREAD", *args)])

    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        first = xread("BLOCK", 0, "STREAMS", FEED, "$")
        await trio.testing.wait_all_tasks_blocked()
        assert not first.done
        apply(1)
        assert _entries(await first.wait()) == [b"1-0"]  # the first pass: no wait
        served_at = trio.current_time()
        watcher = xread("BLOCK", 0, "STREAMS", FEED, "1-0")
        apply(2)
        await trio.testing.wait_all_tasks_blocked()
        assert not watcher.done  # (before: answered with 2-0 alone, one reply a batch)
        late = xread("BLOCK", 0, "STREAMS", FEED, "1-0")
        assert not late.done  # past the last pass's horizon: waits for the next pass
        assert _entries(xread("STREAMS", FEED, "1-0").value) == [b"2-0"]  # no BLOCK: now
        assert _entries(xread("BLOCK", 10, "STREAMS", FEED, "1-0").value) == [b"2-0"]
        apply(3)
        mock_clock.jump(window)
        assert _entries(await watcher.wait()) == [b"2-0", b"3-0"]  # one reply, both
        assert _entries(await late.wait()) == [b"2-0", b"3-0"]
        assert trio.current_time() - served_at >= window
        nursery.cancel_scope.cancel()


async def test_one_task_serves_every_reader_and_the_deadlines_kept_stay_bounded(
        autojump_clock: trio.testing.MockClock) -> None:
    """A blocked XREAD costs no task of its own (a watcher blocks after every reply: a
    task each time was a spawn and two wake-ups a round trip); the deadlines of readers
    already answered are dropped as readers come and go."""
    readers = BlockedReaders(limit=100, window=0.001)
    spawned: list[object] = []
    ends: list[list[Callable[[], None]]] = [[] for _ in range(50)]
    async with trio.open_nursery() as nursery:
        def spawn(fn: Callable[..., object], *args: object) -> None:
            spawned.append(fn)
            nursery.start_soon(fn, *args)

        for _ in range(20):
            pendings = [readers.block(spawn, 60_000, answers(b"x"), ends[i])
                        for i in range(50)]
            readers.changes_applied([])
            for pending in pendings:
                assert await pending.wait() == b"x"
            assert len(readers._deadlines) <= 2 * 50 + 64
        assert all(end == [] for end in ends)  # each served reader unregistered
        timed = readers.block(spawn, 1500, answers(b"y"), [])
        assert await timed.wait() is None  # (the deadline heap still answers it)
    assert len(spawned) <= 21 and readers.stats["blocked_readers_timed_out"] == 1


async def test_the_window_grows_with_the_readers_waiting_up_to_its_bound(
        mock_clock: trio.testing.MockClock) -> None:
    """A node with many watchers makes a bounded number of round trips a second: the least
    time between two passes is ``per_reader`` for each reader waiting when the last pass
    began (at least ``window``, at most ``max_window``). With fsync always a node applies a
    batch every 10-20 ms, so a fixed 5 ms window coalesced nothing: each watcher made one
    round trip per batch."""
    blocked = BlockedReaders(limit=100, window=0.015, per_reader=0.01, max_window=0.05)

    async def served_after(readers: int) -> float:
        """Block ``readers`` readers, apply a batch, and return how long after the last
        pass began they were all answered."""
        began = blocked._last_pass
        pendings = [blocked.block(nursery.start_soon, 0, answers(b"x"), [])
                    for _ in range(readers)]
        blocked.changes_applied([])
        while not all(p.done for p in pendings):
            await trio.testing.wait_all_tasks_blocked()
            if not all(p.done for p in pendings):
                mock_clock.jump(0.001)
        return trio.current_time() - began

    async with trio.open_nursery() as nursery:
        pending = blocked.block(nursery.start_soon, 0, answers(b"x"), [])
        blocked.changes_applied([])
        assert await pending.wait() == b"x"  # the first pass: at once
        assert await served_after(3) == pytest.approx(0.015)  # 1 reader: the least window
        assert await served_after(20) == pytest.approx(0.03)  # 3 readers: 3 x 10 ms
        assert await served_after(1) == pytest.approx(0.05)  # 20 readers: the bound
        nursery.cancel_scope.cancel()


async def test_a_nodes_window_is_ten_ms_a_reader_waiting_up_to_a_second(
        mock_clock: trio.testing.MockClock) -> None:
    """As the client port builds them (no argument but the bound), the readers' window is
    10 ms for each reader waiting, and nothing else: one watcher gets a change within 10
    ms, 34 on a node within 340 ms, more than 100 within a second, so the node makes about
    100 round trips a second for them. (Before: 2 ms a reader up to 250 ms, lengthened
    by a load rule fed with the measured cost of the replies, which grew with the window:
    one watcher of c50 SET was seen at 454 ms windows.)"""
    blocked = BlockedReaders(limit=200)

    async def served_after(readers: int) -> float:
        """Block ``readers`` readers, apply a batch, and return how long after the last
        pass began they were all answered."""
        began = blocked._last_pass
        pendings = [blocked.block(nursery.start_soon, 0, answers(b"x"), [])
                    for _ in range(readers)]
        blocked.changes_applied([])
        while not all(p.done for p in pendings):
            await trio.testing.wait_all_tasks_blocked()
            if not all(p.done for p in pendings):
                mock_clock.jump(0.001)
        return trio.current_time() - began

    async with trio.open_nursery() as nursery:
        pending = blocked.block(nursery.start_soon, 0, answers(b"x"), [])
        blocked.changes_applied([])
        assert await pending.wait() == b"x"  # the first pass: at once
        assert await served_after(34) == pytest.approx(0.01, abs=0.001)  # 1 reader: 10 ms
        assert await served_after(150) == pytest.approx(0.34, abs=0.001)  # 34: 340 ms
        assert await served_after(1) == pytest.approx(1.0, abs=0.001)  # 150: the bound
        assert await served_after(1) == pytest.approx(0.01, abs=0.001)
        nursery.cancel_scope.cancel()


async def test_a_pass_starts_early_once_every_waiting_readers_reply_is_full(
        mock_clock: trio.testing.MockClock) -> None:
    """Once the changes applied since the last pass fill the reply of every reader waiting
    (``full``: a whole-feed reader's COUNT), the pass starts at once: waiting out the window
    would save no round trip, as a watcher back for the rest after COUNT is read for at
    once, and only delay the changes. A reader whose reply may not be full (a filter:
    ``full`` inf) keeps the window. (Before: every pass waited the whole window.)"""
    blocked = BlockedReaders(limit=10, window=0.005, per_reader=1.0, max_window=1.0)
    batch = [change(1, b"k")] * 600

    async with trio.open_nursery() as nursery:
        first = blocked.block(nursery.start_soon, 0, answers(b"x"), [], full=1100)
        blocked.changes_applied(batch)
        assert await first.wait() == b"x"  # the first pass: at once
        began = trio.current_time()
        counted = blocked.block(nursery.start_soon, 0, answers(b"y"), [], full=1100)
        more = blocked.block(nursery.start_soon, 0, answers(b"z"), [], full=1200)
        blocked.changes_applied(batch)
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        assert not counted.done  # 600 of 1,100 changes: the window goes on
        blocked.changes_applied(batch)
        await trio.testing.wait_all_tasks_blocked()
        assert (counted.value, more.value) == (b"y", b"z")  # 1,200 changes fill both: at once
        assert trio.current_time() - began == pytest.approx(0.1)
        # A filtered reader among them: its reply may not be full, the window holds.
        blocked.block(nursery.start_soon, 0, lambda: None, [], full=1100)  # (nothing for it)
        filtered = blocked.block(nursery.start_soon, 0, answers(b"f"), [])
        began = trio.current_time()
        for _ in range(10):
            blocked.changes_applied(batch)
        while not filtered.done:
            await trio.testing.wait_all_tasks_blocked()
            if not filtered.done:
                mock_clock.jump(0.01)
        assert trio.current_time() - began == pytest.approx(1.0, abs=0.011)
        nursery.cancel_scope.cancel()


async def test_a_small_count_starts_no_early_pass_before_the_floor(
        mock_clock: trio.testing.MockClock) -> None:
    """attack13: readers with COUNT 1 (or at an id past the feed's top, which no change
    fills) counted as full after one change, so every applied batch started a pass and the
    window never held (900 of them: a follower's CPU per SET 2.2x). A pass starts early
    only once EARLY_PASS_CHANGES changes were applied, whatever the COUNT."""
    blocked = BlockedReaders(limit=10, window=0.005, per_reader=1.0, max_window=1.0)
    async with trio.open_nursery() as nursery:
        first = blocked.block(nursery.start_soon, 0, answers(b"x"), [], full=1)
        blocked.changes_applied([change(1, b"k")])
        assert await first.wait() == b"x"  # the first pass: at once
        start = blocked.passes
        waiting = blocked.block(nursery.start_soon, 0, answers(b"y"), [], full=1)
        for _ in range(EARLY_PASS_CHANGES - 1):  # one change a batch, the window (1 s) on
            blocked.changes_applied([change(1, b"k")])
            await trio.testing.wait_all_tasks_blocked()
        assert blocked.passes == start and not waiting.done
        blocked.changes_applied([change(1, b"k")])  # the floor reached: at once
        await trio.testing.wait_all_tasks_blocked()
        assert waiting.value == b"y" and blocked.passes == start + 1
        nursery.cancel_scope.cancel()


async def test_a_block_ending_within_the_window_gets_what_was_applied_not_null(
        mock_clock: trio.testing.MockClock) -> None:
    """The window may be longer than a client's BLOCK (it grows with the readers): a
    reader whose deadline comes before the next pass is read for at its deadline, and
    answered with the changes applied meanwhile rather than a null reply."""
    kv = KVStateMachine(feed=ChangeFeed())
    blocked = BlockedReaders(limit=10, window=0.05)
    conn = Connection(1, "127.0.0.1:1", user="default", server=_Port(blocked))  # type: ignore[arg-type]

    def apply(index: int) -> None:
        kv.apply(encode_entry([b"SET", b"k%d" % index, b"v"], T0), index=index)
        blocked.changes_applied(kv.last_changes)

    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        first = cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"0", b"STREAMS", FEED, b"$"])
        await trio.testing.wait_all_tasks_blocked()
        apply(1)
        assert _entries(await first.wait()) == [b"1-0"]  # a pass: the next is 50 ms away
        began = trio.current_time()
        short = cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"20", b"STREAMS", FEED, b"1-0"])
        await trio.testing.wait_all_tasks_blocked()
        apply(2)
        while not short.done:
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.001)
        assert _entries(short.value) == [b"2-0"]  # (before: null at 20 ms)
        assert trio.current_time() - began == pytest.approx(0.02, abs=0.0015)
        nursery.cancel_scope.cancel()


async def test_a_watcher_back_right_after_its_reply_blocks_without_a_read(
        mock_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every watcher comes back right after its reply with the id of the last change it
    got, the horizon of the pass that answered it: there is nothing to read until the next
    pass, so it blocks at once, no read built or stepped (a round trip's own work)."""
    kv = KVStateMachine(feed=ChangeFeed())
    blocked = BlockedReaders(limit=10, window=0.05)
    conn = Connection(1, "127.0.0.1:1", user="default", server=_Port(blocked))  # type: ignore[arg-type]
    reads: list[int] = []
    read = FeedReader.read
    monkeypatch.setattr(FeedReader, "read",
                        lambda self, *args, **kw: reads.append(1) or read(self, *args, **kw))

    def apply(index: int) -> None:
        kv.apply(encode_entry([b"SET", b"k%d" % index, b"v"], T0), index=index)
        blocked.changes_applied(kv.last_changes)

    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        first = cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"0", b"STREAMS", FEED, b"$"])
        await trio.testing.wait_all_tasks_blocked()
        apply(1)
        assert _entries(await first.wait()) == [b"1-0"]
        reads.clear()
        again = cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"0", b"STREAMS", FEED, b"1-0"])
        assert not again.done and reads == []  # blocked, nothing read
        apply(2)
        mock_clock.jump(0.05)
        assert _entries(await again.wait()) == [b"2-0"] and reads == [1]  # the pass's read
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("after", ["user watcher off >wpw ~* +@read\n",
                                   "user watcher on >wpw ~pub:* ~__raftkv:* +@read\n", ""])
async def test_a_blocked_reader_gets_only_what_its_user_may_read_after_acl_load(
        autojump_clock: trio.testing.MockClock, tmp_path, after: str) -> None:
    """attack7: a blocked XREAD kept the key patterns its user had when it blocked, so a
    user removed, turned off or narrowed by ACL LOAD still received the next changes to
    any key (on a 3-node cluster: an admin's key and value, after the user's removal). Now
    each read checks the user again: gone or off answers NOAUTH, narrowed sees only what
    it may read now."""
    path = tmp_path / "users.acl"
    path.write_text("user watcher on >wpw ~* +@read\n")
    acl = AccessControl.configure(acl_file=str(path))
    kv = KVStateMachine(feed=ChangeFeed())
    blocked = BlockedReaders(limit=10)
    port = _Port(blocked)
    port.acl = acl
    conn = Connection(1, "127.0.0.1:1", user="watcher", server=port)  # type: ignore[arg-type]

    def apply(index: int, key: bytes) -> None:
        kv.apply(encode_entry([b"SET", key, b"v"], T0), index=index)
        blocked.changes_applied(kv.last_changes)

    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        read = cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"0", b"STREAMS", FEED, b"$"])
        await trio.testing.wait_all_tasks_blocked()
        path.write_text(after)
        acl.reload()
        apply(1, b"admin:secret")
        apply(2, b"pub:news")
        reply = await read.wait()
        if "on" in after:
            assert _entries(reply) == [b"2-0"]
        else:
            assert reply == ErrorReply("NOAUTH Authentication required.")
        nursery.cancel_scope.cancel()


async def test_a_node_removed_from_the_cluster_sends_its_watchers_elsewhere(
        autojump_clock: trio.testing.MockClock) -> None:
    """attack7: a removed node applies nothing more, yet it served its feed as if it were
    a follower: XREAD answered nothing new for good, a blocked one waited for good, and
    client.watch (whose node still named a leader in INFO) sat there missing every change
    (0 of 5 writes, twice, on real nodes). Now it answers the removed node's TRYAGAIN, to
    a new read at once and to one blocked before the removal within a second, so the
    watch moves to a member."""
    from raftkv.node.node import REMOVED

    kv = KVStateMachine(feed=ChangeFeed())
    node: _Node
    blocked = BlockedReaders(limit=10, gone=lambda: REMOVED if node.removed else None)
    conn = Connection(1, "127.0.0.1:1", user="default", server=_Port(blocked))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        waiting = cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"0", b"STREAMS", FEED, b"$"])
        await trio.testing.wait_all_tasks_blocked()
        began = trio.current_time()
        node.removed = True
        assert await waiting.wait() == REMOVED
        assert trio.current_time() - began <= 1.0
        assert cmd_xread(node, conn, [b"XREAD", b"STREAMS", FEED, b"0"]).value == REMOVED
        assert cmd_xread(node, conn, [b"XREAD", b"BLOCK", b"0", b"STREAMS", FEED,
                                      b"$"]).value == REMOVED
        nursery.cancel_scope.cancel()


async def test_a_watchers_next_xread_is_not_parsed_again_unless_its_user_changed(
        autojump_clock: trio.testing.MockClock, tmp_path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """A watcher sends the same XREAD after every reply but for its ids: the connection
    keeps the last one parsed, with its streams resolved, and only the ids are read again
    (parsing and resolving were about half of a re-blocking XREAD's work). Another
    XREAD, or the same one after ACL LOAD narrowed its user, is parsed and checked anew."""
    from raftkv.server import streams

    parsed = [0]
    real_parse = streams.parse_xread

    def counted(args: list[bytes]):  # type: ignore[no-untyped-def]
        parsed[0] += 1
        return real_parse(args)

    monkeypatch.setattr(streams, "parse_xread", counted)
    path = tmp_path / "users.acl"
    path.write_text("user watcher on >wpw ~* +@read\n")
    acl = AccessControl.configure(acl_file=str(path))
    kv = KVStateMachine(feed=ChangeFeed())
    blocked = BlockedReaders(limit=10)
    port = _Port(blocked)
    port.acl = acl
    conn = Connection(1, "127.0.0.1:1", user="watcher", server=port)  # type: ignore[arg-type]

    def apply(index: int, key: bytes) -> None:
        kv.apply(encode_entry([b"SET", key, b"v"], T0), index=index)
        blocked.changes_applied(kv.last_changes)

    def xread(last: bytes, name: bytes = FEED) -> Pending:
        return cmd_xread(node, conn, [b"XREAD", b"COUNT", b"10", b"BLOCK", b"0", b"STREAMS",
                                      name, last])

    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        first = xread(b"$")
        apply(1, b"a:1")
        assert _entries(await first.wait()) == [b"1-0"]
        second = xread(b"1-0")
        apply(2, b"b:2")
        assert _entries(await second.wait()) == [b"2-0"]
        assert parsed[0] == 1  # (before: once an XREAD)
        assert _entries(xread(b"0").value) == [b"1-0", b"2-0"]  # ids still read each time
        assert xread(b"1-x").value == streams.INVALID_ID
        assert _entries(xread(b"0", FEED + b":a:*").value) == [b"1-0"]  # another XREAD
        assert parsed[0] == 3
        path.write_text("user watcher on >wpw ~b:* +@read\n")
        acl.reload()
        assert xread(b"0").value == ErrorReply(  # the feed's name is no key it may read now
            "NOPERM No permissions to access a key")
        assert parsed[0] == 4
        nursery.cancel_scope.cancel()
