"""raftkv.raft.validation: what a decoded peer message must satisfy before the core
sees it. Every case here would reach the core on today's main (the codec only checks types
and 0 <= int < 2**64)."""

from __future__ import annotations

import attrs
import pytest

from raftkv.raft.membership import encode_config
from raftkv.raft.validation import check_peer_message
from wire.errors import ProtocolError
from wire.hello import Hello, Ping
from wire.raft import (
    CONFIG,
    MAX_TERM,
    NORMAL,
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    ForwardRequest,
    HardState,
    InstallSnapshot,
    Member,
    ReadIndexRequest,
    RequestVote,
    SnapshotMeta,
)

CONF = ClusterConfig((Member(1, "a:1"), Member(2, "b:2")))
GOOD_AE = AppendEntries(5, 2, 1, 10, 4, (
    Entry(4, 11, NORMAL, b"x"),
    Entry(5, 12, CONFIG, encode_config(CONF)),
    # A bad *address* is not malformed: it becomes a link that fails to dial.
    Entry(5, 13, CONFIG, encode_config(ClusterConfig((Member(1, "a..b:99999"),)))),
), 9)
GOOD_SNAP = InstallSnapshot(5, 2, 1, SnapshotMeta(100, 4, CONF), 0, b"data", True)

GOOD = [
    RequestVote(MAX_TERM, 2, 1, MAX_TERM, MAX_TERM, transfer=True),
    AppendEntriesResponse(5, 2, 1, True, 12),
    GOOD_AE,
    GOOD_SNAP,
    ReadIndexRequest(5, 2, 1, b"\x00" * 8),
    ForwardRequest(5, 2, 1, 7, (b"SET", b"k", b"v")),
]

BAD = {
    "term 2**64-1": RequestVote(2**64 - 1, 2, 1, 0, 0, transfer=True),
    "term MAX+1": RequestVote(MAX_TERM + 1, 2, 1, 0, 0),
    "last_log_index": RequestVote(5, 2, 1, 2**63, 0),
    "match_index": AppendEntriesResponse(5, 2, 1, True, 2**64 - 1),
    "commit": attrs.evolve(GOOD_AE, commit=2**62),
    "entry gap": attrs.evolve(GOOD_AE, entries=(Entry(4, 12, NORMAL, b""),)),
    "entry term above message": attrs.evolve(GOOD_AE, entries=(Entry(6, 11, NORMAL, b""),)),
    "entry term going back": attrs.evolve(GOOD_AE, entries=(Entry(3, 11, NORMAL, b""),)),
    "prev_term above term": attrs.evolve(GOOD_AE, prev_term=6, entries=()),
    "entry kind": attrs.evolve(GOOD_AE, entries=(Entry(4, 11, 7, b""),)),
    "garbage CONFIG": attrs.evolve(GOOD_AE, entries=(Entry(4, 11, CONFIG, b"\xc1junk"),)),
    "CONFIG of another record": attrs.evolve(
        GOOD_AE, entries=(Entry(4, 11, CONFIG, encode_config(HardState())),)),  # type: ignore[arg-type]
    "CONFIG member id 0": attrs.evolve(GOOD_AE, entries=(
        Entry(4, 11, CONFIG, encode_config(ClusterConfig((Member(0, "a:1"),)))),)),
    "CONFIG duplicate ids": attrs.evolve(GOOD_AE, entries=(
        Entry(4, 11, CONFIG, encode_config(ClusterConfig((Member(1, "a:1"),) * 2))),)),
    "snapshot term above message": attrs.evolve(GOOD_SNAP, meta=SnapshotMeta(100, 6, CONF)),
    "snapshot member id": attrs.evolve(GOOD_SNAP, meta=SnapshotMeta(
        100, 4, ClusterConfig((Member(2**64 - 1, "a:1"),)))),
    "read ctx": ReadIndexRequest(5, 2, 1, b"x" * 1000),
    "not a message: Hello": Hello(1, "c", 2, "a:1", "b:1"),
    "not a message: Ping": Ping(),
    "not a message: Entry": Entry(1, 1, NORMAL, b""),
}


@pytest.mark.parametrize("msg", GOOD, ids=lambda m: type(m).__name__)
def test_well_formed_messages_pass(msg: object) -> None:
    check_peer_message(msg)


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_messages_are_protocol_errors(case: str) -> None:
    with pytest.raises(ProtocolError):
        check_peer_message(BAD[case])
