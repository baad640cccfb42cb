"""The sans-IO Raft consensus core: no trio, no sockets, no files, no clock, no global random."""
