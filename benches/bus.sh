#!/usr/bin/env bash
# Daemons sharing a bus ([daemon.nats]) on one machine, against a nats-server of its own on
# loopback (Debian's nats-server; release build of sweep).
#
#   benches/bus.sh prepare WORK [FILES] [ROWS]  # FILES generated order files (default 50 of
#                                               # ROWS rows, default 60000) in WORK/src, and the
#                                               # pipeline
#   benches/bus.sh trial WORK N                 # one timed trial: a fresh server and stream, N
#                                               # daemons, every file renamed in at once; exits
#                                               # when every file is committed, printing the
#                                               # seconds from the renames to the last commit
#   benches/bus.sh overhead WORK                # one daemon, the files fed one at a time: each
#                                               # file's publish-to-ack time and the bus's share
#                                               # of it (publish-to-ack less fold and commit),
#                                               # median and p99
#
# Throughput is `trial WORK 2` against `trial WORK 1`, timed from outside and run in turn.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SWEEP=${SWEEP:-$here/target/release/sweep}
NATS=${NATS:-$(command -v nats-server || echo /usr/sbin/nats-server)}
mode=${1:?prepare, trial or overhead}
work=${2:?work folder}

pids=()
# Daemons first (SIGTERM: the lease holder's last refresh needs the server), then the server.
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A fresh server and a fresh run folder: $run holds incoming/, shared/, out/, logs.
start_run() {
    run=$(mktemp -d "$work/run.XXXXXX")
    port=$(free_port)
    "$NATS" -js -a 127.0.0.1 -p "$port" -sd "$run/store" >"$run/nats.log" 2>&1 &
    pids+=($!)
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.02; done
    sed "s|NATS_URL|nats://127.0.0.1:$port|" "$work/bus.toml" >"$run/p.toml"
    mkdir -p "$run/incoming"
}

start_daemons() { # N
    for i in $(seq 1 "$1"); do
        (cd "$run" && SWEEP_LOG=info exec "$SWEEP" daemon p.toml 2>"daemon-$i.log") &
        pids+=($!)
    done
    for i in $(seq 1 "$1"); do
        until grep -q started "$run/daemon-$i.log" 2>/dev/null; do sleep 0.02; done
    done
}

committed() {
    local d=$run/shared/partials/stats
    if [ -d "$d" ]; then find "$d" -maxdepth 1 -type f ! -name '.*' | wc -l; else echo 0; fi
}

case $mode in
prepare)
    files=${3:-50}
    rows=${4:-60000}
    mkdir -p "$work/src"
    for i in $(seq 1 "$files"); do
        n=$(printf 'f%02d.csv' "$i")
        [ -f "$work/src/$n" ] || "$SWEEP" generate --orders "$work/src/$n" --rows "$rows" \
            --seed "$i" --days 1 --start-date "$(date -d "2024-09-02 + $i days" +%F)" >/dev/null 2>&1
    done
    cat >"$work/bus.toml" <<'TOML'
name = "bus"
[readers.orders]
path = "incoming/*.csv"
[filters.cp]
inputs = ["orders"]
exchange_order_types = [64, 256, 2048, 4096, 4098]
trading_hours = { start = "10:00", end = "16:00" }
[aggregators.stats]
inputs = ["cp"]
[sinks.tables]
inputs = ["stats"]
path = "out"
[monitor]
progress = "off"
[daemon]
state = "shared"
complete = "rename"
poll_secs = 0.1
outputs_interval_secs = 1
[daemon.nats]
urls = ["NATS_URL"]
TOML
    (cd "$work" && sed -e 's|incoming/\*.csv|src/*.csv|' -e 's|path = "out"|path = "batch"|' \
        -e '/^\[daemon/,$d' bus.toml >batch.toml && "$SWEEP" run batch.toml 2>/dev/null)
    echo "prepared $(ls "$work/src" | wc -l) files, $(du -sh "$work/src" | cut -f1), in $work"
    ;;
trial)
    n=${3:?daemons}
    start_run
    start_daemons "$n"
    # Hard links: the files land whole, at once, without copying.
    for f in "$work"/src/*.csv; do ln "$f" "$run/incoming/.$(basename "$f").tmp"; done
    total=$(ls "$work"/src/*.csv | wc -l)
    t0=$(date +%s.%N)
    for f in "$work"/src/*.csv; do
        b=$(basename "$f")
        mv "$run/incoming/.$b.tmp" "$run/incoming/$b"
    done
    until [ "$(committed)" -ge "$total" ]; do sleep 0.01; done
    t1=$(date +%s.%N)
    # The last refresh, then the tables against `sweep run`'s.
    cleanup
    pids=()
    for t in "$work"/batch/*.csv; do cmp -s "$t" "$run/out/$(basename "$t")" || {
        echo "MISMATCH: $(basename "$t")" >&2
        exit 1
    }; done
    awk -v n="$n" -v t="$(awk "BEGIN{print $t1 - $t0}")" -v f="$total" \
        'BEGIN{printf "%d daemon(s): %d files committed in %.3f s\n", n, f, t}'
    rm -rf "$run"
    ;;
overhead)
    start_run
    start_daemons 1
    for f in "$work"/src/*.csv; do
        b=$(basename "$f")
        ln "$f" "$run/incoming/.$b.tmp"
        before=$(committed)
        mv "$run/incoming/.$b.tmp" "$run/incoming/$b"
        until [ "$(committed)" -gt "$before" ] && grep -q "ingested incoming/$b " "$run/daemon-1.log"; do
            sleep 0.005
        done
    done
    # "... in F s; A s from publish to ack": A, and A - F (the bus's share).
    grep -o 'in [0-9.]* s; [0-9.]* s from publish to ack' "$run/daemon-1.log" |
        awk '{print $4, $4 - $2}' | python3 -c '
import sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
for i, what in enumerate(["publish to ack", "bus share (publish to ack less fold and commit)"]):
    v = [r[i] * 1000 for r in rows]
    print(f"{what}: median {pct(v, 0.5):.1f} ms, p99 {pct(v, 0.99):.1f} ms over {len(v)} files")
'
    rm -rf "$run"
    ;;
*)
    echo "usage: $0 prepare|trial|overhead WORK ..." >&2
    exit 2
    ;;
esac
