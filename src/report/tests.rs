use super::load::Finished;
use super::model::*;
use super::page::{int, ns};
use super::*;
use crate::table::{Cell, Table};

fn table(name: &'static str, columns: &[&str], rows: Vec<Vec<Cell>>) -> Table {
    Table::new(name, columns.iter().map(|c| c.to_string()).collect(), rows)
}

fn i(v: i128) -> Cell {
    Cell::Int(v)
}

fn s(v: &str) -> Cell {
    Cell::Str(v.to_string())
}

fn key_rows(rows: &[(&str, u64, u128)]) -> Vec<KeyRow> {
    rows.iter()
        .map(|&(k, o, q)| KeyRow {
            key: k.to_string(),
            orders: o,
            quantity: q,
        })
        .collect()
}

#[test]
fn the_hour_histogram_spans_the_first_to_the_last_hour_with_empty_hours_as_zero() {
    let by_hour = table(
        "by_hour",
        &["hour", "orders", "quantity_sum", "vwap"],
        vec![
            vec![i(10), i(3), i(300), Cell::Float(1.5)],
            vec![i(12), i(1), i(50), Cell::Null],
            vec![i(15), i(7), i(1 << 70), Cell::Null],
        ],
    );
    let s = Standard::read("stats", &Finished(&[by_hour])).unwrap();
    assert_eq!(
        s.hours.unwrap(),
        key_rows(&[
            ("10", 3, 300),
            ("11", 0, 0),
            ("12", 1, 50),
            ("13", 0, 0),
            ("14", 0, 0),
            ("15", 7, 1 << 70),
        ])
    );
    // Tables the output does not have stay unknown, not empty.
    assert_eq!((s.daily, s.participants, s.summary), (None, None, None));
}

#[test]
fn the_top_list_keeps_the_most_orders_ties_in_key_order_and_sums_the_rest() {
    // 25 participants: orders 1..=25 but participants 100 and 101 tie with 20 orders.
    let mut rows: Vec<Vec<Cell>> = (1..=25).map(|p| vec![i(p), i(p), i(p * 10)]).collect();
    rows.push(vec![i(100), i(20), i(7)]);
    rows.push(vec![i(101), i(6), i(1)]);
    let t = table(
        "by_participant",
        &["participantid", "orders", "quantity_sum"],
        rows,
    );
    let s = Standard::read("stats", &Finished(&[t])).unwrap();
    let top = s.participants.unwrap();
    let keys: Vec<&str> = top.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "25", "24", "23", "22", "21", "20", "100", "19", "18", "17", "16", "15", "14", "13",
            "12", "11", "10", "9", "8", "7"
        ]
    );
    assert_eq!(top.keys, 27);
    // Left out: participants 1..=6 and 101.
    assert_eq!(top.rest_orders, 21 + 6);
    assert_eq!(top.rest_quantity, 210 + 1);
}

#[test]
fn time_to_first_fill_bins_are_1_2_5_per_decade_with_zero_and_negative_apart() {
    let edges = first_fill_edges();
    assert_eq!(edges[..7], [1, 2, 5, 10, 20, 50, 100]);
    assert_eq!(edges.last(), Some(&50_000_000_000_000));
    let mut f = FirstFill {
        missing: 0,
        negative: 0,
        zero: 0,
        counts: vec![0; edges.len()],
        edges,
    };
    for v in [
        None,
        Some(-5),
        Some(0),
        Some(0),
        Some(1),
        Some(2),
        Some(4),
        Some(5),
        Some(999),
        Some(1_000),
        Some(1_999_999_999),
        Some(i64::MAX),
    ] {
        f.add(v);
    }
    assert_eq!((f.missing, f.negative, f.zero, f.positive()), (1, 1, 2, 8));
    let shown = f.shown();
    assert_eq!(shown.first(), Some(&(1, Some(2), 1)));
    assert_eq!(shown.last(), Some(&(50_000_000_000_000, None, 1)));
    let nonzero: Vec<(i64, u64)> = shown
        .iter()
        .filter(|b| b.2 > 0)
        .map(|b| (b.0, b.2))
        .collect();
    assert_eq!(
        nonzero,
        [
            (1, 1),
            (2, 2),
            (5, 1),
            (500, 1),
            (1_000, 1),
            (1_000_000_000, 1),
            (50_000_000_000_000, 1)
        ]
    );
}

