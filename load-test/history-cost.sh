#!/usr/bin/env bash
# What history costs the fan-out: the same broadcast run against corecast with its
# default history (--history-messages 100 per room) and with --history-messages 0,
# alternated ROUNDS times in one invocation (round 1 on then off, round 2 off then on,
# and so on, so that a drift of the machine's load weighs on both alike), each round
# one load-test/compare.sh run with TARGETS "corecast corecast-nohistory" (same
# pinning and priority as every comparison). One release build, copied aside first,
# serves every round (BIN_DIR): a rebuild in between by other work cannot swap it. Then the medians of each: server CPU per
# 1000 deliveries, server CPU, p50 and p99, and the ratio of the CPU medians.
#
#   load-test/history-cost.sh                        # 3 rounds of the default fanout
#   ROUNDS=5 SCENARIO="fanout --rooms 10 --members 100 --rate 100 --duration 10s" \
#       load-test/history-cost.sh
#   DRY_RUN=1 load-test/history-cost.sh              # print the plan, run nothing
#
# Environment: ROUNDS (default 3, 1 to 10), SCENARIO (default the fanout of
# compare.sh: 10 rooms x 100 members, 1 sender at 100 msgs/s, 64 B, 10 s windows),
# NAME (default history-cost), PRIORITY and CORECAST_PORT (passed to compare.sh).
# Writes load-test/results/<date>-<NAME>-r<N>/ for each round (compare.sh's outputs)
# and load-test/results/<date>-<NAME>/README.md (every run and the medians). Loopback
# only; about 20 s per run, 2 runs per round.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/cost.sh
. "$(dirname "$0")/lib/cost.sh"
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SCENARIO=${SCENARIO:-"fanout --rooms 10 --members 100 --senders 1 --rate 100 --body-size 64 --duration 10s --warmup 2s --drain 2s"}
NAME=${NAME:-history-cost}
PRIORITY=${PRIORITY:-rt}
DATE=$(date -u +%Y-%m-%d)
OUT=load-test/results/$DATE-$NAME

check_rounds "(each round is two runs of about 20 s)"
check_broadcast_scenario

# Round N's order: odd rounds history on first, even rounds off first.
order() { alternate "$1" corecast corecast-nohistory; }

if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry run: would write $OUT/README.md and $OUT-r1 .. $OUT-r$ROUNDS"
  for round in $(seq 1 "$ROUNDS"); do
    echo "round $round: TARGETS=\"$(order "$round")\" PRIORITY=$PRIORITY NAME=$NAME-r$round SCENARIO=\"$SCENARIO\" load-test/compare.sh"
  done
  exit 0
fi

# One figure of a saved report, as lib/cost.sh's figure but reading digits and dots
# only (no exponent, no sign), as this script always has.
figure() { # file key
  grep -m1 "\"$2\":" "$1" | sed 's/.*: *//; s/[^0-9.].*//' | awk '{printf "%.6g\n", $1}'
}

BIN_DIR=$(mktemp -d)
trap 'rm -rf "$BIN_DIR"' EXIT
build_release_into "$BIN_DIR"
CORECAST_REV=${CORECAST_REV:-$(corecast_rev)}
export BIN_DIR CORECAST_REV
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS: $(order "$round")"
  TARGETS=$(order "$round") PRIORITY=$PRIORITY NAME=$NAME-r$round SCENARIO=$SCENARIO \
    load-test/compare.sh
done

mkdir -p "$OUT"
rows() { # target: one Markdown row per round
  local round file
  for round in $(seq 1 "$ROUNDS"); do
    file=$OUT-r$round/$1.json
    echo "| $round | $1 | $(figure "$file" achieved_deliveries_per_s) | $(figure "$file" cpu_pct) | $(figure "$file" cpu_us_per_1000_deliveries) | $(figure "$file" p50_us) | $(figure "$file" p99_us) | $(figure "$file" lost) |"
  done
}
med() { # target key
  local round
  for round in $(seq 1 "$ROUNDS"); do figure "$OUT-r$round/$1.json" "$2"; done | median
}
ON=$(med corecast cpu_us_per_1000_deliveries)
OFF=$(med corecast-nohistory cpu_us_per_1000_deliveries)
RATIO=$(ratio "$ON" "$OFF")
{
  echo "# $NAME: server CPU per delivery, history on vs off ($DATE)"
  echo
  echo "\`ROUNDS=$ROUNDS PRIORITY=$PRIORITY NAME=$NAME SCENARIO=\"$SCENARIO\" load-test/history-cost.sh\`"
  echo
  echo "Each round runs \`corecast-load $SCENARIO\` against corecast --shards 1 (history on:"
  echo "--history-messages 100, the default) and corecast --shards 1 --history-messages 0,"
  echo "odd rounds on first, even rounds off first; server on CPU 0, harness on CPU 1;"
  echo "one build for all: corecast $CORECAST_REV. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| round | target | achieved deliveries/s | server CPU % | server CPU us / 1000 deliveries | p50 us | p99 us | lost |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
  rows corecast
  rows corecast-nohistory
  echo
  echo "| median | server CPU us / 1000 deliveries | server CPU % | p50 us | p99 us |"
  echo "|---|---:|---:|---:|---:|"
  for t in corecast corecast-nohistory; do
    echo "| $t | $(med "$t" cpu_us_per_1000_deliveries) | $(med "$t" cpu_pct) | $(med "$t" p50_us) | $(med "$t" p99_us) |"
  done
  echo
  echo "History on / off, server CPU per delivery (medians): **$RATIO**"
  echo
  echo "Rounds: $(for r in $(seq 1 "$ROUNDS"); do printf '[r%s](../%s-r%s/README.md) ' "$r" "$DATE-$NAME" "$r"; done)"
} >"$OUT/README.md"
cat "$OUT/README.md"
