#!/usr/bin/env python3
"""Off-CPU time from a system-wide `perf record -e sched:sched_switch -g` recording.

    perf script -F comm,tid,time,event,trace,ip,sym -i perf.data \
        | flamegraphs/offcpu.py TIDS FOLDED > summary.txt

TIDS is a file with the thread ids to account (one per line: the server's threads).
Every time one of them is switched out, the stack it blocked in is charged the time
until it is switched back in, in microseconds. FOLDED gets the collapsed stacks
(`comm;outermost;...;innermost count`, the input of inferno-flamegraph); stdout gets a
summary: off-CPU time per thread and the longest single waits with what they blocked
in. A thread still switched out when the recording ends is not charged for that wait.
"""

import re
import sys
from collections import defaultdict

SWITCH = re.compile(
    r"^(?P<comm>.+?)\s+(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s+sched:sched_switch:.*"
    r"prev_pid=(?P<prev>\d+).*prev_state=(?P<state>\S+).*next_pid=(?P<next>\d+)"
)
# Scheduler frames every off-CPU stack shares: left out of "what it blocked in".
SCHEDULER = {"__schedule", "schedule", "__traceiter_sched_switch", "preempt_schedule_common"}


def events(lines):
    """Yields (comm, time_us, prev_pid, prev_state, next_pid, frames innermost first)."""
    head, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if head:
                yield (*head, frames)
            head, frames = None, []
            continue
        if line[0] in " \t":
            parts = line.split(None, 1)
            if head and len(parts) == 2:
                sym = parts[1].split("+0x")[0].strip()
                frames.append(sym.split(" (")[0])
            continue
        m = SWITCH.match(line)
        head = None
        if m:
            head = (
                m["comm"].strip(),
                float(m["time"]) * 1e6,
                int(m["prev"]),
                m["state"],
                int(m["next"]),
            )
    if head:
        yield (*head, frames)


def blocked_in(frames):
    """The innermost frame that is not the scheduler itself."""
    for f in frames:
        if f not in SCHEDULER and not f.startswith("schedule_"):
            return f
    return frames[0] if frames else "?"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tids = {int(t) for t in open(sys.argv[1]).read().split()}
    out = {}  # tid -> (comm, since_us, state, frames)
    folded = defaultdict(float)
    per_thread = defaultdict(float)
    waits = []
    for comm, now, prev, state, nxt, frames in events(sys.stdin):
        if prev in tids:
            out[prev] = (comm, now, state, frames)
        if nxt in tids and nxt in out:
            comm_out, since, state_out, stack = out.pop(nxt)
            waited = now - since
            # Preempted while runnable (state R) is waiting for a CPU, not blocking.
            kind = "runnable (preempted)" if state_out.startswith("R") else "blocked"
            key = ";".join([comm_out, kind] + list(reversed(stack)))
            folded[key] += waited
            per_thread[(comm_out, nxt)] += waited
            waits.append((waited, comm_out, kind, blocked_in(stack), stack))
    with open(sys.argv[2], "w") as f:
        for key, us in sorted(folded.items()):
            if us >= 1:
                f.write(f"{key} {round(us)}\n")
    print("off-CPU time per thread (us):")
    for (comm, tid), us in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        print(f"  {comm} ({tid}): {us:,.0f}")
    by_reason = defaultdict(lambda: [0, 0.0, 0.0])
    for waited, _, kind, reason, _ in waits:
        r = by_reason[(kind, reason)]
        r[0] += 1
        r[1] += waited
        r[2] = max(r[2], waited)
    print("\noff-CPU time by what the thread blocked in (count, total us, longest us):")
    for (kind, reason), (n, total, longest) in sorted(by_reason.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"  {reason} [{kind}]: {n}, {total:,.0f}, {longest:,.0f}")
    print("\nlongest waits (us, thread, stack from the blocking call outwards):")
    for waited, comm, kind, reason, stack in sorted(waits, key=lambda w: -w[0])[:10]:
        path = " <- ".join(f for f in stack if f not in SCHEDULER)[:200]
        print(f"  {waited:,.0f} {comm} [{kind}]: {path}")


if __name__ == "__main__":
    main()
