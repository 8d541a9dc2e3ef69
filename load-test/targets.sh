#!/usr/bin/env bash
# Runs every comparison behind the README's performance table, in order, each with
# load-test/compare.sh under the same conditions (pinned, SCHED_FIFO, 30 s windows),
# then the counting-allocator test. About 20 minutes on the 2-vCPU machine. Results:
# load-test/results/<date>-<name>/ for each name below.
set -euo pipefail
cd "$(dirname "$0")/.."

run() { # name targets scenario
  NAME=$1 TARGETS=$2 SCENARIO=$3 load-test/compare.sh
}

run fanout-128 "corecast redis nats" \
  "fanout --rooms 10 --members 100 --senders 1 --rate 50 --body-size 128 --duration 30s --warmup 5s --drain 2s"
run fanout-findmax "corecast redis nats" \
  "fanout --rooms 10 --members 100 --senders 1 --rate 50 --body-size 128 --find-max --step-factor 1.4 --duration 30s --warmup 5s --drain 2s"
# Half of fanout-findmax's highest sustainable rate (137,200 deliveries/s): target 3.
run fanout-half "corecast redis nats" \
  "fanout --rooms 10 --members 100 --senders 1 --rate 68.6 --body-size 128 --duration 30s --warmup 5s --drain 2s"
run chat-1000x5 "corecast corecast-2shards redis nats" \
  "chat --rooms 1000 --members 5 --rate 2 --body-size 128 --duration 30s --warmup 5s --drain 2s"
run idle-19k corecast "idle --connections 19000 --hold 30s"
# --source-addrs: from one source address the harness managed 3,970 connects/s at 85%
# of its core (its connect() calls slow down as ephemeral ports fill); 8 give 10,000.
run connect-19k corecast "connect --clients 19000 --connect-rate 10000 --concurrency 512 --source-addrs 8"
cargo test --test alloc -- --nocapture
