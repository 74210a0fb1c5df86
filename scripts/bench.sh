#!/usr/bin/env bash
# Benchmark podero-onboard side by side with a naive peer (issue 7), on one machine,
# in one run, against local servers only (127.0.0.1). Not part of the test suite.
#
# Usage: scripts/bench.sh [--quick] [options]
#   --quick               20k and 100k rows only (a few minutes); default adds 1M
#   --sizes "N ..."       row counts (default "20000 100000 1000000")
#   --sandbox-sizes "N ..."  sizes also run against the simulator (default: all sizes;
#                         "none": the static responder only)
#   --naive-sizes "N ..." sizes the naive peer runs, in both variants (default "20000";
#                         "none": no naive peer, and no venv is made for it)
#   --links-sizes "N ..." sandbox sizes also measured with `links` (default "20000 100000")
#   --concurrency C       (default 32)
#   --work DIR            work dir for CSVs, checkpoints, venv, raw results
#                         (default target/bench); results.md and results.tsv land there
#   --no-build            use the binaries already in target/release
#   --bin PATH            benchmark this podero-onboard binary (e.g. another build)
#   --adaptive-secs S     length of each adaptive-rate scenario (default 60; --quick: 30)
#   --no-adaptive         skip the adaptive-rate scenarios
#   --adaptive-only       run only the adaptive-rate scenarios
#   --night               also the compressed production night (issue 24; 3-10 min, bounded at 600 s): a
#                         moving limit, 1% spurious 429s, 5xx, drops, 20-s tokens, 2 kills;
#                         exactly-once checked per row, progress per 20 s
#
# What it does: builds the release binary, examples/static_responder.rs and http_floor.rs; generates
# deterministic CSVs (scripts/gen_csv.py); starts `podero-onboard sandbox` (faults off,
# no request log) and the static responder on free loopback ports; then for each size
# and server: a first run, a re-run over the done checkpoint (must make zero calls) and
# a nightly sync with 1% of external ids changed, each under /usr/bin/time -v with the
# limiter effectively off (--rate 1000000); the naive peer (scripts/naive_peer.py,
# aiohttp in a venv under the work dir, SQLite in WAL mode with synchronous=NORMAL) on
# the same CSV and server, committing every row and, as a second variant, every 100
# rows; at the naive sizes, examples/http_floor.rs against the static responder: a row's
# two requests and nothing else, with the job's client (reqwest on one thread), with it on
# the multi-threaded runtime, and with bare hyper (what the HTTP alone costs, issue 25);
# CPU ms and context switches per row for each; a rate check
# (2,000 rows at --rate 200: ideal 2*2000/200 = 20 s); a first run over 10k new customers
# (no user_id, --create-users) and its re-run, against the simulator (requests per new
# customer: one user list replaces the lookups, issue 20); for the --links-sizes, `links`
# over the onboarded checkpoint twice (the first creates every Connect link, the second,
# the same day, reads one user list and nothing else: its peak RSS must not grow with the
# customers or the list, issue 20). Prints one markdown table and
# the targets met or missed. Then the adaptive-rate scenarios (scripts/adaptive_bench.py,
# issue 13): a simulator with --rate-limit R --burst 3 and the job at --rate 4R for
# R = 5, 10, 50, and the limit changed 10 -> 20 and 20 -> 10 mid-run; then (issue 24)
# no limit but 1%, 3%, 10% of requests answered 429 at --rate 30, and a 10-s storm of
# 429s; a second table
# with goodput, 429 share, rows done and duplicates. Every table is headed by the date,
# the machine and the load average before and after.
#
# Needs: cargo, python3 (+ venv), curl, GNU time at /usr/bin/time. Missing system
# packages are installed with apt-get when running as root; otherwise it says what
# to install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="20000 100000 1000000"
SANDBOX_SIZES=""
NAIVE_SIZES="20000"
LINKS_SIZES="20000 100000"
CONCURRENCY=32
WORK="$ROOT/target/bench"
BUILD=1
BIN_OVERRIDE=""
ADAPTIVE_SECS=""
ADAPTIVE=1
THROUGHPUT=1
NIGHT=""
FAST_RATE=1000000
RATE_TEST_RATE=200
RATE_TEST_ROWS=2000
NEW_CUSTOMERS=10000
ORG_ID="6f726700-0000-4000-8000-000000000001" # podero_onboard::sandbox::DEMO_ORG_ID

