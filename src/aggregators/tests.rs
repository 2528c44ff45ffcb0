use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;

use super::acc::{quantile_column, ratio, unsigned_ratio};
use super::grouping::ParseGroupingError;
use super::*;
use crate::batch::ColumnError;
use crate::config::AggregatorSpec;
use crate::config::Choice;
use crate::table::{Cell, Table};
use crate::time::Zone;
use arrow_array::{ArrayRef, Int64Array, UInt32Array, UInt64Array};
use arrow_schema::{Field, Schema};
use ethnum::{I256, U256};

/// (timestamp, security, participant, quantity, price)
type Row = (i64, u32, u32, u64, i64);

/// A batch with the aggregator's columns in a shuffled order plus one it must ignore.
fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("price", DataType::Int64, false),
        Field::new("exchangeordertype", DataType::UInt32, false),
        Field::new("participantid", DataType::UInt32, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("quantity", DataType::UInt64, false),
        Field::new("security_code", DataType::UInt32, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|_| 64))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.1))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

fn spec_with(group_by: &[Grouping], quantiles: &[f64]) -> Arc<AggregatorSpec> {
    Arc::new(AggregatorSpec {
        group_by: group_by.to_vec(),
        zone: Zone::default(),
        quantiles: quantiles.to_vec(),
    })
}

fn standard() -> Arc<AggregatorSpec> {
    Arc::new(AggregatorSpec::standard())
}

fn aggregate(spec: &Arc<AggregatorSpec>, rows: &[Row]) -> AggState {
    let mut s = AggState::new(spec.clone());
    s.update(&batch(rows)).unwrap();
    s
}

fn csv_of(tables: &[Table], name: &str) -> String {
    let t = tables.iter().find(|t| t.name == name).unwrap();
    String::from_utf8(t.to_csv().unwrap()).unwrap()
}

fn all_csv(state: &AggState) -> Vec<(&'static str, Vec<u8>)> {
    state
        .finish()
        .iter()
        .map(|t| (t.name, t.to_csv().unwrap()))
        .collect()
}

const M: &str = "orders,quantity_sum,quantity_mean,quantity_std,price_mean,price_min,price_max,\
                 vwap,participants,securities,first_ts,last_ts";

/// Two Sydney trading days either side of the 2024-10-06 switch to daylight saving: Friday
/// 2024-10-04 (UTC+10) and Monday 2024-10-07 (UTC+11). Timestamps from Python's zoneinfo;
/// rows 5 and 6 are out of time order on purpose.
const ROWS: [Row; 12] = [
    (1728000300000000000, 100, 1, 500, 1000),   // 10-04 10:05:00
    (1728001800000000000, 200, 2, 1500, 2000),  // 10-04 10:30:00
    (1728003599999999999, 100, 1, 1000, 1010),  // 10-04 10:59:59.999999999
    (1728003600000000000, 100, 3, 20000, 995),  // 10-04 11:00:00
    (1728021599000000000, 200, 2, 0, 2005),     // 10-04 15:59:59
    (1728015000000000000, 200, 1, 7000, 1990),  // 10-04 14:10:00
    (1728255600000000000, 100, 2, 60000, 1020), // 10-07 10:00:00
    (1728256500000000000, 200, 3, 3000, 2010),  // 10-07 10:15:00
    (1728261900000000000, 100, 1, 12000, 1000), // 10-07 11:45:00
    (1728262200000000000, 100, 1, 800, 1005),   // 10-07 11:50:00
    (1728271200000000000, 200, 2, 5000, 2020),  // 10-07 14:20:00
    (1728275400000000000, 100, 3, 100, 1015),   // 10-07 15:30:00
];

