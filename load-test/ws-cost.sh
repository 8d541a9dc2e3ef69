#!/usr/bin/env bash
# What a WebSocket delivery costs against a TCP one: the same broadcast run (by
# default compare.sh's fanout: 10 rooms x 100 members, 1 sender per room at 100
# msgs/s, 64 B bodies, 10 s window after 2 s of warm-up) against a fresh corecast
# started with both --listen and --ws-listen, driven once over TCP (--transport tcp at
# the --listen port) and once over WebSocket (--transport ws at the --ws-listen port).
# ROUNDS rounds in one invocation, the order rotated each round (odd rounds tcp then
# ws, even rounds ws then tcp), so that a drift of the machine's load weighs on both
# alike. Then, per transport, the medians (and ranges) of server CPU per 1000
# deliveries, server CPU %, p50 and p99, and the ratios ws / tcp, from the same run.
#
#   load-test/ws-cost.sh                      # 3 rounds of the default fanout
#   ROUNDS=5 load-test/ws-cost.sh
#   DRY_RUN=1 load-test/ws-cost.sh            # print the plan, run nothing
#
# Conditions as compare.sh's: the server (corecast --shards 1) pinned to CPU 0, the
# harness to CPU 1, both at PRIORITY (rt: chrt -f 20, the default; nice:N; none). Every
# server listens on both transports, so the two runs differ only in how the clients
# reach it. One release build, copied aside first, serves every run (a rebuild in
# between by other work cannot swap it). Each run has ports of its own (CORECAST_PORT
# + 2 x its number - 1 for TCP, + 2 x its number for WebSocket), so no run meets the
# TIME_WAIT sockets of the one before.
#
# Environment: ROUNDS (default 3, 1 to 10), SCENARIO (a broadcast scenario: fanout,
# chat or churn; default the fanout above), NAME (default ws-cost), PRIORITY,
# CORECAST_PORT (default 17878). Writes load-test/results/<date>-<NAME>/:
# r<N>-<transport>.json, .txt and .hgrm per run, README.md (the summary). Loopback
# only; each run bounded by a 120 s kill (the default run takes about 15 s), each
# server start by 10 s: about 3 minutes for 3 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DEFAULT_SCENARIO="fanout --rooms 10 --members 100 --senders 1 --rate 100 --body-size 64 --duration 10s --warmup 2s --drain 2s"
SCENARIO=${SCENARIO:-$DEFAULT_SCENARIO}
NAME=${NAME:-ws-cost}
PRIORITY=${PRIORITY:-rt}
CORECAST_PORT=${CORECAST_PORT:-17878}
DATE=$(date -u +%Y-%m-%d)
OUT=load-test/results/$DATE-$NAME
TRANSPORTS="tcp ws"

case $ROUNDS in
  [1-9] | 10) ;;
  *) echo "ROUNDS must be 1 to 10 (each round is two runs of about 15 s)" >&2; exit 1 ;;
esac
case ${SCENARIO%% *} in
  fanout | chat | churn) ;;
  *) echo "SCENARIO must be a broadcast scenario (fanout, chat or churn): the cost is per delivery" >&2; exit 1 ;;
esac
case $PRIORITY in
  rt) PRIO=(chrt -f 20) ;;
  nice:*) PRIO=(nice -n "${PRIORITY#nice:}") ;;
  none) PRIO=() ;;
  *) echo "PRIORITY must be rt, nice:N or none" >&2; exit 1 ;;
esac
if ! [[ $CORECAST_PORT =~ ^[0-9]+$ ]] || [ "$CORECAST_PORT" -lt 1024 ] || [ $((CORECAST_PORT + 4 * ROUNDS)) -gt 65535 ]; then
  echo "CORECAST_PORT must be 1024 or more, with room for two ports per run above it" >&2
  exit 1
fi

# Round N's order: odd rounds tcp first, even rounds ws first.
order() {
  if [ $(($1 % 2)) = 1 ]; then echo "tcp ws"; else echo "ws tcp"; fi
}
# Run number $1's ports: TCP, then WebSocket.
tcp_port() { echo $((CORECAST_PORT + 2 * $1 - 1)); }
ws_port() { echo $((CORECAST_PORT + 2 * $1)); }
harness_port() { # transport run
  if [ "$1" = ws ]; then ws_port "$2"; else tcp_port "$2"; fi
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry run: would write $OUT/README.md and $OUT/r<N>-<transport>.json for $ROUNDS rounds"
  run=0
  for round in $(seq 1 "$ROUNDS"); do
    echo "round $round: $(order "$round")"
    for t in $(order "$round"); do
      run=$((run + 1))
      echo "  $t: server: corecast --listen 127.0.0.1:$(tcp_port $run) --ws-listen 127.0.0.1:$(ws_port $run) --shards 1"
      echo "  $t: harness: corecast-load $SCENARIO --transport $t --addr 127.0.0.1:$(harness_port "$t" $run)"
    done
  done
  exit 0
fi

cargo build --release -q -p corecast -p corecast-load
WORK=$(mktemp -d)
BIN=$WORK/bin
mkdir -p "$BIN" "$WORK/logs"
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
cp "${CARGO_TARGET_DIR:-target}/release/corecast" "${CARGO_TARGET_DIR:-target}/release/corecast-load" "$BIN/"
CORECAST_REV=${CORECAST_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src vendor load-test/src Cargo.toml Cargo.lock 2>/dev/null || echo ' (code modified)')}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_ready() { # port pid
  for _ in $(seq 1 200); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server $2 exited early:" >&2; cat "$WORK/logs/server.log" >&2; return 1; }
    sleep 0.05
  done
  echo "server on port $1 not ready after 10 s" >&2
  return 1
}

