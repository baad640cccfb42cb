"""attack18: a failing script that called FLUSHALL lost its session record.

``once sid seq EVAL ...`` records the reply in the session table it looked up before
running the script (``_once`` holds ``self._sessions``). A script that calls FLUSHALL and
then fails is undone by ``machine.replace`` of the state saved before the FLUSHALL, which
builds a *new* ``SessionTable``: the reply went into the discarded one, so the retry of
the same (session, seq) ran the script again and answered differently (here its second run
wrote and answered ``done``). The same script without FLUSHALL answers its recorded error
on the retry, as exactly-once promises (README, Exactly-once retries).
"""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, encode_entry

T0 = 1_700_000_000_000
SID = b"12345"


@pytest.mark.parametrize("flush", [b"", b"redis.call('FLUSHALL'); "])
def test_retry_of_a_failed_once_script_answers_the_recorded_error(flush: bytes) -> None:
    kv = KVStateMachine()
    assert kv.apply(encode_entry([b"session_open", b"60000", SID], T0)) == 12345
    body = (b"if redis.call('GET', 'go') then return redis.call('INCR', 'n') end "
            + flush + b"error('not yet')")
    once = [b"once", SID, b"1", b"EVAL", body, b"0"]
    first = kv.apply(encode_entry(once, T0))
    assert type(first).__name__ == "ErrorReply"
    kv.apply(encode_entry([b"SET", b"go", b"1"], T0))  # the state changes meanwhile
    assert kv.apply(encode_entry(once, T0)) == first  # the retry: the recorded reply
    assert kv.read([b"GET", b"n"]) is None  # ... and the script did not run again