die() {
    echo "bench: $*" >&2
    exit 2
}
log() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) SIZES="20000 100000"; ADAPTIVE_SECS=${ADAPTIVE_SECS:-30} ;;
    --adaptive-secs) ADAPTIVE_SECS="$2"; shift ;;
    --no-adaptive) ADAPTIVE=0 ;;
    --adaptive-only) THROUGHPUT=0 ;;
    --night) NIGHT="--night" ;;
    --sizes) SIZES="$2"; shift ;;
    --sandbox-sizes) SANDBOX_SIZES="$2"; shift ;;
    --naive-sizes) NAIVE_SIZES="$2"; shift ;;
    --links-sizes) LINKS_SIZES="$2"; shift ;;
    --concurrency) CONCURRENCY="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --bin) BIN_OVERRIDE="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ -n "$SANDBOX_SIZES" ] || SANDBOX_SIZES="$SIZES"
[ -n "$ADAPTIVE_SECS" ] || ADAPTIVE_SECS=60
contains() { case " $1 " in *" $2 "*) return 0 ;; *) return 1 ;; esac; }
max_of() { printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n | tail -1; }

# ---------------------------------------------------------------- prerequisites
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing $* with apt-get"
        if [ -z "${APT_UPDATED:-}" ]; then
            apt-get update -qq >/dev/null
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        die "missing: $* (install the Debian/Ubuntu package(s) '$*' and run again)"
    fi
}
[ -x /usr/bin/time ] || apt_install time
command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3 python3-venv
command -v cargo >/dev/null || die "missing: cargo (install Rust from rustup, then run again)"

mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
VENV="$WORK/venv"
# shellcheck disable=SC2086
if [ "$THROUGHPUT" = 1 ] && [ -n "$(max_of $NAIVE_SIZES)" ] && ! "$VENV/bin/python" -c 'import aiohttp' 2>/dev/null; then
    log "creating the naive peer's venv in $VENV (pip install aiohttp)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" 2>/dev/null || {
        apt_install python3-venv
        python3 -m venv "$VENV"
    }
    "$VENV/bin/pip" install -q aiohttp || die "pip install aiohttp failed (is PyPI reachable?)"
fi

if [ "$BUILD" = 1 ]; then
    log "building (cargo build --release --bin podero-onboard --example static_responder --example http_floor)"
    (cd "$ROOT" && cargo build --release --quiet --bin podero-onboard --example static_responder \
        --example http_floor)
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BIN_OVERRIDE:-$TARGET_DIR/release/podero-onboard}"
STATIC="$TARGET_DIR/release/examples/static_responder"
FLOOR="$TARGET_DIR/release/examples/http_floor"
[ -x "$BIN" ] || die "missing $BIN (run without --no-build)"
[ -x "$STATIC" ] || die "missing $STATIC (run without --no-build)"
[ -x "$FLOOR" ] || die "missing $FLOOR (run without --no-build)"

# ---------------------------------------------------------------- inputs
# The CSVs and both servers serve the throughput table only (the adaptive scenarios start
# their own simulators): --adaptive-only makes neither.
if [ "$THROUGHPUT" = 1 ]; then
# shellcheck disable=SC2086
SANDBOX_USERS=$(($(max_of $SANDBOX_SIZES 0) + RATE_TEST_ROWS))
CSV="$WORK/csv"
mkdir -p "$CSV"
for n in $SIZES; do
    [ -s "$CSV/$n.csv" ] || python3 "$ROOT/scripts/gen_csv.py" "$n" "$CSV/$n.csv"
    [ -s "$CSV/$n-nightly.csv" ] ||
        python3 "$ROOT/scripts/gen_csv.py" "$n" "$CSV/$n-nightly.csv" --changed-percent 1
