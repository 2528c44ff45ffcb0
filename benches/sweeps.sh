#!/usr/bin/env bash
# Speed and memory of the sweep fill analysis (pipelines/sweeps.toml's job) beside its two peers,
# the DuckDB oracle and the Polars implementation (../shared/bench/sweep_duckdb.py and
# sweep_polars.py), on one generated orders+trades pair, with each output checked against the
# oracle's by ../shared/bench/compare_outputs.py --job sweep.
#
#   benches/sweeps.sh [--size 1GB | --rows N] [--seed S] [--runs N] [--dir DIR] [--only LIST]
#
#   --size / --rows  passed to `sweep generate` (default --size 1GB); the pair is gzip CSV
#   --seed           generator seed (default 5)
#   --runs           timed runs of each, after one warm-up; the median wall time is shown (default 3)
#   --dir            where the pair and the outputs go (default ${TMPDIR:-/tmp}/sweep-sweeps); the
#                    pair is kept there and reused
#   --only           any of sweep,duckdb,polars (default all three), comma separated
#
# Runs are interleaved (sweep, duckdb, polars, sweep, ...) so that a noisy machine slows all
# three alike; wall time and peak RSS come from /usr/bin/time. Uses $SWEEP (default
# target/release/sweep) and the peers' Python environment (~/.cache/sweep-peers, made by
# ../shared/bench/peers.py, or $SWEEP_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-$PWD/target/release/sweep}
BENCH=${SWEEP_BENCH:-$PWD/../shared/bench}
PY=${SWEEP_PYTHON:-$HOME/.cache/sweep-peers/bin/python}
[ -x "$PY" ] || PY=python3
budget=(--size 1GB)
seed=5
runs=3
dir="${TMPDIR:-/tmp}/sweep-sweeps"
only="sweep,duckdb,polars"
while [ $# -gt 0 ]; do
    case "$1" in
        --size) budget=(--size "$2"); shift 2 ;;
        --rows) budget=(--rows "$2"); shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        *) echo "usage: $0 [--size SIZE | --rows N] [--seed S] [--runs N] [--dir DIR] [--only LIST]" >&2; exit 2 ;;
    esac
done
mkdir -p "$dir"
tag="${budget[1]}_s$seed"
orders="$dir/orders_$tag.csv.gz"
trades="$dir/trades_$tag.csv.gz"
if [ ! -s "$orders" ] || [ ! -s "$trades" ]; then
    "$SWEEP" generate --orders "$orders" --trades "$trades" "${budget[@]}" --seed "$seed"
fi
mb=$(( ($(stat -c %s "$orders") + $(stat -c %s "$trades")) / 1000000 ))
echo "pair: $orders + $trades ($mb MB compressed)"

run() { # name -> the command for it
    local out="$dir/out_$1"
    case "$1" in
        sweep) echo "$SWEEP run pipelines/sweeps.toml --set readers.orders.path=$orders --set readers.trades.path=$trades --set sinks.tables.path=$out --set monitor.report=$out/execution_metrics.json --set monitor.progress=off" ;;
        duckdb) echo "$PY $BENCH/sweep_duckdb.py $orders $trades $out" ;;
        polars) echo "$PY $BENCH/sweep_polars.py $orders $trades $out" ;;
    esac
}
declare -A walls rss
IFS=, read -r -a names <<< "$only"
for round in $(seq 0 "$runs"); do
    for n in "${names[@]}"; do
        rm -rf "$dir/out_$n"; mkdir -p "$dir/out_$n"
        t=$(mktemp)
        # shellcheck disable=SC2046
        /usr/bin/time -f "%e %M" -o "$t" $(run "$n") > /dev/null 2>"$dir/$n.log" \
            || { echo "$n failed:"; tail -5 "$dir/$n.log"; exit 1; }
        read -r wall kib < <(tail -1 "$t"); rm -f "$t"
        if [ "$round" -gt 0 ]; then  # round 0 is the warm-up
            walls[$n]="${walls[$n]:-} $wall"
            rss[$n]="${rss[$n]:-} $kib"
        fi
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
max() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
printf "%-8s %10s %12s %14s\n" name "wall (s)" "peak (MiB)" "runs (s)"
for n in "${names[@]}"; do
    w=$(echo "${walls[$n]}" | median)
    m=$(echo "${rss[$n]}" | max)
    printf "%-8s %10s %12.0f %14s\n" "$n" "$w" "$(echo "$m / 1024" | bc -l)" "${walls[$n]}"
done
for n in "${names[@]}"; do
    [ "$n" = polars ] && [ -n "${walls[polars]:-}" ] || continue
    if [ -n "${walls[sweep]:-}" ]; then
        echo "sweep / polars wall: $(echo "$(echo "${walls[sweep]}" | median) / $(echo "${walls[polars]}" | median)" | bc -l | cut -c1-5)"
    fi
done
if [ -d "$dir/out_duckdb" ]; then
    for n in "${names[@]}"; do
        [ "$n" = duckdb ] && continue
        echo "check $n against duckdb:"
        "$PY" "$BENCH/compare_outputs.py" --job sweep "$dir/out_duckdb" "$dir/out_$n" | tail -1
    done
fi
