#!/usr/bin/env bash
# Benchmark a done re-run (issue 13): the nightly sync over an unchanged export must make
# zero API calls and read the whole file at >= 200k rows/s. Local servers only (127.0.0.1);
# not part of the test suite.
#
# Usage: scripts/bench_rerun.sh [options]
#   --rows N          rows (= users, one building each) in the CSV (default 1000000)
#   --repeat R        timed re-runs over the done checkpoint (default 3)
#   --work DIR        work dir for the CSV, checkpoints and raw results
#                     (default target/bench-rerun); results.md lands there
#   --no-build        use the binaries already in target/release
#   --bin PATH        benchmark this podero-onboard binary (e.g. another build)
#
# What it does: builds the release binary and examples/static_responder.rs; generates
# the CSV (scripts/gen_csv.py); starts the static responder on a free loopback port; makes
# the checkpoint done with a first run (1M rows: a few minutes on 2 cores); then, R times,
# copies that done checkpoint and re-runs the same CSV over it under /usr/bin/time -v
# (--rate 1000000 so the limiter is out of the way). API requests are counted by the
# responder (the token request is not counted; it is still made, to check credentials).
# Prints one markdown table with the date, machine and load average.
#
# Needs: cargo, python3, curl, GNU time at /usr/bin/time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS=1000000
REPEAT=3
WORK="$ROOT/target/bench-rerun"
BUILD=1
BIN_OVERRIDE=""
ORG_ID="6f726700-0000-4000-8000-000000000001" # podero_onboard::sandbox::DEMO_ORG_ID

die() {
    echo "bench_rerun: $*" >&2
    exit 2
}
log() { echo "bench_rerun: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --rows) ROWS="$2"; shift ;;
    --repeat) REPEAT="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --bin) BIN_OVERRIDE="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
for tool in cargo python3 curl; do
    command -v "$tool" >/dev/null || die "missing: $tool"
done
[ -x /usr/bin/time ] || die "missing: GNU time at /usr/bin/time (Debian/Ubuntu package 'time')"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$BUILD" = 1 ]; then
    log "building (cargo build --release --bin podero-onboard --example static_responder)"
    (cd "$ROOT" && cargo build --release --quiet --bin podero-onboard --example static_responder)
fi
BIN="${BIN_OVERRIDE:-$TARGET_DIR/release/podero-onboard}"
STATIC="$TARGET_DIR/release/examples/static_responder"
[ -x "$BIN" ] || die "no binary at $BIN (drop --no-build)"
[ -x "$STATIC" ] || die "no static responder at $STATIC (drop --no-build)"

mkdir -p "$WORK"
CSV="$WORK/rerun-$ROWS.csv"
[ -s "$CSV" ] || python3 "$ROOT/scripts/gen_csv.py" "$ROWS" "$CSV"

# The responder, stopped (by its own pid) whatever happens.
"$STATIC" 0 >"$WORK/static.out" 2>&1 &
STATIC_PID=$!
trap 'kill "$STATIC_PID" 2>/dev/null || true' EXIT
URL=""
for _ in $(seq 50); do
    URL=$(sed -n 's/^listening on //p' "$WORK/static.out")
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "$URL" ] || die "the static responder did not start (see $WORK/static.out)"
calls() { curl -sf "$URL/__bench/count"; }

export PODERO_CLIENT_ID=demo-client PODERO_CLIENT_SECRET=demo-secret
unset PODERO_TOKEN PODERO_BASE_URL PODERO_ORG_ID
run() { # checkpoint time-file summary-file
    /usr/bin/time -v -o "$2" "$BIN" run "$CSV" --checkpoint "$1" --base-url "$URL" \
        --org-id "$ORG_ID" --rate 1000000 --concurrency 32 --json -q >"$3" 2>>"$WORK/stderr.txt"
}
wall() { # GNU time's "h:mm:ss" or "m:ss.cc" as seconds
    sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }'
}
rss_mb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }

DONE="$WORK/done-$ROWS.sqlite"
rm -f "$DONE" "$DONE"-wal "$DONE"-shm "$DONE".lock
log "first run: $ROWS rows against $URL (makes the checkpoint done)"
run "$DONE" "$WORK/first.time" "$WORK/first.json" || die "the first run failed (see $WORK/stderr.txt)"
log "first run: $(wall "$WORK/first.time") s"

ROWS_MD=""
for i in $(seq "$REPEAT"); do
    ckpt="$WORK/rerun-$i.sqlite"
    rm -f "$ckpt" "$ckpt"-wal "$ckpt"-shm "$ckpt".lock
    cp "$DONE" "$ckpt"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    before=$(calls)
    code=0
    run "$ckpt" "$WORK/rerun-$i.time" "$WORK/rerun-$i.json" || code=$?
    requests=$(($(calls) - before))
    secs=$(wall "$WORK/rerun-$i.time")
    skipped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"]["skipped_done"])' \
        "$WORK/rerun-$i.json" 2>/dev/null || echo "?")
    rate=$(awk -v r="$ROWS" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
    ROWS_MD+="| $i | $ROWS | $skipped | $secs | $rate | $(rss_mb "$WORK/rerun-$i.time") | $requests | $code | $load |"$'\n'
    log "re-run $i: $secs s, $rate rows/s, $requests requests, exit $code (load $load)"
done

{
    echo "Done re-run benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr);" \
        "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Binary: $BIN. Static responder, --rate 1000000 --concurrency 32."
    echo
    echo "| re-run | rows | skipped_done | wall s | rows/s | max RSS MB | requests | exit | load avg (1, 5, 15 min) before |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s' "$ROWS_MD"
} | tee "$WORK/results.md"
