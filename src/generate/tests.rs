use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use clap::Parser;

use super::sink::DirtyKind;
use super::*;
use crate::time::{LocalClock, SECOND_NS, Zone};

const ORDERS_HEADER: &str = "order_id,exchange,timestamp,security_code,price,side,changereason,orderstatus,quantity,leavesquantity,ordertype,exchangeordertype,national_bid,national_offer,bid,offer,participantid,preferenceonly,midtick,singlefillminimumquantity,minimumquantity,sequence,crossingkey,totalmatchedquantity,shortsellquantity,triggercondition,timevaliditydecoded,row_num,timevalidity,date";
const TRADES_HEADER: &str = "EXCHANGE,sequence,tradedate,tradetime,securitycode,orderid,dealsource,dealsourcedecoded,exchangeinfo,matchgroupid,nationalbidpricesnapshot,nationalofferpricesnapshot,tradeprice,quantity,side,sidedecoded,participantid,passiveaggressive,row_num";
const CP_CODES: [u32; 5] = [64, 256, 2048, 4096, 4098];
/// Any Centre Point bit (sweep-analysis.md).
const CP_BITS: u32 = 6464;

fn is_lit(deal_source: u32) -> bool {
    matches!(deal_source, 1 | 44)
}

fn is_centre_point(deal_source: u32) -> bool {
    matches!(deal_source, 46..=48)
}

fn is_auction(deal_source: u32) -> bool {
    matches!(deal_source, 20 | 45)
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: GenerateArgs,
}

fn args_in(dir: &Path, orders: &str, trades: Option<&str>, rows: u64, seed: u64) -> GenerateArgs {
    let mut a = GenerateArgs::new(dir.join(orders));
    a.trades = trades.map(|t| dir.join(t));
    a.rows = Some(rows);
    a.seed = seed;
    a
}

/// Data lines of a clean CSV file, split into fields; asserts the header.
fn table(bytes: &[u8], header: &str) -> Vec<Vec<String>> {
    let text = std::str::from_utf8(bytes).expect("clean output is UTF-8");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(header));
    assert!(text.ends_with('\n'));
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[derive(Clone, Debug)]
struct Event {
    order_id: u64,
    timestamp: i64,
    security: u32,
    price: i64,
    side: u32,
    reason: u32,
    status: u32,
    quantity: u64,
    leaves: u64,
    eot: u32,
    national_bid: i64,
    national_offer: i64,
    participant: u32,
    sequence: i64,
    matched: u64,
    decoded: String,
    row_num: u64,
    date: String,
}

