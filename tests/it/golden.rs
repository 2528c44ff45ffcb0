//! The default pipeline on the shipped sample against its checked-in expected tables
//! (tests/data/golden, produced by sweep and checked equal to the DuckDB oracle when made).

use std::io::Read;

use crate::common::{Scratch, TABLES, data, totals};

#[test]
fn default_pipeline_reproduces_the_golden_tables() {
    let s = Scratch::new();
    let pipeline = format!("{}/pipelines/centrepoint.toml", env!("CARGO_MANIFEST_DIR"));
    let sample = data("orders_sample.csv.gz");
    s.sweep(&[
        "run",
        &pipeline,
        "--set",
        &format!("readers.orders.path={}", sample.display()),
        "--set",
        "monitor.progress=off",
    ])
    .assert_success();
    for t in TABLES {
        let expected = std::fs::read_to_string(data(&format!("golden/{t}.csv"))).unwrap();
        assert_eq!(
            s.read(&format!("out/centrepoint/{t}.csv")),
            expected,
            "{t}.csv differs"
        );
    }
    let mut extract = String::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(s.path("out/centrepoint/orders.csv.gz")).unwrap(),
    )
    .read_to_string(&mut extract)
    .unwrap();
    assert_eq!(extract.lines().count(), 9993 + 1);
    assert!(extract.starts_with("order_id,exchange,timestamp,security_code,price,side,"));
    let report: serde_json::Value =
        serde_json::from_str(&s.read("out/centrepoint/execution_metrics.json")).unwrap();
    assert_eq!(
        totals(
            &report,
            [
                "rows_read",
                "rows_kept",
                "rows_filtered_out",
                "rows_rejected"
            ]
        ),
        [Some(30000), Some(9993), Some(20007), Some(0)]
    );
}
