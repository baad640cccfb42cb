"""What clients asked and were told: proposal fates and linearizable reads, checked.

Proposals carry unique values in the register workload, so an applied entry names its
proposal; the KV workload's entries (stamped commands, a retried one possibly identical to
its first send) may repeat, so each value maps to every proposal of it. A proposal that got
``(index, term)`` from ``propose()`` is *committed* when that index is applied with that
term and *lost* when it is applied with another term. It is also lost once the applied
(committed) log holds any entry of a later term: terms never decrease along a log, so no
leader can ever again carry the proposal's term past that entry.

A read asked at virtual time t must return a read index at least the highest commit index
any node had reached by t (a write acknowledged before t was applied, so committed, before
t; and a ReadIndex leader holds every committed entry and answers only after its own term's
first commit, so its commit index is at least that high). The value it serves is the node's
state machine at apply >= read index, which must equal the global applied log's register at
that apply index.
"""

from __future__ import annotations

import attrs

from chaos.sim.invariants import Violation
from wire.raft import NORMAL, Entry

PENDING, COMMITTED, LOST = "pending", "committed", "lost"


@attrs.define
class Proposal:
    value: bytes
    node: int
    index: int
    term: int
    at: int
    status: str = PENDING


@attrs.define
class Read:
    ctx: bytes
    node: int
    inc: int
    at: int
    frontier: int
    index: int = -1


@attrs.define
class HistoryStats:
    proposed: int = 0
    committed: int = 0
    lost: int = 0
    reads: int = 0
    reads_served: int = 0
    reads_failed: int = 0
    stray_read_states: int = 0


class History:
    """Client-visible outcomes and their checks (fed by the cluster driver)."""

    def __init__(self) -> None:
        self.proposals: dict[bytes, list[Proposal]] = {}
        self._pending_at: dict[int, list[Proposal]] = {}
        self.register: list[bytes] = [b""]  # register[i]: last NORMAL value after entry i
        self._terms: list[int] = [0]  # _terms[i]: term of the applied entry i
        self.max_applied_term = 0
        self.reads: dict[bytes, Read] = {}
        self._waiting: dict[tuple[int, int], list[Read]] = {}
        self.stats = HistoryStats()

    # -- proposals -------------------------------------------------------------------------
    def proposed(self, node: int, value: bytes, index: int, term: int, now: int) -> None:
        p = Proposal(value, node, index, term, now)
        self.proposals.setdefault(value, []).append(p)
        self.stats.proposed += 1
        if index < len(self.register):
            # Another proposal was already applied there (a leader that lost its log
            # suffix and re-used the index would be caught by the log checks).
            self._settle(p, self._applied_term(index), value)
        else:
            self._pending_at.setdefault(index, []).append(p)

    def applied(self, entry: Entry) -> None:
        """An entry was applied by some node (the checker has already verified it agrees
        with every other application at that index)."""
        if entry.kind == NORMAL:
            same = self.proposals.get(entry.data)
            if same and all((p.index, p.term) != (entry.index, entry.term) for p in same):
                p = same[0]
                raise Violation(
                    "proposal placement",
                    f"value {entry.data!r} was proposed at ({p.index}, {p.term}) but applied "
                    f"at ({entry.index}, {entry.term})",
                )
        if entry.index != len(self.register):
            return  # a re-application (restart) or a later node catching up
        self.register.append(entry.data if entry.kind == NORMAL else self.register[-1])
        self._terms.append(entry.term)
        self.max_applied_term = max(self.max_applied_term, entry.term)
        for p in self._pending_at.pop(entry.index, ()):
            self._settle(p, entry.term, entry.data if entry.kind == NORMAL else None)

    def _applied_term(self, index: int) -> int:
        return self._terms[index]

    def _settle(self, p: Proposal, term: int, data: bytes | None) -> None:
        if term == p.term:
            if data != p.value:
                raise Violation(
                    "proposal placement",
                    f"entry ({p.index}, {p.term}) was promised to {p.value!r} but holds {data!r}",
                )
            p.status = COMMITTED
            self.stats.committed += 1
        else:
            p.status = LOST
            self.stats.lost += 1

    def unresolved(self) -> list[Proposal]:
        """Pending proposals the applied log cannot settle yet; settles the ones it can."""
        out = []
        for index in sorted(self._pending_at):
            keep = []
            for p in self._pending_at[index]:
                if self.max_applied_term > p.term:
                    p.status = LOST  # a later term's entry is committed before its index
                    self.stats.lost += 1
                else:
                    keep.append(p)
            if keep:
                self._pending_at[index] = keep
                out.extend(keep)
            else:
                del self._pending_at[index]
        return out

    # -- reads --------------------------------------------------------------------------------
    def read_requested(self, node: int, inc: int, ctx: bytes, now: int, frontier: int) -> None:
        self.reads[ctx] = Read(ctx, node, inc, now, frontier)
        self.stats.reads += 1

    def read_state(self, node: int, inc: int, ctx: bytes, index: int, applied: int) -> bool:
        """The core says read ``ctx`` is linearizable at ``index``; True when servable now."""
        r = self.reads.get(ctx)
        if r is None or r.node != node or r.inc != inc or r.index >= 0:
            self.stats.stray_read_states += 1
            return False
        if index < r.frontier:
            raise Violation(
                "linearizable read",
                f"read {ctx!r} on node {node} got read index {index}, but index {r.frontier} "
                f"was already committed when the read was asked (t={r.at})",
            )
        r.index = index
        if applied >= index:
            return True
        self._waiting.setdefault((node, inc), []).append(r)
        return False

    def serve(self, ctx: bytes, applied: int, value: bytes) -> None:
        """Node answers the read with its state machine at apply index ``applied``."""
        r = self.reads.pop(ctx)
        if applied < r.index:
            raise Violation(
                "linearizable read",
                f"read {ctx!r} served at apply {applied} below its read index {r.index}",
            )
        if applied < len(self.register) and self.register[applied] != value:
            raise Violation(
                "linearizable read",
                f"read {ctx!r} on node {r.node} served {value!r} at apply {applied}, the log "
                f"says {self.register[applied]!r}",
            )
        self.stats.reads_served += 1

    def ready_to_serve(self, node: int, inc: int, applied: int) -> list[bytes]:
        waiting = self._waiting.get((node, inc))
        if not waiting:
            return []
        now = [r.ctx for r in waiting if r.index <= applied]
        if now:
            self._waiting[(node, inc)] = [r for r in waiting if r.index > applied]
        return now

    def read_failed(self, ctx: bytes) -> None:
        if self.reads.pop(ctx, None) is not None:
            self.stats.reads_failed += 1

    def forget_node(self, node: int, inc: int) -> None:
        """The node crashed: its pending reads will never be answered (client timeout)."""
        self._waiting.pop((node, inc), None)
        for ctx in [c for c, r in self.reads.items() if r.node == node and r.inc == inc]:
            del self.reads[ctx]

    def expire_reads(self, before: int) -> None:
        """Forget reads asked before ``before`` that never got a read index (timeouts)."""
        for ctx in [c for c, r in self.reads.items() if r.at < before and r.index < 0]:
            del self.reads[ctx]