fn events(bytes: &[u8]) -> Vec<Event> {
    table(bytes, ORDERS_HEADER)
        .into_iter()
        .map(|f| {
            assert_eq!(f.len(), 30, "{f:?}");
            let n = |i: usize| -> i64 { f[i].parse().unwrap_or_else(|_| panic!("{f:?}")) };
            Event {
                order_id: f[0].parse().unwrap_or_else(|_| panic!("{f:?}")),
                timestamp: n(2),
                security: n(3) as u32,
                price: n(4),
                side: n(5) as u32,
                reason: n(6) as u32,
                status: n(7) as u32,
                quantity: n(8) as u64,
                leaves: n(9) as u64,
                eot: n(11) as u32,
                national_bid: n(12),
                national_offer: n(13),
                participant: n(16) as u32,
                sequence: n(21),
                matched: n(23) as u64,
                decoded: f[26].clone(),
                row_num: n(27) as u64,
                date: f[29].clone(),
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Trade {
    sequence: i64,
    date: String,
    time: i64,
    security: u32,
    order_id: u64,
    deal_source: u32,
    match_group: i64,
    national_bid: i64,
    national_offer: i64,
    price: i64,
    quantity: u64,
    side: u32,
    side_decoded: String,
    passive_aggressive: u32,
}

fn trades(bytes: &[u8]) -> Vec<Trade> {
    table(bytes, TRADES_HEADER)
        .into_iter()
        .map(|f| {
            assert_eq!(f.len(), 19, "{f:?}");
            let n = |i: usize| -> i64 { f[i].parse().unwrap_or_else(|_| panic!("{f:?}")) };
            Trade {
                sequence: n(1),
                date: f[2].clone(),
                time: n(3),
                security: n(4) as u32,
                order_id: f[5].parse().unwrap_or_else(|_| panic!("{f:?}")),
                deal_source: n(6) as u32,
                match_group: n(9),
                national_bid: n(10),
                national_offer: n(11),
                price: n(12),
                quantity: n(13) as u64,
                side: n(14) as u32,
                side_decoded: f[15].clone(),
                passive_aggressive: n(17) as u32,
            }
        })
        .collect()
}

struct Sample {
    report: GenerateReport,
    events: Vec<Event>,
    trades: Vec<Trade>,
}

/// One default-shaped run (10 days across the DST switch, 50 securities), parsed once.
fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = args_in(dir.path(), "o.csv", Some("t.csv"), 40_000, 3);
        let report = run(&a).expect("generate");
        Sample {
            report,
            events: events(&fs::read(dir.path().join("o.csv")).expect("orders")),
            trades: trades(&fs::read(dir.path().join("t.csv")).expect("trades")),
        }
    })
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for (i, seed) in [5, 5, 6].into_iter().enumerate() {
        let o = format!("o{i}.csv");
        let t = format!("t{i}.csv");
        run(&args_in(dir.path(), &o, Some(&t), 5_000, seed)).unwrap();
        outputs.push((
            fs::read(dir.path().join(o)).unwrap(),
            fs::read(dir.path().join(t)).unwrap(),
        ));
    }
    assert_eq!(outputs[0].0, outputs[1].0);
    assert_eq!(outputs[0].1, outputs[1].1);
    assert_ne!(outputs[0].0, outputs[2].0);
    assert_ne!(outputs[0].1, outputs[2].1);
    assert!(outputs[0].1.len() > TRADES_HEADER.len() + 1, "some trades");
}

#[test]
fn compressed_and_parquet_outputs_hold_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = run(&args_in(d, "o.csv", Some("t.csv"), 3_000, 9)).unwrap();
    let gz = run(&args_in(d, "o.csv.gz", Some("t.csv.zst"), 3_000, 9)).unwrap();
    let zst = run(&args_in(d, "o.csv.zst", Some("t.csv.gz"), 3_000, 9)).unwrap();
    let pq = run(&args_in(d, "o.parquet", Some("t.parquet"), 3_000, 9)).unwrap();
    assert_eq!(plain, gz);
    assert_eq!(plain, zst);
    assert_eq!(plain, pq);
    assert_eq!(
        plain.orders_bytes,
        fs::metadata(d.join("o.csv")).unwrap().len()
    );

    let orders = fs::read(d.join("o.csv")).unwrap();
    let trades = fs::read(d.join("t.csv")).unwrap();
    let gunzip = |p: &str| {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(fs::File::open(d.join(p)).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let unzstd = |p: &str| zstd::decode_all(fs::File::open(d.join(p)).unwrap()).unwrap();
    assert_eq!(gunzip("o.csv.gz"), orders);
    assert_eq!(unzstd("t.csv.zst"), trades);
    assert_eq!(unzstd("o.csv.zst"), orders);
    assert_eq!(gunzip("t.csv.gz"), trades);

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, UInt64Type};
    let read = |p: &str| {
        let file = fs::File::open(d.join(p)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        reader.map(|b| b.unwrap()).collect::<Vec<_>>()
    };
    let batches = read("o.parquet");
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names.join(","), ORDERS_HEADER);
    let ids: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
        .collect();
    let csv = events(&orders);
    assert_eq!(ids, csv.iter().map(|e| e.order_id).collect::<Vec<_>>());
    let seqs: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(21).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(seqs, csv.iter().map(|e| e.sequence).collect::<Vec<_>>());
    let trade_rows: usize = read("t.parquet").iter().map(|b| b.num_rows()).sum();
    assert_eq!(trade_rows as u64, plain.trades_rows);
}

#[test]
fn order_events_are_ordered_and_consistent() {
    let s = sample();
    let ev = &s.events;
    assert_eq!(ev.len(), 40_000);
    assert_eq!(s.report.orders_rows, 40_000);
    for w in ev.windows(2) {
        assert!(w[0].sequence < w[1].sequence, "{:?}", w);
        assert!(w[0].timestamp <= w[1].timestamp, "{:?}", w);
    }
    // Per order: starts with an insert; leaves + matched - quantity only moves on amends;
    // matched never falls; leaves 0 only on a final fill.
    let mut state: HashMap<u64, (i128, u64, u32)> = HashMap::new();
    let mut remaining_amends = 0;
    let mut ended = BTreeSet::new();
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.row_num, i as u64);
        assert!(e.order_id > 7_890_000_000_000_000_000 && e.order_id < i64::MAX as u64);
        assert!(!ended.contains(&e.order_id), "event after the end: {e:?}");
        let gap = i128::from(e.leaves) + i128::from(e.matched) - i128::from(e.quantity);
        match state.get(&e.order_id) {
            None => {
                // An insert, or the reload of an order entered before the file starts.
                assert!(matches!(e.reason, 6 | 30), "first event: {e:?}");
                assert_eq!((e.leaves, e.matched), (e.quantity, 0));
                if e.reason == 30 {
                    assert_eq!(e.date, "2024-09-30", "carried in on the first day: {e:?}");
                }
            }
            Some(&(prev_gap, prev_matched, _)) => {
                assert_ne!(e.reason, 6, "{e:?}");
                assert!(e.matched >= prev_matched);
                if e.reason == 5 {
                    if gap != 0 {
                        remaining_amends += 1;
                        assert_eq!(gap, i128::from(e.matched), "{e:?}");
                    }
                } else {
                    assert_eq!(gap, prev_gap, "only amends change the identity: {e:?}");
                }
            }
        }
        if e.leaves == 0 {
            assert_eq!((e.reason, e.status), (3, 2), "{e:?}");
        }
        assert!(
            matches!(e.reason, 1 | 3 | 5 | 6 | 9 | 10 | 24 | 26 | 30),
            "{e:?}"
        );
        if e.reason == 30 {
            assert_eq!(e.status, 1, "{e:?}");
        }
        assert!(matches!(e.status, 1 | 2));
        if matches!(e.reason, 1 | 9 | 10 | 24 | 26) || e.leaves == 0 {
            assert_eq!(e.status, 2);
            ended.insert(e.order_id);
        }
        if matches!(e.reason, 24 | 26) {
            assert!(e.decoded.starts_with("Purged "), "{e:?}");
        }
        state.insert(e.order_id, (gap, e.matched, e.reason));
        assert!(matches!(e.side, 1 | 2));
        assert!((1..=300).contains(&e.participant));
        assert_eq!(e.price % 10, 0);
        assert!(e.price > 0 && e.national_bid > 0 && e.national_offer > 0);
        assert_eq!(e.national_bid % 10, 0);
    }
    // Every order ends, but for at most one left open by the exact-row padding.
    assert!(state.len() - ended.len() <= 1);
    assert!(
        remaining_amends > 0,
        "the documented amend exception occurs"
    );
    assert!(remaining_amends * 50 < ev.len(), "and stays rare");
    let last_reasons: BTreeMap<u32, usize> =
        state.values().fold(BTreeMap::new(), |mut m, &(_, _, r)| {
            *m.entry(r).or_default() += 1;
            m
        });
    for r in [1, 3, 9, 24] {
        assert!(
            last_reasons.get(&r).copied().unwrap_or(0) > 0,
            "{last_reasons:?}"
        );
    }
    assert_eq!(state.len() as u64, s.report.orders);
}

