#!/usr/bin/env bash
# Soak: fan-out with churn at about half of the measured capacity for DURATION
# (default 600 s), with the server's RSS and open fds sampled every 30 s. Fails if
# the harness reports any loss or disorder, if fds leak, or if RSS at the end is more
# than 10% above its first sample after warm-up.
#   load-test/soak.sh [OUTDIR]     (env: DURATION=600s PORT=17910 SAMPLE=30)
# The server also serves /metrics on PORT+1; its counters at the end go to metrics.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-load-test/results/soak-$(date +%F)}
duration=${DURATION:-600s}
port=${PORT:-17910}
sample=${SAMPLE:-30}
mkdir -p "$out"
cargo build --release -q -p corecast -p corecast-load
bin=${CARGO_TARGET_DIR:-target}/release

taskset -c 0 "$bin/corecast" --shards 1 --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$((port + 1))" > "$out/server.log" 2>&1 &
srv=$!
trap 'kill -TERM $srv 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out/server.log" && break; sleep 0.1; done
fds_before=$(ls /proc/$srv/fd | wc -l)
( while kill -0 $srv 2>/dev/null; do
    echo "$(date +%s) $(awk '/VmRSS/{print $2}' /proc/$srv/status) $(ls /proc/$srv/fd | wc -l)"
    sleep "$sample"
  done ) > "$out/rss.log" 2>/dev/null &

status=0
taskset -c 1 "$bin/corecast-load" churn --addr "127.0.0.1:$port" --rooms 10 --members 50 \
  --senders 2 --rate 70 --churners 10 --churn-rate 100 --duration "$duration" --warmup 10s \
  --drain 3s --server-pid $srv --quiet --json "$out/soak.json" > "$out/soak.txt" 2>&1 || status=$?
sleep 2
fds_after=$(ls /proc/$srv/fd | wc -l)
curl -sf "http://127.0.0.1:$((port + 1))/metrics" > "$out/metrics.txt" || echo "metrics scrape failed"
kill -TERM $srv; wait $srv || status=$?
trap - EXIT

# The first sample is taken before the clients connect; the second is after warm-up.
rss_first=$(sed -n 2p "$out/rss.log" | awk '{print $2}')
rss_last=$(tail -n 1 "$out/rss.log" | awk '{print $2}')
cat "$out/soak.txt"
echo "fds before $fds_before, after $fds_after; RSS after warm-up $rss_first KiB, at the end $rss_last KiB"
[ "$fds_after" -le "$fds_before" ] || { echo "fd leak"; status=1; }
[ $((rss_last * 10)) -le $((rss_first * 11)) ] || { echo "RSS grew more than 10%"; status=1; }
exit $status
