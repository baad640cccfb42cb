"""RaftKV's client library (trio, RESP2) and the ``raftkv-cli`` command line.

``async with client.connect(["127.0.0.1:7001", ...]) as kv: await kv.set("k", "v")``;
``client.connect_sync`` is the blocking twin for scripts without trio.
"""

from client.api import Client, connect
from client.errors import (
    ConnectionFailed,
    CredentialsRefused,
    DeadlineExceeded,
    LeaderUnreachable,
    OutcomeUnknown,
    RaftKVError,
    ReplyNotKept,
    ResponseError,
    TransactionLost,
    TryAgain,
)
from client.feed import Change, ChangeId
from client.pipeline import Pipeline
from client.safety import Safety, classify
from client.status import NodeStatus, cluster_status
from client.sync import SyncClient, SyncPipeline, SyncWatch, connect_sync
from client.watch import FeedCompacted, Watch

__all__ = [
    "Change",
    "ChangeId",
    "Client",
    "ConnectionFailed",
    "CredentialsRefused",
    "DeadlineExceeded",
    "FeedCompacted",
    "LeaderUnreachable",
    "NodeStatus",
    "OutcomeUnknown",
    "Pipeline",
    "RaftKVError",
    "ReplyNotKept",
    "ResponseError",
    "Safety",
    "SyncClient",
    "SyncPipeline",
    "SyncWatch",
    "TransactionLost",
    "TryAgain",
    "Watch",
    "classify",
    "cluster_status",
    "connect",
    "connect_sync",
]