#[test]
fn trades_pair_up_and_sum_to_matched_quantity() {
    let s = sample();
    let tr = &s.trades;
    assert!(tr.len() > 1_000, "{}", tr.len());
    assert_eq!(tr.len() as u64, s.report.trades_rows);
    assert_eq!(tr.len() as u64, 2 * s.report.matches);
    for w in tr.windows(2) {
        assert!(w[0].sequence < w[1].sequence);
        assert!(w[0].time <= w[1].time);
    }
    let mut groups: BTreeMap<i64, Vec<&Trade>> = BTreeMap::new();
    for t in tr {
        groups.entry(t.match_group).or_default().push(t);
    }
    assert_eq!(groups.len() * 2, tr.len());
    for (id, g) in &groups {
        assert_eq!(g.len(), 2, "group {id}");
        let (a, b) = (g[0], g[1]);
        assert_eq!((a.side, b.side), (1, 2), "buy row first, then sell");
        assert_eq!(
            (a.side_decoded.as_str(), b.side_decoded.as_str()),
            ("Buy", "Sell")
        );
        assert_eq!(a.quantity, b.quantity);
        assert!(a.quantity > 0);
        assert_eq!((a.price, a.time, a.security), (b.price, b.time, b.security));
        assert_eq!(a.deal_source, b.deal_source);
        assert_ne!(a.order_id, b.order_id);
        if is_auction(a.deal_source) {
            assert_eq!((a.passive_aggressive, b.passive_aggressive), (0, 0));
        } else {
            assert_eq!(a.passive_aggressive + b.passive_aggressive, 1);
        }
        if is_centre_point(a.deal_source) {
            assert_eq!(
                2 * a.price,
                a.national_bid + a.national_offer,
                "CP prints at mid"
            );
        } else {
            assert!(is_lit(a.deal_source) || is_auction(a.deal_source), "{a:?}");
        }
    }

    // Each order's final matched quantity is the sum of its trades, and each trade row sits on
    // a traded event of its order at the same instant.
    let mut final_matched: HashMap<u64, u64> = HashMap::new();
    let mut trade_events: HashMap<(u64, i64), u64> = HashMap::new();
    let mut first_seen: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut event_date: HashMap<(u64, i64), String> = HashMap::new();
    let mut prev_matched: HashMap<u64, u64> = HashMap::new();
    for e in &s.events {
        let before = prev_matched.insert(e.order_id, e.matched).unwrap_or(0);
        if e.reason == 3 {
            *trade_events.entry((e.order_id, e.timestamp)).or_default() += e.matched - before;
        }
        final_matched.insert(e.order_id, e.matched);
        first_seen.entry(e.order_id).or_insert((e.security, e.side));
        event_date.insert((e.order_id, e.timestamp), e.date.clone());
    }
    let mut traded: HashMap<u64, u64> = HashMap::new();
    let mut at_time: HashMap<(u64, i64), u64> = HashMap::new();
    for t in tr {
        let (sec, side) = first_seen
            .get(&t.order_id)
            .unwrap_or_else(|| panic!("trade of unknown order {}", t.order_id));
        assert_eq!((*sec, *side), (t.security, t.side));
        assert_eq!(event_date.get(&(t.order_id, t.time)), Some(&t.date));
        *traded.entry(t.order_id).or_default() += t.quantity;
        *at_time.entry((t.order_id, t.time)).or_default() += t.quantity;
    }
    assert_eq!(at_time, trade_events);
    for (id, m) in &final_matched {
        assert_eq!(traded.get(id).copied().unwrap_or(0), *m, "order {id}");
    }
    let cp_trades = tr.iter().filter(|t| t.deal_source == 47).count();
    assert!(cp_trades > 0 && cp_trades < tr.len());
}

