#!/usr/bin/env bash
# Memory of reading the files partners have (issue 15): max RSS of a dry run over 10k
# and 1M rows, as UTF-8 with ',' and as Windows-1252 with ';', CRLF and decimal commas
# (the German-Excel shape). Decoding is streamed, so the four figures should be close,
# and 1M rows should cost about what 10k do. Prints one markdown table.
#
#   scripts/bench_input.sh                 # 10k and 1M rows (about 2 min here)
#   scripts/bench_input.sh 10000 100000    # other sizes
#
# A dry run reads and checks every row and stages it in the checkpoint; it sends
# nothing and needs no credentials or server. Files and checkpoints go to
# target/bench-input/ (override with WORK=...). Not run by CI.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${WORK:-target/bench-input}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 1000000)
ORG=3fa85f64-5717-4562-b3fc-2c963f66afa6
BIN=target/release/podero-onboard

if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq time >/dev/null
    else
        echo "needs /usr/bin/time (apt-get install time)" >&2
        exit 2
    fi
fi
cargo build --release --quiet
mkdir -p "$WORK"

# rows N SEP POINT: N rows with umlauts and ß, the given separator and decimal mark, CRLF.
rows() {
    awk -v n="$1" -v sep="$2" -v point="$3" 'BEGIN {
        printf "user_id%sexternal_user_id%sbuilding_name%slast_name%stown%slatitude%slongitude\r\n", sep, sep, sep, sep, sep, sep
        for (i = 0; i < n; i++) {
            printf "5eed0000-0000-4000-8000-%012x%sKD-%d%sHaus Müller %d%sGrößl%sGraz-Straßgang%s47%s%04d%s15%s3833\r\n",
                i, sep, i, sep, i, sep, sep, sep, point, i % 10000, sep, point
        }
    }'
}

# max_rss FILE ENCODING: max resident set size (KiB) of a dry run over FILE.
max_rss() {
    local checkpoint="$WORK/$(basename "$1").sqlite"
    rm -f "$checkpoint" "$checkpoint-wal" "$checkpoint-shm"
    /usr/bin/time -v "$BIN" run "$1" --org-id "$ORG" --checkpoint "$checkpoint" \
        --dry-run -q --encoding "$2" >/dev/null 2>"$WORK/time.txt" || {
        echo "dry run over $1 failed:" >&2
        cat "$WORK/time.txt" >&2
        exit 1
    }
    awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt"
}

echo "| rows | file | size | max RSS |"
echo "|---:|---|---:|---:|"
for n in "${SIZES[@]}"; do
    utf8="$WORK/utf8-comma-$n.csv"
    excel="$WORK/cp1252-semicolon-$n.csv"
    rows "$n" , . >"$utf8"
    rows "$n" ';' , | iconv -f UTF-8 -t WINDOWS-1252 >"$excel"
    for case in "utf8:$utf8:UTF-8 ','" "windows-1252:$excel:Windows-1252 ';'"; do
        IFS=: read -r encoding file label <<<"$case"
        rss=$(max_rss "$file" "$encoding")
        size=$(du -m "$file" | cut -f1)
        printf '| %s | %s | %s MB | %s MB |\n' "$n" "$label" "$size" "$((rss / 1024))"
    done
done
