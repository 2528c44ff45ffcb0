#!/usr/bin/env bash
# Scale benchmark for issue 4: the standard job (pipelines/bench.toml) on generated order files of
# 100 MB, 1 GB and 10 GB, plain CSV and gzip -1, with wall time, rows/s, MB/s and peak RSS.
#
#   benches/scale.sh [--sizes 100MB,1GB,10GB] [--workers N[,N...]] [--decode] [--runs N]
#                    [--dir DIR] [--seed N] [--no-gz] [--no-build] [--clean]
#
#   --sizes    which sizes to run (default 100MB,1GB,10GB; units MB/GB are 10^6/10^9 bytes)
#   --workers  passed as --set runtime.workers=N; a list (1,2) runs each and prints the scaling
#   --decode   also time decode-only of each .gz with zlib-rs (sweep bench decode) and print
#              the job-time / decode-time ratio (issue 4, goal P2)
#   --runs     runs per file and worker count; the median wall time and the largest RSS are shown
#   --dir      where the generated files go (default ${TMPDIR:-/tmp}/sweep-scale); 100 MB and 1 GB
#              files are kept there and reused, 10 GB files are deleted right after measuring
#   --seed     generator seed (default 1)
#   --no-gz    plain CSV only;  --no-build  use the binaries already built
#   --clean    delete every generated file at the end
#
# Files come from `sweep generate --orders FILE --size SIZE --seed N` when this build has it,
# otherwise from ../shared/bench/gen_orders.py (rows = size / 162.6 B, its 1 GB file's row size).
# The .gz is `gzip -1` of the CSV, so both hold the same rows. MB/s is always uncompressed bytes
# per second, also for .gz, as in shared/docs/throughput-probe.md. Honours CARGO_TARGET_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

sizes="100MB,1GB,10GB"
workers=""
decode=0
runs=1
seed=1
dir="${TMPDIR:-/tmp}/sweep-scale"
gz=1
build=1
clean=0
python="${SWEEP_PYTHON:-$HOME/.cache/sweep-peers/bin/python}"
# ../shared from the main checkout; worktrees sit one level deeper.
gen_py="${SWEEP_GEN_ORDERS:-}"
for g in "$here/../shared/bench/gen_orders.py" "$here/../../shared/bench/gen_orders.py" \
    /work/shared/bench/gen_orders.py; do
    [[ -n "$gen_py" ]] && break
    [[ -f "$g" ]] && gen_py="$g"
done

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
while (($#)); do
    case "$1" in
        --sizes) sizes="$2"; shift 2 ;;
        --sizes=*) sizes="${1#*=}"; shift ;;
        --workers) workers="$2"; shift 2 ;;
        --workers=*) workers="${1#*=}"; shift ;;
        --decode) decode=1; shift ;;
        --runs) runs="$2"; shift 2 ;;
        --runs=*) runs="${1#*=}"; shift ;;
        --dir) dir="$2"; shift 2 ;;
        --dir=*) dir="${1#*=}"; shift ;;
        --seed) seed="$2"; shift 2 ;;
        --seed=*) seed="${1#*=}"; shift ;;
        --no-gz) gz=0; shift ;;
        --no-build) build=0; shift ;;
        --clean) clean=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "scale.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done

target="${CARGO_TARGET_DIR:-$here/target}"
sweep="$target/release/sweep"
decoder_cmd=("$target/release/sweep" bench decode)
if ((build)); then
    echo "building release sweep into $target ..." >&2
    cargo build --release --quiet --bin sweep
fi
[[ -x "$sweep" ]] || { echo "scale.sh: $sweep not built" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "scale.sh: needs /usr/bin/time (GNU time)" >&2; exit 2; }

if "$sweep" generate --help >/dev/null 2>&1; then
    generator="sweep generate"
else
    generator="gen_orders.py"
    [[ -x "$python" ]] || { echo "scale.sh: no 'sweep generate' and no python at $python" >&2; exit 2; }
fi