#[test]
fn sweeps_take_centre_point_before_lit() {
    let s = sample();
    let sweeps: BTreeSet<u64> = s
        .events
        .iter()
        .filter(|e| e.eot == 2048)
        .map(|e| e.order_id)
        .collect();
    // The fills a sweep takes on arrival, in sequence order.
    let mut takes: BTreeMap<(u64, i64), Vec<u32>> = BTreeMap::new();
    for t in &s.trades {
        if t.passive_aggressive == 1 && sweeps.contains(&t.order_id) {
            takes
                .entry((t.order_id, t.time))
                .or_default()
                .push(t.deal_source);
        }
    }
    assert!(!takes.is_empty());
    let mut both = 0;
    for (key, sources) in &takes {
        let first_lit = sources
            .iter()
            .position(|&d| is_lit(d))
            .unwrap_or(sources.len());
        assert!(
            sources[first_lit..].iter().all(|&d| is_lit(d)),
            "{key:?}: {sources:?}"
        );
        if first_lit > 0 && first_lit < sources.len() {
            both += 1;
        }
    }
    assert!(both > 0, "some sweep fills in Centre Point and then lit");
}

#[test]
fn type_mix_and_sydney_session_shape() {
    let s = sample();
    let mut types: BTreeMap<u32, usize> = BTreeMap::new();
    let mut orders_by_sec: HashMap<u32, BTreeSet<u64>> = HashMap::new();
    for e in &s.events {
        *types.entry(e.eot).or_default() += 1;
        orders_by_sec
            .entry(e.security)
            .or_default()
            .insert(e.order_id);
    }
    for code in CP_CODES.into_iter().chain([0]) {
        assert!(
            types.get(&code).copied().unwrap_or(0) > 0,
            "{code}: {types:?}"
        );
    }
    let cp_rows: usize = CP_CODES.iter().filter_map(|c| types.get(c)).sum();
    assert!(cp_rows * 5 > s.events.len() && cp_rows * 5 < 4 * s.events.len());

    let mut clock = LocalClock::new(Zone::default());
    let (mut inside, mut pre, mut post) = (0, 0, 0);
    let mut dates = BTreeSet::new();
    let mut offsets = BTreeSet::new();
    for e in &s.events {
        let local = clock.local_ns(e.timestamp).expect("in range");
        assert_eq!(format_day(clock.local_day(e.timestamp)), e.date, "{e:?}");
        offsets.insert((local - e.timestamp) / (3600 * SECOND_NS));
        dates.insert(e.date.clone());
        let tod = clock.time_of_day(e.timestamp);
        // From the overnight reloads at 06:58 to the purge at 18:50.
        assert!(
            (418 * 60 * SECOND_NS..19 * 3600 * SECOND_NS).contains(&tod),
            "{e:?}"
        );
        match tod / (3600 * SECOND_NS) {
            0..10 => pre += 1,
            10..16 => inside += 1,
            _ => post += 1,
        }
    }
    assert!(pre > 0 && post > 0, "{pre} {post}");
    assert!(inside > pre + post, "{inside} {pre} {post}");
    assert_eq!(offsets, BTreeSet::from([10, 11]), "crosses the DST switch");
    let expect: BTreeSet<String> = [
        "2024-09-30",
        "2024-10-01",
        "2024-10-02",
        "2024-10-03",
        "2024-10-04",
        "2024-10-07",
        "2024-10-08",
        "2024-10-09",
        "2024-10-10",
        "2024-10-11",
    ]
    .iter()
    .map(|d| d.to_string())
    .collect();
    assert_eq!(dates, expect);
    assert_eq!(s.report.first_date, "2024-09-30");
    assert_eq!(s.report.last_date, "2024-10-11");
    // Trades only in the opening auction (09:59:45 to 10:00), continuous trading (to 16:00) and
    // the closing auction (16:10 to 16:10:30, plus the time its matches take to write).
    let minute = 60 * SECOND_NS;
    for t in &s.trades {
        let tod = clock.time_of_day(t.time);
        let open = 10 * 60 * minute - 15 * SECOND_NS;
        if is_auction(t.deal_source) {
            let at_open = (open..10 * 60 * minute).contains(&tod);
            let at_close = (970 * minute..971 * minute).contains(&tod);
            assert!(at_open || at_close, "{t:?}");
        } else {
            assert!((open..16 * 60 * minute).contains(&tod), "{t:?}");
        }
    }
    // Zipf popularity: the busiest security has several times the median's orders.
    let mut counts: Vec<usize> = orders_by_sec.values().map(BTreeSet::len).collect();
    counts.sort_unstable();
    assert_eq!(counts.len(), 50);
    assert!(counts[49] > 5 * counts[25], "{counts:?}");
}

#[test]
fn rows_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    for n in [0u64, 1, 2, 3, 25, 1_234] {
        let mut a = args_in(dir.path(), "o.csv", Some("t.csv"), n, 11);
        a.days = 3;
        let report = run(&a).unwrap();
        let ev = events(&fs::read(dir.path().join("o.csv")).unwrap());
        assert_eq!(ev.len() as u64, n);
        assert_eq!(report.orders_rows, n);
    }
}

#[test]
fn size_is_met_within_two_percent() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in [("o.csv", 2_000_000u64), ("o.csv.gz", 700_000)] {
        let mut a = GenerateArgs::new(dir.path().join(name));
        a.size = Some(ByteSize(target));
        a.seed = 4;
        let report = run(&a).unwrap();
        let diff = report.orders_bytes.abs_diff(target);
        assert!(
            diff * 50 < target,
            "{name}: {} vs {target}",
            report.orders_bytes
        );
        if name == "o.csv" {
            assert_eq!(
                fs::metadata(dir.path().join(name)).unwrap().len(),
                report.orders_bytes
            );
        }
    }
}

