#!/usr/bin/env bash
# What JWT verification costs a login: the connect scenario (CLIENTS clients connect
# and log in, CONCURRENCY handshakes in flight) against three fresh corecast servers,
# one per mode: no auth, --jwt-secret-file (HS256) and --jwt-public-key (EdDSA,
# Ed25519), the harness minting each login's token with the matching
# --jwt-secret-file / --jwt-private-key before it connects (outside the measured
# window). ROUNDS rounds in one invocation, the order rotated each round (round 1
# none hs256 eddsa, round 2 hs256 eddsa none, round 3 eddsa none hs256, ...), so that
# a drift of the machine's load weighs on every mode alike. Then, per mode, the
# medians (and ranges) of logins/s and of server CPU per login, and their ratios to
# no auth, side by side from the same run.
#
#   load-test/jwt-cost.sh                      # 3 rounds of 9,000 clients
#   ROUNDS=5 CLIENTS=5000 load-test/jwt-cost.sh
#   DRY_RUN=1 load-test/jwt-cost.sh            # print the plan, run nothing
#
# Conditions as compare.sh's: the server (corecast --shards 1) pinned to CPU 0, the
# harness to CPU 1, both at PRIORITY (rt: chrt -f 20, the default; nice:N; none).
# One release build, copied aside first, serves every run (a rebuild in between by
# other work cannot swap it). The secret (48 random bytes, base64) and the Ed25519 key
# pair (openssl genpkey) are generated in a temporary directory and removed at the
# end. Each run has a server port of its own (CORECAST_PORT + its number), so no run
# meets the TIME_WAIT sockets of the one before.
#
# Environment: ROUNDS (default 3, 1 to 10), CLIENTS (default 9000, 100 to 9500: the
# server and the harness each hold one descriptor per client, and both together stay
# under the 20,000-file limit of this machine), CONCURRENCY (default 64), NAME
# (default jwt-cost), PRIORITY, CORECAST_PORT (default 17878). Writes
# load-test/results/<date>-<NAME>/: r<N>-<mode>.json and .txt per run, README.md (the
# summary). Loopback only; each run bounded by the harness's --timeout 60s (and a
# 90 s kill), each server start by 10 s: a few seconds per run, 3 runs a round.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/cost.sh
. "$(dirname "$0")/lib/cost.sh"
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-9000}
CONCURRENCY=${CONCURRENCY:-64}
NAME=${NAME:-jwt-cost}
PRIORITY=${PRIORITY:-rt}
CORECAST_PORT=${CORECAST_PORT:-17878}
DATE=$(date -u +%Y-%m-%d)
OUT=load-test/results/$DATE-$NAME
MODES="none hs256 eddsa"

check_rounds "(each round is three connect runs)"
if ! [[ $CLIENTS =~ ^[0-9]+$ ]] || [ "$CLIENTS" -lt 100 ] || [ "$CLIENTS" -gt 9500 ]; then
  echo "CLIENTS must be 100 to 9500 (server and harness each hold one descriptor per client, under 20,000 together)" >&2
  exit 1
fi
if ! [[ $CONCURRENCY =~ ^[0-9]+$ ]] || [ "$CONCURRENCY" -lt 1 ] || [ "$CONCURRENCY" -gt "$CLIENTS" ]; then
  echo "CONCURRENCY must be 1 to CLIENTS ($CLIENTS)" >&2
  exit 1
fi
set_priority
check_port_room 3 "one port"
SCENARIO="connect --clients $CLIENTS --concurrency $CONCURRENCY --timeout 60s"

# Round N's order: the modes rotated left N-1 times.
order() {
  local -a m=($MODES)
  local s=$((($1 - 1) % 3))
  echo "${m[$s]} ${m[$(((s + 1) % 3))]} ${m[$(((s + 2) % 3))]}"
}
# What each mode adds to the server's and to the harness's command line (keys in $2).
server_flags() { # mode keys
  case $1 in
    none) ;;
    hs256) echo "--jwt-secret-file $2/secret" ;;
    eddsa) echo "--jwt-public-key $2/ed25519.pub.pem" ;;
  esac
}
harness_flags() { # mode keys
  case $1 in
    none) ;;
    hs256) echo "--jwt-secret-file $2/secret" ;;
    eddsa) echo "--jwt-private-key $2/ed25519.pem" ;;
  esac
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry run: would write $OUT/README.md and $OUT/r<N>-<mode>.json for $ROUNDS rounds"
  run=0
  for round in $(seq 1 "$ROUNDS"); do
    echo "round $round: $(order "$round")"
    for mode in $(order "$round"); do
      run=$((run + 1))
      port=$((CORECAST_PORT + run))
      line="  $mode: server: corecast --listen 127.0.0.1:$port --shards 1 $(server_flags "$mode" '$KEYS')"
      echo "${line% }"
      line="  $mode: harness: corecast-load $SCENARIO --addr 127.0.0.1:$port $(harness_flags "$mode" '$KEYS')"
      echo "${line% }"
    done
  done
  exit 0
fi

command -v openssl >/dev/null || { echo "openssl is needed to make the keys" >&2; exit 1; }

WORK=$(mktemp -d)
BIN=$WORK/bin
KEYS=$WORK/keys
mkdir -p "$BIN" "$KEYS" "$WORK/logs"
trap 'stop_server; rm -rf "$WORK"' EXIT
build_release_into "$BIN"
CORECAST_REV=${CORECAST_REV:-$(corecast_rev)}