#[test]
fn cost_bins_are_symmetric_about_an_exact_zero() {
    let cases = [
        (-1000.0, "< -100"),
        (-100.5, "< -100"),
        (-100.0, "-100 to -50"),
        (-50.0, "-50 to -20"),
        (-5.0, "-5 to 0"),
        (-0.01, "-5 to 0"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.01, "0 to 5"),
        (5.0, "0 to 5"),
        (5.01, "5 to 10"),
        (50.0, "20 to 50"),
        (100.0, "50 to 100"),
        (100.01, "> 100"),
    ];
    for (v, bin) in cases {
        assert_eq!(COST_BINS[cost_bin(v)], bin, "{v}");
    }
}

#[test]
fn order_size_buckets_hold_their_upper_edge() {
    let buckets: Vec<&str> = [-1, 0, 1_000, 1_001, 5_000, 5_001, 10_000, 50_000, 50_001]
        .iter()
        .map(|&q| SIZE_BUCKETS[size_bucket(q)])
        .collect();
    assert_eq!(
        buckets,
        [
            "<=1K", "<=1K", "<=1K", "1K-5K", "1K-5K", "5K-10K", "5K-10K", "10K-50K", ">50K"
        ]
    );
}

/// A sweep: order and filled quantity, scenario, time to first fill, cost against arrival.
type Sweep<'a> = (i128, i128, &'a str, Option<i128>, Option<f64>);

