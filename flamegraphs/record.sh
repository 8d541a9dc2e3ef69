#!/usr/bin/env bash
# Records a CPU flamegraph of corecast under one corecast-load scenario.
#
#   flamegraphs/record.sh SCENARIO [corecast-load args...]
#   flamegraphs/record.sh fanout --rooms 10 --members 100 --senders 1 --rate 100
#   EVENT=cycles CALL_GRAPH=dwarf flamegraphs/record.sh chat --rooms 200 --members 5 --rate 10
#   MODE=pprof flamegraphs/record.sh connect --clients 10000 --concurrency 64
#   MODE=offcpu DURATION=5 flamegraphs/record.sh connect --clients 19000 --connect-rate 10000
#
# Builds the `profiling` cargo profile (release + debug symbols) with frame pointers
# (RUSTFLAGS=-C force-frame-pointers=yes), starts `corecast --shards 1` pinned to CPU 0
# and `corecast-load SCENARIO ...` pinned to CPU 1, samples the server for DURATION
# seconds, stops it with SIGTERM, and writes into OUT_DIR (default flamegraphs/out/,
# which git ignores, so a recording never overwrites the committed profiles in
# flamegraphs/; set OUT_DIR=flamegraphs to replace those on purpose):
#
#   NAME.svg      the flamegraph (inferno-flamegraph)
#   NAME.folded   the collapsed stacks (input of diff.sh and hotpaths.sh)
#   NAME.txt      the commands, the machine, the load generator's report, the hot paths
#
# DRY_RUN=1 prints the files it would write and exits, before installing, building or
# starting anything.
#
# Scenarios with a measured window (fanout, chat, churn) get `--warmup WARMUP
# --duration DURATION` unless the arguments set them; sampling starts WARMUP seconds
# after the load starts, so connection setup and the first warm-up are left out and
# the window is steady state. Other scenarios (connect, idle) are sampled from 1 s
# before the load starts, for DURATION seconds.
#
# Environment:
#   MODE=perf|pprof    perf (default): `perf record` from outside. pprof: the server
#                      samples itself (cargo feature `pprof`, CORECAST_PPROF), for
#                      machines where perf_event_open is not permitted; it covers the
#                      server's whole life (setup included) and user space only.
#                      offcpu: where the server's threads wait instead of running,
#                      weighted by microseconds: every `sched_switch` system-wide
#                      (`perf record -e sched:sched_switch -a -g`), each of the
#                      server's switch-outs charged the time until it runs again
#                      (flamegraphs/offcpu.py; needs python3). EVENT and FREQ unused.
#   EVENT=cpu-clock    perf event (`cycles` where hardware counters exist).
#   CALL_GRAPH=fp      fp (frame pointers) or dwarf (bigger perf.data, slower, sees
#                      through code without frame pointers such as libc).
#   FREQ=999           samples per second per CPU.
#   DURATION=10        seconds sampled.          WARMUP=3  seconds before sampling.
#   NAME=SCENARIO      output file stem.          OUT_DIR=flamegraphs/out
#   PORT=17880         server port.               CARGO_TARGET_DIR (default target)
#   PRIORITY=rt       rt: server and load both SCHED_FIFO 20 (`chrt -f 20`), as in
#                      load-test/compare.sh, so builds sharing the machine do not
#                      preempt them (none where chrt is not permitted); none; nice:N.
#   KEEP_DATA=0        1 keeps perf.data in OUT_DIR/NAME.perf.data.
#   MINWIDTH=0.1       frames under this percent of samples are left out of the SVG.
#   SERVER_ARGS=       extra corecast flags.
#   DRY_RUN=0          1: print the output files and exit.
#
# Bounded: the load generator gets WARMUP + DURATION + 120 s (then SIGINT, SIGKILL),
# the server 30 s to exit after SIGTERM (then SIGKILL, and the script fails).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
SCENARIO=$1
shift
LOAD_ARGS=("$@")

