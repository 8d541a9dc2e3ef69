#!/usr/bin/env bash
# Runs one scenario against corecast, Redis pub/sub and NATS core (or the TARGETS
# given) under the same conditions and writes a dated Markdown table plus an overlaid
# latency plot under load-test/results/<date>-<name>/. The title, README and version
# list name exactly the TARGETS that ran.
#
#   load-test/compare.sh                        # the default fanout comparison
#   SCENARIO="chat --rooms 20 --members 10 --rate 50" load-test/compare.sh
#   NAME=fanout-findmax SCENARIO="fanout ... --find-max" load-test/compare.sh
#   DRY_RUN=1 TARGETS="corecast redis" load-test/compare.sh   # print, run nothing
#
# Conditions: each server pinned to CPU 0 (`taskset -c 0`), the load generator to
# CPU 1 (`taskset -c 1`), both at the same priority: PRIORITY=rt (default) runs both
# SCHED_FIFO 20 (`chrt -f 20`) so that other work on a shared machine cannot preempt
# them (the kernel still keeps 5% of each CPU for everyone else); PRIORITY=nice:N uses
# `nice -n N`; PRIORITY=none neither. corecast with --shards 1; redis-server with no
# persistence and warning-level logs; nats-server with GOMAXPROCS=1 and its log sent
# to /dev/null. Environment: SCENARIO, NAME, PRIORITY, CORECAST_PORT, REDIS_PORT,
# NATS_PORT, TARGETS (default "corecast redis nats"; also "corecast-2shards": --shards 2,
# both shards on CPU 0; "corecast-nohistory": --shards 1 --history-messages 0, what
# history costs; "corecast-ws": --shards 1 with --ws-listen on CORECAST_WS_PORT too,
# driven over WebSocket with --transport ws), CORECAST_WS_PORT (default 17879),
# CARGO_TARGET_DIR, BIN_DIR (use the corecast and corecast-load in
# this directory instead of building: several runs on one binary), CORECAST_REV
# (shown in the results; default the short commit, marked "(code modified)" when
# src/, vendor/, load-test/src/ or the Cargo files differ from it), DRY_RUN=1 (print
# the plot title and the README's heading, command and machine section, then exit:
# nothing is installed, built, started or written).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/cost.sh
. "$(dirname "$0")/lib/cost.sh"
cd "$(dirname "$0")/.."

DEFAULT_SCENARIO="fanout --rooms 10 --members 100 --senders 1 --rate 100 --body-size 64 --duration 10s --warmup 2s --drain 2s"
SCENARIO=${SCENARIO:-$DEFAULT_SCENARIO}
NAME=${NAME:-$(echo "$SCENARIO" | awk '{print $1}')}
PRIORITY=${PRIORITY:-rt}
set_priority
CORECAST_PORT=${CORECAST_PORT:-17878}
REDIS_PORT=${REDIS_PORT:-16379}
NATS_PORT=${NATS_PORT:-14222}
CORECAST_WS_PORT=${CORECAST_WS_PORT:-17879}
TARGETS=${TARGETS:-"corecast redis nats"}
DATE=$(date -u +%Y-%m-%d)
OUT=load-test/results/$DATE-$NAME

# Every target is checked before anything runs.
[ -n "${TARGETS// /}" ] || { echo "TARGETS is empty" >&2; exit 1; }
for target in $TARGETS; do
  case $target in
    corecast | corecast-2shards | corecast-nohistory | corecast-ws | redis | nats) ;;
    *) echo "unknown target $target in TARGETS (corecast, corecast-2shards, corecast-nohistory, corecast-ws, redis, nats)" >&2; exit 1 ;;
  esac
done
has_target() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

