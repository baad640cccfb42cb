"""The founder check and the leader's publishing (raftkv.node.publish), against stand-ins
for the transport and the core, on trio's MockClock (autojump): no sockets, no real sleeps.

A founder on an empty data directory holds its core until founder peers answer: any
"published" makes it refuse (LostItsData, the --join refusal's line); "not published" (or
an answer from an earlier release) from enough peers to make, with it, a majority of the
founders lets it go on; no answer makes it ask again, with
no deadline. While it holds, the core hears no peer message and gets no tick.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.node.cluster_id import LostItsData
from raftkv.node.driver import CoreDriver
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.publish import (
    NO_ANSWER,
    NOT_PUBLISHED,
    OLDER,
    PUBLISHED,
    ROUND_TIMEOUT,
    answer_probe,
    answers_needed,
    classify,
    decide,
    must_probe,
    publish_members,
    wait_until_unpublished,
)
from raftkv.node.requests import RequestTracker
from raftkv.node.settings import NodeSettings
from raftkv.node.ticker import Ticker
from raftkv.raft import MemoryStorage, RaftConfig, RaftCore, Role
from raftkv.storage import open_storage
from wire.raft import (
    CONFIG,
    NORMAL,
    ClusterConfig,
    Entry,
    ForwardRequest,
    ForwardResponse,
    HardState,
    Member,
    RequestVote,
    SnapshotMeta,
)
from wire.reply import ErrorReply

OLD_USAGE = ErrorReply(
    "ERR wrong arguments; try RAFT ADDNODE id peer_addr [LEARNER] | PROMOTE id | REMOVENODE id")


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# -- the decision ---------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "meaning"), [
    (1, PUBLISHED), (0, NOT_PUBLISHED), (OLD_USAGE, OLDER),
    (ErrorReply("ERR unknown RAFT subcommand or wrong arguments; try ..."), OLDER),
    (None, NO_ANSWER), (ErrorReply("UNKNOWN the leader went silent"), NO_ANSWER),
    (ErrorReply("TRYAGAIN no leader known"), NO_ANSWER), (2, NO_ANSWER), (True, NO_ANSWER),
    (b"1", NO_ANSWER), ([1], NO_ANSWER)])
def test_each_reply_means_one_thing(reply: Any, meaning: str) -> None:
    assert classify(reply) == meaning


@pytest.mark.parametrize(("answers", "outcome"), [
    ([NOT_PUBLISHED, PUBLISHED], PUBLISHED),  # any "published" wins
    ([NO_ANSWER, PUBLISHED], PUBLISHED),  # the attack: A dead, C knows
    ([NO_ANSWER, NOT_PUBLISHED], NOT_PUBLISHED),  # one answer is enough
    ([OLDER, NO_ANSWER], NOT_PUBLISHED),  # an earlier release cannot have published it
    ([NO_ANSWER, NO_ANSWER], NO_ANSWER),  # never on to voting for want of answers
    ([], NO_ANSWER)])
def test_the_round_outcome(answers: list[str], outcome: str) -> None:
    assert decide(answers) == outcome


@pytest.mark.parametrize(("answers", "needed", "outcome"), [
    ([NOT_PUBLISHED, NO_ANSWER, NO_ANSWER, NO_ANSWER], 2, NO_ANSWER),  # 2 of 5: ask again
    ([NOT_PUBLISHED, OLDER, NO_ANSWER, NO_ANSWER], 2, NOT_PUBLISHED),  # 3 of 5
    ([NOT_PUBLISHED, NOT_PUBLISHED, PUBLISHED, NO_ANSWER], 2, PUBLISHED),
    ([NOT_PUBLISHED, NOT_PUBLISHED, NO_ANSWER, NO_ANSWER, NO_ANSWER, NO_ANSWER], 3,
     NO_ANSWER)])  # 3 of 7
def test_not_published_needs_a_majority_of_the_founders(answers: list[str], needed: int,
                                                        outcome: str) -> None:
    assert decide(answers, needed) == outcome


def test_how_many_founders_must_answer() -> None:
    """With the asker, a majority: two wiped founders of five cannot vouch for each other."""
    assert [answers_needed(range(1, n + 1)) for n in (2, 3, 4, 5, 6, 7)] == [1, 1, 2, 2, 3, 3]


def _founder(data_dir: Path, node_id: int = 2, join: bool = False) -> Node:
    """A founder of 1, 2, 3 whose storage and core are open on ``data_dir``, as run()
    opens them (no sockets); ``join``: started this time with --join instead."""
    members = {i: f"127.0.0.1:{7700 + i}" for i in (1, 2, 3)}
    flags: dict[str, Any] = {"cluster": {}, "join": ("127.0.0.1:7701",)} if join else {
        "cluster": members}
    node = Node(NodeSettings(node_id=node_id, client_addr="127.0.0.1:7799",
                             peer_addr=members[node_id], data_dir=str(data_dir), **flags),
                admin=Pending.of)
    config = ClusterConfig(tuple(Member(i, a) for i, a in members.items()))
    node.storage = open_storage(data_dir, "cid", node_id, config, fsync="never")
    node.core = RaftCore(node_id, node.storage, RaftConfig(), random.Random(1))
    return node


def test_a_founder_started_again_before_it_served_asks_again(tmp_path: Path) -> None:
    """attack9, live: the wiped founder refused (exit 1); started again, as a supervisor
    does, its directory was no longer new, so it skipped the check, voted for the stale
    node, and v1 was gone from every node. Blank storage (term 0, no entry) asks, whoever
    made it; storage that has a term does not."""
    first = _founder(tmp_path)
    assert first.storage.created and first._fresh()
    first.storage.close()
    again = _founder(tmp_path)
    assert not again.storage.created and again._fresh()
    again.storage.close()
    # Started again with --join (which a directory with a configuration ignores): the same.
    joined = _founder(tmp_path, join=True)
    assert joined._fresh() and must_probe([1, 2, 3], 2, joined._fresh())
    joined.storage.close()
    again = _founder(tmp_path)
    again.storage.set_hard_state(HardState(term=1, vote=0, commit=0))
    again.storage.close()
    served = _founder(tmp_path)
    assert not served._fresh()  # it heard term 1: a restart with its data, as before
    served.storage.close()


def test_who_must_probe() -> None:
    assert must_probe([1, 2, 3], 2, fresh=True)
    assert not must_probe([1, 2, 3], 2, fresh=False)  # restarted with its data
    assert not must_probe([1], 1, fresh=True)  # a single-node cluster goes on at once
    assert not must_probe([], 4, fresh=True)  # --join: no configuration yet


def test_any_node_answers_from_its_applied_state() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"publish_member", b"2"], 1))
    assert answer_probe(kv, (b"RAFT", b"PUBLISHED", b"2"), list) == 1
    assert answer_probe(kv, (b"raft", b"published", b"3"), list) == 0
    assert isinstance(answer_probe(kv, (b"RAFT", b"PUBLISHED", b"02"), list), ErrorReply)
    assert isinstance(answer_probe(kv, (b"RAFT", b"PUBLISHED"), list), ErrorReply)
    assert answer_probe(kv, (b"RAFT", b"ADDNODE", b"4", b"h:1"), list) is None
    assert answer_probe(kv, (b"SET", b"k", b"v"), list) is None
    assert answer_probe(kv, (), list) is None


def _entry(index: int, data: bytes, kind: int = NORMAL) -> Entry:
    return Entry(term=1, index=index, kind=kind, data=data)


def test_a_node_answers_from_the_log_it_has_not_applied_yet() -> None:
    """CI's lost v1: the stale C, restarted, answered B's probe before re-applying its log
    and said "not published" from its empty state; its log recorded B's publication."""
    kv = KVStateMachine()  # nothing applied yet: a node that has just restarted
    log = [_entry(1, encode_entry([b"set", b"k", b"v"], 5)),
           _entry(2, b"\xa0publish_member 2"),  # undecodable, though it holds the name
           _entry(3, encode_entry([b"publish_member", b"3"], 6)),
           _entry(4, b"publish_member 1", kind=CONFIG),  # not a command at all
           _entry(5, encode_entry([b"publish_member", b"4"]))]  # unstamped
    probe = (b"RAFT", b"PUBLISHED")
    assert [answer_probe(kv, (*probe, b"%d" % i), lambda: log) for i in (1, 2, 3, 4)] == [
        0, 0, 1, 1]
    # A snapshot being installed hides the log: ask again rather than say "not published".
    busy = answer_probe(kv, (*probe, b"5"), lambda: None)
    assert classify(busy) == NO_ANSWER


