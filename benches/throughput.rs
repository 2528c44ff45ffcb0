//! Throughput of the standard job's hot path, stage by stage, then end to end (issue 4).
//!
//! Every input is generated here, deterministically, with the 30-column header and value
//! distributions of `shared/bench/gen_orders.py`: ten trading days across the 2024-10-06
//! daylight-saving switch, time-ordered, 200 securities with Zipf popularity, ~40% Centre Point
//! order types, ~60% of rows inside 10:00–16:00 Sydney time.
//!
//! Run briefly on a shared machine:
//! `cargo bench --bench throughput -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use chrono::TimeZone as _;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sweep::aggregators::AggState;
use sweep::config::AggregatorSpec;
use sweep::config::{self, ColumnNeed, FilterSpec, Pipeline, StageKind};
use sweep::filters::Predicate;
use sweep::readers::csv::{ParsePlan, parse_block};
use sweep::runtime;

/// The header of `gen_orders.py` (the real DRR orders file's column order).
const HEADER: &str = "order_id,exchange,timestamp,security_code,price,side,changereason,\
orderstatus,quantity,leavesquantity,ordertype,exchangeordertype,national_bid,national_offer,bid,\
offer,participantid,preferenceonly,midtick,singlefillminimumquantity,minimumquantity,sequence,\
crossingkey,totalmatchedquantity,shortsellquantity,triggercondition,timevaliditydecoded,row_num,\
timevalidity,date";

/// Rows in the filter and aggregation batches.
const BATCH_ROWS: usize = 64 << 10;
/// Bytes of the parse block.
const BLOCK_BYTES: usize = 1 << 20;
/// Bytes of the end-to-end input.
const E2E_BYTES: usize = 20_000_000;

/// SplitMix64: a small, fast, seeded generator; good enough for benchmark data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// One of `items`, drawn with the given cumulative probabilities.
    fn pick<T: Copy>(&mut self, items: &[(f64, T)]) -> T {
        let u = self.unit();
        items
            .iter()
            .find(|(c, _)| u < *c)
            .map_or(items[items.len() - 1].1, |(_, v)| *v)
    }
}

