//! The standard job's semantics, end to end through the binary.

use crate::common::{HEADER, Pipeline, Row, Scratch, body, csv, syd, totals};

#[test]
fn trading_hour_boundaries_on_aest_and_aedt_days() {
    let s = Scratch::new();
    let mut rows = Vec::new();
    // 2024-09-03 is AEST (UTC+10); 2024-11-05 is AEDT (UTC+11).
    for (day, base) in [("2024-09-03", 1), ("2024-11-05", 11)] {
        for (i, t) in [
            "09:59:59.999999999",
            "10:00:00",
            "15:59:59.999999999",
            "16:00:00",
        ]
        .iter()
        .enumerate()
        {
            let mut r = Row::new(syd(&format!("{day} {t}")));
            r.id = base + i as u64;
            rows.push(r);
        }
    }
    s.write("o.csv", csv(&rows));
    s.run(&Pipeline::standard("o.csv").sink("rows", "out/kept.csv"))
        .assert_success();
    let kept: Vec<u64> = body(&s.read("out/kept.csv"))
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(kept, [2, 3, 12, 13]);
    assert_eq!(
        body(&s.read("out/by_hour.csv"))
            .iter()
            .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
        ["10,2", "15,2"]
    );
    assert_eq!(
        body(&s.read("out/by_date.csv"))
            .iter()
            .map(|l| l[..12].to_string())
            .collect::<Vec<_>>(),
        ["2024-09-03,2", "2024-11-05,2"]
    );
}

#[test]
fn size_bucket_edges() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    let rows: Vec<Row> = [1000, 1001, 5000, 5001, 10000, 10001, 50000, 50001, 1]
        .iter()
        .map(|&q| Row {
            qty: q,
            ..Row::new(t)
        })
        .collect();
    s.write("o.csv", csv(&rows));
    s.run(&Pipeline::standard("o.csv")).assert_success();
    let got: Vec<String> = body(&s.read("out/by_size.csv"))
        .iter()
        .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        got,
        [
            "<=1K,2,1001",
            "1K-5K,2,6001",
            "5K-10K,2,15001",
            "10K-50K,2,60001",
            ">50K,1,50001"
        ]
    );
}

#[test]
fn exact_tables_for_a_small_input() {
    let s = Scratch::new();
    let rows = [
        Row {
            qty: 100,
            price: 3330,
            part: 7,
            ..Row::new(syd("2024-09-03 10:15:00"))
        },
        Row {
            qty: 300,
            price: 3340,
            part: 8,
            ..Row::new(syd("2024-09-03 10:45:00"))
        },
        Row {
            qty: 200,
            price: 3350,
            part: 7,
            typ: 1,
            ..Row::new(syd("2024-09-03 11:00:00"))
        },
        Row {
            qty: 50,
            price: 3360,
            part: 9,
            sec: 70616,
            typ: 4098,
            ..Row::new(syd("2024-09-04 14:00:00"))
        },
    ];
    s.write("o.csv", csv(&rows));
    s.run(&Pipeline::standard("o.csv")).assert_success();
    let (t0, t1, t3) = (rows[0].ts, rows[1].ts, rows[3].ts);
    // quantity std of 100 and 300 is sqrt(20000); vwap = (3330*100 + 3340*300) / 400 = 3337.5.
    assert_eq!(
        s.read("out/by_security.csv"),
        format!(
            "security_code,orders,quantity_sum,quantity_mean,quantity_std,price_mean,price_min,price_max,vwap,participants,securities,first_ts,last_ts\n\
             70616,1,50,50,,3360,3360,3360,3360,1,1,{t3},{t3}\n\
             110621,2,400,200,141.4213562373095,3335,3330,3340,3337.5,2,1,{t0},{t1}\n"
        )
    );
    assert_eq!(
        body(&s.read("out/summary.csv")),
        [format!(
            "3,450,150,132.28756555322954,3343.3333333333335,3330,3360,3340,3,2,{t0},{t3}"
        )]
    );
    assert_eq!(
        body(&s.read("out/hourly.csv"))
            .iter()
            .map(|l| l[..19].to_string())
            .collect::<Vec<_>>(),
        ["2024-09-03 10:00,2,", "2024-09-04 14:00,1,"]
    );
}

