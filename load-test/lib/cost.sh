# shellcheck shell=bash
# What the load-test scripts share (compare.sh, history-cost.sh, jwt-cost.sh,
# ws-cost.sh): checks of their environment, the pinned servers' start and stop, the
# one release build copied aside, and the figures of their summaries. Sourced, not
# run: each script sources it by its own directory, so that it runs from anywhere.
# Functions only, plus SERVER_PID; nothing runs on sourcing. Those that check
# exit the script with a message on stderr.

# ROUNDS must be 1 to 10; $1 says what a round is, after "ROUNDS must be 1 to 10 ".
check_rounds() { # why
  case $ROUNDS in
    [1-9] | 10) ;;
    *) echo "ROUNDS must be 1 to 10 $1" >&2; exit 1 ;;
  esac
}

# SCENARIO must be a broadcast scenario: the costs are per delivery.
check_broadcast_scenario() {
  case ${SCENARIO%% *} in
    fanout | chat | churn) ;;
    *) echo "SCENARIO must be a broadcast scenario (fanout, chat or churn): the cost is per delivery" >&2; exit 1 ;;
  esac
}

# PRIO: what runs the server and the harness at PRIORITY (rt, nice:N or none).
set_priority() {
  # shellcheck disable=SC2034 # PRIO is for the script that sources this file.
  case $PRIORITY in
    rt) PRIO=(chrt -f 20) ;;
    nice:*) PRIO=(nice -n "${PRIORITY#nice:}") ;;
    none) PRIO=() ;;
    *) echo "PRIORITY must be rt, nice:N or none" >&2; exit 1 ;;
  esac
}

# CORECAST_PORT must be 1024 or more with $1 ports for every run of ROUNDS rounds
# above it ($1 = runs a round x ports a run); $2 says how many a run has.
check_port_room() { # ports-per-round what
  if ! [[ $CORECAST_PORT =~ ^[0-9]+$ ]] || [ "$CORECAST_PORT" -lt 1024 ] || [ $((CORECAST_PORT + $1 * ROUNDS)) -gt 65535 ]; then
    echo "CORECAST_PORT must be 1024 or more, with room for $2 per run above it" >&2
    exit 1
  fi
}

# Two targets alternated: round N runs "$2 $3" when N is odd, "$3 $2" when even, so
# that a drift of the machine's load weighs on both alike.
alternate() { # round first second
  if [ $(($1 % 2)) = 1 ]; then echo "$2 $3"; else echo "$3 $2"; fi
}

# The revision the results name: the short commit, marked "(code modified)" when
# src/, vendor/, load-test/src/ or the Cargo files differ from it.
corecast_rev() {
  echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src vendor load-test/src Cargo.toml Cargo.lock 2>/dev/null || echo ' (code modified)')"
}

# One release build of corecast and corecast-load, copied into $1: every run of the
# script uses the copies, so that a rebuild in between by other work cannot swap them.
build_release_into() { # dir
  cargo build --release -q -p corecast -p corecast-load
  cp "${CARGO_TARGET_DIR:-target}/release/corecast" "${CARGO_TARGET_DIR:-target}/release/corecast-load" "$1/"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Exits if any of the ports is taken; $1 names what sets them.
ports_free() { # hint port...
  local hint=$1 port
  shift
  for port in "$@"; do
    if port_open "$port"; then
      echo "port $port is already in use; set $hint" >&2
      exit 1
    fi
  done
}

# Waits up to 10 s for the server $2 to listen on port $1; fails if it exits first
# (showing its log $3, when given).
wait_ready() { # port pid [log]
  for _ in $(seq 1 200); do
    port_open "$1" && return 0
    if ! kill -0 "$2" 2>/dev/null; then
      if [ -n "${3:-}" ]; then
        echo "server $2 exited early:" >&2
        cat "$3" >&2
      else
        echo "server $2 exited early" >&2
      fi
      return 1
    fi
    sleep 0.05
  done
  echo "server on port $1 not ready after 10 s" >&2
  return 1
}

# The server started last (its pid, or empty); stop_server ends it and waits for it.
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}

# One figure of a saved report: the first "key": number in it (the report's own
# latency comes before its send lag).
figure() { # file key
  grep -m1 "\"$2\":" "$1" | sed 's/.*: *//; s/[^0-9.e+-].*//' | awk '{printf "%.6g\n", $1}'
}
# Every round's figure, one a line, from the script's own value (what round key).
values() { # what key
  local round
  for round in $(seq 1 "$ROUNDS"); do value "$1" "$round" "$2"; done
}
median() { # numbers on stdin
  sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "-"; exit }
    if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() { # numbers on stdin: "min to max"
  sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s to %s\n", lo, hi}'
}
ratio() { # a b: a / b
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'
}

# The summary's machine lines: CPU, memory, load average (before: $1), pinning and
# priority ($2 is what runs on CPU 1, $3 what PRIORITY means).
machine_lines() { # loadavg-before harness-name priority-description
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
  echo "- Memory: $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "- Load average before the runs: $1; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- Server on CPU 0 (\`taskset -c 0\`), $2 on CPU 1 (\`taskset -c 1\`), both with priority $PRIORITY ($3)"
}