#[test]
fn standard_tables_match_hand_computed_csv() {
    // Expected values from an independent Python computation: exact Fractions rounded once,
    // stdev checked against statistics.stdev.
    let tables = aggregate(&standard(), &ROWS).finish();
    let names: Vec<_> = tables.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "by_security",
            "by_date",
            "by_participant",
            "by_hour",
            "by_size",
            "hourly",
            "daily",
            "summary"
        ]
    );
    assert_eq!(
        csv_of(&tables, "by_security"),
        format!(
            "security_code,{M}\n\
             100,7,94400,13485.714285714286,21881.684012847258,1006.4285714285714,995,1020,1011.8167372881356,3,1,1728000300000000000,1728275400000000000\n\
             200,5,16500,3300,2774.887385102322,2005,1990,2020,2003.6363636363637,3,1,1728001800000000000,1728271200000000000\n"
        )
    );
    let by_date = format!(
        "date,{M}\n\
         2024-10-04,6,30000,5000,7778.174593052023,1500,995,2005,1278,3,2,1728000300000000000,1728021599000000000\n\
         2024-10-07,6,80900,13483.333333333334,23185.54866003103,1345,1000,2020,1115.3955500618047,3,2,1728255600000000000,1728275400000000000\n"
    );
    assert_eq!(csv_of(&tables, "by_date"), by_date);
    assert_eq!(csv_of(&tables, "daily"), by_date);
    assert_eq!(
        csv_of(&tables, "by_participant"),
        format!(
            "participantid,{M}\n\
             1,5,21300,4260,5102.744359655891,1201,1000,1990,1326.0093896713615,1,2,1728000300000000000,1728262200000000000\n\
             2,4,66500,16625,28992.45591528941,1761.25,1020,2020,1117.2932330827068,1,2,1728001800000000000,1728271200000000000\n\
             3,3,23100,7700,10750.348831549607,1340,995,2010,1126.904761904762,1,2,1728003600000000000,1728275400000000000\n"
        )
    );
    assert_eq!(
        csv_of(&tables, "by_hour"),
        format!(
            "hour,{M}\n\
             10,5,66000,13200,26178.712726182697,1408,1000,2010,1086.969696969697,3,2,1728000300000000000,1728256500000000000\n\
             11,3,32800,10933.333333333334,9644.342037346732,1000,995,1005,997.0731707317074,2,1,1728003600000000000,1728262200000000000\n\
             14,2,12000,6000,1414.213562373095,2005,1990,2020,2002.5,2,1,1728015000000000000,1728271200000000000\n\
             15,2,100,50,70.71067811865476,1510,1015,2005,1015,2,2,1728021599000000000,1728275400000000000\n"
        )
    );
    assert_eq!(
        csv_of(&tables, "by_size"),
        format!(
            "size_bucket,{M}\n\
             <=1K,5,2400,480,432.43496620879307,1207,1000,2005,1006.4583333333334,3,2,1728000300000000000,1728275400000000000\n\
             1K-5K,3,9500,3166.6666666666665,1755.9422921421233,2010,2000,2020,2013.6842105263158,2,1,1728001800000000000,1728271200000000000\n\
             5K-10K,1,7000,7000,,1990,1990,1990,1990,1,1,1728015000000000000,1728015000000000000\n\
             10K-50K,2,32000,16000,5656.85424949238,997.5,995,1000,996.875,2,1,1728003600000000000,1728261900000000000\n\
             >50K,1,60000,60000,,1020,1020,1020,1020,1,1,1728255600000000000,1728255600000000000\n"
        )
    );
    // 2024-10-04 15:00 holds only a zero-quantity order: no std (one order), no vwap (Σq = 0).
    assert_eq!(
        csv_of(&tables, "hourly"),
        format!(
            "hour_start,{M}\n\
             2024-10-04 10:00,3,3000,1000,500,1336.6666666666667,1000,2000,1503.3333333333333,2,2,1728000300000000000,1728003599999999999\n\
             2024-10-04 11:00,1,20000,20000,,995,995,995,995,1,1,1728003600000000000,1728003600000000000\n\
             2024-10-04 14:00,1,7000,7000,,1990,1990,1990,1990,1,1,1728015000000000000,1728015000000000000\n\
             2024-10-04 15:00,1,0,0,,2005,2005,2005,,1,1,1728021599000000000,1728021599000000000\n\
             2024-10-07 10:00,2,63000,31500,40305.08652763321,1515,1020,2010,1067.142857142857,2,2,1728255600000000000,1728256500000000000\n\
             2024-10-07 11:00,2,12800,6400,7919.595949289333,1002.5,1000,1005,1000.3125,1,1,1728261900000000000,1728262200000000000\n\
             2024-10-07 14:00,1,5000,5000,,2020,2020,2020,2020,1,1,1728271200000000000,1728271200000000000\n\
             2024-10-07 15:00,1,100,100,,1015,1015,1015,1015,1,1,1728275400000000000,1728275400000000000\n"
        )
    );
    assert_eq!(
        csv_of(&tables, "summary"),
        format!(
            "{M}\n\
             12,110900,9241.666666666666,17072.703270709564,1422.5,995,2020,1159.3823264201983,3,2,1728000300000000000,1728275400000000000\n"
        )
    );
}