def test_the_core_gives_the_entries_past_an_index() -> None:
    config = ClusterConfig((Member(1, "a:1"), Member(2, "b:1")))
    st = MemoryStorage(config)
    st.append([_entry(i, b"e%d" % i) for i in (1, 2, 3)])
    st.set_hard_state(HardState(term=1, vote=0, commit=1))
    core = RaftCore(1, st, RaftConfig(), random.Random(1))
    assert [e.data for e in core.entries_after(1) or []] == [b"e2", b"e3"]
    assert core.entries_after(3) == []
    st.compact(SnapshotMeta(2, 1, config), b"")
    assert core.entries_after(1) is None  # compacted: cannot tell


# -- the probe loop -------------------------------------------------------------------------


class _Peers:
    """The transport as the probe sees it: ``answer(peer, round)`` is the peer's reply, or
    None for a peer that never answers (down). A peer in ``unsent`` is not up: the
    transport drops what is sent to it when its dial fails, ``DIAL`` later."""

    def __init__(self, requests: RequestTracker,
                 answer: Callable[[int, int], Any], unsent: frozenset[int]) -> None:
        self.requests = requests
        self.answer = answer
        self.unsent = unsent
        self.asked: dict[int, int] = {}
        self.failed_dials: dict[int, int] = dict.fromkeys(unsent, 0)
        self.changed = trio.Event()

    def send_mark(self, peer: int) -> int | None:
        return self.failed_dials.get(peer)

    def send(self, msg: ForwardRequest) -> bool:
        assert msg.args[:2] == (b"RAFT", b"PUBLISHED") and msg.src == 2
        n = self.asked[msg.dst] = self.asked.get(msg.dst, 0) + 1
        reply = self.answer(msg.dst, n)
        if msg.dst in self.unsent:
            assert reply is None, "a peer that is not up cannot answer"
        elif isinstance(reply, Slow):
            self.later.append((msg.req_id, reply.reply, trio.current_time() + reply.delay))
        elif reply is not None:  # tracked once send returns: later
            self.later.append((msg.req_id, reply, trio.current_time()))
        return True

    def dropped_since(self, peer: int, mark: int | None) -> bool:
        return mark is not None and self.failed_dials[peer] > mark

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.changed.wait()

    async def dial(self) -> None:
        """The transport's dials to the peers that are not up: each fails, DIAL apart."""
        while True:
            await trio.sleep(DIAL)
            for peer in self.unsent:
                self.failed_dials[peer] += 1
            self.changed.set()
            self.changed = trio.Event()

    later: list[tuple[int, Any, float]]  # (request, reply, not before)