mkdir -p "$OUT"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run=0
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS: $(order "$round")"
  for t in $(order "$round"); do
    run=$((run + 1))
    tcp=$(tcp_port $run)
    ws=$(ws_port $run)
    for port in "$tcp" "$ws"; do
      if port_open "$port"; then
        echo "port $port is already in use; set CORECAST_PORT" >&2
        exit 1
      fi
    done
    taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$tcp" \
      --ws-listen "127.0.0.1:$ws" --shards 1 >"$WORK/logs/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$tcp" "$SERVER_PID"
    wait_ready "$ws" "$SERVER_PID"
    echo "-- $t (server pid $SERVER_PID, tcp $tcp, ws $ws)"
    # shellcheck disable=SC2086 # SCENARIO is a list of arguments on purpose.
    timeout 120 taskset -c 1 "${PRIO[@]}" "$BIN/corecast-load" $SCENARIO \
      --transport "$t" --addr "127.0.0.1:$(harness_port "$t" $run)" \
      --server-pid "$SERVER_PID" --label "$t" --json "$OUT/r$round-$t.json" \
      --hgrm "$OUT/r$round-$t.hgrm" --tolerate-loss --quiet | tee "$OUT/r$round-$t.txt"
    stop_server
  done
done

# One figure of a saved report: the first "key": number in it (the report's own
# latency comes before its send lag).
figure() { # file key
  grep -m1 "\"$2\":" "$1" | sed 's/.*: *//; s/[^0-9.e+-].*//' | awk '{printf "%.6g\n", $1}'
}
value() { # transport round key
  figure "$OUT/r$2-$1.json" "$3"
}
values() { # transport key: one a line, every round
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
label() {
  case $1 in
    tcp) echo "TCP (--listen, length-prefixed frames)" ;;
    ws) echo "WebSocket (--ws-listen, binary frames)" ;;
  esac
}

TCP_CPU=$(values tcp cpu_us_per_1000_deliveries | median)
WS_CPU=$(values ws cpu_us_per_1000_deliveries | median)
TCP_P99=$(values tcp p99_us | median)
WS_P99=$(values ws p99_us | median)
{
  echo "# $NAME: what a WebSocket delivery costs against a TCP one ($DATE)"
  echo
  if [ "$SCENARIO" = "$DEFAULT_SCENARIO" ]; then
    echo "\`ROUNDS=$ROUNDS PRIORITY=$PRIORITY NAME=$NAME load-test/ws-cost.sh\`"
  else
    echo "\`ROUNDS=$ROUNDS PRIORITY=$PRIORITY NAME=$NAME SCENARIO=\"$SCENARIO\" load-test/ws-cost.sh\`"
  fi
  echo
  echo "Each run: \`corecast-load $SCENARIO --transport T --addr A --server-pid P\` against a"
  echo "fresh \`corecast --listen A1 --ws-listen A2 --shards 1\` (both listeners in every run),"
  echo "the harness at A1 over TCP or at A2 over WebSocket (the upgrade on /ws, then one"
  echo "masked binary frame per request; the server's frames unmasked). Round N: odd rounds"
  echo "tcp first, even rounds ws first. Server CPU: its CPU-time clock over the measured"
  echo "window, per 1000 deliveries received in it. Latency: receive time minus scheduled"
  echo "send time (open loop)."
  echo
  echo "| round | transport | achieved deliveries/s | server CPU % | server CPU us / 1000 deliveries | p50 us | p99 us | lost | dup |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for round in $(seq 1 "$ROUNDS"); do
    for t in $(order "$round"); do
      echo "| $round | $t | $(value "$t" "$round" achieved_deliveries_per_s) | $(value "$t" "$round" cpu_pct) | $(value "$t" "$round" cpu_us_per_1000_deliveries) | $(value "$t" "$round" p50_us) | $(value "$t" "$round" p99_us) | $(value "$t" "$round" lost) | $(value "$t" "$round" duplicates) |"
    done
  done
  echo
  echo "| transport (medians over $ROUNDS rounds) | server CPU us / 1000 deliveries | range | server CPU % | p50 us | p99 us | p99 range |"
  echo "|---|---:|---|---:|---:|---:|---|"
  for t in $TRANSPORTS; do
    echo "| $(label "$t") | $(values "$t" cpu_us_per_1000_deliveries | median) | $(values "$t" cpu_us_per_1000_deliveries | range) | $(values "$t" cpu_pct | median) | $(values "$t" p50_us | median) | $(values "$t" p99_us | median) | $(values "$t" p99_us | range) |"
  done
  echo
  echo "WebSocket / TCP (medians): server CPU per delivery **$(ratio "$WS_CPU" "$TCP_CPU")**, p99 **$(ratio "$WS_P99" "$TCP_P99")**"
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
  echo "- Memory: $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "- Load average before the runs: $LOADAVG_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- Server on CPU 0 (\`taskset -c 0\`), harness on CPU 1 (\`taskset -c 1\`), both with priority $PRIORITY (${PRIO[*]:-no chrt or nice})"
  echo "- One build for all: corecast $CORECAST_REV"
  echo "- Raw outputs: \`r<round>-<transport>.txt\` (tables), \`.json\` (reports), \`.hgrm\` (HdrHistogram)"
} >"$OUT/README.md"
cat "$OUT/README.md"
