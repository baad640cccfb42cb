"""Feature levels: which entry forms a release applies, and the gate that writes a new form
only once every member reads it.

Why: an entry form a node does not know is skipped by it (an unknown command answers an
error and changes nothing), so a cluster in a rolling upgrade would diverge the moment a
new form reached a node of the previous release. So each release applies entry forms up
to ``FEATURE_LEVEL``; the leader learns every member's level (raftkv.node.features),
records it in the log (``member_level id level``, a form every release reads: an older one
skips it harmlessly as an unknown command), and writes a form of level L only while
``cluster_level`` (the lowest level over every member of the applied configuration,
voters and learners, unknown counting 0) is at least L.

An entry of a gated form carries its level in the codec's slot after the stamp
(codec.py), so a release meeting a form above its own stops (``EntryNeedsLevel``) instead
of skipping it: a downgrade past a level the cluster reached is refused, never silent.

Level 1: the script budget recorded in the entry, ``budget <units> <inner...>`` (the
inner command runs scripts: EVAL/EVALSHA, an EXEC holding one, a ``once`` of those); its
scripts run with ``units`` and the per-key charges of scripts.py's ``KEYED`` charges.

Level 2: EXEC (alone or in ``once``) compares the WATCH version of a key past its deadline
but not yet deleted as ``(0, index of its last write)``, not its deletion index: a key
created (or written) after a WATCH saw it missing, and expired before EXEC, fails the EXEC
as Redis's does (attack18). Below it, EXEC keeps the old comparison: each replica decides
WATCH at EXEC's apply, so a rule that differs from the previous release's must wait until
every member applies it, or one replica would run the transaction and another not.

Level 3: the deletion of a key already past its deadline (the active expiry's ``EXPIRED``,
or a write that meets it) is no change: its tomb keeps the index of its last write, which
is what WATCH of the expired key recorded, so the EXEC runs, as Redis 7's does (attack20).
A deletion decides it at its own apply, from the recorded levels alone (every one at 3 or
above: ``KVStateMachine._reaps_keep_versions``; a configuration's ids are not replicated
state for a node that joined and replays the founders' entries), so only while every
member applies level 3; the leader tags EXEC at level 3 then, so that a member downgraded
past it stops at the next EXEC instead of deciding one over tombs its release wrote
otherwise. (Not closed: a member downgraded past level 3 deletes expired keys the old way
until the leader records its level, and an EXEC at level 2 after that may read such a
tomb; a downgrade past a level reached is refused, not supported.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wire.reply import ErrorReply

from .commands import MAX_LEVEL, Decoded, decode_exec, parse_level

FEATURE_LEVEL = 3  # the newest entry forms this release applies
BUDGET_LEVEL = 1  # the level of the ``budget`` form
WATCH_LEVEL = 2  # EXEC's WATCH versions of expired keys (the docstring's level 2)
REAP_LEVEL = 3  # an expired key's deletion keeps its version (the docstring's level 3)
BUDGET = b"budget"
MEMBER_LEVEL = b"member_level"
# --script-budget's bounds (instruction units): the leader's value goes into the entry.
MIN_BUDGET = 100_000  # (scripts.START_COST, 50,000, is charged before a script runs)
MAX_BUDGET = 100_000_000
# The leader's default: a script that spends it all holds every replica's apply a few ms
# (README, Scripts: the measurement). Entries without ``budget`` keep 10,000,000.
DEFAULT_BUDGET = 1_000_000
_SCRIPTED = frozenset({b"eval", b"evalsha", b"eval_ro", b"evalsha_ro"})  # (RO: in EXEC)
# The commands (CommandSpec.name) whose entries may run scripts: ``runs_scripts`` is False
# for every other, so a proposer that has looked the command up need not ask it.
MAY_RUN_SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "exec", "once"})


class EntryNeedsLevel(Exception):
    """A committed entry of a form above this release's level: the node must stop (to skip
    it would diverge from the members that apply it)."""

    def __init__(self, index: int | None, level: int) -> None:
        self.index, self.level = index, level
        where = f"entry {index}" if index is not None else "an entry"
        super().__init__(f"{where} needs feature level {level}; this release reads up to "
                         f"{FEATURE_LEVEL}: upgrade this node")


def cluster_level(levels: Mapping[int, int], members: Iterable[int]) -> int:
    """The lowest level over ``members`` (an unknown member counts 0; no member: 0)."""
    return min((levels.get(m, 0) for m in members), default=0)


def parse_budget(raw: bytes) -> int | None:
    """The units of a ``budget`` entry: plain digits within MIN_BUDGET .. MAX_BUDGET."""
    if type(raw) is not bytes or not raw.isdigit() or len(raw) > 9 or raw[0] == 48:
        return None
    value = int(raw)
    return value if MIN_BUDGET <= value <= MAX_BUDGET else None


def runs_scripts(args: list[bytes], decoded: Decoded | None = None) -> bool:
    """Whether ``args`` (a checked entry) runs a script when applied: EVAL/EVALSHA, an
    EXEC holding one, or ``once`` of either (the forms ``budget`` may wrap). ``decoded``:
    ``exec_of(args)`` (commands.py), if the caller has it."""
    name = args[0].lower() if args else b""
    if name == b"once" and len(args) > 4:
        args = args[3:]
        name = args[0].lower()
    if name in _SCRIPTED:
        return True
    if name != b"exec" or len(args) != 2 or b"val" not in args[1].lower():
        return False  # (no EVAL/EVALSHA in it: one bytes search, no decoding)
    if decoded is None:
        decoded = decode_exec(args[1])
    return not isinstance(decoded, ErrorReply) and any(
        command and command[0].lower() in _SCRIPTED for command in decoded[1])


def is_exec(args: list[bytes]) -> bool:
    """Whether ``args`` (a checked entry) is EXEC, or ``once`` of it (the forms whose
    WATCH comparison ``WATCH_LEVEL`` and ``REAP_LEVEL`` change)."""
    n = len(args)
    return (n == 2 and args[0].lower() == b"exec") or (
        n == 5 and args[0].lower() == b"once" and args[3].lower() == b"exec")


def wrap(args: list[bytes], units: int) -> list[bytes]:
    """``args`` in the level-1 form that records the script budget ``units``."""
    return [BUDGET, b"%d" % units, *args]


def budget_error(args: list[bytes]) -> ErrorReply | None:
    """Why ``budget <units> <inner...>`` is malformed, or None: units within the bounds,
    an inner command that runs scripts (``runs_scripts``), no nested ``budget``."""
    if len(args) < 3:
        return ErrorReply("ERR wrong number of arguments for 'budget' command")
    if parse_budget(args[1]) is None:
        return ErrorReply(f"ERR script budget must be an integer from {MIN_BUDGET} to "
                          f"{MAX_BUDGET}")
    if not runs_scripts(args[2:]):
        return ErrorReply("ERR budget wraps only commands that run scripts")
    return None


def member_level_error(args: list[bytes], member_id: int | None) -> ErrorReply | None:
    """Why ``member_level <id> <level>`` is malformed (``member_id``: its id parsed)."""
    if member_id is None:
        return ErrorReply("ERR malformed member id in member_level")
    if parse_level(args[2]) is None:
        return ErrorReply(f"ERR feature level must be an integer from 0 to {MAX_LEVEL - 1}")
    return None