fn sweeps_table(rows: &[Sweep<'_>]) -> Table {
    table(
        "sweeps",
        &[
            "order_id",
            "order_qty",
            "filled_qty",
            "scenario",
            "time_to_first_fill_ns",
            "cost_vs_arrival_bps",
        ],
        rows.iter()
            .enumerate()
            .map(|(n, &(o, f, sc, t, c))| {
                vec![
                    i(n as i128),
                    i(o),
                    i(f),
                    s(sc),
                    t.map_or(Cell::Null, i),
                    c.map_or(Cell::Null, Cell::Float),
                ]
            })
            .collect(),
    )
}

#[test]
fn the_sweeps_table_gives_fill_ratios_by_size_and_costs_by_scenario() {
    let t = sweeps_table(&[
        (1_000, 1_000, "A", Some(0), Some(0.0)),
        (800, 400, "C", Some(2_000), Some(-7.5)),
        (3_000, 3_000, "B", Some(5_000_000_000), Some(12.0)),
        (60_000, 0, "C", None, None),
        (2_000, 2_500, "B", Some(30), Some(-101.0)),
    ]);
    let s = Sweeps::read("fills", &Finished(&[t])).unwrap();
    assert_eq!(s.count(), 5);
    let p = s.per_sweep.unwrap();
    let sizes: Vec<(u64, i128, i128)> = p
        .sizes
        .iter()
        .map(|b| (b.sweeps, b.order_qty, b.filled_qty))
        .collect();
    assert_eq!(
        sizes,
        [
            (2, 1_800, 1_400),
            (2, 5_000, 5_500),
            (0, 0, 0),
            (0, 0, 0),
            (1, 60_000, 0)
        ]
    );
    assert_eq!(p.sizes[0].ratio(), Some(1_400.0 / 1_800.0));
    assert_eq!(p.sizes[1].ratio(), Some(1.1));
    assert_eq!(p.sizes[2].ratio(), None);
    let cost: Vec<(&str, u64, Option<f64>)> =
        p.cost.iter().map(|c| (c.scenario, c.n, c.mean())).collect();
    assert_eq!(
        cost,
        [
            ("A", 1, Some(0.0)),
            ("B", 2, Some(-44.5)),
            ("C", 1, Some(-7.5)),
            ("U", 0, None)
        ]
    );
    assert_eq!(p.cost[1].counts[0], 1);
    assert_eq!(p.cost[1].counts[9], 1);
    assert_eq!((p.first_fill.missing, p.first_fill.zero), (1, 1));
    assert_eq!(p.first_fill.positive(), 3);
}

fn groups_table(days: &[(i128, &str, &str, i128)]) -> Table {
    table(
        "groups",
        &[
            "security_code",
            "date",
            "fill_group",
            "sweeps",
            "cp_qty",
            "lit_qty",
            "auction_qty",
            "other_qty",
        ],
        days.iter()
            .map(|&(sec, d, g, n)| vec![i(sec), s(d), s(g), i(n), i(n * 10), i(n), i(0), i(1)])
            .collect(),
    )
}

#[test]
fn few_security_days_get_a_bar_each() {
    let t = groups_table(&[
        (7, "2024-10-01", "G1", 3),
        (7, "2024-10-01", "G3", 1),
        (7, "2024-10-02", "G2", 2),
        (9, "2024-10-01", "G1", 5),
    ]);
    let s = Sweeps::read("fills", &Finished(&[t])).unwrap();
    let g = s.groups.clone().unwrap();
    assert!(!g.per_security);
    assert_eq!((g.security_days, g.securities), (3, 2));
    assert_eq!(
        g.bars,
        [
            ("7 2024-10-01".to_string(), vec![3, 0, 1]),
            ("7 2024-10-02".to_string(), vec![0, 2, 0]),
            ("9 2024-10-01".to_string(), vec![5, 0, 0]),
        ]
    );
    assert_eq!(
        s.venues,
        Some(Venues {
            centre_point: 110,
            lit: 11,
            auction: 0,
            other: 4
        })
    );
    // Without a sweeps table or accounting, the count is the groups' sweeps.
    assert_eq!(s.count(), 11);
}

#[test]
fn many_security_days_are_summed_per_security_the_top_ones_shown() {
    // 20 securities over 2 days each: 40 security-days. Security k has k sweeps a day in G1,
    // and security 3 one more in G2 on its second day.
    let mut days = Vec::new();
    for sec in 1..=20 {
        for d in ["2024-10-01", "2024-10-02"] {
            days.push((sec, d, "G1", sec));
            if sec == 3 && d == "2024-10-02" {
                days.push((sec, d, "G2", 1));
            }
        }
    }
    let t = groups_table(&days);
    let g = Sweeps::read("fills", &Finished(&[t]))
        .unwrap()
        .groups
        .unwrap();
    assert!(g.per_security);
    assert_eq!((g.security_days, g.securities), (40, 20));
    assert_eq!(g.bars.len(), TOP_SECURITIES);
    assert_eq!(g.bars[0], ("20".to_string(), vec![40, 0, 0]));
    assert_eq!(g.bars[14], ("6".to_string(), vec![12, 0, 0]));
    // Securities 1 to 5: 2 + 4 + 6 + 8 + 10 in G1, and security 3's one in G2.
    assert_eq!(g.rest, Some((5, vec![30, 1, 0])));
}

#[test]
fn a_bad_value_names_its_table_row_and_column() {
    let t = table(
        "by_hour",
        &["hour", "orders", "quantity_sum"],
        vec![vec![i(10), i(3), i(1)], vec![i(11), s("many"), i(2)]],
    );
    let e = Standard::read("stats", &Finished(&[t])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "table `by_hour`, row 2, column `orders`: `many` is not an integer"
    );
    let t = table("by_hour", &["hour", "orders"], Vec::new());
    let e = Standard::read("stats", &Finished(&[t])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "table `by_hour` has no column `quantity_sum`"
    );
}

#[test]
fn numbers_read_as_people_write_them() {
    assert_eq!(int(0), "0");
    assert_eq!(int(999), "999");
    assert_eq!(int(1_234_567), "1,234,567");
    assert_eq!(int(-1_000), "-1,000");
    assert_eq!(ns(500.0), "500 ns");
    assert_eq!(ns(2_000.0), "2 µs");
    assert_eq!(ns(1_500_000.0), "1.5 ms");
    assert_eq!(ns(5e13), "50,000 s");
}

/// The standard tables and the sweep tables of a tiny run, as a sink receives them.
fn tiny_tables() -> (Vec<Table>, Vec<Table>) {
    let standard = vec![
        table(
            "by_hour",
            &["hour", "orders", "quantity_sum"],
            vec![vec![i(10), i(2), i(300)], vec![i(11), i(1), i(5)]],
        ),
        table(
            "daily",
            &["date", "orders", "quantity_sum"],
            vec![vec![s("2024-10-01"), i(3), i(305)]],
        ),
        table(
            "summary",
            &[
                "orders",
                "quantity_sum",
                "vwap",
                "participants",
                "securities",
                "first_ts",
                "last_ts",
            ],
            vec![vec![
                i(3),
                i(305),
                Cell::Float(12.5),
                i(2),
                i(1),
                i(1),
                i(2),
            ]],
        ),
    ];
    let sweeps = vec![
        sweeps_table(&[(1_000, 1_000, "A", Some(10), Some(1.0))]),
        groups_table(&[(7, "2024-10-01", "G1", 1)]),
    ];
    (standard, sweeps)
}

#[test]
fn csv_and_parquet_folders_and_a_runs_tables_make_the_same_page() {
    let (standard, sweeps) = tiny_tables();
    let mut sections = Vec::new();
    for (stage, tables) in [("out", &standard), ("out", &sweeps)] {
        sections.push(Section::from_tables(stage, tables).unwrap().unwrap());
    }
    for ext in ["csv", "parquet"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        for t in standard.iter().chain(&sweeps) {
            let mut f = std::fs::File::create(dir.join(format!("{}.{ext}", t.name))).unwrap();
            match ext {
                "csv" => t.write_csv(&mut f).unwrap(),
                _ => t.write_parquet(&mut f).unwrap(),
            }
        }
        let r = Report::from_dir(&dir, None).unwrap();
        assert_eq!(r.sections, sections, "{ext}");
        assert_eq!((r.title.as_str(), r.run.as_ref()), ("out", None));
    }
}

#[test]
fn a_folder_without_tables_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.csv"), "a\n1\n").unwrap();
    assert!(matches!(
        Report::from_dir(dir.path(), None),
        Err(ReportError::NothingToReport(_))
    ));
}