done
# The rate check uses users no other run touches (after the largest sandbox size).
RATE_CSV="$CSV/rate-$RATE_TEST_ROWS.csv"
python3 "$ROOT/scripts/gen_csv.py" "$RATE_TEST_ROWS" "$RATE_CSV" \
    --first $((SANDBOX_USERS - RATE_TEST_ROWS))
fi

# ---------------------------------------------------------------- servers
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for_url LOG PID: the first loopback URL the server prints, within 120 s.
wait_for_url() {
    local file=$1 pid=$2 url=""
    for _ in $(seq 1 1200); do
        url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$file" 2>/dev/null | head -1 || true)
        [ -n "$url" ] && { echo "$url"; return 0; }
        kill -0 "$pid" 2>/dev/null || die "server exited: $(cat "$file")"
        sleep 0.1
    done
    die "server did not start: $(cat "$file")"
}

if [ "$THROUGHPUT" = 1 ]; then
    "$BIN" sandbox --port 0 --generate-users "$SANDBOX_USERS" --no-request-log \
        >"$WORK/sandbox.log" 2>&1 &
    PIDS+=($!)
    SANDBOX_URL=$(wait_for_url "$WORK/sandbox.log" $!)
    "$STATIC" 0 >"$WORK/static.log" 2>&1 &
    PIDS+=($!)
    STATIC_URL=$(wait_for_url "$WORK/static.log" $!)
    log "simulator at $SANDBOX_URL ($SANDBOX_USERS users), static responder at $STATIC_URL"
fi

export PODERO_CLIENT_ID=demo-client PODERO_CLIENT_SECRET=demo-secret
unset PODERO_TOKEN PODERO_BASE_URL PODERO_ORG_ID

url_of() { if [ "$1" = sandbox ]; then echo "$SANDBOX_URL"; else echo "$STATIC_URL"; fi; }

# API calls the server has answered so far (token and admin requests excluded).
server_calls() {
    if [ "$1" = sandbox ]; then
        curl -sf "$SANDBOX_URL/__sandbox/state?counts=1" | python3 -c '
import json, sys
counts = json.load(sys.stdin)["requests"]
print(sum(n for name, n in counts.items() if name not in ("token", "admin")))'
    else
        curl -sf "$STATIC_URL/__bench/count"
    fi
}

# ---------------------------------------------------------------- measuring
RESULTS="$WORK/results.tsv"
printf 'scenario\tserver\trows\twall\tuser\tsys\trss_kb\tctx\tserver_calls\tsummary_calls\tckpt_bytes\texit\tdetail\n' >"$RESULTS"

# parse TIMEFILE: "wall user sys rss_kb ctx" from GNU time -v (ctx: voluntary +
# involuntary context switches).
parse_time() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
def field(name):
    return re.search(re.escape(name) + r": (.*)", text).group(1).strip()
parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
ctx = int(field("Voluntary context switches")) + int(field("Involuntary context switches"))
print(wall, field("User time (seconds)"), field("System time (seconds)"),
      field("Maximum resident set size (kbytes)"), ctx)
EOF
}

