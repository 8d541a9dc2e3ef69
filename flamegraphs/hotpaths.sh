#!/usr/bin/env bash
# Sums the samples of a collapsed-stack file (.folded, or .folded.gz) by where the
# time went, as the shares the flamegraphs README quotes.
#
#   flamegraphs/hotpaths.sh flamegraphs/out/fanout.folded [TOP]    (a record.sh run)
#   flamegraphs/hotpaths.sh flamegraphs/fanout.folded.gz           (a committed profile)
#
# Three views, each as a share of all samples:
#   1. Buckets: every sample in exactly one bucket (they add up to 100%), chosen from
#      the leaf up: the first frame that says what the CPU was doing. A kernel leaf is
#      "kernel TCP/IP" if the stack passes through the network stack on the way up
#      (tcp_*, ip_*, sock_*, skb, loopback, softirq receive), else io_uring, epoll or
#      "kernel other" (syscall entry, scheduler, timers). A user leaf is allocator
#      (mi_*), encode (corecast::response), decode (corecast::request|frame, prost),
#      routing (corecast::shard|router|routing|room, flume), writes
#      (corecast::outbound), connection/session (corecast::connection|session|
#      executor), other corecast, executor (glommio, async-task), else std/libc.
#   2. Inclusive: share of samples with a matching frame anywhere on the stack
#      (overlapping: a sendmsg under corecast::outbound counts in both), with each
#      system call by name.
#   3. The TOP (default 12) leaf functions (self time) and corecast functions
#      (inclusive).
# Kernel frames carry the `_[k]` suffix of `inferno-collapse-perf --all`; profiles
# from the pprof hook have no kernel frames, and their syscalls show as libc wrappers.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 FILE.folded[.gz] [TOP]" >&2
  exit 2
fi
FOLDED=$1
TOP=${2:-12}
case $FOLDED in
  *.gz) READ=(gzip -dc "$FOLDED") ;;
  *) READ=(cat "$FOLDED") ;;
esac