@attrs.frozen
class Slow:
    """A reply that comes ``delay`` seconds late."""

    delay: float
    reply: Any


DIAL = 0.1  # (the real transport's first dials: 10 ms apart, growing to 1 s)


async def _probe(answer: Callable[[int, int], Any],
                 founders: tuple[int, ...] = (1, 2, 3),
                 unsent: frozenset[int] = frozenset()) -> tuple[_Peers, RequestTracker]:
    requests = RequestTracker({})
    peers = _Peers(requests, answer, unsent)
    peers.later = []

    async def deliver() -> None:
        while True:
            await trio.sleep(0.05)  # the peer's round trip, on the mock clock
            now = trio.current_time()
            for req_id, reply, _ in [x for x in peers.later if x[2] <= now]:
                pending = requests.forward_answered(req_id)
                if pending is not None:
                    pending.set(reply)
            peers.later = [x for x in peers.later if x[2] > now]

    refused: list[LostItsData] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deliver)
        nursery.start_soon(peers.dial)
        try:
            await wait_until_unpublished(2, list(founders), peers,  # type: ignore[arg-type]
                                         requests,
                                         lambda: 0, random.Random(1))
        except LostItsData as exc:
            refused.append(exc)
        nursery.cancel_scope.cancel()
    if refused:
        raise refused[0]
    return peers, requests