# What the results call each target: short in the plot title, long in the README.
short_name() {
  case $1 in
    corecast) echo corecast ;; corecast-2shards) echo "corecast (2 shards)" ;;
    corecast-nohistory) echo "corecast (history off)" ;;
    corecast-ws) echo "corecast (WebSocket)" ;;
    redis) echo Redis ;; nats) echo NATS ;;
  esac
}
long_name() {
  case $1 in
    corecast) echo corecast ;; corecast-2shards) echo "corecast (2 shards)" ;;
    corecast-nohistory) echo "corecast (history off)" ;;
    corecast-ws) echo "corecast over WebSocket" ;;
    redis) echo "Redis pub/sub" ;; nats) echo "NATS core" ;;
  esac
}
names_vs() { # short_name|long_name: the TARGETS' names joined by " vs "
  local joined="" t
  for t in $TARGETS; do joined+="${joined:+ vs }$("$1" "$t")"; done
  echo "$joined"
}
PLOT_TITLE="$NAME: $(names_vs short_name) ($DATE)"
HEADING="$NAME: $(names_vs long_name) ($DATE)"
# PRIORITY=none runs both without chrt or nice: say so (the default is rt).
PRIO_DESC=${PRIO[*]:-"no chrt or nice: normal scheduling"}

# The versions of exactly the servers in TARGETS.
versions() {
  local parts=() shards=()
  has_target corecast && shards+=("--shards 1")
  has_target corecast-2shards && shards+=("corecast-2shards: --shards 2, both shards on CPU 0")
  has_target corecast-nohistory && shards+=("corecast-nohistory: --shards 1 --history-messages 0")
  has_target corecast-ws && shards+=("corecast-ws: --shards 1 --ws-listen, clients over WebSocket")
  if [ ${#shards[@]} -gt 0 ]; then
    local rev=${CORECAST_REV:-$(corecast_rev)}
    local joined
    joined=$(printf '%s; ' "${shards[@]}")
    parts+=("corecast $rev (${joined%; })")
  fi
  if has_target redis; then
    parts+=("$(redis-server --version 2>/dev/null | cut -d' ' -f1-3 || true)")
    [ -n "${parts[-1]}" ] || parts[-1]="redis-server (not installed)"
  fi
  if has_target nats; then
    local v
    v=$(nats-server --version 2>/dev/null | awk '{print $2}' || true)
    parts+=("nats-server ${v:-(not installed)} (GOMAXPROCS=1)")
  fi
  local joined
  joined=$(printf '%s; ' "${parts[@]}")
  echo "${joined%; }"
}

readme_command() {
  echo "Command (from the repository root):"
  echo
  echo '```'
  local targets_env=""
  [ "$TARGETS" = "corecast redis nats" ] || targets_env="TARGETS=\"$TARGETS\" "
  if [ "$SCENARIO" = "$DEFAULT_SCENARIO" ] && [ "$PRIORITY" = rt ] && [ -z "$targets_env" ]; then
    echo "load-test/compare.sh"
  else
    echo "${targets_env}PRIORITY=$PRIORITY SCENARIO=\"$SCENARIO\" NAME=$NAME load-test/compare.sh"
  fi
  echo '```'
}

# shellcheck disable=SC2016 # the backticks are Markdown, not command substitutions
machine_section() { # load average before the runs
  local raw='`*.txt` (tables), `*.json` (reports)'
  # idle has no latency histogram.
  [ "${SCENARIO%% *}" = idle ] || raw+=', `*.hgrm` (HdrHistogram)'
  echo "## Machine"
  echo
  machine_lines "$1" "load generator" "$PRIO_DESC"
  echo "- $(versions)"
  echo "- Raw outputs: $raw"
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry run: would write $OUT/README.md, $OUT/latency.svg and $OUT/latency-log.svg"
  echo "plot title: $PLOT_TITLE"
  echo
  echo "# $HEADING"
  echo
  readme_command
  echo
  machine_section "$(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

LOGS=$(mktemp -d)
missing=()
if has_target redis && ! command -v redis-server >/dev/null; then missing+=(redis-server); fi
if has_target nats && ! command -v nats-server >/dev/null; then missing+=(nats-server); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
else
  cargo build --release -q -p corecast -p corecast-load
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
LOAD=$BIN/corecast-load

ports=()
if has_target corecast || has_target corecast-2shards || has_target corecast-nohistory || has_target corecast-ws; then
  ports+=("$CORECAST_PORT")
fi
if has_target corecast-ws; then ports+=("$CORECAST_WS_PORT"); fi
if has_target redis; then ports+=("$REDIS_PORT"); fi
if has_target nats; then ports+=("$NATS_PORT"); fi
ports_free "CORECAST_PORT / CORECAST_WS_PORT / REDIS_PORT / NATS_PORT" "${ports[@]}"

trap 'stop_server; rm -rf "$LOGS"' EXIT

mkdir -p "$OUT"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
jsons=()
for target in $TARGETS; do
  TRANSPORT=tcp
  case $target in
    corecast)
      port=$CORECAST_PORT
      taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$port" --shards 1 \
        >"$LOGS/corecast.log" 2>&1 &
      ;;
    corecast-2shards)
      # Two shards on the same CPU: what cross-shard routing costs, with the CPU
      # budget of the one-shard run (target 7 of the performance issue).
      port=$CORECAST_PORT
      taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$port" --shards 2 \
        >"$LOGS/corecast-2shards.log" 2>&1 &
      ;;
    corecast-nohistory)
      # History off: what retaining each room's latest messages costs the fan-out.
      port=$CORECAST_PORT
      taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$port" --shards 1 \
        --history-messages 0 >"$LOGS/corecast-nohistory.log" 2>&1 &
      ;;
    corecast-ws)
      # The same server listening for WebSocket clients too; the harness reaches it
      # there (what a browser-style client costs against a TCP one).
      taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$CORECAST_PORT" \
        --ws-listen "127.0.0.1:$CORECAST_WS_PORT" --shards 1 >"$LOGS/corecast-ws.log" 2>&1 &
      port=$CORECAST_WS_PORT
      TRANSPORT=ws
      ;;
    redis)
      port=$REDIS_PORT
      taskset -c 0 "${PRIO[@]}" redis-server --port "$port" --bind 127.0.0.1 \
        --save "" --appendonly no --loglevel warning >"$LOGS/redis.log" 2>&1 &
      ;;
    nats)
      port=$NATS_PORT
      GOMAXPROCS=1 taskset -c 0 "${PRIO[@]}" nats-server -a 127.0.0.1 -p "$port" -l /dev/null \
        >"$LOGS/nats.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_ready "$port" "$SERVER_PID"
  echo "== $target (pid $SERVER_PID, port $port)"
  # idle has no latency histogram and no loss to tolerate.
  case ${SCENARIO%% *} in
    idle) EXTRA=() ;;
    *) EXTRA=(--hgrm "$OUT/$target.hgrm" --tolerate-loss) ;;
  esac
  # shellcheck disable=SC2086 # SCENARIO is a list of arguments on purpose.
  taskset -c 1 "${PRIO[@]}" "$LOAD" $SCENARIO --target "${target%%-*}" --transport "$TRANSPORT" \
    --addr "127.0.0.1:$port" \
    --server-pid "$SERVER_PID" --label "$target" --json "$OUT/$target.json" \
    "${EXTRA[@]}" --quiet | tee "$OUT/$target.txt"
  stop_server
  jsons+=("$OUT/$target.json")
