"""attack17: since attack16 the failed-AUTH bound does not bound an IPv6 guesser at all.

Failures are counted per whole address (attack16: a /64 neighbour must not lock a client
out). But one machine holds a whole /64 (SLAAC privacy addresses, a cloud VM's delegated
prefix, ``ip -6 addr add`` in a loop): it takes a new address every 100 failures. With the
clock stopped it gets ``MAX_SOURCES`` x ``BURST`` = 409,600 guesses at once, then, each
of its 4,096 addresses refilling at ``RATE``, 40,960 a second for good: three times
attack14's 13,390 a second without any limit, i.e. as fast as the node can answer. The
README's bound ("a burst of 100, then 10 a second") holds for IPv4 only. Live (one node,
--requirepass, one process, 10 wrong passwords per connection, 5 s each, load ~11): from
one source address 30 wrong passwords checked a second (6,059 refused); cycling through
4,826 source addresses of 127.0.0.0/8 (standing in for a /64) 3,932 a second, 0 refused.

A fix that keeps attack16's rule: a second, larger bucket per /64 (say 10 x the burst and
10 x the rate) next to the per-address one. A neighbour's 200 failures (attack16's test)
stay within it; one machine's cycling does not."""

from __future__ import annotations

from raftkv.server.auth_limit import BURST, FailedAuths


def test_a_guesser_cycling_through_its_v6_subnet_is_bounded() -> None:
    now = [100.0]
    limit = FailedAuths(lambda: now[0])
    bound = 10 * BURST
    guesses = addresses = 0
    for i in range(1, 40):  # 2001:db8:17:17::1, ::2, ... (one machine's /64)
        source = f"2001:db8:17:17::{i:x}"
        addresses += 1
        while guesses <= bound and limit.allowed(source):
            limit.failed(source)
            guesses += 1
        if guesses > bound:
            break
    assert guesses <= bound, (f"{guesses} guesses from one /64 at one instant, through "
                              f"{addresses} of its addresses (and 4,096 give 409,600)")