# measure SCENARIO SERVER CSV CHECKPOINT [RATE] [FLAGS] [COMMAND]: one `podero-onboard
# run` (or `links`, with fixed session flags and its links file in the run's directory).
measure() {
    local scenario=$1 server=$2 csv=$3 checkpoint=$4 rate=${5:-$FAST_RATE} flags=${6:-}
    local command=${7:-run}
    local dir
    dir="$WORK/runs/$(tr -c 'A-Za-z0-9' '-' <<<"$scenario" | tr -s '-')$server-$(basename "$csv" .csv)"
    local rows before after code=0
    mkdir -p "$dir"
    rows=$(($(wc -l <"$csv") - 1))
    before=$(server_calls "$server")
    local args=(run "$csv")
    [ "$command" = run ] || args=(links "$csv" --language de --price-zone AT \
        --success-url https://partner.example/ok --cancel-url https://partner.example/cancel \
        --out "$dir/links.csv")
    log "$scenario: $rows rows against the $server (rate $rate, concurrency $CONCURRENCY)"
    /usr/bin/time -v -o "$dir/time.txt" "$BIN" "${args[@]}" --checkpoint "$checkpoint" \
        --base-url "$(url_of "$server")" --org-id "$ORG_ID" --rate "$rate" \
        --concurrency "$CONCURRENCY" $flags --json -q >"$dir/summary.json" 2>"$dir/stderr.txt" ||
        code=$?
    after=$(server_calls "$server")
    local ckpt_bytes
    ckpt_bytes=$(($(stat -c %s "$checkpoint") + $(stat -c %s "$checkpoint-wal" 2>/dev/null || echo 0)))
    local summary
    summary=$(python3 - "$dir/summary.json" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"-\tno summary ({e})")
    sys.exit()
r = s.get("rows") or s.get("links") or {}
parts = [f"{k.replace('_', ' ')} {r[k]}" for k in
         ("users_created", "users_found", "created", "updated", "renewed", "still_valid",
          "skipped_done", "failed", "unresolved", "not_processed") if r.get(k)]
for way in ("new_customers_checked_by", "connections_checked_by"):
    if s.get(way) not in (None, "none"):
        parts.append(f"{way.replace('_', ' ')}: {s[way].replace('_', ' ')}")
print(f"{s['requests']['total']}\t{', '.join(parts) or 'nothing'}")
EOF
)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$server" "$rows" \
        "$(parse_time "$dir/time.txt" | tr ' ' '\t')" "$((after - before))" \
        "$(cut -f1 <<<"$summary")" "$ckpt_bytes" "$code	$(cut -f2 <<<"$summary")" >>"$RESULTS"
    [ "$code" = 0 ] || log "  exit code $code: $(tail -3 "$dir/stderr.txt" | tr '\n' ' ')"
}

# naive SERVER CSV COMMIT_EVERY: the naive peer on a fresh SQLite file.
naive() {
    local server=$1 csv=$2 every=$3
    local dir
    dir="$WORK/runs/naive-$every-$server-$(basename "$csv" .csv)"
    local rows before after code=0
    mkdir -p "$dir"
    rm -f "$dir/naive.db"*
    rows=$(($(wc -l <"$csv") - 1))
    before=$(server_calls "$server")
    log "naive peer (commit every $every): $rows rows against the $server (concurrency $CONCURRENCY)"
    /usr/bin/time -v -o "$dir/time.txt" "$VENV/bin/python" "$ROOT/scripts/naive_peer.py" \
        "$csv" --db "$dir/naive.db" --base-url "$(url_of "$server")" --org-id "$ORG_ID" \
        --concurrency "$CONCURRENCY" --commit-every "$every" \
        >"$dir/summary.json" 2>"$dir/stderr.txt" || code=$?
    after=$(server_calls "$server")
    local summary
    summary=$(python3 - "$dir/summary.json" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
    print(f"{s['requests']}\tdone {s['done']}, failed {s['failed']}")
except Exception as e:
    print(f"-\tno summary ({e})")
EOF
)
    local name="naive peer (WAL, commit/row)"
    [ "$every" = 1 ] || name="naive peer (WAL, commit/$every)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$server" "$rows" \
        "$(parse_time "$dir/time.txt" | tr ' ' '\t')" "$((after - before))" \
        "$(cut -f1 <<<"$summary")" "$(($(stat -c %s "$dir/naive.db") + $(stat -c %s "$dir/naive.db-wal" 2>/dev/null || echo 0)))" "$code" "$(cut -f2 <<<"$summary")" >>"$RESULTS"
}

# floor CSV CLIENT: examples/http_floor.rs, a row's two requests and nothing else (no
# CSV, checkpoint, limiter or retries), against the static responder: what the HTTP
# client alone costs per row, next to the job in the same run.
floor() {
    local csv=$1 client=$2
    local dir="$WORK/runs/floor-$client-$(basename "$csv" .csv)"
    local rows before after code=0
    mkdir -p "$dir"
    rows=$(($(wc -l <"$csv") - 1))
    before=$(server_calls static)
    log "HTTP floor ($client): $rows rows against the static responder (concurrency 32)"
    /usr/bin/time -v -o "$dir/time.txt" "$FLOOR" "$STATIC_URL" "$rows" "$client" \
        >"$dir/out.txt" 2>&1 || code=$?
    after=$(server_calls static)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "HTTP floor: $client" static "$rows" \
        "$(parse_time "$dir/time.txt" | tr ' ' '\t')" "$((after - before))" "$((2 * rows))" 0 \
        "$code" "$(tail -1 "$dir/out.txt")" >>"$RESULTS"
}

