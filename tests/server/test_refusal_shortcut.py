"""The client port's shortcut past ``_refused`` (commands._refusal) refuses exactly what
``_refused`` refuses: writes to the change feed's names, in every form, are still caught."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from raftkv.server.commands import _FEED_FREE_AT, _PLAIN_READS, _refusal, _refused
from raftkv.server.streams import WRITE_TO_FEED

KEYS = [b"k", b"__raftkv:changes", b"__raftkv:changes:x", b"__raftkv:changes:*",
        b"__raftkv:changesX", b"__raftkv", b"k=v", b"__raftkv:changes=v",
        b"__raftkv:changes:x=v", b"=__raftkv:changes"]
NAMES = [*sorted(_FEED_FREE_AT), b"get", b"mset", b"del", b"raft", b"eval", b"once"]


def _calls(name: bytes) -> list[list[bytes]]:
    calls: list[list[bytes]] = [[name]]
    for key in KEYS:
        for rest in ([], [b"v"], [key], [b"v", b"EX", b"10"], [b"1", key, b"2"]):
            calls.append([name, key, *rest])
            calls.append([b"x", key, *rest])  # the feed's name at another place
    return calls


@pytest.mark.parametrize("name", NAMES)
def test_the_shortcut_answers_what_refused_answers(name: bytes) -> None:
    node = SimpleNamespace(settings=SimpleNamespace(enable_scripts=True))
    for args in _calls(name):
        args = [name.upper(), *args[1:]] if args[0] == name else args
        lowered = args[0].lower()
        want = None if lowered in _PLAIN_READS else _refused(node, args, lowered)  # type: ignore[arg-type]
        assert _refusal(node, args, lowered) == want, args  # type: ignore[arg-type]


def test_writes_to_the_feed_are_still_refused() -> None:
    node = SimpleNamespace(settings=SimpleNamespace(enable_scripts=True))
    for args in ([b"SET", b"__raftkv:changes", b"v"], [b"set", b"__raftkv:changes:x=v"],
                 [b"INCR", b"__raftkv:changes:a"], [b"setrange", b"__raftkv:changes", b"0", b"x"]):
        assert _refusal(node, args, args[0].lower()) == WRITE_TO_FEED  # type: ignore[arg-type]
    assert _refusal(node, [b"SET", b"k", b"v"], b"set") is None  # type: ignore[arg-type]