#[test]
fn raw_column_names_through_a_mapping() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    let body_lines =
        "1,{t},110621,5,2048,100,3340\n2,{t},110621,6,64,300,3350\n".replace("{t}", &t.to_string());
    s.write("canon.csv", format!("{HEADER}\n{body_lines}"));
    s.write("raw.csv", format!(" orderid , tradetime ,securitycode,broker,exchangeordertype,quantity,price\n{body_lines}"));
    let map = [
        "order_id = \"orderid\"",
        "timestamp = \"tradetime\"",
        "security_code = \"securitycode\"",
        "participantid = \"broker\"",
    ];
    s.run(&Pipeline::standard("canon.csv")).assert_success();
    let canon = s.read("out/summary.csv");
    s.run(&Pipeline::standard("raw.csv").section("readers.orders.columns", &map))
        .assert_success();
    assert_eq!(s.read("out/summary.csv"), canon);
    assert!(canon.lines().nth(1).unwrap().starts_with("2,400,"));
}

#[test]
fn order_ids_above_2_pow_63_round_trip_into_the_extract() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    let ids = [
        u64::MAX,
        1 << 63,
        9_223_372_036_854_775_809,
        7_904_398_175_939_685_642,
    ];
    let rows: Vec<Row> = ids.iter().map(|&id| Row { id, ..Row::new(t) }).collect();
    s.write("o.csv", csv(&rows));
    let p = Pipeline::standard("o.csv")
        .sink("rows", "out/kept.csv")
        .sink("pq", "out/kept.parquet");
    s.run(&p).assert_success();
    let got: Vec<String> = body(&s.read("out/kept.csv"))
        .iter()
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(got, ids.map(|i| i.to_string()));
    // The Parquet extract read back as the job's input gives the same tables.
    let again = Scratch::new();
    std::fs::copy(s.path("out/kept.parquet"), again.path("kept.parquet")).unwrap();
    again
        .run(&Pipeline::standard("kept.parquet").sink("rows", "out/kept.csv"))
        .assert_success();
    assert_eq!(again.read("out/kept.csv"), s.read("out/kept.csv"));
}

#[test]
fn the_report_reconciles_every_job() {
    let s = Scratch::new();
    let good = Row::new(syd("2024-09-03 11:00:00"));
    let early = Row::new(syd("2024-09-03 08:00:00"));
    let lit = Row { typ: 1, ..good };
    s.write("in/a.csv", csv(&[good, early, lit, good]));
    s.write(
        "in/b.csv",
        format!("{}{}\n", csv(&[good, good]), "1,2,3,4,5,notanumber,7"),
    );
    s.run(&Pipeline::standard("in").rejects("out/rejects.csv"))
        .assert_success();
    let r = s.report();
    assert_eq!(
        totals(
            &r,
            [
                "rows_read",
                "rows_kept",
                "rows_filtered_out",
                "rows_rejected"
            ]
        ),
        [Some(7), Some(4), Some(2), Some(1)]
    );
    for j in r["jobs"].as_array().unwrap() {
        let n = |k: &str| j[k].as_u64().unwrap();
        assert_eq!(
            n("rows_read"),
            n("rows_kept") + n("rows_filtered_out") + n("rows_rejected"),
            "{j}"
        );
        assert_eq!(j["status"], "done");
    }
    assert_eq!(
        body(&s.read("out/summary.csv"))[0].split(',').next(),
        Some("4")
    );
    let rejects = s.read("out/rejects.csv");
    assert_eq!(body(&rejects).len(), 1);
    assert!(
        rejects.contains("in/b.csv,4,6:quantity,\"\"\"notanumber\"\" is not a whole number\""),
        "{rejects}"
    );
}

#[test]
fn a_slow_sink_throttles_the_reader_within_the_edge_bounds() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    let rows: Vec<Row> = (0..20_000)
        .map(|i| Row {
            id: i,
            qty: 1 + i % 7,
            ..Row::new(t + i as i64)
        })
        .collect();
    s.write("o.csv", csv(&rows));
    let p = Pipeline::standard("o.csv")
        .section("runtime", &["block_bytes = 16384", "edge_capacity = 2"])
        .sink("rows", "out/kept.csv")
        .set("sinks.rows", "pause_per_batch_ms = 10");
    s.run(&p).assert_success();
    let r = s.report();
    let edges = r["edges"].as_array().unwrap();
    assert!(edges.len() >= 5);
    for e in edges {
        assert!(
            e["max_depth"].as_u64().unwrap() <= 2,
            "edge over its bound: {e}"
        );
    }
    let to_sink = edges.iter().find(|e| e["to"] == "rows").unwrap();
    let batches = to_sink["messages"].as_u64().unwrap();
    assert!(batches >= 40, "{batches} batches");
    // The sink saw every batch and every row, in file order.
    assert_eq!(body(&s.read("out/kept.csv")).len(), 20_000);
    let ids: Vec<u64> = body(&s.read("out/kept.csv"))
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Throttled: the run cannot be faster than the sink's pauses.
    assert!(r["duration_sec"].as_f64().unwrap() >= batches as f64 * 0.010);
}