#[test]
fn dirty_rows_sit_at_their_logged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(&args_in(d, "clean.csv", Some("t.csv"), 20_000, 8)).unwrap();
    let mut a = args_in(d, "dirty.csv", Some("t2.csv"), 20_000, 8);
    a.dirty = 0.01;
    let report = run(&a).unwrap();
    let log_path = d.join("dirty.csv.dirty.csv");
    assert_eq!(report.dirty_log.as_deref(), Some(log_path.as_path()));

    let clean = fs::read(d.join("clean.csv")).unwrap();
    let dirty = fs::read(d.join("dirty.csv")).unwrap();
    assert_eq!(
        fs::read(d.join("t.csv")).unwrap(),
        fs::read(d.join("t2.csv")).unwrap()
    );
    let clean: Vec<&[u8]> = clean.split(|&b| b == b'\n').collect();
    let dirty: Vec<&[u8]> = dirty.split(|&b| b == b'\n').collect();
    assert_eq!(clean.len(), dirty.len());
    let differing: Vec<usize> = (0..clean.len())
        .filter(|&i| clean[i] != dirty[i])
        .map(|i| i + 1)
        .collect();

    let log = fs::read_to_string(&log_path).unwrap();
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("line,kind,column"));
    let entries: Vec<(usize, String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    let logged: Vec<usize> = entries.iter().map(|e| e.0).collect();
    assert_eq!(logged, differing);
    assert_eq!(entries.len() as u64, report.dirty_rows);
    assert!((120..=300).contains(&entries.len()), "{}", entries.len());

    let col = |name: &str| ORDERS_HEADER.split(',').position(|c| c == name).unwrap();
    let mut kinds = BTreeSet::new();
    for (line, kind, column) in &entries {
        let raw = dirty[line - 1];
        let clean_fields: Vec<&str> = std::str::from_utf8(clean[line - 1])
            .unwrap()
            .split(',')
            .collect();
        kinds.insert(kind.clone());
        if kind == "non_utf8_text" {
            assert!(std::str::from_utf8(raw).is_err());
            assert_eq!(column, "timevaliditydecoded");
            continue;
        }
        let text = std::str::from_utf8(raw).unwrap();
        let f: Vec<&str> = text.split(',').collect();
        match kind.as_str() {
            "too_few_fields" => {
                assert!((27..30).contains(&f.len()));
                assert_eq!(column, ORDERS_HEADER.split(',').nth(f.len()).unwrap());
                assert_eq!(f[..], clean_fields[..f.len()]);
            }
            "too_many_fields" => {
                assert!((31..=32).contains(&f.len()));
                assert_eq!(column, "");
            }
            _ => {
                assert_eq!(f.len(), 30);
                let v = f[col(column)];
                match kind.as_str() {
                    "non_numeric_quantity" => {
                        assert_eq!(column, "quantity");
                        assert!(v.parse::<i64>().is_err() && !v.is_empty());
                    }
                    "negative_quantity" => {
                        assert_eq!(column, "quantity");
                        assert!(v.parse::<i64>().unwrap() < 0);
                    }
                    "overflow_order_id" => {
                        assert_eq!(column, "order_id");
                        assert!(v.parse::<u64>().is_err() && v.parse::<u128>().is_ok());
                    }
                    "empty_timestamp" => {
                        assert_eq!(column, "timestamp");
                        assert_eq!(v, "");
                    }
                    "decimal_price" => {
                        assert_eq!(column, "price");
                        assert!(v.contains('.') && v.parse::<i64>().is_err());
                    }
                    other => panic!("unknown kind {other}"),
                }
                // Only the logged column differs from the clean row.
                for (i, (a, b)) in f.iter().zip(&clean_fields).enumerate() {
                    assert!(i == col(column) || a == b, "{line}: column {i}");
                }
            }
        }
    }
    let all: BTreeSet<String> = DirtyKind::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(kinds, all);
}

