#!/usr/bin/env bash
# Alternating first runs of two (or more) podero-onboard binaries against the static
# responder, on the same CSV in the same minutes: CPU ms per row (user + sys), context
# switches per row and peak RSS per run (issue 25). On a shared machine wall time moves
# by 2x between minutes; alternating runs and CPU per row are what a small change can be
# judged by. Not part of the test suite.
#
# Usage: scripts/ab_first_run.sh [--pairs N] [--rows N] [--work DIR] BIN...
#   --pairs N   rounds; each runs every BIN once, in the order given (default 4)
#   --rows N    rows of the generated CSV (default 20000)
#   --work DIR  CSV, checkpoints and logs (default target/ab)
# Example (copy the old build aside first):
#   cp target/release/podero-onboard /tmp/old && (edit, cargo build --release) &&
#   scripts/ab_first_run.sh /tmp/old target/release/podero-onboard
#
# Needs: GNU time at /usr/bin/time, python3, and examples/static_responder built
# (cargo build --release --example static_responder).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=4
ROWS=20000
WORK="$ROOT/target/ab"
while [ $# -gt 0 ]; do
    case "$1" in
    --pairs) PAIRS="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "ab_first_run.sh: name at least one binary (--help)" >&2; exit 2; }

ORG_ID="6f726700-0000-4000-8000-000000000001" # podero_onboard::sandbox::DEMO_ORG_ID
STATIC="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/static_responder"
[ -x "$STATIC" ] || { echo "build the responder: cargo build --release --example static_responder" >&2; exit 2; }
mkdir -p "$WORK"
CSV="$WORK/$ROWS.csv"
[ -s "$CSV" ] || python3 "$ROOT/scripts/gen_csv.py" "$ROWS" "$CSV"

"$STATIC" 0 >"$WORK/static.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
URL=""
for _ in $(seq 1 100); do
    URL=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$WORK/static.log" | head -1 || true)
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "$URL" ] || { echo "the static responder did not start" >&2; exit 1; }

export PODERO_CLIENT_ID=demo-client PODERO_CLIENT_SECRET=demo-secret
unset PODERO_TOKEN PODERO_BASE_URL PODERO_ORG_ID
echo "# $(date -u '+%Y-%m-%d %H:%M') UTC, $ROWS rows, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'binary\twall s\tCPU ms/row\tctx/row\tpeak RSS MiB\n'
for _ in $(seq 1 "$PAIRS"); do
    for bin in "$@"; do
        checkpoint="$WORK/checkpoint.sqlite"
        rm -f "$checkpoint" "$checkpoint-wal" "$checkpoint-shm"
        /usr/bin/time -f '%e %U %S %M %c %w' -o "$WORK/time.txt" "$bin" run "$CSV" \
            --checkpoint "$checkpoint" --base-url "$URL" --org-id "$ORG_ID" \
            --rate 1000000 --concurrency 32 --json -q >"$WORK/summary.json" 2>"$WORK/stderr.txt" ||
            echo "$bin exited $?: $(tail -1 "$WORK/stderr.txt")" >&2
        read -r wall user sys rss involuntary voluntary <"$WORK/time.txt"
        python3 -c "import sys; w, u, s, r, c, n = sys.argv[1:7]; n = int(n)
print(f'{sys.argv[7]}\t{w}\t{(float(u) + float(s)) * 1000 / n:.4f}\t{int(c) / n:.2f}\t{int(r) / 1024:.1f}')" \
            "$wall" "$user" "$sys" "$rss" "$((involuntary + voluntary))" "$ROWS" "$bin"
    done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
