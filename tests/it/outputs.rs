//! Output formats and input compressions through the binary.

use std::io::Write;

use crate::common::{Pipeline, Row, Scratch, body, csv, syd};

fn rows() -> Vec<Row> {
    let mut v = Vec::new();
    for (i, (day, sec)) in [
        ("2024-10-04", 110621),
        ("2024-10-07", 110621),
        ("2024-10-07", 70616),
    ]
    .iter()
    .enumerate()
    {
        for k in 0..3 {
            v.push(Row {
                id: (i * 10 + k) as u64,
                sec: *sec,
                qty: 100 * (k as u64 + 1),
                ..Row::new(syd(&format!("{day} 1{k}:30:00")))
            });
        }
    }
    v
}

#[test]
fn tables_as_parquet_and_json_and_a_partitioned_extract() {
    let s = Scratch::new();
    s.write("o.csv", csv(&rows()));
    let p = Pipeline::standard("o.csv")
        .set("sinks.tables", r#"formats = ["csv", "parquet", "json"]"#)
        .sink("parts", "out/parts")
        .section(
            "sinks.parts",
            &[
                r#"partition_by = ["security_code", "date"]"#,
                r#"format = "csv""#,
            ],
        );
    s.run(&p).assert_success();
    for t in ["by_security", "summary"] {
        assert!(s.exists(&format!("out/{t}.parquet")), "{t}.parquet");
    }
    let json: serde_json::Value = serde_json::from_str(&s.read("out/summary.json")).unwrap();
    assert_eq!(json["summary"]["orders"], 9);
    assert_eq!(json["summary"]["quantity_sum"], 1800);
    assert_eq!(json["tables"]["by_security"]["rows"], 2);
    let mut files: Vec<String> = Vec::new();
    for sec in std::fs::read_dir(s.path("out/parts")).unwrap() {
        let sec = sec.unwrap();
        for date in std::fs::read_dir(sec.path()).unwrap() {
            let date = date.unwrap();
            for f in std::fs::read_dir(date.path()).unwrap() {
                let f = f.unwrap();
                let lines = std::fs::read_to_string(f.path()).unwrap().lines().count() - 1;
                files.push(format!(
                    "{}/{}/{}:{lines}",
                    sec.file_name().to_string_lossy(),
                    date.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "security_code=110621/date=2024-10-04/part-00000.csv:3",
            "security_code=110621/date=2024-10-07/part-00000.csv:3",
            "security_code=70616/date=2024-10-07/part-00000.csv:3",
        ]
    );
}

#[test]
fn plain_gzip_two_member_gzip_and_zstd_inputs_agree() {
    let s = Scratch::new();
    let text = csv(&rows());
    s.write("in.csv", &text);
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    s.write("in.csv.gz", gz(text.as_bytes()));
    let cut = text.match_indices('\n').nth(4).unwrap().0 + 1;
    let mut two = gz(&text.as_bytes()[..cut]);
    two.extend(gz(&text.as_bytes()[cut..]));
    s.write("two.csv.gz", two);
    s.write("in.csv.zst", zstd::encode_all(text.as_bytes(), 1).unwrap());
    let mut results = Vec::new();
    for f in ["in.csv", "in.csv.gz", "two.csv.gz", "in.csv.zst"] {
        s.run(&Pipeline::standard(f)).case(f).assert_success();
        results.push(s.read("out/by_security.csv") + &s.read("out/summary.csv"));
    }
    assert!(results.iter().all(|r| r == &results[0]));
    assert_eq!(
        body(&s.read("out/summary.csv"))[0].split(',').next(),
        Some("9")
    );
}

#[test]
fn corrupt_and_truncated_gzip_fail_the_job_naming_the_file() {
    let s = Scratch::new();
    let text = csv(&rows());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    let good = e.finish().unwrap();
    s.write("trunc.csv.gz", &good[..good.len() / 2]);
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    bad[mid + 1] ^= 0xff;
    s.write("bad.csv.gz", bad);
    for f in ["trunc.csv.gz", "bad.csv.gz"] {
        s.run(&Pipeline::standard(f))
            .case(f)
            .assert_code(1)
            .assert_stderr_contains(&format!("{f}: read failed at or after line"));
        assert!(!s.exists("out/summary.csv"));
    }
    // A zero-byte .gz is an empty input, like a zero-byte .csv.
    s.write("empty.csv.gz", "");
    s.run(&Pipeline::standard("empty.csv.gz")).assert_success();
    assert_eq!(body(&s.read("out/summary.csv")), ["0,0,,,,,,,0,0,,"]);
}

#[test]
fn legacy_seed_hours_keep_the_end_hour_at_fixed_utc_plus_10() {
    let s = Scratch::new();
    // On an AEDT day (UTC+11) 16:30 Sydney is 15:30 at the seed's fixed +10, so the seed keeps it;
    // 10:30 Sydney is 09:30 at +10, so the seed drops it.
    let r = |t: &str, id| Row {
        id,
        ..Row::new(syd(&format!("2024-11-05 {t}")))
    };
    s.write(
        "o.csv",
        csv(&[
            r("10:30:00", 1),
            r("16:30:00", 2),
            r("17:59:59", 3),
            r("18:00:00", 4),
        ]),
    );
    let p = Pipeline::standard("o.csv")
        .set(
            "filters.cp",
            r#"trading_hours = { start = "10:00", end = "16:00", legacy_seed = true }"#,
        )
        .sink("rows", "out/kept.csv");
    s.run(&p).assert_success();
    let kept = s.read("out/kept.csv");
    let ids: Vec<&str> = kept
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, ["2", "3"]);
}