done

"$LOAD" plot --out "$OUT/latency.svg" --title "$PLOT_TITLE" "${jsons[@]}"
"$LOAD" plot --log-y --out "$OUT/latency-log.svg" --title "$PLOT_TITLE, log scale" "${jsons[@]}"

{
  echo "# $HEADING"
  echo
  readme_command
  echo
  if has_target corecast-ws; then
    echo "Each run: \`corecast-load $SCENARIO --target T --transport tcp|ws --addr A --server-pid P\`"
    echo "(corecast-ws: \`--transport ws\` at the server's \`--ws-listen\` address)"
  else
    echo "Each run: \`corecast-load $SCENARIO --target T --addr A --server-pid P\`"
  fi
  echo
  "$LOAD" table "${jsons[@]}"
  echo
  echo "![latency by percentile](latency.svg)"
  echo
  echo "Log scale: [latency-log.svg](latency-log.svg)"
  echo
  echo "Latency = receive time minus *scheduled* send time (open loop, no coordinated"
  echo "omission). Achieved = deliveries received in the window / offered deliveries."
  echo "Server CPU from /proc/PID/stat over the window; RSS per connection = (RSS at the"
  echo "end - RSS before connecting) / connections."
  echo
  machine_section "$LOADAVG_BEFORE"
} >"$OUT/README.md"
echo "wrote $OUT/README.md, $OUT/latency.svg and $OUT/latency-log.svg"