head -c 48 /dev/urandom | base64 >"$KEYS/secret"
openssl genpkey -algorithm ed25519 -out "$KEYS/ed25519.pem" 2>/dev/null
openssl pkey -in "$KEYS/ed25519.pem" -pubout -out "$KEYS/ed25519.pub.pem"

mkdir -p "$OUT"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run=0
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS: $(order "$round")"
  for mode in $(order "$round"); do
    run=$((run + 1))
    port=$((CORECAST_PORT + run))
    ports_free CORECAST_PORT "$port"
    read -r -a server_jwt <<<"$(server_flags "$mode" "$KEYS")"
    read -r -a harness_jwt <<<"$(harness_flags "$mode" "$KEYS")"
    taskset -c 0 "${PRIO[@]}" "$BIN/corecast" --listen "127.0.0.1:$port" --shards 1 \
      "${server_jwt[@]}" >"$WORK/logs/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$port" "$SERVER_PID" "$WORK/logs/server.log"
    echo "-- $mode (server pid $SERVER_PID, port $port)"
    # shellcheck disable=SC2086 # SCENARIO is a list of arguments on purpose.
    timeout 90 taskset -c 1 "${PRIO[@]}" "$BIN/corecast-load" $SCENARIO \
      --addr "127.0.0.1:$port" "${harness_jwt[@]}" \
      --server-pid "$SERVER_PID" --label "$mode" --json "$OUT/r$round-$mode.json" \
      --quiet | tee "$OUT/r$round-$mode.txt"
    stop_server
  done
done

# Server CPU per login, microseconds: the server's CPU from before the first connect
# to the last login, over the clients logged in.
per_login() { # file
  awk -v cpu="$(figure "$1" cpu_us)" -v n="$(figure "$1" connections)" \
    'BEGIN { if (n > 0) printf "%.2f\n", cpu / n; else print "-" }'
}
# One figure of run (mode, round): values (lib/cost.sh) takes every round's.
value() { # mode round what
  local file=$OUT/r$2-$1.json
  case $3 in
    logins) figure "$file" connections_per_s | awk '{printf "%.0f\n", $1}' ;;
    cpu) per_login "$file" ;;
    p50) figure "$file" p50_us ;;
    p99) figure "$file" p99_us ;;
  esac
}
label() {
  case $1 in
    none) echo "no auth" ;;
    hs256) echo "HS256 (--jwt-secret-file)" ;;
    eddsa) echo "EdDSA (--jwt-public-key, Ed25519)" ;;
  esac
}

BASE_LOGINS=$(values none logins | median)
BASE_CPU=$(values none cpu | median)
{
  echo "# $NAME: what JWT verification costs a login ($DATE)"
  echo
  echo "\`ROUNDS=$ROUNDS CLIENTS=$CLIENTS CONCURRENCY=$CONCURRENCY PRIORITY=$PRIORITY NAME=$NAME load-test/jwt-cost.sh\`"
  echo
  echo "Each run: \`corecast-load $SCENARIO --addr A --server-pid P\` against a fresh"
  echo "\`corecast --shards 1\`: with no auth, with \`--jwt-secret-file\` (HS256, a 48-byte secret;"
  echo "the harness mints with \`--jwt-secret-file\`) and with \`--jwt-public-key\` (EdDSA, an"
  echo "Ed25519 key from \`openssl genpkey\`; the harness mints with \`--jwt-private-key\`). The"
  echo "harness mints every token before the first connect, outside the measured window."
  echo "Round N runs the modes rotated N-1 times (round 1: none, hs256, eddsa)."
  echo "Logins/s: clients over first connect to last login. Server CPU per login: the"
  echo "server's CPU (its CPU-time clock, to the microsecond) from before the first connect to the last"
  echo "login, over the clients: accept, TCP, the LoginRequest and its verification."
  echo
  echo "| round | mode | logins/s | server CPU us / login | connect+login p50 us | p99 us | failures |"
  echo "|---:|---|---:|---:|---:|---:|---:|"
  for round in $(seq 1 "$ROUNDS"); do
    for mode in $(order "$round"); do
      file=$OUT/r$round-$mode.json
      echo "| $round | $mode | $(value "$mode" "$round" logins) | $(value "$mode" "$round" cpu) | $(value "$mode" "$round" p50) | $(value "$mode" "$round" p99) | $(figure "$file" connect_failures) |"
    done
  done
  echo
  echo "| mode (medians over $ROUNDS rounds) | logins/s | range | vs no auth | server CPU us / login | range | vs no auth | extra us / login |"
  echo "|---|---:|---|---:|---:|---|---:|---:|"
  for mode in $MODES; do
    logins=$(values "$mode" logins | median)
    cpu=$(values "$mode" cpu | median)
    extra=$(awk -v a="$cpu" -v b="$BASE_CPU" 'BEGIN { printf "%+.2f", a - b }')
    echo "| $(label "$mode") | $logins | $(values "$mode" logins | range) | $(ratio "$logins" "$BASE_LOGINS") | $cpu | $(values "$mode" cpu | range) | $(ratio "$cpu" "$BASE_CPU") | $extra |"
  done
  echo
  echo "## Machine"
  echo
  machine_lines "$LOADAVG_BEFORE" harness "${PRIO[*]:-no chrt or nice}"
  echo "- One build for all: corecast $CORECAST_REV; $(openssl version)"
  echo "- Raw outputs: \`r<round>-<mode>.txt\` (tables), \`r<round>-<mode>.json\` (reports)"
} >"$OUT/README.md"
cat "$OUT/README.md"