pct_table() { # reads "samples<TAB>name", prints a Markdown table with shares of $1
  awk -F'\t' -v total="$1" -v head="$2" '
    BEGIN { print "| " head " | samples | share |"; print "|---|---:|---:|" }
    { printf "| %s | %d | %.1f%% |\n", $2, $1, 100 * $1 / total }'
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"${READ[@]}" | awk -v dir="$TMP" '
  function is_kernel(f) { return f ~ /_\[k\]$/ }
  function bare(f) { sub(/_\[[kj]\]$/, "", f); return f }
  function net(f) {
    return is_kernel(f) && bare(f) ~ /^_*(tcp|inet|ip_|ipv4|ip6|sk_|sock|skb|kfree_skb|consume_skb|dev_|netif|net_|napi|loopback|nf_|dst_|release_sock|lock_sock|validate_xmit|eth_|process_backlog|do_softirq|__softirq)/
  }
  function user_syscall(f) {
    return !is_kernel(f) && f ~ /^(__libc_|__GI_+)?(sendmsg|recvmsg|recvfrom|recv|send|accept4?|epoll_wait|epoll_pwait|syscall|io_uring_enter|write|writev|read|close|shutdown)$/
  }
  function user_bucket(f) {
    if (f ~ /^_?mi_|mimalloc/) return "allocator (mimalloc)"
    if (f ~ /corecast::response/) return "encode (corecast::response)"
    if (f ~ /corecast::(request|frame)|prost::/) return "decode (corecast::request/frame, prost)"
    if (f ~ /corecast::(shard|router|routing|room)|flume::/) return "routing (corecast::shard/router/room, flume)"
    if (f ~ /corecast::outbound/) return "writes (corecast::outbound)"
    if (f ~ /corecast::(connection|session|executor|limits|notify)/) return "connection/session (corecast::connection/session/executor)"
    if (f ~ /corecast::/) return "other corecast"
    if (f ~ /glommio::|async_task::|futures_lite::/) return "executor (glommio, async-task)"
    return ""
  }
  {
    count = $NF
    stack = $0
    sub(/ [0-9]+$/, "", stack)
    n = split(stack, fr, ";")
    total += count
    threads[fr[1]] += count

    # 1. One bucket per sample, from the leaf up.
    b = ""
    if (is_kernel(fr[n])) {
      b = "kernel other (syscall entry, scheduler, timers, faults)"
      for (i = n; i >= 2; i--) {
        if (net(fr[i])) { b = "kernel TCP/IP (loopback send and receive)"; break }
        if (fr[i] ~ /io_uring/) { b = "kernel io_uring"; break }
        if (fr[i] ~ /epoll/) { b = "kernel epoll"; break }
      }
    } else if (user_syscall(fr[n])) {
      b = "libc syscall wrapper, user side (pprof: all of the syscall)"
    } else {
      for (i = n; i >= 2 && b == ""; i--) b = user_bucket(fr[i])
      if (b == "") b = "std, libc, other"
    }
    buckets[b] += count

    # 2. Inclusive, each counted once per sample.
    delete seen
    ksys = ""
    usys = ""
    for (i = 2; i <= n; i++) {
      f = bare(fr[i])
      if (fr[i] ~ /^(entry_SYSCALL_64|do_syscall_64)/ || user_syscall(fr[i])) seen["syscalls (any)"] = 1
      # The kernel entry names the call; the libc wrapper (`syscall` for
      # io_uring_enter) is the fallback for pprof stacks.
      # (__x64_sys_X, __se_sys_X, __do_sys_X or, where the kernel inlines those into
      # x64_sys_call, __sys_X)
      if (ksys == "" && is_kernel(fr[i]) && f ~ /^_*((x64|se|do)_)?sys_[a-z0-9_]+$/ && f != "x64_sys_call") {
        ksys = f
        sub(/^_*((x64|se|do)_)?sys_/, "", ksys)
      }
      if (usys == "" && user_syscall(fr[i])) { usys = f; sub(/^(__libc_|__GI_+)/, "", usys) }
      if (net(fr[i])) seen["kernel TCP/IP"] = 1
      if (f ~ /^(net_rx_action|__netif_receive_skb|process_backlog)/) seen["kernel TCP/IP: receive path (softirq)"] = 1
      if (f ~ /^(tcp_sendmsg|tcp_write_xmit|__tcp_transmit_skb)/) seen["kernel TCP/IP: transmit path"] = 1
      if (f ~ /io_uring/) seen["io_uring (kernel or glommio)"] = 1
      if (f ~ /corecast::response/) seen["encode: corecast::response"] = 1
      if (f ~ /corecast::(request|frame)|prost::/) seen["decode: corecast::request/frame, prost"] = 1
      if (f ~ /corecast::(shard|router|routing|room)/) seen["routing: corecast::shard/router/room"] = 1
      if (f ~ /flume::/) seen["routing: flume"] = 1
      if (f ~ /corecast::outbound/) seen["writes: corecast::outbound"] = 1
      if (f ~ /corecast::connection/) seen["corecast::connection"] = 1
      if (f ~ /corecast::session/) seen["corecast::session"] = 1
      if (f ~ /^_?mi_|mimalloc/) seen["allocator: mi_*"] = 1
      if (f ~ /glommio::/) seen["executor: glommio::*"] = 1
      if (f ~ /corecast::/ && !(f in fseen)) { fseen[f] = 1; cfun[f] += count }
    }
    if (ksys != "") seen["syscall " ksys] = 1
    else if (usys != "") seen["syscall " usys " (user side only)"] = 1
    for (k in seen) incl[k] += count
    for (k in fseen) delete fseen[k]

    # 3. Self time by leaf function.
    leaf[fr[n]] += count
  }
  END {
    print total > (dir "/total")
    for (k in threads) printf "%d\t%s\n", threads[k], k > (dir "/threads")
    for (k in buckets) printf "%d\t%s\n", buckets[k], k > (dir "/buckets")
    for (k in incl) printf "%d\t%s\n", incl[k], k > (dir "/incl")
    for (k in leaf) printf "%d\t%s\n", leaf[k], k > (dir "/leaf")
    for (k in cfun) printf "%d\t%s\n", cfun[k], k > (dir "/cfun")
  }'

TOTAL=$(cat "$TMP/total")
if [ "$TOTAL" -eq 0 ]; then
  echo "no samples in $FOLDED" >&2
  exit 1
fi
touch "$TMP/threads" "$TMP/buckets" "$TMP/incl" "$TMP/leaf" "$TMP/cfun"
# Markdown cells must not break on '|' inside symbol names.
esc() { sed 's/|/\\|/g'; }

echo "$TOTAL samples in $(basename "$FOLDED")"
echo
sort -t$'\t' -k1,1nr "$TMP/threads" | esc | pct_table "$TOTAL" "thread"
echo
sort -t$'\t' -k1,1nr "$TMP/buckets" | esc | pct_table "$TOTAL" "bucket (adds up to 100%)"
echo
sort -t$'\t' -k1,1nr "$TMP/incl" | esc | pct_table "$TOTAL" "on the stack (inclusive, overlapping)"
echo
sort -t$'\t' -k1,1nr "$TMP/leaf" | head -n "$TOP" | esc | pct_table "$TOTAL" "leaf function (self)"
echo
sort -t$'\t' -k1,1nr "$TMP/cfun" | head -n "$TOP" | esc | pct_table "$TOTAL" "corecast function (inclusive)"