MODE=${MODE:-perf}
EVENT=${EVENT:-cpu-clock}
CALL_GRAPH=${CALL_GRAPH:-fp}
FREQ=${FREQ:-999}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
NAME=${NAME:-$SCENARIO}
OUT_DIR=${OUT_DIR:-flamegraphs/out}
PORT=${PORT:-17880}
PRIORITY=${PRIORITY:-rt}
if [ "$PRIORITY" = rt ] && ! chrt -f 20 true 2>/dev/null; then
  echo "chrt -f 20 is not permitted here: running at normal priority (PRIORITY=none)" >&2
  PRIORITY=none
fi
KEEP_DATA=${KEEP_DATA:-0}
MINWIDTH=${MINWIDTH:-0.1}
read -r -a EXTRA_SERVER_ARGS <<<"${SERVER_ARGS:-}"

case $MODE in perf | pprof | offcpu) ;; *) echo "MODE must be perf, pprof or offcpu" >&2; exit 2 ;; esac
case $CALL_GRAPH in fp | dwarf) ;; *) echo "CALL_GRAPH must be fp or dwarf" >&2; exit 2 ;; esac
case $PRIORITY in
  rt) PRIO=(chrt -f 20) PERF_PRIO=(chrt -f 10) ;;
  nice:*) PRIO=(nice -n "${PRIORITY#nice:}") PERF_PRIO=("${PRIO[@]}") ;;
  none) PRIO=() PERF_PRIO=() ;;
  *) echo "PRIORITY must be rt, nice:N or none" >&2; exit 2 ;;
esac

SVG=$OUT_DIR/$NAME.svg
FOLDED=$OUT_DIR/$NAME.folded
REPORT=$OUT_DIR/$NAME.txt
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry run: would write"
  printf '  %s\n' "$SVG" "$FOLDED" "$REPORT"
  [ "$KEEP_DATA" = 1 ] && echo "  $OUT_DIR/$NAME.perf.data"
  exit 0
fi

# Tools: perf from Debian, inferno with `cargo install`.
if [ "$MODE" != pprof ] && ! command -v perf >/dev/null; then
  echo "installing linux-perf from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq linux-perf >/dev/null
fi
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
  echo "installing inferno (cargo install inferno)"
  cargo install --locked inferno
fi

# Frame pointers everywhere we compile, so fp call graphs are whole. They change
# RUSTFLAGS, so this build has its own fingerprint: use a separate CARGO_TARGET_DIR
# if you also build without them.
export RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes"
FEATURES=()
[ "$MODE" = pprof ] && FEATURES=(--features corecast/pprof)
echo "building (cargo build --profile profiling ${FEATURES[*]}, RUSTFLAGS=$RUSTFLAGS)"
cargo build --profile profiling -q -p corecast -p corecast-load "${FEATURES[@]}"
BIN=${CARGO_TARGET_DIR:-target}/profiling

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$PORT"; then
  echo "port $PORT is already in use; set PORT" >&2
  exit 1
fi

WORK=$(mktemp -d)
SERVER_PID=
LOAD_PID=
PERF_PID=
cleanup() {
  for pid in "$PERF_PID" "$LOAD_PID" "$SERVER_PID"; do
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$OUT_DIR"

SERVER_CMD=("$BIN/corecast" --shards 1 --listen "127.0.0.1:$PORT" "${EXTRA_SERVER_ARGS[@]}")
if [ "$MODE" = pprof ]; then
  export CORECAST_PPROF=$WORK/pprof.svg CORECAST_PPROF_HZ=$FREQ
fi
taskset -c 0 "${PRIO[@]}" "${SERVER_CMD[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$WORK/server.log" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "server exited early" >&2; exit 1; }
  sleep 0.05
done
grep -q "listening on" "$WORK/server.log" || { echo "server not listening after 10 s" >&2; exit 1; }
echo "server pid $SERVER_PID on 127.0.0.1:$PORT ($MODE)"

# Scenarios with a measured window run exactly as long as we sample.
has_arg() { local a; for a in "${LOAD_ARGS[@]}"; do [ "$a" = "$1" ] && return 0; done; return 1; }
DELAY=0
case $SCENARIO in
  fanout | chat | churn)
    has_arg --duration || LOAD_ARGS+=(--duration "${DURATION}s")
    has_arg --warmup || LOAD_ARGS+=(--warmup "${WARMUP}s")
    DELAY=$WARMUP
    ;;
