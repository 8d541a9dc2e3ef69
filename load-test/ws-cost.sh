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
# shellcheck source-path=SCRIPTDIR source=lib/cost.sh
. "$(dirname "$0")/lib/cost.sh"
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

check_rounds "(each round is two runs of about 15 s)"
check_broadcast_scenario
set_priority
check_port_room 4 "two ports"

# Round N's order: odd rounds tcp first, even rounds ws first.
order() { alternate "$1" tcp ws; }
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

WORK=$(mktemp -d)
BIN=$WORK/bin
mkdir -p "$BIN" "$WORK/logs"
trap 'stop_server; rm -rf "$WORK"' EXIT
build_release_into "$BIN"
CORECAST_REV=${CORECAST_REV:-$(corecast_rev)}

mkdir -p "$OUT"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run=0
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS: $(order "$round")"
  for t in $(order "$round"); do
    run=$((run + 1))
    tcp=$(tcp_port $run)
    ws=$(ws_port $run)
    ports_free CORECAST_PORT "$tcp" "$ws"
    taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$tcp" \
      --ws-listen "127.0.0.1:$ws" --shards 1 >"$WORK/logs/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$tcp" "$SERVER_PID" "$WORK/logs/server.log"
    wait_ready "$ws" "$SERVER_PID" "$WORK/logs/server.log"
    echo "-- $t (server pid $SERVER_PID, tcp $tcp, ws $ws)"
    # shellcheck disable=SC2086 # SCENARIO is a list of arguments on purpose.
    timeout 120 taskset -c 1 "${PRIO[@]}" "$BIN/corecast-load" $SCENARIO \
      --transport "$t" --addr "127.0.0.1:$(harness_port "$t" $run)" \
      --server-pid "$SERVER_PID" --label "$t" --json "$OUT/r$round-$t.json" \
      --hgrm "$OUT/r$round-$t.hgrm" --tolerate-loss --quiet | tee "$OUT/r$round-$t.txt"
    stop_server
  done
done

# One figure of run (transport, round): values (lib/cost.sh) takes every round's.
value() { # transport round key
  figure "$OUT/r$2-$1.json" "$3"
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
  machine_lines "$LOADAVG_BEFORE" harness "${PRIO[*]:-no chrt or nice}"
  echo "- One build for all: corecast $CORECAST_REV"
  echo "- Raw outputs: \`r<round>-<transport>.txt\` (tables), \`.json\` (reports), \`.hgrm\` (HdrHistogram)"
} >"$OUT/README.md"
cat "$OUT/README.md"
