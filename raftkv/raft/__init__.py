"""The sans-IO Raft consensus core: no trio, no sockets, no files, no clock, no global random.

``RaftCore`` is the state machine; the runtime (raftkv/node) or the simulator (chaos/sim)
feeds it ticks and messages and handles the ``Ready`` batches it returns.
"""

from raftkv.raft.config import BUGS, RaftConfig
from raftkv.raft.core import RaftCore, SafetyViolation
from raftkv.raft.errors import NotLeader
from raftkv.raft.log_storage import (
    Compacted,
    LogStorage,
    StorageError,
    Unavailable,
    entry_size,
)
from raftkv.raft.membership import ConfigChangePending, MembershipError
from raftkv.raft.memory_storage import MemoryStorage
from raftkv.raft.progress import Progress, ProgressState
from raftkv.raft.ready import ReadState, Ready, persist
from raftkv.raft.role import Role

__all__ = [
    "BUGS",
    "Compacted",
    "ConfigChangePending",
    "LogStorage",
    "MembershipError",
    "MemoryStorage",
    "NotLeader",
    "Progress",
    "ProgressState",
    "RaftConfig",
    "RaftCore",
    "ReadState",
    "Ready",
    "Role",
    "SafetyViolation",
    "StorageError",
    "Unavailable",
    "entry_size",
    "persist",
]