esac
LOAD_CMD=("$BIN/corecast-load" "$SCENARIO" "${LOAD_ARGS[@]}" --addr "127.0.0.1:$PORT"
  --server-pid "$SERVER_PID" --quiet)
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
LOAD_LIMIT=$((WARMUP + DURATION + 120))
start_load() {
  timeout -k 10 -s INT "$LOAD_LIMIT" taskset -c 1 "${PRIO[@]}" "${LOAD_CMD[@]}" \
    >"$WORK/load.txt" 2>&1 &
  LOAD_PID=$!
}
PERF_CMD=()
start_sampler() {
  if [ "$MODE" != pprof ]; then
    local cg=$CALL_GRAPH
    [ "$cg" = dwarf ] && cg=dwarf,16384
    # A 32 MiB buffer (dwarf samples are 16 KiB each), and with PRIORITY=rt perf
    # runs SCHED_FIFO 10: above other work (a starved perf loses samples), below the
    # server and the load (so it does not add to their latency).
    # What to sample: the server's CPU (perf), or every context switch on the
    # machine (offcpu: a thread is switched back in from another task's context).
    local what=(-e "$EVENT" -F "$FREQ" -p "$SERVER_PID")
    [ "$MODE" = offcpu ] && what=(-e sched:sched_switch -a)
    PERF_CMD=(perf record "${what[@]}" -g --call-graph "$cg" -m 32M
      -o "$WORK/perf.data" -- sleep "$DURATION")
    echo "sampling: ${PERF_CMD[*]}"
    "${PERF_PRIO[@]}" "${PERF_CMD[@]}" 2>"$WORK/perf.log" &
  else
    echo "sampling in the server (CORECAST_PPROF); waiting ${DURATION}s"
    sleep "$DURATION" &
  fi
  PERF_PID=$!
}
if [ "$DELAY" -gt 0 ]; then
  start_load
  sleep "$DELAY"
  start_sampler
  SAMPLER_START="${DELAY}s after the load started"
else
  # No warm-up to skip (a connection storm is over in a second): perf attaches
  # first, so the storm's start is in the profile.
  start_sampler
  sleep 1
  start_load
  SAMPLER_START="1s before the load started"
fi
wait "$PERF_PID" || { cat "$WORK/perf.log" >&2; echo "perf record failed" >&2; exit 1; }
PERF_PID=
ls "/proc/$SERVER_PID/task" >"$WORK/tids"

LOAD_STATUS=0
wait "$LOAD_PID" || LOAD_STATUS=$?
LOAD_PID=
[ "$LOAD_STATUS" -eq 0 ] || echo "warning: corecast-load exited $LOAD_STATUS (see $REPORT)" >&2

kill -TERM "$SERVER_PID"
for _ in $(seq 1 300); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "server did not exit 30 s after SIGTERM" >&2
  exit 1
fi
SERVER_STATUS=0
wait "$SERVER_PID" || SERVER_STATUS=$?
SERVER_PID=
echo "server exited $SERVER_STATUS"
[ "$SERVER_STATUS" -eq 0 ] || { cat "$WORK/server.log" >&2; exit 1; }

# The command that made these files, as a person would type it.
quoted_args=""
[ $# -gt 0 ] && quoted_args=$(printf ' %q' "$@")
ENVS=""
for v in MODE EVENT CALL_GRAPH FREQ DURATION WARMUP NAME OUT_DIR PRIORITY SERVER_ARGS MINWIDTH; do
  default=
  case $v in
    MODE) default=perf ;; EVENT) default=cpu-clock ;; CALL_GRAPH) default=fp ;;
    FREQ) default=999 ;; DURATION) default=10 ;; WARMUP) default=3 ;;
    NAME) default=$SCENARIO ;; OUT_DIR) default=flamegraphs/out ;; PRIORITY) default=rt ;;
    SERVER_ARGS) default= ;; MINWIDTH) default=0.1 ;;
  esac
  [ "${!v:-}" != "$default" ] && ENVS+="$v=$(printf '%q' "${!v}") "