#[test]
fn invalid_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut a = args_in(d, "o.parquet", None, 10, 1);
    a.dirty = 0.1;
    assert!(matches!(run(&a), Err(GenerateError::DirtyNeedsCsv(_))));
    let a = args_in(d, "o.json", None, 10, 1);
    assert!(matches!(run(&a), Err(GenerateError::UnknownFormat(_))));
    let a = args_in(d, "o.csv", Some("t.txt"), 10, 1);
    assert!(matches!(run(&a), Err(GenerateError::UnknownFormat(_))));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.dirty = 1.5;
    assert!(matches!(run(&a), Err(GenerateError::DirtyRate(_))));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.days = 0;
    assert!(matches!(run(&a), Err(GenerateError::NoDays)));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.securities = 0;
    assert!(matches!(run(&a), Err(GenerateError::Securities(0))));
    let a = args_in(d, "o.csv", Some("o.csv"), 10, 1);
    assert!(matches!(run(&a), Err(GenerateError::SamePath(_))));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.trades = Some(d.join(".").join("o.csv"));
    assert!(matches!(run(&a), Err(GenerateError::SamePath(_))));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.dirty = 0.5;
    a.dirty_log = Some(d.join("o.csv"));
    assert!(matches!(run(&a), Err(GenerateError::SamePath(_))));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.securities = MAX_SECURITIES + 1;
    assert!(matches!(run(&a), Err(GenerateError::Securities(_))));
    let mut a = args_in(d, "o.csv", None, 10, 1);
    a.size = Some(ByteSize(1000));
    assert!(matches!(run(&a), Err(GenerateError::RowsAndSize)));
    assert_eq!(fs::read_dir(d).unwrap().count(), 0, "nothing written");

    let parse = |extra: &[&str]| {
        let mut argv = vec!["gen", "--orders", "o.csv"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    };
    let ok = parse(&[]).unwrap();
    assert_eq!(
        (ok.seed, ok.days, ok.securities, ok.rows, ok.size),
        (1, 10, 50, None, None)
    );
    assert_eq!(ok.start_date.to_string(), "2024-09-30");
    assert_eq!(ok.dirty_log_path(), Path::new("o.csv.dirty.csv"));
    let sized = parse(&["--size", "1GB", "--start-date", "2025-03-31"]).unwrap();
    assert_eq!(sized.size, Some(ByteSize(1_000_000_000)));
    assert_eq!(sized.start_date.to_string(), "2025-03-31");
    assert!(parse(&["--rows", "5", "--size", "1GB"]).is_err());
    assert!(parse(&["--dirty", "2"]).is_err());
    assert!(parse(&["--dirty", "NaN"]).is_err());
    assert!(parse(&["--start-date", "2024-13-01"]).is_err());
    assert!(parse(&["--size", "12 parsecs"]).is_err());
    assert!(
        Cli::try_parse_from(["gen"]).is_err(),
        "--orders is required"
    );
}

#[test]
fn failed_run_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("blocker"), b"a file, not a folder").unwrap();
    let mut a = args_in(d, "o.csv", None, 100, 1);
    a.trades = Some(d.join("blocker").join("t.csv"));
    let err = run(&a).unwrap_err();
    assert!(matches!(err, GenerateError::Output(_)), "{err}");
    assert!(err.to_string().contains("blocker"), "{err}");
    let left: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("blocker")]);
}

#[test]
fn weekend_start_and_other_dates() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args_in(dir.path(), "o.csv", None, 2_000, 2);
    a.start_date = NaiveDate::from_ymd_opt(2025, 4, 5).unwrap(); // a Saturday; AEDT ends on the 6th
    a.days = 2;
    a.securities = 3;
    let report = run(&a).unwrap();
    assert_eq!(
        (report.first_date.as_str(), report.last_date.as_str()),
        ("2025-04-07", "2025-04-08")
    );
    let ev = events(&fs::read(dir.path().join("o.csv")).unwrap());
    let secs: BTreeSet<u32> = ev.iter().map(|e| e.security).collect();
    assert_eq!(secs.len(), 3);
    let mut clock = LocalClock::new(Zone::default());
    for e in &ev {
        assert_eq!(
            clock.local_ns(e.timestamp).expect("in range") - e.timestamp,
            10 * 3600 * SECOND_NS
        );
    }
}

#[test]
fn many_securities_share_a_bounded_book() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args_in(dir.path(), "o.csv", Some("t.csv"), 30_000, 12);
    a.securities = MAX_SECURITIES;
    a.days = 2;
    let report = run(&a).unwrap();
    assert_eq!(report.orders_rows, 30_000);
    assert!(report.matches > 0);
    let ev = events(&fs::read(dir.path().join("o.csv")).unwrap());
    let secs: BTreeSet<u32> = ev.iter().map(|e| e.security).collect();
    assert!(secs.len() > 1_000, "{}", secs.len());
}

#[test]
fn byte_sizes_parse() {
    let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
    assert_eq!(p("1GB"), Ok(1_000_000_000));
    assert_eq!(p("1 gb"), Ok(1_000_000_000));
    assert_eq!(p("1GiB"), Ok(1 << 30));
    assert_eq!(p("500KB"), Ok(500_000));
    assert_eq!(p("3KiB"), Ok(3_072));
    assert_eq!(p("100MB"), Ok(100_000_000));
    assert_eq!(p("2MiB"), Ok(2 << 20));
    assert_eq!(p("1.5GB"), Ok(1_500_000_000));
    assert_eq!(p("0.5KiB"), Ok(512));
    assert_eq!(p("1234"), Ok(1_234));
    assert!(p("").is_err());
    assert!(p("GB").is_err());
    assert!(p("1.2.3MB").is_err());
    assert!(p("-1GB").is_err());
    assert!(p("1XB").is_err());
    assert!(p("99999999999TB").is_err());
}