/// `rows` data rows of an orders file, with its header, spread evenly over the ten days.
fn orders_csv(rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let days: Vec<chrono::NaiveDate> = (0..16)
        .map(|i| {
            chrono::NaiveDate::from_ymd_opt(2024, 9, 30).expect("date") + chrono::Duration::days(i)
        })
        .filter(|d| chrono::Datelike::weekday(d).number_from_monday() <= 5)
        .take(10)
        .collect();
    let midnight_ns: Vec<i64> = days
        .iter()
        .map(|d| {
            let local = d.and_hms_opt(0, 0, 0).expect("midnight");
            chrono_tz::Australia::Sydney
                .from_local_datetime(&local)
                .single()
                .expect("unambiguous midnight")
                .timestamp()
                * 1_000_000_000
        })
        .collect();
    // Zipf(0.9) popularity over 200 securities, as a cumulative table.
    let weights: Vec<f64> = (1..=200).map(|k| 1.0 / f64::from(k).powf(0.9)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let sec_cdf: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect();
    let base: Vec<i64> = (0..200).map(|_| rng.range(50, 20_000)).collect();
    let eot = [
        (0.60, 1),
        (0.77, 2048),
        (0.92, 4096),
        (0.96, 64),
        (0.98, 4098),
        (1.00, 256),
    ];
    let reason = [
        (0.63, 1),
        (0.89, 3),
        (0.99, 9),
        (0.995, 6),
        (0.999, 24),
        (1.0, 5),
    ];
    let status = [(0.99, 2), (0.996, 1), (1.0, 4)];
    let validity = [
        (0.80, "Rest of Day"),
        (0.97, "Bouncing"),
        (0.98, "Current Max"),
        (0.99, "Purged Rest of Day"),
        (1.00, "Days"),
    ];
    let tv = [(0.80, 256), (0.98, 0), (1.0, 1536)];

    let mut out = Vec::with_capacity(rows * 170 + HEADER.len() + 1);
    out.extend_from_slice(HEADER.as_bytes());
    out.push(b'\n');
    let mut order_id: u64 = 7_904_398_175_939_000_000;
    let mut row = 0usize;
    for (d, (day, midnight)) in days.iter().zip(&midnight_ns).enumerate() {
        let n = rows * (d + 1) / days.len() - rows * d / days.len();
        // Local wall time: 70% 10:00–16:00, 20% 07:00–10:00, 10% 16:00–17:30; time-ordered.
        let mut tod: Vec<f64> = (0..n)
            .map(|_| {
                let r = rng.unit();
                let (lo, hi) = if r < 0.7 {
                    (10.0, 16.0)
                } else if r < 0.9 {
                    (7.0, 10.0)
                } else {
                    (16.0, 17.5)
                };
                (lo + (hi - lo) * rng.unit()) * 3600.0
            })
            .collect();
        tod.sort_by(f64::total_cmp);
        let date = day.format("%Y-%m-%d").to_string();
        for t in tod {
            let ts = midnight + (t * 1e9) as i64;
            let u = rng.unit();
            let s = sec_cdf.iter().position(|&c| u < c).unwrap_or(199);
            let price = (base[s] + rng.range(-40, 41)).max(1);
            let qty = ((7.5 + 1.6 * rng.normal()).exp() as i64).max(1);
            let leaves = if rng.unit() < 0.7 {
                (qty as f64 * rng.unit()) as i64
            } else {
                0
            };
            let participant = if rng.unit() < 0.05 {
                69
            } else {
                rng.range(1, 200)
            };
            let nb = price - rng.range(0, 3) * 5;
            let no = nb + 5 + rng.range(0, 2) * 5;
            let min_qty = if rng.unit() < 0.93 {
                0
            } else {
                rng.range(1, 500)
            };
            let short = if rng.unit() < 0.98 {
                0
            } else {
                rng.range(1, 200)
            };
            writeln!(
                out,
                "{},3,{ts},{},{price},{},{},{},{qty},{leaves},1,{},{nb},{no},{nb},{no},{participant},{},{},{},{min_qty},{},{},{},{short},0,{},{row},{},{date}",
                order_id + rng.below(7),
                110_000 + s,
                rng.range(1, 3),
                rng.pick(&reason),
                rng.pick(&status),
                rng.pick(&eot),
                if rng.unit() < 0.5 { 2 } else { 0 },
                rng.range(1, 5),
                rng.range(0, 3),
                1_000_000 + row,
                rng.range(0, 1000),
                qty - leaves,
                rng.pick(&validity),
                rng.pick(&tv),
            )
            .expect("write to a Vec");
            order_id += 7;
            row += 1;
        }
    }
    out
}

/// The header line (without its terminator) and the data rows of an orders file.
fn split_header(csv: &[u8]) -> (&[u8], &[u8]) {
    let end = memchr::memchr(b'\n', csv).expect("header line");
    (&csv[..end], &csv[end + 1..])
}

/// The bench pipeline, resolved with its input and output paths overridden.
fn bench_pipeline(input: &Path, output: &Path) -> Pipeline {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/bench.toml");
    let text = std::fs::read_to_string(&file).expect("read pipelines/bench.toml");
    let overrides = [
        format!("readers.orders.path={}", input.display()),
        format!("sinks.tables.path={}", output.display()),
        "monitor.progress=off".to_string(),
    ];
    config::load(&file.display().to_string(), &text, &overrides)
        .unwrap_or_else(|e| panic!("pipelines/bench.toml: {e}"))
}

/// The standard job's reader columns and filter, as the bench pipeline resolves them.
fn standard_job() -> (ColumnNeed, FilterSpec) {
    let p = bench_pipeline(Path::new("in.csv"), Path::new("out"));
    let mut need = None;
    let mut filter = None;
    for s in &p.stages {
        match &s.kind {
            StageKind::Reader(r) => need = Some(r.need.clone()),
            StageKind::Filter(f) => filter = Some(f.clone()),
            _ => {}
        }
    }
    (
        need.expect("bench pipeline has a reader"),
        filter.expect("bench pipeline has a filter"),
    )
}

fn plan(header: &[u8], need: &ColumnNeed) -> ParsePlan {
    ParsePlan::new("bench.csv".into(), header, b',', &BTreeMap::new(), need)
        .expect("plan from the generated header")
}

/// A parsed batch of `rows` rows with the standard job's columns.
fn standard_batch(rows: usize, seed: u64, need: &ColumnNeed) -> RecordBatch {
    let csv = orders_csv(rows, seed);
    let (header, body) = split_header(&csv);
    let parsed = parse_block(&plan(header, need), body, 2, true).expect("parse");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    assert_eq!(parsed.batch.num_rows(), rows);
    parsed.batch
}

fn csv_parse(c: &mut Criterion) {
    let (need, _) = standard_job();
    // Enough rows for a bit over 1 MiB, then cut back to the last whole row within it.
    let csv = orders_csv(BLOCK_BYTES / 140, 11);
    let (header, body) = split_header(&csv);
    let cut = memchr::memrchr(b'\n', &body[..BLOCK_BYTES.min(body.len())]).expect("a row") + 1;
    let block = &body[..cut];
    let rows = bytecount::count(block, b'\n');
    let standard = plan(header, &need);
    let all = plan(
        header,
        &ColumnNeed::All {
            required: Vec::new(),
        },
    );
    let mut g = c.benchmark_group("csv_parse_block");
    g.throughput(Throughput::Bytes(block.len() as u64));
    for (name, p) in [("standard_6_columns", &standard), ("all_30_columns", &all)] {
        let once = parse_block(p, block, 2, true).expect("parse");
        assert_eq!((once.batch.num_rows(), once.errors.len()), (rows, 0));
        g.bench_function(name, |b| {
            b.iter(|| parse_block(p, black_box(block), 2, true).expect("parse"))
        });
    }
    g.finish();
}

fn filter(c: &mut Criterion) {
    let (need, spec) = standard_job();
    let batch = standard_batch(BATCH_ROWS, 21, &need);
    let mut predicate = Predicate::new(&spec);
    let kept = predicate.apply(&batch).expect("filter").num_rows();
    eprintln!(
        "filter: {kept} of {BATCH_ROWS} rows kept ({:.1}%)",
        100.0 * kept as f64 / BATCH_ROWS as f64
    );
    let mut g = c.benchmark_group("filter_standard_64k");
    g.throughput(Throughput::Elements(BATCH_ROWS as u64));
    g.bench_function("evaluate", |b| {
        b.iter(|| predicate.evaluate(black_box(&batch)).expect("evaluate"))
    });
    g.bench_function("apply", |b| {
        b.iter(|| predicate.apply(black_box(&batch)).expect("apply"))
    });
    g.finish();
}

fn aggregate(c: &mut Criterion) {
    let (need, spec) = standard_job();
    let agg = Arc::new(AggregatorSpec::standard());
    let mut predicate = Predicate::new(&spec);
    let kept_a = predicate
        .apply(&standard_batch(BATCH_ROWS, 31, &need))
        .expect("filter");
    let kept_b = predicate
        .apply(&standard_batch(BATCH_ROWS, 32, &need))
        .expect("filter");
    let state = |kept: &RecordBatch| {
        let mut s = AggState::new(agg.clone());
        s.update(kept).expect("update");
        s
    };
    let (a, b) = (state(&kept_a), state(&kept_b));
    let mut merged = a.clone();
    merged.merge(b.clone());

    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(kept_a.num_rows() as u64));
    // Steady state: every group and pair already seen, as in the middle of a job.
    let mut warm = a.clone();
    g.bench_function("update_warm_state", |bch| {
        bch.iter(|| warm.update(black_box(&kept_a)).expect("update"))
    });
    // Start of a job: every group and pair is new.
    g.bench_function("update_fresh_state", |bch| {
        bch.iter_batched(
            || AggState::new(agg.clone()),
            |mut s| {
                s.update(black_box(&kept_a)).expect("update");
                s
            },
            BatchSize::SmallInput,
        )
    });
    // Elements: the rows the merged-in partial state stands for.
    g.throughput(Throughput::Elements(b.rows()));
    g.bench_function("merge_two_partials", |bch| {
        bch.iter_batched(
            || (a.clone(), b.clone()),
            |(mut into, from)| {
                into.merge(from);
                into
            },
            BatchSize::SmallInput,
        )
    });
    // Elements: the rows folded into the finished state.
    g.throughput(Throughput::Elements(merged.rows()));
    g.bench_function("finish", |bch| bch.iter(|| black_box(&merged).finish()));
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("orders.csv");
    let rows = E2E_BYTES / 158;
    let csv = orders_csv(rows, 41);
    std::fs::write(&input, &csv).expect("write input");
    let pipeline = bench_pipeline(&input, &dir.path().join("out"));
    let first = runtime::run(&pipeline).expect("build");
    assert!(first.ok, "{:?}", first.errors);
    eprintln!(
        "end_to_end: {} bytes, {rows} rows, {} kept, workers {}",
        csv.len(),
        first.report.totals.rows_kept,
        runtime::workers(&pipeline)
    );
    let mut g = c.benchmark_group("end_to_end_standard_job");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(csv.len() as u64));
    g.bench_function("run_20mb_csv", |b| {
        b.iter(|| {
            let out = runtime::run(&pipeline).expect("build");
            assert!(out.ok, "{:?}", out.errors);
            out
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = csv_parse, filter, aggregate, end_to_end
}
criterion_main!(benches);