done
RECORD_CMD="${ENVS}flamegraphs/record.sh $SCENARIO$quoted_args"
TITLE="corecast $NAME: corecast-load $SCENARIO$quoted_args"
if [ "$MODE" = perf ]; then
  SUBTITLE="perf $EVENT at $FREQ Hz, --call-graph $CALL_GRAPH, ${DURATION}s, --shards 1 on CPU 0"
  # No period field: cpu-clock's period is in ns, and each sample should count 1.
  perf script -i "$WORK/perf.data" -F comm,tid,time,event,ip,sym,dso 2>/dev/null \
    | inferno-collapse-perf --all >"$FOLDED"
  [ "$KEEP_DATA" = 1 ] && cp "$WORK/perf.data" "$OUT_DIR/$NAME.perf.data"
elif [ "$MODE" = offcpu ]; then
  SUBTITLE="off-CPU microseconds (perf sched:sched_switch -a, --call-graph $CALL_GRAPH), ${DURATION}s, --shards 1 on CPU 0"
  perf script -i "$WORK/perf.data" -F comm,tid,time,event,trace,ip,sym 2>/dev/null \
    | python3 flamegraphs/offcpu.py "$WORK/tids" "$FOLDED" >"$WORK/offcpu.txt"
  [ "$KEEP_DATA" = 1 ] && cp "$WORK/perf.data" "$OUT_DIR/$NAME.perf.data"
else
  SUBTITLE="pprof-rs (SIGPROF) at $FREQ Hz, whole server run, --shards 1 on CPU 0"
  [ -s "$WORK/pprof.folded" ] || { cat "$WORK/server.log" >&2; echo "no pprof profile written" >&2; exit 1; }
  cp "$WORK/pprof.folded" "$FOLDED"
fi
[ -s "$FOLDED" ] || { echo "no samples collected" >&2; exit 1; }
# Frames under MINWIDTH percent of the samples (about a pixel) are left out of the
# SVG, which keeps it small; the .folded file keeps every stack.
COUNTNAME=samples
[ "$MODE" = offcpu ] && COUNTNAME=us
inferno-flamegraph --title "$TITLE" --subtitle "$SUBTITLE" --colors rust \
  --countname "$COUNTNAME" --minwidth "$MINWIDTH" <"$FOLDED" >"$SVG"

{
  echo "# $NAME"
  echo
  echo "Recorded with: $RECORD_CMD"
  echo "Server:        ${SERVER_CMD[*]}   (taskset -c 0 ${PRIO[*]})"
  echo "Load:          ${LOAD_CMD[*]}   (taskset -c 1 ${PRIO[*]})"
  [ ${#PERF_CMD[@]} -gt 0 ] && echo "Sampler:       ${PERF_PRIO[*]} ${PERF_CMD[*]}   (started $SAMPLER_START)"
  [ -s "$WORK/perf.log" ] && sed 's/^/perf:          /' "$WORK/perf.log"
  [ "$MODE" = pprof ] && echo "Sampler:       CORECAST_PPROF=$NAME.svg CORECAST_PPROF_HZ=$FREQ (whole server run)"
  echo "Build:         RUSTFLAGS='$RUSTFLAGS' cargo build --profile profiling ${FEATURES[*]}"
  echo "Revision:      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src vendor 2>/dev/null || echo ' (src/ or vendor/ modified)')"
  echo "Machine:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, kernel $(uname -r)"
  echo "Date:          $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $LOADAVG_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Load exit:     $LOAD_STATUS; server exit: $SERVER_STATUS"
  echo
  echo "## corecast-load report"
  echo
  cat "$WORK/load.txt"
  echo
  if [ "$MODE" = offcpu ]; then
    echo "## Off-CPU time (flamegraphs/offcpu.py)"
    echo
    cat "$WORK/offcpu.txt"
  else
    echo "## Hot paths (flamegraphs/hotpaths.sh $NAME.folded)"
    echo
    flamegraphs/hotpaths.sh "$FOLDED"
  fi
} >"$REPORT"
echo "wrote $SVG, $FOLDED ($(wc -c <"$FOLDED") bytes) and $REPORT"