#[test]
fn lit_trades_print_inside_the_nbbo_and_immediate_sweeps_pay_part_of_the_spread() {
    let s = sample();
    let lit: Vec<&Trade> = s.trades.iter().filter(|t| is_lit(t.deal_source)).collect();
    assert!(lit.len() > 1_000, "{}", lit.len());
    let outside = lit
        .iter()
        .filter(|t| t.price < t.national_bid || t.price > t.national_offer)
        .count();
    assert!(
        outside * 100 < lit.len(),
        "{outside} of {} outside",
        lit.len()
    );
    assert!(outside > 0, "crossed quotes put a few lit trades outside");

    // Scenario A of sweep-analysis.md: known arrival, >= 99% filled, last fill < 1 s after
    // arrival; cost = s * (vwap - arrival mid) / arrival mid, over usable arrival quotes.
    let mut arrival: HashMap<u64, &Event> = HashMap::new();
    for e in &s.events {
        arrival.entry(e.order_id).or_insert(e);
    }
    let mut fills: HashMap<u64, (u64, i128, i64)> = HashMap::new();
    for t in &s.trades {
        let f = fills.entry(t.order_id).or_insert((0, 0, i64::MIN));
        f.0 += t.quantity;
        f.1 += i128::from(t.price) * i128::from(t.quantity);
        f.2 = f.2.max(t.time);
    }
    let mut costs = Vec::new();
    for (id, e) in &arrival {
        let Some(&(qty, notional, last)) = fills.get(id) else {
            continue;
        };
        let usable = e.national_bid > 0 && e.national_bid <= e.national_offer;
        if e.eot & 2048 == 0 || e.reason != 6 || !usable || 100 * qty < 99 * e.quantity {
            continue;
        }
        if last - e.timestamp >= SECOND_NS {
            continue;
        }
        let a = (e.national_bid + e.national_offer) as f64;
        let sign = if e.side == 1 { 1.0 } else { -1.0 };
        let vwap2 = 2.0 * notional as f64 / qty as f64;
        costs.push(10_000.0 * sign * (vwap2 - a) / a);
    }
    assert!(costs.len() > 100, "{}", costs.len());
    let mean = costs.iter().sum::<f64>() / costs.len() as f64;
    assert!(mean > 0.0 && mean < 50.0, "mean A cost {mean} bps");
}

#[test]
fn auctions_match_passive_pairs_at_one_price() {
    let s = sample();
    let auction: Vec<&Trade> = s
        .trades
        .iter()
        .filter(|t| is_auction(t.deal_source))
        .collect();
    assert!(auction.len() > 100, "{}", auction.len());
    let mut clock = LocalClock::new(Zone::default());
    let mut prices: BTreeMap<(String, u32, bool), BTreeSet<i64>> = BTreeMap::new();
    let (mut opens, mut closes) = (0, 0);
    for t in &auction {
        assert_eq!(t.passive_aggressive, 0, "{t:?}");
        assert!(
            t.national_bid <= t.price && t.price <= t.national_offer,
            "{t:?}"
        );
        let open = clock.time_of_day(t.time) < 12 * 3600 * SECOND_NS;
        if open {
            opens += 1;
        } else {
            closes += 1;
        }
        prices
            .entry((t.date.clone(), t.security, open))
            .or_default()
            .insert(t.price);
    }
    assert!(opens > 0 && closes > 0, "{opens} {closes}");
    for (key, p) in &prices {
        assert_eq!(p.len(), 1, "one price per auction: {key:?} {p:?}");
    }
    // Only lit-book orders take part.
    let eot: HashMap<u64, u32> = s.events.iter().map(|e| (e.order_id, e.eot)).collect();
    for t in &auction {
        assert!(matches!(eot[&t.order_id], 0 | 2 | 2048), "{t:?}");
    }
}

#[test]
fn every_deal_source_class_occurs() {
    let s = sample();
    let mut by_source: BTreeMap<u32, usize> = BTreeMap::new();
    for t in &s.trades {
        *by_source.entry(t.deal_source).or_default() += 1;
    }
    for code in [1, 20, 44, 46, 47, 48] {
        assert!(
            by_source.get(&code).copied().unwrap_or(0) > 0,
            "{code}: {by_source:?}"
        );
    }
    let keys: BTreeSet<u32> = by_source.keys().copied().collect();
    assert!(
        keys.is_subset(&BTreeSet::from([1, 20, 44, 45, 46, 47, 48])),
        "{keys:?}"
    );
    // Book trades and preferenced matches are between one participant's own orders.
    let participant: HashMap<u64, u32> = s
        .events
        .iter()
        .map(|e| (e.order_id, e.participant))
        .collect();
    let mut groups: HashMap<i64, Vec<&Trade>> = HashMap::new();
    for t in &s.trades {
        groups.entry(t.match_group).or_default().push(t);
    }
    for g in groups.values() {
        let own = participant[&g[0].order_id] == participant[&g[1].order_id];
        match g[0].deal_source {
            44 | 45 | 46 | 48 => assert!(own, "{g:?}"),
            1 | 20 => assert!(!own, "{g:?}"),
            _ => {}
        }
    }
    // Preferencing outnumbers same-participant matches in time priority, as in the sample.
    assert!(by_source[&46] > by_source[&48], "{by_source:?}");
}

