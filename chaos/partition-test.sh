#!/usr/bin/env bash
# The original RaftKV's partition test, against the compose cluster (podman-compose up -d or
# docker compose up -d): wait until the three nodes agree on a leader, then two rounds, the
# leader cut off in one and a follower in the other. Each round keeps clients writing and
# reading through every node, disconnects the node's container from the compose network
# (`ENGINE network disconnect`), reconnects it after --delay seconds the way the original did
# (plain `ENGINE network connect`: the container comes back at a NEW address, without its
# service alias), and prints uptime (1 s windows), election latency and replication latency
# (reconnect -> first linearizable read through the rejoined node). Every answer is recorded
# in a history (results/partition-test/ROUND/history.jsonl) and checked by the chaos suite's
# linearizability and durability checkers.
# Exit 0 only if, in both rounds, uptime >= 99.9%, every answer was linearizable, no
# acknowledged write was lost and the cut-off node served again.
#
#   chaos/partition-test.sh                         # podman if installed, else docker
#   chaos/partition-test.sh --engine docker --delay 10
#   chaos/partition-test.sh --reconnect alias       # heal with the service alias restored
#   chaos/partition-test.sh --project raftkv --endpoints 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
# Options: --engine E, --endpoints A,B,C (default 127.0.0.1:RAFTKV_HOST_PORT1..3, else
# 7001-7003), --project P (compose project, default: any), --before S (3), --delay S (5),
# --after S (10), --rounds leader,follower, --reconnect plain|alias (plain), --out DIR,
# --wait S (60: how long to wait for the cluster).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
engine=${RAFTKV_ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
endpoints="127.0.0.1:${RAFTKV_HOST_PORT1:-7001},127.0.0.1:${RAFTKV_HOST_PORT2:-7002},127.0.0.1:${RAFTKV_HOST_PORT3:-7003}"
project="" before=3 delay=5 after=10 rounds="leader,follower" reconnect=plain wait=60
out="results/partition-test"
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2 ;; --endpoints) endpoints=$2 ;; --project) project=$2 ;;
    --before) before=$2 ;; --delay) delay=$2 ;; --after) after=$2 ;; --rounds) rounds=$2 ;;
    --reconnect) reconnect=$2 ;; --out) out=$2 ;; --wait) wait=$2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "partition-test.sh: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
  shift 2
done

if [ -z "${PYTHON:-}" ] && command -v raftkv-chaos >/dev/null 2>&1; then
  chaos=(raftkv-chaos) py=$(dirname "$(command -v raftkv-chaos)")/python3
  [ -x "$py" ] || py=python3
else
  py=${PYTHON:-python3} chaos=("$py" -c 'from chaos.cli import main; main()')
  export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
fi
case "$engine" in docker|podman) ;; *) echo "partition-test.sh: --engine docker or podman" >&2; exit 2 ;; esac
command -v "$engine" >/dev/null || { echo "partition-test.sh: $engine is not installed" >&2; exit 2; }

# The cluster is whole when every node answers INFO raft and all name the same leader.
wait_whole() {
  "$py" - "$endpoints" "$1" <<'EOF'
import sys, time
from raftkv.probe import info_raft
addrs, deadline = sys.argv[1].split(","), time.monotonic() + float(sys.argv[2])
while True:
    seen = {}
    for a in addrs:
        try:
            seen[a] = info_raft(a, timeout=1.0).get("leader_id", "?")
        except (OSError, ConnectionError) as exc:
            seen[a] = f"({exc.__class__.__name__})"
    leaders = set(seen.values())
    if len(leaders) == 1 and next(iter(leaders)).isdigit() and leaders != {"0"}:
        print(f"cluster whole: leader {next(iter(seen.values()))} ({', '.join(addrs)})")
        sys.exit(0)
    if time.monotonic() > deadline:
        print(f"cluster not whole after {sys.argv[2]} s: leader per node {seen}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.25)
EOF
}

wait_whole "$wait"
status=0 summary=()
IFS=, read -r -a targets <<< "$rounds"
for i in "${!targets[@]}"; do
  target=${targets[$i]}
  echo "=== round: the $target cut off for $delay s ($engine, reconnect $reconnect)"
  args=(partition --net docker --engine "$engine" --endpoints "$endpoints"
        --reconnect "$reconnect" --target "$target" --before "$before"
        --delay "$delay" --after "$after" --clients 6 --out "$out/$target" --quiet)
  [ -n "$project" ] && args+=(--project "$project")
  set +e
  "${chaos[@]}" "${args[@]}"
  rc=$?
  set -e
  verdict=$([ "$rc" -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")
  summary+=("$target: $verdict; $(grep -E 'uptime over|new leader|replication latency' \
            "$out/$target/partition.txt" 2>/dev/null | sed 's/^ *//' | paste -sd ';' -)")
  [ "$rc" -eq 0 ] || status=1
  # The next round needs the whole cluster again (a node that never came back fails here).
  [ "$i" -lt $(( ${#targets[@]} - 1 )) ] || break
  if ! wait_whole 30; then status=1; summary+=("the cluster did not become whole again"); break; fi
done
echo "=== partition-test summary ($engine)"
printf '  %s\n' "${summary[@]}"
[ "$status" -eq 0 ] && echo "PASS" || echo "FAIL"
exit "$status"