#[test]
fn the_page_has_a_chart_per_figure_and_no_script() {
    let (standard, sweeps) = tiny_tables();
    let r = Report {
        title: "tiny <run>".into(),
        origin: "a test".into(),
        sections: vec![
            Section::from_tables("stats", &standard).unwrap().unwrap(),
            Section::from_tables("fills", &sweeps).unwrap().unwrap(),
        ],
        run: None,
    };
    let html = r.render().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>sweep report: tiny &lt;run&gt;</title>"));
    assert_eq!(
        html.matches("data-chart=").count(),
        html.matches("<svg").count()
    );
    // by_hour, daily; groups, venues, first fill, cost, fill ratio.
    assert_eq!(html.matches("<svg").count(), 7);
    assert!(!html.contains("<script"));
    assert!(html.contains(r#"<td data-col="orders" data-value="2">2</td>"#));
    assert!(html.contains("No run report"));
}

#[test]
fn empty_tables_say_so_instead_of_drawing() {
    let standard = [table(
        "summary",
        &[
            "orders",
            "quantity_sum",
            "vwap",
            "participants",
            "securities",
            "first_ts",
            "last_ts",
        ],
        vec![vec![
            i(0),
            i(0),
            Cell::Null,
            i(0),
            i(0),
            Cell::Null,
            Cell::Null,
        ]],
    )];
    let sweeps = [sweeps_table(&[]), groups_table(&[])];
    let r = Report {
        title: "empty".into(),
        origin: "a test".into(),
        sections: vec![
            Section::from_tables("stats", &standard).unwrap().unwrap(),
            Section::from_tables("fills", &sweeps).unwrap().unwrap(),
        ],
        run: None,
    };
    let html = r.render().unwrap();
    assert!(html.contains("No orders were kept in this input"));
    assert!(html.contains("No sweeps in this input"));
    assert_eq!(html.matches("<svg").count(), 0);
}