started=$(date +%s)
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$BIN_OVERRIDE" ]; then
    COMMIT="binary $BIN_OVERRIDE (tree at $COMMIT)"
elif [ "$BUILD" = 0 ]; then
    COMMIT="$BIN as found (--no-build; tree at $COMMIT)"
elif [ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    COMMIT="$COMMIT + uncommitted changes in src/"
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

: >"$WORK/results.md"
if [ "$THROUGHPUT" = 1 ]; then
# Rate check first, while the machine is as quiet as this script can make it.
rm -f "$WORK/rate.sqlite"*
measure "rate $RATE_TEST_RATE/s" sandbox "$RATE_CSV" "$WORK/rate.sqlite" "$RATE_TEST_RATE"

# First run over an export of new customers (no user_id, one property each, issue 19):
# per customer a lookup by CRM id (404), a user POST and a building POST, so the server
# should count 3 calls per row. Against the simulator only (the static responder has no
# users endpoints); the CRM ids are new to it.
NEW_CSV="$CSV/new-$NEW_CUSTOMERS.csv"
[ -s "$NEW_CSV" ] || python3 - "$NEW_CUSTOMERS" "$NEW_CSV" <<'EOF'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("external_user_id,email,first_name,zip_code,property_id,building_name\n")
    for i in range(n):
        f.write(f"BENCH-NEW-{i},new{i}@bench.example,Kim,0{i % 10000:04},P-{i},Home\n")
EOF
rm -f "$WORK/ckpt-new.sqlite"*
measure "first run, new customers" sandbox "$NEW_CSV" "$WORK/ckpt-new.sqlite" "$FAST_RATE" --create-users
measure "re-run, new customers" sandbox "$NEW_CSV" "$WORK/ckpt-new.sqlite" "$FAST_RATE" --create-users

for n in $SIZES; do
    for server in static sandbox; do
        [ "$server" = static ] || contains "$SANDBOX_SIZES" "$n" || continue
        checkpoint="$WORK/ckpt-$server-$n.sqlite"
        rm -f "$checkpoint" "$checkpoint"-*
        measure "first run" "$server" "$CSV/$n.csv" "$checkpoint"
        if [ "$server" = static ] && contains "$NAIVE_SIZES" "$n"; then
            for client in reqwest reqwest-mt hyper; do floor "$CSV/$n.csv" "$client"; done
        fi
        measure "re-run (done)" "$server" "$CSV/$n.csv" "$checkpoint"
        measure "nightly 1%" "$server" "$CSV/$n-nightly.csv" "$checkpoint"
        if [ "$server" = sandbox ] && contains "$LINKS_SIZES" "$n"; then
            measure "links, first" "$server" "$CSV/$n-nightly.csv" "$checkpoint" "$FAST_RATE" "" links
            measure "links, same day" "$server" "$CSV/$n-nightly.csv" "$checkpoint" "$FAST_RATE" "" links
        fi
        if contains "$NAIVE_SIZES" "$n"; then
            naive "$server" "$CSV/$n.csv" 1
            naive "$server" "$CSV/$n.csv" 100
        fi
    done
done

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$WORK/results.md" "$CONCURRENCY" "$RATE_TEST_RATE" "$LOAD_BEFORE" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(($(date +%s) - started))" \
    "$COMMIT" "$SANDBOX_USERS" <<'EOF'
import csv, datetime, os, sys

(results, out, concurrency, rate_r, load_before, load_after, elapsed, commit,
 sandbox_users) = sys.argv[1:]
sandbox_users = f"{int(sandbox_users):,}"
rows = list(csv.DictReader(open(results), delimiter="\t"))
for r in rows:
    r["rows"], r["wall"] = int(r["rows"]), round(float(r["wall"]), 2)
    r["cpu"] = float(r["user"]) + float(r["sys"])
    r["rps"] = r["rows"] / max(r["wall"], 1e-9)

def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"
def size(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n % 1000 == 0 else str(n))

lines = []
p = lines.append
p(f"### podero-onboard benchmark — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
p("")
p(f"Machine: {os.cpu_count()} cores ({cpu_model()}), {mem_gib():.1f} GiB memory; "
  f"load average {load_before} before, {load_after} after; build: {commit}; "
  f"concurrency {concurrency}, --rate 1000000 unless stated; {int(elapsed) // 60} min {int(elapsed) % 60} s in all.")
p("")
p("| scenario | server | rows | wall s | rows/s | API calls: server / client¹ "
  "| peak RSS MiB | CPU ms per row | context switches per row | checkpoint B/row | exit | rows |")
p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    first = r["scenario"] == "first run" or r["scenario"].startswith("naive peer")
    bpr = f"{int(r['ckpt_bytes']) / r['rows']:.0f}" if first else ""
    p(f"| {r['scenario']} | {r['server']} | {size(r['rows'])} | {r['wall']:.2f} | {r['rps']:,.0f} "
      f"| {r['server_calls']} / {r['summary_calls']} | {int(r['rss_kb']) / 1024:.1f} "
      f"| {r['cpu'] / r['rows'] * 1000:.3f} | {int(r['ctx']) / r['rows']:.2f} | {bpr} | {r['exit']} | {r['detail']} |")

p("")
p("¹ server: API requests the server answered during the run (token requests excluded); "
  "client: the run's `requests.total` from `--json` (the naive peer: its own count). Rows/s = rows / wall time of the whole "
  "process (start, staging, calls, checkpoint, summary); CPU = user + system time; "
  "peak RSS, times and context switches (voluntary + involuntary) from `/usr/bin/time -v`; "
  "checkpoint bytes = SQLite file (+ WAL) after the first run.")

def find(scenario, server, n=None):
    hits = [r for r in rows if r["scenario"] == scenario and r["server"] == server
            and (n is None or r["rows"] == n)]
    return hits[-1] if hits else None

def mark(ok):
    return "met" if ok else "**MISSED**"

p("")
p("Targets:")
for r in rows:
    if not r["scenario"].startswith("naive peer"):
        continue
    ours = find("first run", r["server"], r["rows"])
    if ours:
        ratio = ours["rps"] / r["rps"]
        goal = " ≥ 10×" if r["scenario"].endswith("commit/row)") else ""
        ok = f" — {mark(ratio >= 10)}" if goal else ""
        p(f"- end to end{goal} the {r['scenario']} ({r['server']}, {size(r['rows'])}): "
          f"{ours['rps']:,.0f} / {r['rps']:,.0f} rows/s = {ratio:.1f}×{ok}")
for r in (r for r in rows if r["scenario"] == "first run" and r["server"] == "static"):
    cpu, ctx = r["cpu"] / r["rows"] * 1000, int(r["ctx"]) / r["rows"]
    p(f"- first run, static, {size(r['rows'])}: CPU {cpu:.3f} ms per row (target ≤ 0.035) — "
      f"{mark(cpu <= 0.035)}; {ctx:.2f} context switches per row (target ≤ 1) — {mark(ctx <= 1)}")
for r in (r for r in rows if r["scenario"] == "first run" and r["server"] == "static"):
    cpu = r["cpu"] / r["rows"] * 1000
    for client in ("reqwest", "hyper"):
        f = find(f"HTTP floor: {client}", "static", r["rows"])
        if f:
            fcpu = f["cpu"] / f["rows"] * 1000
            p(f"- the HTTP alone with {client} ({size(r['rows'])}, no checkpoint): {fcpu:.3f} CPU-ms "
              f"per row = {fcpu / 0.035:.0%} of the CPU target, {f['rps']:,.0f} rows/s; the job "
              f"spends {cpu - fcpu:+.3f} ms per row beyond it")
firsts = sorted((r for r in rows if r["scenario"] == "first run" and r["server"] == "static"),
                key=lambda r: r["rows"])
if firsts:
    big, small = firsts[-1], firsts[0]
    rss_big, rss_small = int(big["rss_kb"]) / 1024, int(small["rss_kb"]) / 1024
    p(f"- peak RSS < 64 MiB at {size(big['rows'])}: {rss_big:.1f} MiB — {mark(rss_big < 64)}")
    p(f"- peak RSS within 1.5× from {size(small['rows'])} to {size(big['rows'])}: "
      f"{rss_small:.1f} → {rss_big:.1f} MiB = {rss_big / rss_small:.2f}× — {mark(rss_big / rss_small <= 1.5)}")
    worst = max(int(r["ckpt_bytes"]) / r["rows"] for r in firsts)
    p(f"- checkpoint ≤ 300 B/row: at most {worst:.0f} B/row — {mark(worst <= 300)}")
for server in ("static", "sandbox"):
    reruns = sorted((r for r in rows if r["scenario"] == "re-run (done)" and r["server"] == server),
                    key=lambda r: r["rows"])
    if not reruns:
        continue
    r = reruns[-1]
    zero = r["server_calls"] == "0"
    complete = r["exit"] == "0" and "not processed" not in r["detail"]
    # The rows/s target is about large checkpoints: at 20k rows the process's start-up
    # (~0.18 s) is most of the wall time, so the rate is not judged there (zero calls is).
    judged = r["rows"] >= 500_000
    verdict = (mark(r["rps"] >= 200_000 and zero and complete) if judged else
               f"{mark(zero and complete)} for zero requests; rows/s not judged below 500k rows "
               f"(start-up dominates: scripts/bench_rerun.sh measures 1M)")
    p(f"- re-run over a done {size(r['rows'])} checkpoint ({server}) ≥ 200k rows/s, zero requests: "
      f"{r['rps']:,.0f} rows/s, {r['server_calls']} calls, exit {r['exit']}"
      f"{'' if complete else ' (not every row was skipped: ' + r['detail'] + ')'} — {verdict}")
new = find("first run, new customers", "sandbox")
if new:
    per = int(new["server_calls"]) / new["rows"]
    p(f"- first run of {size(new['rows'])} new customers (--create-users): {per:.3f} API requests "
      f"per customer (3.0 with a lookup each, before issue 20; target ≤ 2 + a constant) — "
      f"{mark(per <= 2 + 10 / new['rows'])}")
quiet = sorted((r for r in rows if r["scenario"] == "links, same day"), key=lambda r: r["rows"])
if len(quiet) > 1:
    small, big = quiet[0], quiet[-1]
    rss_small, rss_big = int(small["rss_kb"]) / 1024, int(big["rss_kb"]) / 1024
    p(f"- links the same day, reading the user list ({sandbox_users} users): peak RSS "
      f"{size(small['rows'])} → {size(big['rows'])} customers {rss_small:.1f} → {rss_big:.1f} MiB "
      f"= {rss_big / rss_small:.2f}× (target ≤ 1.5× and < 64 MiB) — "
      f"{mark(rss_big / rss_small <= 1.5 and rss_big < 64)}; {big['server_calls']} API requests")
rate = next((r for r in rows if r["scenario"].startswith("rate ")), None)
if rate:
    ideal = 2 * rate["rows"] / float(rate_r)
    dev = (rate["wall"] - ideal) / ideal * 100
    p(f"- at --rate {rate_r}, {rate['rows']} rows: wall {rate['wall']:.2f} s vs ideal {ideal:.1f} s "
      f"({dev:+.1f}%) — {mark(abs(dev) <= 3)}")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
EOF
log "raw figures: $RESULTS; table: $WORK/results.md"
fi

# ---------------------------------------------------------------- adaptive rate
if [ "$ADAPTIVE" = 1 ]; then
    log "adaptive-rate scenarios, about $ADAPTIVE_SECS s each"
    python3 "$ROOT/scripts/adaptive_bench.py" --bin "$BIN" --work "$WORK" \
        --secs "$ADAPTIVE_SECS" --out "$WORK/results-adaptive.md" $NIGHT
    { echo; cat "$WORK/results-adaptive.md"; } >>"$WORK/results.md"
    log "adaptive table: $WORK/results-adaptive.md (also appended to $WORK/results.md)"
fi