async def test_a_published_founder_refuses_though_the_leader_is_dead(autojump_clock) -> None:
    with pytest.raises(LostItsData) as caught:
        await _probe(lambda peer, n: None if peer == 1 else 1)
    text = str(caught.value)
    assert "node 2 is already a voter of this cluster" in text
    assert "node 3 has it as published" in text
    assert "RAFT REMOVENODE 2" in text and "new --id and --join" in text


async def test_a_fresh_founder_goes_on_after_one_not_published(autojump_clock) -> None:
    peers, requests = await _probe(lambda peer, n: None if peer == 1 else 0)
    assert peers.asked == {1: 1, 3: 1}
    assert not requests.forwards  # the unanswered probe is forgotten


async def test_a_probe_dropped_unsent_is_not_waited_for(autojump_clock) -> None:
    """A fresh cluster's founders start together: a probe sent before a peer listens is
    dropped when the dial to it fails. The round ends then, not at its 2 s deadline (every
    3-node cluster start waited it out), with the same answers: 3's "not published"."""
    start = trio.current_time()
    peers, requests = await _probe(lambda peer, n: 0 if peer == 3 else None,
                                   unsent=frozenset({1}))
    assert peers.asked == {1: 1, 3: 1}
    assert trio.current_time() - start < ROUND_TIMEOUT  # (the mock clock's: 0.1 s)
    assert not requests.forwards


async def test_a_dropped_probe_does_not_end_the_wait_for_another_peer(
        autojump_clock) -> None:
    """1's probe is dropped at once, 3 answers "published" only after a second: the
    founder still hears it and refuses, as it did when it waited out the deadline."""
    with pytest.raises(LostItsData) as caught:
        await _probe(lambda peer, n: None if peer == 1 else Slow(1.0, 1),
                     unsent=frozenset({1}))
    assert "node 3 has it as published" in str(caught.value)


async def test_two_wiped_founders_of_five_do_not_vouch_for_each_other(autojump_clock) -> None:
    """attack9, live on 5 real nodes: v1 acknowledged by 1, 2, 3 while 4 and 5 were down;
    2 and 3 wiped and restarted with --cluster while 1, 4 and 5 were down. Each answered
    the other "not published" (a founder that is itself asking knows nothing) and went on;
    4 and 5 restarted, 4 won with their votes and v1 was gone from every node. Now 3's
    answer alone (2 of 5 with the asker) is not enough: 2 asks again until 4 is back and
    says it is published."""
    with pytest.raises(LostItsData) as caught:
        await _probe(lambda peer, n: 0 if peer == 3 else 1 if peer == 4 and n >= 5 else None,
                     founders=(1, 2, 3, 4, 5))
    assert "node 4 has it as published" in str(caught.value)


async def test_a_majority_of_founders_not_published_lets_a_new_one_go_on(
        autojump_clock) -> None:
    # Five founders of a new cluster, two of them down: two answers and the asker are 3 of 5.
    peers, _ = await _probe(lambda peer, n: 0 if peer in (3, 4) and n >= 3 else None,
                            founders=(1, 2, 3, 4, 5))
    assert peers.asked == {1: 3, 3: 3, 4: 3, 5: 3}


