#!/usr/bin/env bash
# Daemon latency: how long after a 100 MB order file is renamed into the watched folder do its rows
# show in the daemon's tables, against the time `sweep run` takes to process the same file alone.
# The goal (issue 6) is at most 1 s plus that processing time.
#
#   benches/daemon_latency.sh [SIZE]      # SIZE defaults to 100MB; uses target/release/sweep
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-$PWD/target/release/sweep}
SIZE=${1:-100MB}
work=$(mktemp -d /tmp/sweep-latency.XXXXXX)
trap 'kill "${daemon:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

"$SWEEP" generate --orders src/orders.csv --size "$SIZE" --seed 11 2>&1 | sed 's/^/generate: /'
bytes=$(stat -c %s src/orders.csv)

cat > job.toml <<'TOML'
name = "latency"
[readers.orders]
path = "src/orders.csv"
[filters.cp]
inputs = ["orders"]
exchange_order_types = [64, 256, 2048, 4096, 4098]
trading_hours = { start = "10:00", end = "16:00" }
[aggregators.stats]
inputs = ["cp"]
[sinks.tables]
inputs = ["stats"]
path = "batch"
[monitor]
progress = "off"
TOML
# Processing time alone: the median of three batch runs over the file.
runs=()
for _ in 1 2 3; do
  t0=$(date +%s.%N); "$SWEEP" run job.toml 2>/dev/null; t1=$(date +%s.%N)
  runs+=("$(awk "BEGIN{print $t1 - $t0}")")
done
proc=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)

sed -e 's|path = "src/orders.csv"|path = "incoming/*.csv"|' -e 's|path = "batch"|path = "out"|' job.toml > daemon.toml
cat >> daemon.toml <<'TOML'
[daemon]
state = "state"
complete = "rename"
poll_secs = 1.0
outputs_interval_secs = 1.0
TOML
mkdir -p incoming
SWEEP_LOG=info "$SWEEP" daemon daemon.toml 2> daemon.log &
daemon=$!
until grep -q started daemon.log; do sleep 0.05; done
cp src/orders.csv incoming/.orders.csv.tmp
sync
t0=$(date +%s.%N)
mv incoming/.orders.csv.tmp incoming/orders.csv
# Visible = the summary table exists and matches the batch run's.
until [ -f out/summary.csv ] && cmp -s out/summary.csv batch/summary.csv; do sleep 0.01; done
t1=$(date +%s.%N)
kill -TERM "$daemon"; wait "$daemon" || true
latency=$(awk "BEGIN{print $t1 - $t0}")
printf 'file: %s bytes; processing alone (sweep run, median of 3): %.3f s\n' "$bytes" "$proc"
printf 'rename -> tables show its rows: %.3f s = processing + %.3f s (goal: at most 1 s over processing)\n' \
  "$latency" "$(awk "BEGIN{print $latency - $proc}")"
grep -o 'ingested incoming/orders.csv.*' daemon.log | sed 's/^/daemon: /'
