"""RaftKV: a strongly consistent, fault-tolerant key-value store on Raft."""

__version__ = "0.1.0"