async def test_a_late_founder_waits_without_deadline_until_a_peer_answers(
        autojump_clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "raftkv.node")
    start = trio.current_time()
    peers, _ = await _probe(lambda peer, n: 0 if peer == 3 and n >= 40 else None)
    assert peers.asked[3] == 40 and peers.asked[1] == 40
    assert trio.current_time() - start > 60  # far past any one deadline: it kept asking
    assert any("waiting for a founder to answer" in r.getMessage() for r in caplog.records)


async def test_a_peer_of_an_earlier_release_counts_as_not_published(
        autojump_clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "raftkv.node")
    await _probe(lambda peer, n: OLD_USAGE if peer == 3 else None)
    assert any("earlier release" in r.getMessage() for r in caplog.records)


# -- holding the core -----------------------------------------------------------------------


class _Core:
    role = Role.FOLLOWER

    def __init__(self) -> None:
        self.stepped: list[Any] = []
        self.ticks = 0

    def step(self, msg: Any) -> None:
        self.stepped.append(msg)

    def tick(self) -> None:
        self.ticks += 1


def _driver(core: _Core, forwarded: list[Any], answered: list[Any]) -> CoreDriver:
    forwarder = SimpleNamespace(on_response=answered.append)
    nothing: Any = SimpleNamespace()
    return CoreDriver(core, nothing, trio.Lock(), nothing, nothing, nothing, nothing, nothing,
                      forwarder, nothing, nothing, {}, forwarded.append, lambda: None)  # type: ignore[arg-type]


def test_a_held_driver_gives_the_core_nothing_but_routes_probes() -> None:
    core, forwarded, answered = _Core(), [], []
    driver = _driver(core, forwarded, answered)
    vote = RequestVote(term=5, src=3, dst=2, last_log_index=1, last_log_term=1)
    probe = ForwardRequest(term=0, src=3, dst=2, req_id=1, args=(b"RAFT", b"PUBLISHED", b"3"))
    reply = ForwardResponse(term=0, src=3, dst=2, req_id=9, reply=b":0\r\n")
    driver.hold = True
    for msg in (vote, probe, reply):
        driver.on_peer_message(msg)
    assert core.stepped == [] and driver.held == 1
    assert forwarded == [probe] and answered == [reply]
    driver.hold = False
    driver.on_peer_message(vote)
    assert core.stepped == [vote]


async def test_a_held_ticker_gives_the_core_no_tick(autojump_clock) -> None:
    core, ticker = _Core(), Ticker()
    ticker.hold = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run, core, 10, lambda: None)
        for _ in range(50):
            await ticker.next_tick()
        assert core.ticks == 0  # an empty founder's election timer never runs
        ticker.hold = False
        await ticker.next_tick()
        await ticker.next_tick()
        assert core.ticks >= 1
        nursery.cancel_scope.cancel()


# -- the leader publishes -------------------------------------------------------------------


class _LeaderCore:
    role = Role.LEADER

    def __init__(self, match: dict[int, int]) -> None:
        self.match = match
        self.cluster_config = ClusterConfig((Member(1, "h:1"), Member(2, "h:2"),
                                             Member(3, "h:3"), Member(4, "h:4", learner=True)))

    def progress(self, peer: int) -> Any:
        return SimpleNamespace(match=self.match[peer]) if peer in self.match else None


async def test_the_leader_publishes_itself_and_the_voters_that_acknowledged(
        autojump_clock) -> None:
    kv = KVStateMachine()
    core = _LeaderCore({2: 0, 3: 4, 4: 9})
    proposed: list[list[bytes]] = []

    def submit(args: list[bytes]) -> Any:
        from raftkv.node.pending import Pending
        proposed.append(args)
        return Pending.of(kv.apply(encode_entry(args, 1)))

    with trio.move_on_after(5):
        await publish_members(1, core, kv, submit)  # type: ignore[arg-type]
    assert kv.published_members == {1, 3}  # 2 never acknowledged; 4 is a learner
    assert proposed == [[b"publish_member", b"1"], [b"publish_member", b"3"]]
    core.match[2] = 1
    with trio.move_on_after(5):
        await publish_members(1, core, kv, submit)  # type: ignore[arg-type]
    assert kv.published_members == {1, 2, 3}
