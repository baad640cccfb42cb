"""client.feed: ids, feed keys and the XREAD/XRANGE replies, hostile ones included."""

from __future__ import annotations

import pytest

from client.feed import (
    BadFeedReply,
    ChangeId,
    check_order,
    feed_key,
    parse_entry,
    parse_start,
    parse_xread,
)

KEY = b"__raftkv:changes"


def entry(cid: bytes, *fields: bytes) -> list[object]:
    return [cid, list(fields)]


def test_ids_parse_order_and_print() -> None:
    assert ChangeId.parse("12-3") == ChangeId(12, 3)
    assert ChangeId.parse(b"12") == ChangeId(12, 0)
    assert str(ChangeId(7, 0)) == "7-0"
    assert ChangeId(2, 9) < ChangeId(3, 0) < ChangeId(3, 1)
    assert parse_start("$") is None and parse_start("0") == ChangeId(0, 0)
    for bad in ("", "-1", "1-", "a-1", "1-2-3", "\uff11", "1" * 21, str(1 << 64)):
        with pytest.raises(ValueError):
            ChangeId.parse(bad)


def test_feed_keys() -> None:
    assert feed_key("*") == KEY
    assert feed_key("user:*") == KEY + b":user:*"
    assert feed_key(b"k?") == KEY + b":k?"
    with pytest.raises(ValueError):
        feed_key("")


def test_an_entry_with_every_field() -> None:
    c = parse_entry(entry(b"5-1", b"op", b"set", b"key", b"k", b"value", b"v",
                          b"deadline", b"1700000000000"))
    assert (c.id, c.op, c.key, c.value, c.deadline) == (ChangeId(5, 1), "set", b"k", b"v",
                                                        1700000000000)
    assert c.to_json() == {"id": "5-1", "index": 5, "position": 1, "op": "set", "key": "k",
                           "value": "v", "deadline": 1700000000000}


@pytest.mark.parametrize("raw", [
    None, b"5-0", [b"5-0"], [b"x-0", [b"op", b"set", b"key", b"k"]],
    [b"5-0", [b"op", b"set", b"key"]], [b"5-0", [b"op", b"set"]],
    [b"5-0", [b"key", b"k"]], [b"5-0", [b"op", 1, b"key", b"k"]],
    [b"5-0", [b"op", b"set", b"key", b"k", b"deadline", b"soon"]], [5, []],
])
def test_malformed_entries_are_refused(raw: object) -> None:
    with pytest.raises(BadFeedReply):
        parse_entry(raw)


def test_xread_replies() -> None:
    e = entry(b"1-0", b"op", b"del", b"key", b"k")
    assert parse_xread(None, KEY) == []
    assert [c.op for c in parse_xread([[KEY, [e]]], KEY)] == ["del"]
    assert [c.op for c in parse_xread({KEY: [e]}, KEY)] == ["del"]  # RESP3's map
    for bad in ([], [[KEY, [e]], [KEY, [e]]], [[b"other", [e]]], [[KEY]], b"OK", [[KEY, e]]):
        with pytest.raises(BadFeedReply):
            parse_xread(bad, KEY)


def test_order_check_refuses_duplicates_and_reorders() -> None:
    def changes(*ids: str) -> list[object]:
        return [parse_entry(entry(i.encode(), b"op", b"set", b"key", b"k")) for i in ids]

    check_order(changes("1-1", "2-0"), ChangeId(1, 0))  # type: ignore[arg-type]
    for ids, after in ((("1-0",), "1-0"), (("2-0", "2-0"), "1-0"), (("3-0", "2-5"), "1-0")):
        with pytest.raises(BadFeedReply):
            check_order(changes(*ids), ChangeId.parse(after))  # type: ignore[arg-type]
