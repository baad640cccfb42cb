"""Raft's safety properties, checked incrementally as the simulation runs.

The five of the Raft paper (Figure 3) carry their names in violations: Election Safety,
Leader Append-Only, Log Matching, Leader Completeness, State Machine Safety. The others are
the rules that lead to them (commit rule, persistence, truncation, ...).

Every check is O(new work): entries appended, commit indexes advanced, entries applied,
elections won. The checker keeps the global facts those need:

- ``leaders``: term -> the one node that led it (election safety, across all time).
- ``entry_ids``: (index, term) -> (kind, data, previous term). If every appended entry with
  a given (index, term) has the same contents *and* the same previous term, then by
  induction any two logs holding (index, term) agree on every entry before it: the Log
  Matching property, checked one entry at a time instead of comparing whole logs.
- ``committed``: index -> term of every entry some node has seen committed. A node whose
  commit index advances must hold exactly these terms (two different entries committed at
  one index is a violation). ``commit_term``: index -> the lowest term in which a node
  reported the entry committed (an upper bound of the term whose leader committed it). A
  node that becomes leader of term T must hold every entry committed in a term below T
  (Leader Completeness); a candidate of an older term may still win after a newer leader
  committed more, and it need not hold that. Commit indexes are not persisted
  synchronously, so a restarted node may come back with a lower commit index: monotonicity
  is checked per incarnation, and what must survive a restart is the committed entries
  themselves (a later leader lacking one is caught by Leader Completeness, a node applying
  something else by State Machine Safety).
- Raft's commit rule: a leader moves its commit index only onto an entry of its own term.
- ``applied``: index -> the entry applied there by anyone (State Machine Safety), and per
  incarnation applied indexes advance by exactly one.
- Appends are acknowledged only to the leader of the acknowledger's term.
- A leader only appends to its log (Leader Append-Only), and no node's current term is below
  the last term in its log, after a restart included.
- ``votes``: (voter, term) -> candidate granted, across restarts (a node that forgets its
  vote and votes twice in a term is the root of two leaders in one term).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from wire.raft import NORMAL, Entry

# term_at(index) -> term, None when the index is compacted into a snapshot (its entry was
# committed and applied), or MISSING when the log does not reach that index.
MISSING = -1
TermAt = Callable[[int], "int | None"]


STANDARD_PROPERTIES = (
    "Election Safety",
    "Leader Append-Only",
    "Log Matching",
    "Leader Completeness",
    "State Machine Safety",
)


class Violation(Exception):
    """A safety or liveness property failed; ``prop`` names it, the message explains."""

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


class SafetyChecker:
    """Incremental checks of Raft's safety properties over all nodes and incarnations."""

    def __init__(self, rules: bool = True) -> None:
        # rules=False keeps only the checks of outcomes (two leaders, a lost commit, a stale
        # read...) and drops those of Raft's rules that lead to them (commit rule, ack rule,
        # truncation rule, persistence before sending): used to show that the schedule
        # reaches the outcomes too, not only the first broken rule.
        self.rules = rules
        self.leaders: dict[int, int] = {}
        self.entry_ids: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.committed: dict[int, int] = {}
        self.commit_term: dict[int, int] = {}
        self.commit_max = 0
        self.applied: dict[int, Entry] = {}
        self.votes: dict[tuple[int, int], int] = {}
        # node -> term -> the longest prefix of its current log it acknowledged in that term
        self.acked: dict[int, dict[int, int]] = {}
        self._commit_seen: dict[tuple[int, int], int] = {}
        self._applied_seen: dict[tuple[int, int], int] = {}
        self._leading: dict[tuple[int, int], int] = {}

    @property
    def elections(self) -> int:
        return len(self.leaders)

    # -- incarnations --------------------------------------------------------------------
    def incarnation(self, node: int, inc: int, applied: int) -> None:
        """A node (re)started; its state machine starts at ``applied`` (the snapshot)."""
        self._commit_seen[(node, inc)] = 0
        self._applied_seen[(node, inc)] = applied

    # -- election safety and leader completeness -------------------------------------------
    def leader(self, node: int, term: int, term_at: TermAt) -> bool:
        """``node`` is leader of ``term``; returns True when this is a new leadership."""
        known = self.leaders.get(term)
        if known is not None:
            if known != node:
                raise Violation(
                    "Election Safety", f"nodes {known} and {node} are both leader of term {term}"
                )
            return False
        self.leaders[term] = node
        commit_term = self.commit_term
        for index in self.committed:
            if commit_term[index] >= term:
                continue  # committed in this term or later: not promised to this leader
            got = term_at(index)
            if got is None:
                continue
            want = self.committed[index]
            if got != want:
                has = "lacks it" if got == MISSING else f"has term {got} there"
                raise Violation(
                    "Leader Completeness",
                    f"node {node} became leader of term {term} but entry {index} "
                    f"(term {want}) is committed and its log {has}",
                )
        return True

    def append_ack(self, node: int, term: int, leader: int, match: int = 0) -> None:
        """``node`` acknowledges (success) an AppendEntries from ``leader`` in ``term``: only
        the leader of the acknowledger's own term may get one (Raft 5.1: reject older terms).
        An ack to anyone else means a stale leader's entries were taken into the log.
        ``match``: the log prefix the ack vouches for (a commit quorum is made of these)."""
        by_term = self.acked.setdefault(node, {})
        if match > by_term.get(term, 0):
            by_term[term] = match
        known = self.leaders.get(term)
        if known != leader and self.rules:
            raise Violation(
                "append acknowledgement",
                f"node {node} acknowledges AppendEntries from node {leader} in term {term}, "
                f"whose leader is {known or 'nobody'}",
            )

    # -- terms ---------------------------------------------------------------------------------
    def term_covers_log(self, node: int, term: int, last_log_term: int) -> None:
        """A node has seen every term in its log: its current term is at least the last
        entry's. Below it, a stale leader of an older term could overwrite an entry of a newer
        one (seed 9100594: a crash kept an entry of a Ready but not its hard state)."""
        if term < last_log_term and self.rules:
            raise Violation(
                "term below log",
                f"node {node} is at term {term} but its log holds an entry of term "
                f"{last_log_term}",
            )

    # -- votes ---------------------------------------------------------------------------------
    def vote(self, voter: int, term: int, candidate: int) -> None:
        before = self.votes.setdefault((voter, term), candidate)
        if before != candidate and self.rules:
            raise Violation(
                "vote safety",
                f"node {voter} granted its term-{term} vote to {before} and then to {candidate}",
            )

    # -- log matching and the truncation rule -----------------------------------------------
    def appending(
        self,
        node: int,
        entries: Sequence[Entry],
        last_index: int,
        term_at: TermAt,
        commit_index: int,
        leading: bool = False,
    ) -> None:
        """Check a batch before ``node``'s storage appends it (its log ends at last_index);
        ``leading``: the node appends as leader (its own proposals)."""
        if not entries:
            return
        first = entries[0].index
        if first > last_index + 1:
            raise Violation(
                "log append", f"node {node} appends at {first} but its log ends at {last_index}"
            )
        if leading and first <= last_index:
            raise Violation(
                "Leader Append-Only",
                f"node {node} as leader writes entries from {first} over its log ending at "
                f"{last_index}",
            )
        prev_term = term_at(first - 1)
        conflict = None
        replaced = 0
        for e in entries:
            if e.index <= last_index and conflict is None:
                have = term_at(e.index)
                if have is not None and have != e.term:
                    conflict, replaced = e.index, have
            if prev_term is not None and prev_term != MISSING and e.term < prev_term:
                raise Violation(
                    "log order",
                    f"node {node} appends entry {e.index} of term {e.term} after term {prev_term}",
                )
            self._match(node, e, prev_term)
            prev_term = e.term
        end = entries[-1].index
        if conflict is None and end < last_index and self.rules:
            raise Violation(
                "log truncation",
                f"node {node} drops entries {end + 1}..{last_index} although entries "
                f"{first}..{end} match its log (truncate only from a term conflict)",
            )
        if conflict is not None:
            if conflict <= commit_index and self.rules:
                raise Violation(
                    "log truncation",
                    f"node {node} overwrites entry {conflict} at or below its own commit "
                    f"index {commit_index}",
                )
            # Only a copy that vouched for the commit must survive: one acknowledged in the
            # term the entry was committed in (a leader counts its own term's acks only). A
            # node in no quorum for it may take a stale leader's entry there (seed
            # 50000251: restarted at term 1, it took a delayed term-2 append over entry 72,
            # which a term-3 leader had committed without it; seed 70010502: its ack of
            # entry 72 went to a term-4 leader that lost the entry in a crash, a term-10
            # leader committed it without this node, which then, cut off at term 8, took
            # a delayed term-8 append there). A leader lacking a committed entry is
            # Leader Completeness's to catch.
            by_term = self.acked.get(node, {})
            commit_term = self.commit_term.get(conflict)
            vouched = commit_term is not None and by_term.get(commit_term, 0) >= conflict
            if self.committed.get(conflict) == replaced and vouched:
                raise Violation(
                    "log truncation",
                    f"node {node} overwrites committed entry {conflict} (term {replaced}), "
                    f"which it had acknowledged in term {commit_term}, the term that "
                    f"committed it, with term {entries[conflict - first].term}",
                )
            for term, match in by_term.items():
                if match >= conflict:
                    by_term[term] = conflict - 1  # the acks covered entries now replaced

    def _match(self, node: int, e: Entry, prev_term: int | None) -> None:
        key = (e.index, e.term)
        # -2: the previous term is unknown (compacted): compare contents only.
        prev = -2 if prev_term is None or prev_term == MISSING else prev_term
        seen = self.entry_ids.get(key)
        if seen is None:
            self.entry_ids[key] = (e.kind, e.data, prev)
            return
        if seen[0] != e.kind or seen[1] != e.data:
            raise Violation(
                "Log Matching",
                f"node {node} has entry {e.index} of term {e.term} with contents "
                f"{e.kind}/{e.data[:24]!r}, elsewhere {seen[0]}/{seen[1][:24]!r}",
            )
        if prev != -2 and seen[2] != -2 and seen[2] != prev:
            raise Violation(
                "Log Matching",
                f"node {node} has entry {e.index} of term {e.term} after an entry of term "
                f"{prev}, another log has it after term {seen[2]}",
            )
        if seen[2] == -2 and prev != -2:
            self.entry_ids[key] = (e.kind, e.data, prev)

    def commit_seen(self, node: int, inc: int) -> int:
        """The highest commit index this incarnation of ``node`` has reported."""
        return self._commit_seen.get((node, inc), 0)

    # -- commit ----------------------------------------------------------------------------------
    def commit(
        self,
        node: int,
        inc: int,
        commit_index: int,
        term_at: TermAt,
        leading: int = 0,
        *,
        term: int,
    ) -> None:
        """``node``, in ``term``, reports ``commit_index``: monotonic, and it holds the
        committed entries.

        ``leading``: the term ``node`` leads (0 if not leader). A leader moves its commit
        index only onto an entry of its own term (Raft 5.4.2: earlier terms' entries commit
        only underneath one): breaking that rule is what Figure 8's lost commit grows from,
        so it is checked directly rather than waiting for that rare schedule.
        """
        key = (node, inc)
        seen = self._commit_seen.get(key, 0)
        led, self._leading[key] = self._leading.get(key, 0), leading
        if commit_index < seen:
            raise Violation(
                "commit monotonic",
                f"node {node} commit index went back from {seen} to {commit_index}",
            )
        if commit_index == seen:
            return
        if leading and led == leading and self.rules:
            got = term_at(commit_index)
            if got is not None and got != leading:
                raise Violation(
                    "commit rule",
                    f"leader {node} of term {leading} moved its commit index from {seen} to "
                    f"{commit_index}, an entry of term {got}",
                )
        committed = self.committed
        self._commit_terms(commit_index, term)
        for index in range(seen + 1, commit_index + 1):
            got = term_at(index)
            if got is None:
                continue
            if got == MISSING:
                raise Violation(
                    "commit", f"node {node} commit index {commit_index} is past its log"
                )
            want = committed.setdefault(index, got)
            if want != got:
                raise Violation(
                    "commit safety",
                    f"entry {index} committed with term {want}, node {node} commits term {got}",
                )
        self._commit_seen[key] = commit_index
        if commit_index > self.commit_max:
            self.commit_max = commit_index

    def _commit_terms(self, commit_index: int, term: int) -> None:
        """Everything up to ``commit_index`` is known committed by ``term``."""
        commit_term = self.commit_term
        for index in range(commit_index, 0, -1):
            if commit_term.get(index, term + 1) <= term:
                break  # and so is everything below it
            commit_term[index] = term

    # -- apply -----------------------------------------------------------------------------------
    def apply(self, node: int, inc: int, entry: Entry, commit_index: int) -> None:
        key = (node, inc)
        last = self._applied_seen.get(key, 0)
        if entry.index != last + 1:
            raise Violation(
                "apply order", f"node {node} applies entry {entry.index} after {last}"
            )
        if entry.index > commit_index:
            raise Violation(
                "apply", f"node {node} applies entry {entry.index} beyond commit {commit_index}"
            )
        self._applied_seen[key] = entry.index
        before = self.applied.setdefault(entry.index, entry)
        if before != entry:
            raise Violation(
                "State Machine Safety",
                f"node {node} applies {_show(entry)} but {_show(before)} was applied at that "
                "index before",
            )
        want = self.committed.get(entry.index)
        if want is not None and want != entry.term:
            raise Violation(
                "State Machine Safety",
                f"node {node} applies {_show(entry)} but term {want} is committed there",
            )

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot(
        self,
        node: int,
        inc: int,
        index: int,
        term: int,
        value: bytes,
        installed: bool,
        *,
        node_term: int,
    ) -> None:
        """``node`` took (``installed=False``) or installed a snapshot of its register at
        (``index``, ``term``) holding ``value``: it must be committed state, agree with the
        committed term there, and equal what applying the committed prefix gives (the last
        write at or before ``index``). An installed one moves the node's applied index."""
        key = (node, inc)
        if installed and index > self.commit_max:  # (one taken was just applied: checked)
            raise Violation(
                "snapshot", f"node {node} has a snapshot at {index}, past every commit index"
            )
        want = self.committed.setdefault(index, term)
        self._commit_terms(index, node_term)
        if want != term:
            raise Violation(
                "snapshot",
                f"node {node} has a snapshot at ({index}, {term}) but term {want} is "
                "committed there",
            )
        last = next(
            (e for i in range(index, 0, -1) if (e := self.applied.get(i)) and e.kind == NORMAL),
            None,
        )
        expect = last.data if last is not None else b""
        if value != expect:
            raise Violation(
                "State Machine Safety",
                f"node {node} snapshot at {index} holds {value[:24]!r}, applying the log "
                f"gives {expect[:24]!r}",
            )
        if installed:
            if index <= self._applied_seen.get(key, 0):
                raise Violation(
                    "apply order", f"node {node} installs snapshot {index} over applied "
                    f"{self._applied_seen.get(key, 0)}"
                )
            self._applied_seen[key] = index


def _show(e: Entry) -> str:
    return f"entry {e.index} (term {e.term}, kind {e.kind}, {e.data[:24]!r})"