#[test]
fn size_bucket_edges_follow_duckdbs_case() {
    let quantities = [0, 1000, 1001, 5000, 5001, 10000, 10001, 50000, 50001];
    let rows: Vec<Row> = quantities
        .iter()
        .enumerate()
        .map(|(i, &q)| (1728000300000000000 + i as i64, 100, 1, q, 1000))
        .collect();
    let spec = spec_with(&[Grouping::Size], &[]);
    let tables = aggregate(&spec, &rows).finish();
    let by_size = &tables[0];
    assert_eq!(by_size.name, "by_size");
    let counts: Vec<(String, Cell, Cell)> = by_size
        .rows
        .iter()
        .map(|r| (r[0].to_string(), r[1].clone(), r[2].clone()))
        .collect();
    let expect =
        |label: &str, n: i128, sum: i128| (label.to_string(), Cell::Int(n), Cell::Int(sum));
    assert_eq!(
        counts,
        [
            expect("<=1K", 2, 1000),
            expect("1K-5K", 2, 6001),
            expect("5K-10K", 2, 15001),
            expect("10K-50K", 2, 60001),
            expect(">50K", 1, 50001),
        ]
    );
}

#[test]
fn merging_any_split_in_any_order_gives_identical_bytes() {
    for quantiles in [&[][..], &[0.5, 0.9][..]] {
        let spec = spec_with(&Grouping::all(), quantiles);
        let whole = all_csv(&aggregate(&spec, &ROWS));
        let full = batch(&ROWS);
        let splits: [&[usize]; 4] = [
            &[6],
            &[1, 7],
            &[3, 4, 5, 11],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        ];
        for cuts in splits {
            // RecordBatch::slice exercises arrays with a non-zero offset.
            let bounds: Vec<usize> = [0]
                .iter()
                .chain(cuts)
                .chain([&ROWS.len()])
                .copied()
                .collect();
            let parts: Vec<AggState> = bounds
                .windows(2)
                .map(|w| {
                    let mut s = AggState::new(spec.clone());
                    s.update(&full.slice(w[0], w[1] - w[0])).unwrap();
                    s
                })
                .collect();

            let mut forward = AggState::new(spec.clone());
            for p in parts.iter().cloned() {
                forward.merge(p);
            }
            let mut backward = AggState::new(spec.clone());
            for p in parts.iter().rev().cloned() {
                backward.merge(p);
            }
            // Pairwise, as a tree of workers would combine them.
            let mut level = parts.clone();
            while level.len() > 1 {
                let mut next = Vec::new();
                let mut it = level.into_iter();
                while let Some(mut a) = it.next() {
                    if let Some(b) = it.next() {
                        a.merge(b);
                    }
                    next.push(a);
                }
                level = next;
            }
            let tree = level.pop().unwrap();
            // One state fed the parts as successive batches.
            let mut streamed = AggState::new(spec.clone());
            for w in bounds.windows(2) {
                streamed.update(&full.slice(w[0], w[1] - w[0])).unwrap();
            }

            for merged in [forward, backward, tree, streamed] {
                assert_eq!(merged.rows(), 12);
                assert_eq!(all_csv(&merged), whole, "split at {cuts:?}");
            }
        }
    }
}

#[test]
fn empty_state_gives_header_only_tables_and_zero_summary() {
    let mut state = AggState::new(standard());
    state.update(&batch(&[])).unwrap();
    assert_eq!(state.rows(), 0);
    let tables = state.finish();
    assert_eq!(tables.len(), 8);
    for t in &tables[..7] {
        let header = format!("{},{M}\n", t.columns[0]);
        assert_eq!(
            String::from_utf8(t.to_csv().unwrap()).unwrap(),
            header,
            "{}",
            t.name
        );
    }
    assert_eq!(
        csv_of(&tables, "summary"),
        format!("{M}\n0,0,,,,,,,0,0,,\n")
    );

    let state = AggState::new(spec_with(&[], &[0.5]));
    let tables = state.finish();
    assert_eq!(tables.len(), 1);
    assert_eq!(
        csv_of(&tables, "summary"),
        format!("{M},quantity_p50\n0,0,,,,,,,0,0,,,\n")
    );
}

