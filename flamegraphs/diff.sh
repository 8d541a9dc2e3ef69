#!/usr/bin/env bash
# Renders a differential flamegraph of two collapsed-stack files (.folded or
# .folded.gz, from record.sh): the shape of AFTER, coloured by the change from
# BEFORE (red: more samples, blue: fewer). Counts are normalised to the same total
# (-n), so two runs of different lengths compare.
#
#   flamegraphs/diff.sh BEFORE.folded AFTER.folded OUT.svg [TITLE]
#
# Also writes OUT.svg's mirror, OUT-negated.svg: the shape of BEFORE, so paths that
# vanished in AFTER are visible too. MINWIDTH (default 0.1) leaves frames under that
# percent of the samples out of the SVGs, as record.sh does.
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 BEFORE.folded AFTER.folded OUT.svg [TITLE]" >&2
  exit 2
fi
BEFORE=$1
AFTER=$2
OUT=$3
TITLE=${4:-"$(basename "$BEFORE") -> $(basename "$AFTER")"}
MINWIDTH=${MINWIDTH:-0.1}

if ! command -v inferno-diff-folded >/dev/null || ! command -v inferno-flamegraph >/dev/null; then
  echo "installing inferno (cargo install inferno)"
  cargo install --locked inferno
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unpack() { # file dest
  case $1 in
    *.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
  esac
}
unpack "$BEFORE" "$TMP/before.folded"
unpack "$AFTER" "$TMP/after.folded"

inferno-diff-folded -n "$TMP/before.folded" "$TMP/after.folded" >"$TMP/diff.folded"
inferno-flamegraph --title "$TITLE" --subtitle "red: more samples in AFTER, blue: fewer (normalised)" \
  --countname samples --minwidth "$MINWIDTH" <"$TMP/diff.folded" >"$OUT"
inferno-diff-folded -n "$TMP/after.folded" "$TMP/before.folded" \
  | inferno-flamegraph --negate --title "$TITLE (shape of BEFORE)" \
    --subtitle "blue: fewer samples in AFTER, red: more (normalised)" --countname samples \
    --minwidth "$MINWIDTH" \
    >"${OUT%.svg}-negated.svg"
echo "wrote $OUT and ${OUT%.svg}-negated.svg"
