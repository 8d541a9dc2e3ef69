#!/usr/bin/env bash
# Soak: fan-out with churn at about half of the measured capacity for DURATION
# (default 600 s), with the server's RSS and open fds sampled every 30 s. Fails if
# the harness reports any loss or disorder, if fds leak, or if RSS at the end is more
# than 10% above its first sample after warm-up.
#   load-test/soak.sh [OUTDIR]     (env: DURATION=600s (seconds, s optional) PORT=17910 SAMPLE=30)
# The server also serves /metrics on PORT+1; its counters at the end go to metrics.txt.
# Bounded: the server gets 10 s to listen, the load generator DURATION + 120 s (then
# SIGINT, then SIGKILL), and the server 30 s to exit after SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-load-test/results/soak-$(date +%F)}
duration=${DURATION:-600s}
warmup=10
port=${PORT:-17910}
sample=${SAMPLE:-30}
mkdir -p "$out"
cargo build --release -q -p corecast -p corecast-load
bin=${CARGO_TARGET_DIR:-target}/release

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$port" "$((port + 1))"; do
  if port_open "$p"; then echo "port $p is already in use; set PORT" >&2; exit 1; fi
done

taskset -c 0 "$bin/corecast" --shards 1 --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$((port + 1))" > "$out/server.log" 2>&1 &
srv=$!
sampler=
trap 'kill -KILL $srv 2>/dev/null || true; [ -z "$sampler" ] || kill $sampler 2>/dev/null || true' EXIT
ready=
for _ in $(seq 100); do
  port_open "$port" && { ready=1; break; }
  kill -0 $srv 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { echo "server not listening on $port within 10 s" >&2; cat "$out/server.log" >&2; exit 1; }
fds_before=$(ls /proc/$srv/fd | wc -l)
started=$(date +%s)
( while kill -0 $srv 2>/dev/null; do
    echo "$(date +%s) $(awk '/VmRSS/{print $2}' /proc/$srv/status) $(ls /proc/$srv/fd | wc -l)"
    sleep "$sample"
  done ) > "$out/rss.log" 2>/dev/null &
sampler=$!

status=0
limit=$(( $(sed 's/s$//' <<< "$duration") + warmup + 120 ))
timeout --signal=INT --kill-after=10 "$limit" taskset -c 1 "$bin/corecast-load" churn --addr "127.0.0.1:$port" --rooms 10 --members 50 \
  --senders 2 --rate 70 --churners 10 --churn-rate 100 --duration "$duration" --warmup "${warmup}s" \
  --drain 3s --server-pid $srv --quiet --json "$out/soak.json" > "$out/soak.txt" 2>&1 || status=$?
sleep 2
fds_after=$(ls /proc/$srv/fd | wc -l)
curl -sf "http://127.0.0.1:$((port + 1))/metrics" > "$out/metrics.txt" || echo "metrics scrape failed"
kill -TERM $srv
for _ in $(seq 300); do kill -0 $srv 2>/dev/null || break; sleep 0.1; done
if kill -0 $srv 2>/dev/null; then echo "server did not exit 30 s after SIGTERM"; exit 1; fi
wait $srv || status=$?
kill $sampler 2>/dev/null || true
wait $sampler 2>/dev/null || true
trap - EXIT

# The first sample taken after the warm-up (earlier ones are before or during setup).
rss_first=$(awk -v t=$((started + warmup)) '$1 >= t {print $2; exit}' "$out/rss.log")
rss_last=$(tail -n 1 "$out/rss.log" | awk '{print $2}')
if [ -z "$rss_first" ] || [ -z "$rss_last" ]; then
  echo "no RSS sample after the warm-up (DURATION shorter than SAMPLE?)"; exit 1
fi
cat "$out/soak.txt"
echo "fds before $fds_before, after $fds_after; RSS after warm-up $rss_first KiB, at the end $rss_last KiB"
[ "$fds_after" -le "$fds_before" ] || { echo "fd leak"; status=1; }
[ $((rss_last * 10)) -le $((rss_first * 11)) ] || { echo "RSS grew more than 10%"; status=1; }
exit $status
