#!/usr/bin/env bash
# Sharded runs on this machine: the same generated files run by `sweep run` on one node and by
# `sweep plan --shards N` + N shard processes (all started at once, as a cluster would) + `sweep
# merge`, for each N, in one run. Prints each stage's wall time (first shard started to last shard
# done), the merge's, the partials' bytes and the merged tables' rows (the groups), and checks
# every output against the one-node run with cmp.
#
#   benches/shards.sh [--job standard|sweeps] [--shards 1,2,4] [--files 8] [--rows 400000]
#                     [--securities LIST] [--dir DIR]
#
#   --job         standard: the standard job without its report page (pipelines/bench.toml plus
#                 the gzip extract of pipelines/centrepoint.toml), over order files;
#                 sweeps: the sweep fill analysis (pipelines/sweeps.toml without its page) over
#                 orders and trades pairs, with its reduce stage between the map and the merge
#                 (default standard)
#   --shards      shard counts to run (default 1,2,4)
#   --files       generated files (standard) or pairs (sweeps), one trading day each (default 8)
#   --rows        order rows per file (default 400000, about 64 MB of CSV each)
#   --securities  a list of --securities values for the generator: each is a separate round, so
#                 the merge time and partial size can be read against the number of groups
#                 (default: the generator's own)
#   --dir         where the files, partials and outputs go (default ${TMPDIR:-/tmp}/sweep-shards)
#
# Uses $SWEEP (default target/release/sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-$PWD/target/release/sweep}
job=standard
shards="1,2,4"
files=8
rows=400000
securities=""
dir="${TMPDIR:-/tmp}/sweep-shards"
while [ $# -gt 0 ]; do
    case "$1" in
        --job) job=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --rows) rows=$2; shift 2 ;;
        --securities) securities=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "usage: $0 [--job standard|sweeps] [--shards LIST] [--files N] [--rows N] [--securities LIST] [--dir DIR]" >&2; exit 2 ;;
    esac
done
case "$job" in standard|sweeps) ;; *) echo "--job is standard or sweeps" >&2; exit 2 ;; esac
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# Bytes of the committed partials below the given folders (none there: 0).
bytes_of() { { find "$@" -name 'shard-*' -type f -printf '%s\n' 2>/dev/null || true; } | awk '{s+=$1} END {print s+0}'; }

# The pipeline of the round, its inputs in $1/in, its outputs wherever --set sends them.
pipeline() {
    local in=$1
    if [ "$job" = standard ]; then
        sed -e "s#^path = \"tests/data/.*\"#path = \"$in/*.csv\"#" pipelines/bench.toml
        printf '\n[sinks.extract]\ninputs = ["centrepoint"]\npath = "out/orders.csv.gz"\n'
    else
        cat <<TOML
name = "sweeps"
[readers.orders]
path = "$in/o*.csv"
[readers.trades]
path = "$in/t*.csv"
[sweeps.fills]
orders = "orders"
trades = "trades"
[sinks.tables]
inputs = ["fills"]
path = "out"
[monitor]
report = "out/execution_metrics.json"
TOML
    fi
}

# --set arguments sending every output into $1.
into() {
    echo --set "sinks.tables.path=$1" --set "monitor.report=$1/execution_metrics.json" --set monitor.progress=off
    [ "$job" = standard ] && echo --set "sinks.extract.path=$1/orders.csv.gz"
    true
}

# Starts shards 0..N-1 of stage $2 at once and waits for them all.
stage() {
    local n=$1 which=$2 pids=()
    for i in $(seq 0 $((n - 1))); do
        # shellcheck disable=SC2046
        "$SWEEP" run "$work/p.toml" --plan "$work/plan.json" --shard-index "$i" --stage "$which" \
            $(into "$work/merged") 2>/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
}

round() { # round SECURITIES (empty: the generator's default)
    local sec=$1
    work="$dir/$job-sec${1:-default}"
    rm -rf "$work"; mkdir -p "$work/in"
    for i in $(seq 0 $((files - 1))); do
        local day; day=$(date -d "2024-09-02 + $i day" +%F)
        local out=(--orders "$work/in/f$(printf %02d "$i").csv")
        [ "$job" = sweeps ] && out=(--orders "$work/in/o$(printf %02d "$i").csv" --trades "$work/in/t$(printf %02d "$i").csv")
        "$SWEEP" generate "${out[@]}" --rows "$rows" \
            --seed $((i + 1)) --days 1 --start-date "$day" ${sec:+--securities "$sec"} 2>/dev/null
    done
    pipeline "$work/in" > "$work/p.toml"
    local bytes; bytes=$(du -cb "$work"/in/*.csv | tail -1 | cut -f1)
    local t0 t1
    t0=$(now)
    # shellcheck disable=SC2046
    "$SWEEP" run "$work/p.toml" $(into "$work/single") 2>/dev/null
    t1=$(now)
    local groups; groups=$(( $(cat "$work"/single/*.csv | wc -l) - $(ls "$work"/single/*.csv | wc -l) ))
    echo "$job, securities=${sec:-default}: $files file(s), $((bytes / 1000000)) MB, one node $(secs "$t0" "$t1") s, $groups table rows (groups)"
    printf "  %-7s %9s %11s %10s %14s %14s %s\n" shards "map (s)" "reduce (s)" "merge (s)" "map parts (B)" "reduce parts (B)" check
    IFS=, read -r -a counts <<< "$shards"
    for n in "${counts[@]}"; do
        rm -rf "$work/shared" "$work/merged"
        # shellcheck disable=SC2046
        "$SWEEP" plan "$work/p.toml" --shards "$n" --shared "$work/shared" --json $(into "$work/merged") > "$work/plan.json"
        t0=$(now); stage "$n" map; t1=$(now)
        local r0 r1 reduce="-"
        if [ "$job" = sweeps ]; then r0=$(now); stage "$n" reduce; r1=$(now); reduce=$(secs "$r0" "$r1"); fi
        local t2 t3
        t2=$(now)
        # shellcheck disable=SC2046
        "$SWEEP" merge "$work/p.toml" --plan "$work/plan.json" $(into "$work/merged") 2>/dev/null
        t3=$(now)
        local run; run="$work/shared/$(sed -n 's/^  "plan_hash": "\(.*\)",$/\1/p' "$work/plan.json")"
        local mapb redb
        redb=$(bytes_of "$run"/*.reduce)
        mapb=$(( $(bytes_of "$run") - redb ))
        local same=ok
        for f in "$work"/single/*; do
            case "$(basename "$f")" in execution_metrics.json) continue ;; esac
            cmp -s "$f" "$work/merged/$(basename "$f")" || same="DIFFERS: $(basename "$f")"
        done
        printf "  %-7s %9s %11s %10s %14s %14s %s\n" "$n" "$(secs "$t0" "$t1")" "$reduce" "$(secs "$t2" "$t3")" "$mapb" "$redb" "cmp $same"
    done
}

if [ -z "$securities" ]; then
    round ""
else
    IFS=, read -r -a secs_list <<< "$securities"
    for s in "${secs_list[@]}"; do round "$s"; done
fi