#[test]
fn crossed_and_locked_quotes_are_rare_and_short() {
    let s = sample();
    let locked = s
        .events
        .iter()
        .filter(|e| e.national_bid == e.national_offer)
        .count();
    let crossed = s
        .events
        .iter()
        .filter(|e| e.national_bid > e.national_offer)
        .count();
    assert!(locked > 0 && crossed > 0, "{locked} {crossed}");
    assert!(
        (locked + crossed) * 50 < s.events.len(),
        "{locked} {crossed}"
    );
    // An away quote holds for at most 1.5 s, so per security the order rows with a locked or
    // crossed snapshot come in short runs (two episodes with no other row of the security between
    // them make one longer run, which is rare).
    let mut run_start: HashMap<u32, i64> = HashMap::new();
    let (mut runs, mut long) = (0, 0);
    for e in &s.events {
        if e.national_bid >= e.national_offer {
            if !run_start.contains_key(&e.security) {
                runs += 1;
            }
            let start = *run_start.entry(e.security).or_insert(e.timestamp);
            if e.timestamp - start >= 1_500_000_000 {
                long += 1;
                run_start.insert(e.security, e.timestamp);
            }
        } else {
            run_start.remove(&e.security);
        }
    }
    assert!(
        runs > 10 && long * 20 < runs,
        "{long} of {runs} runs over 1.5 s"
    );
}

#[test]
fn overnight_reloads_leave_some_arrivals_unknown() {
    let s = sample();
    let mut first: HashMap<u64, &Event> = HashMap::new();
    let mut reloads_later = 0;
    for e in &s.events {
        match first.get(&e.order_id) {
            None => {
                first.insert(e.order_id, e);
            }
            Some(f) if e.reason == 30 => {
                // A survivor: reloaded on a later day than it arrived.
                assert!(e.date > f.date, "{e:?}");
                reloads_later += 1;
            }
            Some(_) => {}
        }
    }
    assert!(reloads_later > 0, "multi-day orders survive the night");
    let unknown: BTreeSet<u64> = first
        .values()
        .filter(|e| e.reason == 30)
        .map(|e| e.order_id)
        .collect();
    assert!(unknown.len() > 10, "{}", unknown.len());
    let unknown_sweeps = first
        .values()
        .filter(|e| e.reason == 30 && e.eot == 2048)
        .count();
    assert!(unknown_sweeps > 0);
    // Some of them trade, so their fills cannot be timed from arrival (scenario U).
    assert!(s.trades.iter().any(|t| unknown.contains(&t.order_id)));
}

/// The full log and the `--final-state` / `--centre-point-only` views of the same seed.
fn views(rows: u64, seed: u64) -> (tempfile::TempDir, Vec<(bool, bool, GenerateReport)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = Vec::new();
    for (final_state, cp_only) in [(false, false), (true, false), (false, true), (true, true)] {
        let name = |k: &str| format!("{k}_{}_{}.csv", u8::from(final_state), u8::from(cp_only));
        let mut a = args_in(dir.path(), &name("o"), Some(&name("t")), rows, seed);
        a.final_state = final_state;
        a.centre_point_only = cp_only;
        out.push((final_state, cp_only, run(&a).expect("generate")));
    }
    (dir, out)
}

#[test]
fn final_state_and_centre_point_only_are_views_of_the_full_log() {
    let (dir, reports) = views(30_000, 21);
    let read = |name: &str| fs::read_to_string(dir.path().join(name)).expect("output");
    let log = read("o_0_0.csv");
    let lines: Vec<&str> = log.lines().skip(1).collect();
    let ev = events(log.as_bytes());
    let mut last: HashMap<u64, &str> = HashMap::new();
    for (e, line) in ev.iter().zip(&lines) {
        last.insert(e.order_id, line);
    }
    let trades_text = read("t_0_0.csv");
    for (final_state, cp_only, report) in &reports {
        let tag = format!("{}_{}", u8::from(*final_state), u8::from(*cp_only));
        assert_eq!(
            read(&format!("t_{tag}.csv")),
            trades_text,
            "trades file unchanged"
        );
        assert_eq!(report.orders, reports[0].2.orders, "same simulation");
        let text = read(&format!("o_{tag}.csv"));
        let got: Vec<&str> = text.lines().skip(1).collect();
        let got_ev = events(text.as_bytes());
        assert_eq!(got.len() as u64, report.orders_rows);
        let keep = |e: &Event| !*cp_only || e.eot & CP_BITS != 0;
        if *final_state {
            let ids: BTreeSet<u64> = got_ev.iter().map(|e| e.order_id).collect();
            assert_eq!(ids.len(), got.len(), "one row per order");
            let expect: BTreeSet<&str> = ev
                .iter()
                .filter(|e| keep(e))
                .map(|e| last[&e.order_id])
                .collect();
            assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), expect);
        } else {
            let expect: Vec<&str> = ev
                .iter()
                .zip(&lines)
                .filter(|(e, _)| keep(e))
                .map(|(_, l)| *l)
                .collect();
            assert_eq!(got, expect);
        }
        if *cp_only {
            assert!(got_ev.iter().all(|e| e.eot & CP_BITS != 0));
            assert!(!got.is_empty());
        }
    }
    // Centre Point only leaves the lit side of most matches without an order.
    let cp_ids: BTreeSet<u64> = events(read("o_0_1.csv").as_bytes())
        .iter()
        .map(|e| e.order_id)
        .collect();
    let unmatched = trades(trades_text.as_bytes())
        .iter()
        .filter(|t| !cp_ids.contains(&t.order_id))
        .count();
    assert!(unmatched > 0);
    // Final state: orders end fully filled, cancelled or purged, among others.
    let fs_ev = events(read("o_1_0.csv").as_bytes());
    assert!(fs_ev.iter().any(|e| e.reason == 3 && e.leaves == 0));
    assert!(fs_ev.iter().any(|e| e.reason == 24));
}