#[test]
fn quantiles_only_when_configured_and_close_to_true_values() {
    let plain = aggregate(&standard(), &ROWS).finish();
    for t in &plain {
        assert!(
            t.columns.last().is_some_and(|c| c == "last_ts"),
            "{}",
            t.name
        );
    }

    let qs = [0.5, 0.9, 0.99, 0.999];
    let spec = spec_with(&[Grouping::Security, Grouping::Hourly], &qs);
    // Quantities 1..=100000 in shuffled order over two securities; each security gets every
    // other quantity, so its true quantiles are the overall ones within 1.
    let rows: Vec<Row> = (0..100_000u64)
        .map(|i| {
            let q = (i * 7_919) % 100_000 + 1;
            (
                1728000300000000000 + i as i64,
                100 + (q % 2) as u32,
                1,
                q,
                1000,
            )
        })
        .collect();
    let tables = aggregate(&spec, &rows).finish();
    for t in &tables {
        let tail: Vec<&str> = t.columns[t.columns.len() - 5..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "last_ts",
                "quantity_p50",
                "quantity_p90",
                "quantity_p99",
                "quantity_p99.9"
            ]
        );
    }
    let truth = [50_000.0, 90_000.0, 99_000.0, 99_900.0];
    let summary = tables.last().unwrap();
    let security = &tables[0];
    assert_eq!(security.rows.len(), 2);
    for row in [&summary.rows[0], &security.rows[0], &security.rows[1]] {
        let values = &row[row.len() - 4..];
        for (v, t) in values.iter().zip(truth) {
            let Cell::Int(v) = v else { panic!("{v:?}") };
            // Three significant figures: within 0.1%, plus 1 for the odd/even split.
            assert!(((*v as f64) - t).abs() <= t * 1e-3 + 1.0, "{v} vs {t}");
        }
    }
    assert_eq!(quantile_column(0.999), "quantity_p99.9");
    assert_eq!(quantile_column(0.5), "quantity_p50");
    assert_eq!(quantile_column(0.25), "quantity_p25");
}

#[test]
fn wrong_missing_or_null_column_is_reported() {
    let mut state = AggState::new(standard());
    let full = batch(&ROWS[..2]);

    let without_price = full.project(&[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(
        state.update(&without_price),
        Err(AggError::Column(ColumnError::Missing { name: "price" }))
    );

    let mut columns = full.columns().to_vec();
    let mut fields: Vec<Field> = full
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    columns[4] = Arc::new(Int64Array::from(vec![500, 1500]));
    fields[4] = Field::new("quantity", DataType::Int64, false);
    let signed =
        RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), columns.clone()).unwrap();
    assert_eq!(
        state.update(&signed),
        Err(AggError::Column(ColumnError::WrongType {
            name: "quantity",
            expected: DataType::UInt64,
            found: DataType::Int64
        }))
    );

    columns[4] = Arc::new(UInt64Array::from(vec![Some(500), None]));
    fields[4] = Field::new("quantity", DataType::UInt64, true);
    let nulls = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let err = state.update(&nulls).unwrap_err();
    assert_eq!(
        err,
        AggError::Column(ColumnError::Nulls {
            name: "quantity",
            count: 1
        })
    );
    assert_eq!(
        err.to_string(),
        "the aggregator needs every value of column `quantity`, but 1 are null"
    );

    assert_eq!(state.rows(), 0);
    assert_eq!(
        csv_of(&state.finish(), "summary"),
        format!("{M}\n0,0,,,,,,,0,0,,\n")
    );
}

#[test]
fn only_requested_tables_in_standard_order() {
    let spec = spec_with(&[Grouping::Daily, Grouping::Security, Grouping::Daily], &[]);
    let names: Vec<_> = aggregate(&spec, &ROWS)
        .finish()
        .iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["by_security", "daily", "summary"]);

    assert_eq!(" Hourly ".parse::<Grouping>(), Ok(Grouping::Hourly));
    for g in Grouping::all() {
        assert_eq!(g.name().parse::<Grouping>(), Ok(g));
    }
    assert_eq!(
        "weekly".parse::<Grouping>(),
        Err(ParseGroupingError("weekly".to_string()))
    );
}