# "100MB" -> 100000000
bytes_of() {
    local s="${1^^}" n unit
    n="${s%%[A-Z]*}"; unit="${s#"$n"}"
    case "$unit" in
        ""|B) echo "$n" ;;
        K|KB) echo $((n * 1000)) ;;
        M|MB) echo $((n * 1000000)) ;;
        G|GB) echo $((n * 1000000000)) ;;
        *) echo "scale.sh: bad size $1" >&2; exit 2 ;;
    esac
}

generate() { # SIZE FILE
    local size="$1" out="$2" bytes part="${2%.csv}.part.csv"
    bytes=$(bytes_of "$size")
    echo "generating $out ($size) with $generator ..." >&2
    if [[ "$generator" == "sweep generate" ]]; then
        "$sweep" generate --orders "$part" --size "$size" --seed "$seed" >&2
    else
        [[ -f "$gen_py" ]] || { echo "scale.sh: gen_orders.py not found" >&2; exit 2; }
        # gen_orders.py's rows average 162.6 bytes (its 6.5M-row file is 1,056,761,645 B).
        "$python" "$gen_py" "$part" $(((bytes * 10 + 1625) / 1626)) "$seed"
    fi
    mv "$part" "$out"
}

free_bytes() { df -PB1 "$dir" | awk 'NR==2 {print $4}'; }

mkdir -p "$dir"
out_dir="$dir/out"
results="$dir/results.$$"
decodes="$dir/decodes.$$"
: >"$results"; : >"$decodes"
big_files=()   # deleted however the script ends, so an interrupted 10 GB run frees the disk
trap 'rm -f "$results" "$decodes" "$dir"/*.part.csv "$dir"/*.gz.part "${big_files[@]}"; rm -rf "$out_dir"' EXIT

# run_job FILE PLAIN_BYTES WORKERS: appends one result line; sets last_wall (empty on failure)
run_job() {
    local f="$1" plain="$2" w="$3" walls=() rss_max=0 rows="" i tf ef wall rss
    local set_w=()
    [[ -n "$w" ]] && set_w=(--set "runtime.workers=$w")
    for ((i = 0; i < runs; i++)); do
        tf=$(mktemp) ef=$(mktemp)
        rm -rf "$out_dir"
        if ! SWEEP_LOG=warn /usr/bin/time -f '%e %M' -o "$tf" "$sweep" run pipelines/bench.toml \
            --set "readers.orders.path=$f" --set "sinks.tables.path=$out_dir" \
            --set monitor.progress=off "${set_w[@]}" 2>"$ef"; then
            echo "scale.sh: sweep failed on $f:" >&2; cat "$ef" >&2
            rm -f "$tf" "$ef"
            printf '%s\t%s\t%s\tFAIL\t\t\t\t\n' "$(basename "$f")" "$(stat -c %s "$f")" "${w:-auto}" >>"$results"
            return 0
        fi
        read -r wall rss <"$tf"
        walls+=("$wall")
        ((rss > rss_max)) && rss_max=$rss
        # "sweep: bench ok: 1 job(s), 615082 rows read = ..."
        rows=$(sed -n 's/.* \([0-9][0-9]*\) rows read.*/\1/p' "$ef" | head -1)
        rm -f "$tf" "$ef"
    done
    wall=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$f")" "$(stat -c %s "$f")" "${w:-auto}" \
        "${rows:-?}" "$wall" "$plain" "$rss_max" >>"$results"
    echo "  $(basename "$f") workers=${w:-auto}: ${wall}s, ${rows:-?} rows, peak RSS $((rss_max / 1024)) MiB" >&2
    last_wall=$wall
}

