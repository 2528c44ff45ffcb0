#!/usr/bin/env bash
# Sharded runs of the standard job (pipelines/bench.toml) on this machine: the same generated
# files run by `sweep run` on one node and by `sweep plan --shards N` + N shard processes (all
# started at once, as a cluster would) + `sweep merge`, for each N, in one run. Prints the map
# stage's wall time (first shard started to last shard done), the merge's wall time, the partials'
# bytes and the merged tables' groups, and checks every table against the one-node run with cmp.
#
#   benches/shards.sh [--shards 1,2,4] [--files 8] [--rows 400000] [--securities LIST] [--dir DIR]
#
#   --shards      shard counts to run (default 1,2,4)
#   --files       generated order files, one trading day each (default 8)
#   --rows        rows per file (default 400000, about 64 MB of CSV each)
#   --securities  a list of --securities values for the generator: each is a separate round, so
#                 the merge time and partial size can be read against the number of groups
#                 (default: the generator's own)
#   --dir         where the files, partials and outputs go (default ${TMPDIR:-/tmp}/sweep-shards)
#
# Uses $SWEEP (default target/release/sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-$PWD/target/release/sweep}
shards="1,2,4"
files=8
rows=400000
securities=""
dir="${TMPDIR:-/tmp}/sweep-shards"
while [ $# -gt 0 ]; do
    case "$1" in
        --shards) shards=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --rows) rows=$2; shift 2 ;;
        --securities) securities=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "usage: $0 [--shards LIST] [--files N] [--rows N] [--securities LIST] [--dir DIR]" >&2; exit 2 ;;
    esac
done
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

round() { # round SECURITIES (empty: the generator's default)
    local sec=$1 work="$dir/sec${1:-default}"
    rm -rf "$work"; mkdir -p "$work/in"
    for i in $(seq 0 $((files - 1))); do
        local day; day=$(date -d "2024-09-02 + $i day" +%F)
        "$SWEEP" generate --orders "$work/in/f$(printf %02d "$i").csv" --rows "$rows" \
            --seed $((i + 1)) --days 1 --start-date "$day" ${sec:+--securities "$sec"} 2>/dev/null
    done
    sed -e "s#^path = \"tests/data/.*\"#path = \"$work/in/*.csv\"#" pipelines/bench.toml > "$work/p.toml"
    local bytes; bytes=$(du -cb "$work"/in/*.csv | tail -1 | cut -f1)
    local t0 t1
    t0=$(now)
    "$SWEEP" run "$work/p.toml" --set "sinks.tables.path=$work/single" \
        --set "monitor.report=$work/single/execution_metrics.json" --set monitor.progress=off 2>/dev/null
    t1=$(now)
    local groups; groups=$(( $(cat "$work"/single/*.csv | wc -l) - $(ls "$work"/single/*.csv | wc -l) ))
    echo "securities=${sec:-default}: $files files, $((bytes / 1000000)) MB, one node $(secs "$t0" "$t1") s, $groups table rows (groups)"
    printf "  %-7s %10s %10s %14s %s\n" shards "map (s)" "merge (s)" "partials (B)" check
    IFS=, read -r -a counts <<< "$shards"
    for n in "${counts[@]}"; do
        rm -rf "$work/shared" "$work/merged"
        "$SWEEP" plan "$work/p.toml" --shards "$n" --shared "$work/shared" --json > "$work/plan.json"
        t0=$(now)
        local pids=()
        for i in $(seq 0 $((n - 1))); do
            "$SWEEP" run "$work/p.toml" --plan "$work/plan.json" --shard-index "$i" 2>/dev/null &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p"; done
        t1=$(now)
        local t2 t3
        t2=$(now)
        "$SWEEP" merge "$work/p.toml" --plan "$work/plan.json" --set "sinks.tables.path=$work/merged" \
            --set "monitor.report=$work/merged/execution_metrics.json" 2>/dev/null
        t3=$(now)
        local partials; partials=$(find "$work/shared" -name 'shard-*' -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
        local same=ok
        for f in "$work"/single/*.csv; do cmp -s "$f" "$work/merged/$(basename "$f")" || same="DIFFERS: $(basename "$f")"; done
        printf "  %-7s %10s %10s %14s %s\n" "$n" "$(secs "$t0" "$t1")" "$(secs "$t2" "$t3")" "$partials" "cmp $same"
    done
}

if [ -z "$securities" ]; then
    round ""
else
    IFS=, read -r -a secs_list <<< "$securities"
    for s in "${secs_list[@]}"; do round "$s"; done
fi