#[test]
fn repeated_hour_when_daylight_saving_ends_is_one_slot() {
    // 2025-04-06 03:00 AEDT the clocks go back to 02:00 AEST: 02:30 happens twice.
    let first = 1_743_867_000 * 1_000_000_000; // 02:30 AEDT (UTC+11)
    let second = 1_743_870_600 * 1_000_000_000; // 02:30 AEST (UTC+10)
    let spec = spec_with(&[Grouping::Hour, Grouping::Hourly], &[]);
    let tables = aggregate(&spec, &[(first, 1, 1, 10, 5), (second, 1, 2, 30, 7)]).finish();
    assert_eq!(
        csv_of(&tables, "hourly"),
        format!(
            "hour_start,{M}\n2025-04-06 02:00,2,40,20,14.142135623730951,6,5,7,6.5,2,1,{first},{second}\n"
        )
    );
    assert_eq!(tables[0].rows.len(), 1);
    assert_eq!(tables[0].rows[0][0], Cell::Int(2));
}

#[test]
fn extreme_values_are_summed_exactly() {
    let q = u64::MAX;
    let rows = [
        (1, 1, 1, q, i64::MAX),
        (2, 1, 1, q, i64::MAX),
        (3, 1, 1, q, i64::MAX),
        (4, 1, 1, q, i64::MIN),
    ];
    let spec = spec_with(&[], &[]);
    let tables = aggregate(&spec, &rows).finish();
    // Σq = 4·(2^64 − 1); Σp·q overflows i128; the price and vwap mean is (2^64 − 3) / 4.
    assert_eq!(
        csv_of(&tables, "summary"),
        format!(
            "{M}\n4,73786976294838206460,18446744073709552000,0,4611686018427388000,\
             -9223372036854775808,9223372036854775807,4611686018427388000,1,1,1,4\n"
        )
    );
}

#[test]
fn ratio_is_correctly_rounded() {
    let cases: [(u128, u128); 5] = [(1, 3), (2, 3), (10, 4), (u128::MAX, 7), (1 << 100, 3)];
    for (n, d) in cases {
        // f64 division of two exactly representable values rounds once, correctly.
        let expect = if n < (1 << 53) {
            n as f64 / d as f64
        } else {
            f64::NAN
        };
        let got = unsigned_ratio(U256::from(n), d);
        if expect.is_nan() {
            assert!((got - n as f64 / d as f64).abs() <= got * 2e-16, "{n}/{d}");
        } else {
            assert_eq!(got, expect, "{n}/{d}");
        }
    }
    // 2^100 / 3 rounds to nearest: the exact quotient is 422550200076076467165567735125.33..
    assert_eq!(
        unsigned_ratio(U256::from(1u128 << 100), 3),
        4.2255020007607644e29
    );
    // A quotient just above the midpoint between two doubles must round up, which only the
    // remainder tells: (2^54 + 2 + 1/d) lies between 2^54 and 2^54 + 4.
    let d = (1u128 << 70) + 1;
    let above = U256::from(((1u128 << 54) + 2) * d + 1);
    assert_eq!(unsigned_ratio(above, d), 18014398509481988.0);
    assert_eq!(unsigned_ratio(above - 2, d), 18014398509481984.0);
    assert_eq!(ratio(I256::from(-7), 2), -3.5);
}

#[test]
fn state_is_send_and_static() {
    fn check<T: Send + 'static>() {}
    check::<AggState>();
}

/// A checkpoint must finish into the same tables and keep merging exactly, with quantile
/// histograms and every table on, after a trip through the daemon's binary encoding.
#[test]
fn a_restored_snapshot_finishes_and_merges_like_the_original() {
    let spec = spec_with(&Grouping::all(), &[0.5, 0.99]);
    let (a, b) = ROWS.split_at(5);
    let first = aggregate(&spec, a);
    let bytes = postcard::to_stdvec(&first.snapshot()).unwrap();
    let snap: AggSnapshot = postcard::from_bytes(&bytes).unwrap();
    let mut restored = AggState::restore(spec.clone(), &snap).unwrap();
    assert_eq!(all_csv(&restored), all_csv(&first));
    assert_eq!(restored.snapshot(), first.snapshot());
    restored.merge(aggregate(&spec, b));
    assert_eq!(all_csv(&restored), all_csv(&aggregate(&spec, &ROWS)));
    assert_eq!(restored.rows(), 12);

    let mut broken = snap.clone();
    broken.sizes.pop();
    let err = AggState::restore(spec, &broken).unwrap_err();
    assert!(err.to_string().contains("size buckets"), "{err}");
}
