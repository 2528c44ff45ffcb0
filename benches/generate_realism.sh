#!/usr/bin/env bash
# How realistic `sweep generate` is for the sweep fill analysis (issue 12, item 6): generates an
# orders+trades pair, runs the oracle (../shared/bench/sweep_duckdb.py) on it, and prints the
# figures the generator is held to, next to the real ASX values they are compared with:
#   - the share of lit trades (dealsource 1, 44) printing outside their NBBO snapshot (real: < 1%);
#   - the mean cost_vs_arrival_bps of scenario-A sweeps (positive: an immediate sweep pays part of
#     the spread);
#   - auction matches (20, 45) and how many are passive/passive pairs (all should be);
#   - trade rows per dealsource, locked and crossed NBBO snapshots on order rows, reload (30)
#     rows, and orders and sweeps whose first event is not their arrival (unknown arrival).
#
#   benches/generate_realism.sh [--rows N | --size SIZE] [--seed S] [--dir DIR] [--keep]
#
#   --rows / --size  passed to `sweep generate` (default --rows 300000)
#   --seed           generator seed (default 3)
#   --dir            where the pair and the oracle's output go (default a fresh temporary folder)
#   --keep           keep that folder (it is deleted otherwise)
# Uses $SWEEP (default target/release/sweep) and $ORACLE (default ../shared/bench/sweep_duckdb.py);
# needs python3 with duckdb (pip install -r ../shared/bench/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-$PWD/target/release/sweep}
ORACLE=${ORACLE:-$PWD/../shared/bench/sweep_duckdb.py}
budget=(--rows 300000)
seed=3
dir=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) budget=(--rows "$2"); shift 2 ;;
        --size) budget=(--size "$2"); shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$dir" ]; then
    dir=$(mktemp -d /tmp/sweep-realism.XXXXXX)
fi
mkdir -p "$dir/oracle"
if [ "$keep" = 0 ]; then
    trap 'rm -rf "$dir"' EXIT
fi

"$SWEEP" generate --orders "$dir/orders.csv" --trades "$dir/trades.csv" "${budget[@]}" \
    --seed "$seed" 2>&1 | sed 's/^/generate: /'
python3 "$ORACLE" "$dir/orders.csv" "$dir/trades.csv" "$dir/oracle" > /dev/null

python3 - "$dir/orders.csv" "$dir/trades.csv" "$dir/oracle/sweeps.csv" <<'PY'
import sys

import duckdb

orders, trades, sweeps = sys.argv[1:4]
con = duckdb.connect()
con.execute(f"create view o as select * from read_csv('{orders}', header = true)")
con.execute(f"create view t as select * from read_csv('{trades}', header = true)")
con.execute(f"create view s as select * from read_csv('{sweeps}', header = true)")


def one(sql):
    return con.execute(sql).fetchone()


lit, outside = one("""
    select count(*), count(*) filter (where tradeprice < nationalbidpricesnapshot
                                         or tradeprice > nationalofferpricesnapshot)
    from t where dealsource in (1, 44)""")
print(f"lit trade rows outside the NBBO snapshot: {outside} of {lit} "
      f"({100 * outside / max(lit, 1):.3f}%; real ASX < 1%)")
n, mean = one("""select count(cost_vs_arrival_bps), avg(cost_vs_arrival_bps)
                 from s where scenario = 'A'""")
print(f"scenario-A sweeps with a cost: {n}, mean cost_vs_arrival_bps {mean or 0:.3f}")
print("sweeps per scenario:",
      ", ".join(f"{k} {v}" for k, v in con.execute(
          "select scenario, count(*) from s group by 1 order by 1").fetchall()))
groups, passive = one("""
    select count(*), count(*) filter (where rows = 2 and aggressive = 0) from (
        select matchgroupid, count(*) as rows, sum(passiveaggressive) as aggressive
        from t where dealsource in (20, 45) group by 1)""")
print(f"auction matches: {groups}, of which passive/passive pairs: {passive}")
print("trade rows per dealsource:",
      ", ".join(f"{k} {v}" for k, v in con.execute(
          "select dealsource, count(*) from t group by 1 order by 1").fetchall()))
rows, locked, crossed, reloads = one("""
    select count(*), count(*) filter (where national_bid = national_offer),
           count(*) filter (where national_bid > national_offer),
           count(*) filter (where changereason = 30)
    from o""")
print(f"order rows: {rows}; locked NBBO {locked}, crossed NBBO {crossed}; reloads (30) {reloads}")
unknown, unknown_sweeps = one("""
    select count(*), count(*) filter (where eot & 2048 != 0) from (
        select arg_min(changereason, (timestamp, sequence)) as first_reason,
               arg_min(exchangeordertype, (timestamp, sequence)) as eot
        from o group by order_id)
    where first_reason not in (6, 29)""")
print(f"orders with an unknown arrival: {unknown} ({unknown_sweeps} sweeps)")
PY
