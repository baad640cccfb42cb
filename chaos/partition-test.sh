#!/usr/bin/env bash
# The original RaftKV's partition test: start a 3-node cluster, cut the leader off, keep
# writing, reconnect it after a delay, report uptime during the partition.
#   chaos/partition-test.sh                      # local processes, userspace proxies
#   chaos/partition-test.sh --delay 30           # a longer partition
#   sudo chaos/partition-test.sh --net nft       # kernel-level cut in a private netns
#   chaos/partition-test.sh --net docker --endpoints 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
#                                                # the docker-compose cluster
# Every option of `raftkv-chaos partition --help` is accepted.
set -euo pipefail
if command -v raftkv-chaos >/dev/null 2>&1; then
  exec raftkv-chaos partition "$@"
fi
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -c 'from chaos.cli import main; main()' partition "$@"
