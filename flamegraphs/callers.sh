#!/usr/bin/env bash
# Who leads to a frame: the samples whose stack holds a frame matching REGEX (an awk
# regular expression), grouped by the DEPTH (default 2) frames above the first match
# and by the nearest corecast or glommio frame above it, as shares of all samples.
#
#   flamegraphs/callers.sh flamegraphs/fanout.folded.gz '^_raw_spin_unlock_irqrestore'
#   flamegraphs/callers.sh flamegraphs/chat.folded.gz '^io_uring_enter' 1
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 FILE.folded[.gz] REGEX [DEPTH] [TOP]" >&2
  exit 2
fi
FOLDED=$1
REGEX=$2
DEPTH=${3:-2}
TOP=${4:-8}
case $FOLDED in
  *.gz) READ=(gzip -dc "$FOLDED") ;;
  *) READ=(cat "$FOLDED") ;;
esac
TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT

"${READ[@]}" | awk -v re="$REGEX" -v depth="$DEPTH" '
  {
    count = $NF
    stack = $0
    sub(/ [0-9]+$/, "", stack)
    n = split(stack, fr, ";")
    total += count
    for (i = 2; i <= n; i++) {
      if (fr[i] !~ re) continue
      key = fr[i]
      for (j = i - 1; j >= 2 && j >= i - depth; j--) key = fr[j] " -> " key
      owner = "(none)"
      for (j = i - 1; j >= 2; j--) if (fr[j] ~ /^(corecast|glommio)::/) { owner = fr[j]; break }
      by_path[key] += count
      by_owner[owner] += count
      matched += count
      break
    }
  }
  END {
    if (total == 0) { print "no samples in the input"; exit }
    printf "%d of %d samples (%.1f%%) have a frame matching /%s/\n", matched, total, 100 * matched / total, re
    for (k in by_path) printf "P\t%d\t%.1f%%\t%s\n", by_path[k], 100 * by_path[k] / total, k
    for (k in by_owner) printf "O\t%d\t%.1f%%\t%s\n", by_owner[k], 100 * by_owner[k] / total, k
  }' >"$TMP"
head -1 "$TMP"
echo
echo "by the $DEPTH frames above it:"
{ grep '^P' "$TMP" || true; } | sort -t$'\t' -k2,2nr | sed -n "1,${TOP}p" | cut -f2- | sed 's/^/  /'
echo
echo "by the nearest corecast or glommio frame above it:"
{ grep '^O' "$TMP" || true; } | sort -t$'\t' -k2,2nr | sed -n "1,${TOP}p" | cut -f2- | sed 's/^/  /'
