"""The client's exceptions, mirroring the server's error replies.

The split that matters to a caller is *was my command applied?*: ``TryAgain`` says
definitely not (safe to retry), ``OutcomeUnknown`` says it may or may not have been (the
client never retries such a command silently unless it is idempotent), any other
``ResponseError`` is the command's own answer (wrong type, syntax, ...).
"""

from __future__ import annotations


class RaftKVError(Exception):
    """Base of every error the client raises."""


class ResponseError(RaftKVError):
    """An error reply from the server; ``text`` is the whole reply, e.g. ``ERR syntax error``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def code(self) -> str:
        """The first word of the reply (``ERR``, ``WRONGTYPE``, ``TRYAGAIN``, ...)."""
        return self.text.split(" ", 1)[0]


class TryAgain(ResponseError):
    """``-TRYAGAIN``: the command was definitely not applied (no leader, leader changed)."""


class OutcomeUnknown(ResponseError):
    """The command may or may not have been applied.

    Raised for a ``-UNKNOWN`` reply, and for a non-idempotent write whose connection failed
    (or whose deadline passed) after it was sent; then ``__cause__`` holds the failure.
    """


class ReplyNotKept(ResponseError):
    """The write **was applied**, exactly once, but the server did not keep its reply.

    A retry inside a session (``RAFT ONCE``) whose first send applied, when the server
    dropped the recorded reply (over 1 KiB, or the sessions' replies over their total
    bound). Not the command's own error: do not send it again.
    """


class TransactionLost(RaftKVError):
    """The connection holding this client's ``WATCH`` or ``MULTI`` was lost: the server
    discarded the transaction, and nothing queued in it was applied.

    Raised for every command of the transaction until ``EXEC``, ``DISCARD``, ``UNWATCH``
    or ``RESET`` ends it (those raise it too, and end it); none of them is sent. Start
    again from ``WATCH``/``MULTI`` (redis-py raises ``WatchError`` in the same spot).
    """


class ConnectionFailed(RaftKVError, ConnectionError):
    """No node could be reached (or every connection failed) before the call's deadline."""


class CredentialsRefused(ConnectionFailed):
    """No node could be used and at least one checked the client's AUTH on connect and
    refused it (WRONGPASS, NOAUTH): no command was sent. Raised at once, not retried until
    the deadline as a dead node is (raftkv-cli's REPL then drops a typed AUTH's
    credentials)."""


class LeaderUnreachable(ConnectionFailed):
    """The nodes name a leader this client cannot reach (usually: it just died)."""


class DeadlineExceeded(RaftKVError, TimeoutError):
    """The call's deadline passed while a safe command (read, idempotent write) was pending."""


def error_from_reply(text: str) -> ResponseError:
    """The typed exception for an error reply's text."""
    if text.startswith("TRYAGAIN"):
        return TryAgain(text)
    if text.startswith("UNKNOWN"):
        return OutcomeUnknown(text)
    return ResponseError(text)