# decode_time GZ: median seconds of `runs` decode-only passes
decode_time() {
    local i line secs=()
    for ((i = 0; i < runs; i++)); do
        line=$("${decoder_cmd[@]}" "$1")
        secs+=("$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")")
    done
    printf '%s\n' "${secs[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

IFS=, read -r -a size_list <<<"$sizes"
IFS=, read -r -a worker_list <<<"${workers:-}"
((${#worker_list[@]})) || worker_list=("")

for size in "${size_list[@]}"; do
    bytes=$(bytes_of "$size")
    csv="$dir/orders_${size}_s${seed}.csv"
    big=0; ((bytes >= 5000000000)) && big=1
    ((big)) && big_files=("$csv" "$csv.gz")
    if [[ ! -s "$csv" ]]; then
        need=$((bytes * 14 / 10 + (1 << 30)))   # CSV + gzip + outputs, with room to spare
        if (($(free_bytes) < need)); then
            echo "scale.sh: $size needs about $((need >> 30)) GiB free in $dir; skipping" >&2
            continue
        fi
        generate "$size" "$csv"
    fi
    plain=$(stat -c %s "$csv")
    for w in "${worker_list[@]}"; do run_job "$csv" "$plain" "$w"; done
    if ((gz)); then
        if [[ ! -s "$csv.gz" ]]; then
            echo "compressing $csv with gzip -1 ..." >&2
            gzip -1 -c "$csv" >"$csv.gz.part" && mv "$csv.gz.part" "$csv.gz"
        fi
        ((big)) && rm -f "$csv"   # the .gz is all that is left to measure
        gz_walls=()
        for w in "${worker_list[@]}"; do
            last_wall=""
            run_job "$csv.gz" "$plain" "$w"
            gz_walls+=("$last_wall")
        done
        if ((decode)); then
            dsecs=$(decode_time "$csv.gz")
            echo "  decode-only $(basename "$csv.gz"): ${dsecs}s" >&2
            for i in "${!worker_list[@]}"; do
                [[ -n "${gz_walls[$i]}" ]] && printf '%s\t%s\t%s\t%s\n' "$(basename "$csv.gz")" \
                    "$dsecs" "${gz_walls[$i]}" "${worker_list[$i]:-auto}" >>"$decodes"
            done
        fi
    fi
    if ((big)); then
        rm -f "$csv" "$csv.gz"
        echo "  deleted the $size files" >&2
    fi
done

echo
echo "standard job (pipelines/bench.toml), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), generator: $generator, runs: $runs"
awk -F'\t' '
    BEGIN {
        printf "%-28s %10s %8s %11s %8s %12s %9s %9s\n", "file", "size MB", "workers", "rows", "wall s", "rows/s", "MB/s", "RSS MiB"
    }
    $4 == "FAIL" { printf "%-28s %10.1f %8s %11s\n", $1, $2 / 1e6, $3, "FAILED"; next }
    {
        rs = ($5 > 0) ? $4 / $5 : 0; mbs = ($5 > 0) ? $6 / 1e6 / $5 : 0
        printf "%-28s %10.1f %8s %11d %8.2f %12.0f %9.1f %9.1f\n", $1, $2 / 1e6, $3, $4, $5, rs, mbs, $7 / 1024
        if (!($1 in first)) { first[$1] = $5; fw[$1] = $3 }
        else if ($5 > 0) scaling[$1] = scaling[$1] sprintf("  workers %s vs %s: %.2fx", $3, fw[$1], first[$1] / $5)
    }
    END {
        for (f in scaling) print "scaling " f ":" scaling[f]
    }' "$results"
echo "(size MB: on disk; MB/s: uncompressed MB (10^6 B) per wall second; RSS: peak resident set)"
if ((decode)) && [[ -s "$decodes" ]]; then
    echo
    awk -F'\t' '
        BEGIN { printf "%-28s %8s %10s %9s %11s\n", "decode-only (zlib-rs)", "workers", "decode s", "job s", "job/decode" }
        { printf "%-28s %8s %10.2f %9.2f %11.2f\n", $1, $4, $2, $3, ($2 > 0) ? $3 / $2 : 0 }' "$decodes"
    echo "(goal P2: job/decode <= 1.3)"
fi

if ((clean)); then
    rm -f "$dir"/orders_*.csv "$dir"/orders_*.csv.gz
fi
