"""Summarize the traces sitecustomize.py wrote: per node process, the loop's long task
steps split into CPU, run-queue wait (no core) and blocked (the GIL held by another thread
of the node, or a blocking call), and the I/O waits that overran.

Run: python tests/bench/stalltrace/summarize.py DIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FIELD = re.compile(r"(\w+)=(\S+)")


def main(directory: str) -> None:
    for path in sorted(Path(directory).glob("*.trace")):
        lines = path.read_text().splitlines()
        if not lines or " serve " not in lines[0]:
            continue
        where = re.search(r"--data-dir \S*/([^/ ]+/node-\d+)", lines[0])
        steps = []
        over = []
        for line in lines[1:]:
            kind = line.split()[1]
            f = dict(FIELD.findall(line))
            if kind == "step":
                ms, cpu, runq = float(f["ms"]), float(f["cpu_ms"]), float(f["runq_ms"])
                steps.append((ms, cpu, runq, max(0.0, ms - cpu - runq), f["task"]))
            elif kind == "iowait_over":
                over.append(float(f["ms"]))
        if not steps:
            continue
        worst = max(steps)
        blocked = sorted(s[3] for s in steps)
        print(f"{where.group(1) if where else path.name}: {len(steps)} steps > 20 ms; "
              f"CPU {sum(s[1] for s in steps):.0f} ms, run-queue {sum(s[2] for s in steps):.0f}"
              f" ms, blocked {sum(blocked):.0f} ms (largest {blocked[-1]:.0f}); longest step "
              f"{worst[0]:.0f} ms (cpu {worst[1]:.0f}, runq {worst[2]:.0f}, blocked "
              f"{worst[3]:.0f}) in {worst[4].rsplit('.', 1)[-1]}; I/O waits overran: "
              f"{len(over)}, longest {max(over, default=0):.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
