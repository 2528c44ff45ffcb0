//! The sweep fill analysis (`[sweeps.NAME]`, docs/sweep-analysis.md): the hand-made pair that
//! reaches every rule against the DuckDB oracle's tables, order independence, and the inputs
//! the spec rejects.

use std::io::Write as _;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::common::{Scratch, data};

/// A sweep analysis of `orders` and `trades` (paths or folders) into `out/`.
fn job(orders: &str, trades: &str) -> String {
    format!(
        r#"name = "sweeps"
[runtime]
workers = 2
[readers.orders]
path = "{orders}"
[readers.trades]
path = "{trades}"
[sweeps.fills]
orders = "orders"
trades = "trades"
[sinks.tables]
inputs = ["fills"]
path = "out"
[monitor]
progress = "off"
report = "out/execution_metrics.json"
"#
    )
}

const TABLES: [&str; 4] = ["sweeps", "groups", "scenarios", "security_days"];

/// Compares two tables as the spec does: same header and rows, integers and text exactly,
/// floats within 1e-9 (relative, or absolute near 0), an empty field only against an empty one.
fn assert_same_table(name: &str, expected: &str, actual: &str) {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    assert_eq!(e.first(), a.first(), "{name}: header");
    assert_eq!(e.len(), a.len(), "{name}: rows\n{actual}");
    for (i, (le, la)) in e.iter().zip(&a).enumerate().skip(1) {
        let (fe, fa): (Vec<&str>, Vec<&str>) = (le.split(',').collect(), la.split(',').collect());
        assert_eq!(fe.len(), fa.len(), "{name} line {}: {la}", i + 1);
        for (x, y) in fe.iter().zip(&fa) {
            let same = x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    // Integers must match as text; only values written as floats get a tolerance.
                    (Ok(p), Ok(q)) if x.contains(['.', 'e']) || y.contains(['.', 'e']) => {
                        (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0)
                    }
                    _ => false,
                };
            assert!(
                same,
                "{name} line {}: expected {x}, got {y}\n{le}\n{la}",
                i + 1
            );
        }
    }
}

/// The shipped pipeline on the shipped sample pair against the DuckDB oracle's tables for it
/// (`tests/data/golden_sweeps`, from `sweep_duckdb.py`).
#[test]
fn the_shipped_pipeline_equals_the_oracle_on_the_sample() {
    let s = Scratch::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("pipelines/sweeps.toml"))
        .unwrap()
        .replace("tests/data/", &format!("{}/tests/data/", repo.display()));
    s.write("p.toml", text);
    s.sweep(&["run", "p.toml"]).assert_success();
    for name in TABLES {
        let expected = std::fs::read_to_string(data(&format!("golden_sweeps/{name}.csv"))).unwrap();
        assert_same_table(name, &expected, &s.read(&format!("out/sweeps/{name}.csv")));
    }
    // Every row is accounted for: Σ order_events is every order row, Σ trade_rows every trade.
    let days = s.read("out/sweeps/security_days.csv");
    let sum = |col: usize| -> u64 {
        days.lines()
            .skip(1)
            .map(|l| l.split(',').nth(col).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!((sum(2), sum(10)), (30000, 5770));
}

#[test]
fn the_hand_made_cases_equal_the_oracle() {
    let s = Scratch::new();
    let dir = data("sweep_cases");
    let (o, t) = (dir.join("orders.csv"), dir.join("trades.csv"));
    s.write(
        "p.toml",
        job(&o.display().to_string(), &t.display().to_string()),
    );
    s.sweep(&["run", "p.toml"]).assert_success();
    for name in TABLES {
        let expected = std::fs::read_to_string(dir.join(format!("expected/{name}.csv"))).unwrap();
        assert_same_table(name, &expected, &s.read(&format!("out/{name}.csv")));
    }
    // A few of the rules, spelled out on the rows that reach them.
    let sweeps = s.read("out/sweeps.csv");
    let row = |id: &str| -> Vec<String> {
        sweeps
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in\n{sweeps}"))
            .split(',')
            .map(String::from)
            .collect()
    };
    // Arrival and final events by (timestamp, sequence), not file position: order 4's insert
    // (sequence 50) comes second in the file.
    let r4 = row("9000000000000000004");
    assert_eq!(
        (r4[5].as_str(), r4[6].as_str()),
        ("1725494400000000200", "6")
    );
    // 2050 (short-sell sweep) is a sweep; 4098 (block | short sell) and 64 are not.
    assert!(sweeps.contains("\n9000000000000000004,"));
    assert!(!sweeps.contains("\n9000000000000000011,"));
    assert!(!sweeps.contains("\n9000000000000000009,"));
    // A crossed arrival quote leaves the arrival metrics empty; an invalid side the costs.
    let r3 = row("9000000000000000003");
    assert_eq!(&r3[26..28], ["", ""]);
    let r6 = row("9000000000000000006");
    assert_eq!(&r6[31..33], ["", ""]);
    // Orders whose first event is not an insert are `U` when full: arrival unknown.
    let r5 = row("9000000000000000005");
    assert_eq!(r5[25], "U");
    // Trades of orders not in the file are counted, not dropped: 2 rows, one per switch day.
    let days = s.read("out/security_days.csv");
    let unmatched: u64 = days
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(unmatched, 2, "{days}");
    let report = s.report();
    assert_eq!(report["totals"]["rows_read"], 21 + 13);
}

/// Generates a small orders and trades pair with `sweep generate` into `name.o.csv` and
/// `name.t.csv`.
fn generate(s: &Scratch, rows: u64, seed: u64) {
    s.sweep(&[
        "generate",
        "--orders",
        "gen.o.csv",
        "--trades",
        "gen.t.csv",
        "--rows",
        &rows.to_string(),
        "--seed",
        &seed.to_string(),
    ])
    .assert_success();
}

fn tables(s: &Scratch) -> Vec<String> {
    TABLES
        .iter()
        .map(|t| s.read(&format!("out/{t}.csv")))
        .collect()
}

/// Writes `lines` (header first) shuffled by `seed` into `parts` files under `dir`.
fn shuffle_into(s: &Scratch, text: &str, dir: &str, parts: usize, seed: u64) {
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut body: Vec<&str> = lines.collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    body.shuffle(&mut rng);
    let mut files = vec![String::from(header) + "\n"; parts];
    for l in body {
        let k = rng.random_range(0..parts);
        files[k].push_str(l);
        files[k].push('\n');
    }
    for (k, f) in files.iter().enumerate() {
        s.write(&format!("{dir}/part{k}.csv"), f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Shuffling the rows and splitting them into files, orders and trades alike, never changes
    /// a byte of the output.
    #[test]
    fn shuffling_rows_and_splitting_files_never_changes_the_output(
        seed in 0u64..1000,
        order_parts in 1usize..4,
        trade_parts in 1usize..4,
    ) {
        let s = Scratch::new();
        generate(&s, 4000, 7);
        s.write("p.toml", job("gen.o.csv", "gen.t.csv"));
        s.sweep(&["run", "p.toml"]).assert_success();
        let whole = tables(&s);
        prop_assert!(whole[0].lines().count() > 20, "some sweeps: {}", whole[0]);
        shuffle_into(&s, &s.read("gen.o.csv"), "o", order_parts, seed);
        shuffle_into(&s, &s.read("gen.t.csv"), "t", trade_parts, seed + 1);
        std::fs::remove_dir_all(s.path("out")).unwrap();
        s.write("p.toml", job("o", "t"));
        s.sweep(&["run", "p.toml"]).assert_success();
        prop_assert_eq!(tables(&s), whole);
    }
}

const ORDERS_HEADER: &str = "order_id,timestamp,sequence,security_code,side,price,quantity,\
leavesquantity,totalmatchedquantity,exchangeordertype,changereason,national_bid,national_offer,\
participantid";
const TRADES_HEADER: &str = "orderid,tradetime,securitycode,dealsource,tradeprice,quantity,\
passiveaggressive,nationalbidpricesnapshot,nationalofferpricesnapshot";

#[test]
fn two_events_at_one_position_fail_naming_the_order_and_both_lines() {
    let s = Scratch::new();
    s.write(
        "o.csv",
        format!(
            "{ORDERS_HEADER}\n\
             7,1725494400000000000,1,110621,1,3350,300,300,0,2048,6,3330,3340,7\n\
             8,1725494400000000000,2,110621,1,3350,300,300,0,64,6,3330,3340,7\n\
             7,1725494400000000500,3,110621,1,3350,300,100,200,2048,3,3330,3340,7\n\
             7,1725494400000000500,3,110621,1,3350,300,0,300,2048,3,3330,3340,7\n"
        ),
    );
    s.write("t.csv", format!("{TRADES_HEADER}\n"));
    s.write("p.toml", job("o.csv", "t.csv"));
    s.sweep(&["run", "p.toml"])
        .assert_code(1)
        .assert_stderr_contains(
            "order 7 has two events at timestamp 1725494400000000500, sequence 3",
        )
        .assert_stderr_contains("(at o.csv:4 and o.csv:5)");
    assert!(!s.exists("out/sweeps.csv"), "nothing that looks complete");
}

#[test]
fn a_value_that_is_not_an_integer_fails_with_file_line_and_column() {
    let s = Scratch::new();
    s.write(
        "o.csv",
        format!(
            "{ORDERS_HEADER}\n7,1725494400000000000,1,110621,1,3350,300,300,0,2048,6,3330,3340,7\n"
        ),
    );
    s.write(
        "t.csv",
        format!(
            "{TRADES_HEADER}\n7,1725494400000000000,110621,47,3335,200,1,3330,3340\n\
             7,1725494400000000000,110621,47,3335,33.5,1,3330,3340\n"
        ),
    );
    s.write("p.toml", job("o.csv", "t.csv"));
    s.sweep(&["run", "p.toml"])
        .assert_code(1)
        .assert_stderr_contains("t.csv:3:6: ");
    assert!(!s.exists("out/sweeps.csv"));
}

#[test]
fn empty_and_header_only_inputs_give_header_only_tables() {
    for (orders, trades) in [
        (String::new(), String::new()),
        (format!("{ORDERS_HEADER}\n"), format!("{TRADES_HEADER}\n")),
    ] {
        let s = Scratch::new();
        s.write("o.csv", &orders);
        s.write("t.csv", &trades);
        s.write("p.toml", job("o.csv", "t.csv"));
        s.sweep(&["run", "p.toml"]).assert_success();
        let expected = data("sweep_cases/expected");
        for name in TABLES {
            let header = std::fs::read_to_string(expected.join(format!("{name}.csv"))).unwrap();
            let header = header.lines().next().unwrap();
            assert_eq!(
                s.read(&format!("out/{name}.csv")),
                format!("{header}\n"),
                "{name}"
            );
        }
    }
}

#[test]
fn wrong_inputs_are_reported_with_positions() {
    let s = Scratch::new();
    // Lines: 9 `orders = …`, 10 `trades = …` in `[sweeps.fills]`.
    let bad =
        job("o.csv", "t.csv").replace("trades = \"trades\"", "trades = \"trades\"\nspeed = 3");
    s.write("p.toml", &bad);
    s.sweep(&["validate", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains("p.toml:11:1: unknown field `speed`");
    let bad = job("o.csv", "t.csv")
        .replace("trades = \"trades\"", "trades = \"stats\"")
        .replace(
            "[sinks.tables]",
            "[aggregators.stats]\ninputs = [\"orders\"]\n[sinks.tables]",
        );
    s.write("p.toml", &bad);
    s.sweep(&["validate", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains(
            "p.toml:10:10: `trades` must name a reader of trade files, not the aggregator `stats`",
        );
    let bad = job("o.csv", "t.csv").replace("trades = \"trades\"\n", "");
    s.write("p.toml", &bad);
    s.sweep(&["validate", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains("missing field `trades`");
    let bad = job("o.csv", "t.csv").replace("orders = \"orders\"", "orders = \"trades\"");
    s.write("p.toml", &bad);
    s.sweep(&["validate", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains("p.toml:10:10: `orders` and `trades` name the same stage");
}

#[test]
fn the_daemon_refuses_a_sweep_analysis_with_its_reason() {
    let s = Scratch::new();
    s.write(
        "p.toml",
        job("in/o*.csv", "in/t*.csv") + "[daemon]\nstate = \"state\"\n",
    );
    s.sweep(&["daemon", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains("sweep analysis `fills` cannot run in the daemon yet");
}

#[test]
fn swapped_files_are_named_as_such() {
    let s = Scratch::new();
    let dir = data("sweep_cases");
    let (o, t) = (dir.join("orders.csv"), dir.join("trades.csv"));
    // The trades file given as orders, and the orders file as trades. Both readers run at
    // once and the first failure stops the other, so either may be the one reported.
    s.write(
        "p.toml",
        job(&t.display().to_string(), &o.display().to_string()),
    );
    let out = s.sweep(&["run", "p.toml"]);
    out.assert_code(1)
        .assert_stderr_contains("are the readers' paths swapped?");
    assert!(
        out.stderr
            .contains("this header is a trades file's, and this reader reads orders")
            || out
                .stderr
                .contains("this header is an orders file's, and this reader reads trades"),
        "{}",
        out.stderr
    );
    assert!(!s.exists("out/sweeps.csv"));
}

/// A budget small enough to force many partitions and spill files gives byte-identical
/// tables, and the spill files are gone afterwards.
#[test]
fn spilling_to_many_partitions_gives_the_same_bytes() {
    let s = Scratch::new();
    generate(&s, 60_000, 9);
    s.write("p.toml", job("gen.o.csv", "gen.t.csv"));
    s.sweep(&["run", "p.toml"]).assert_success();
    let whole = tables(&s);
    std::fs::remove_dir_all(s.path("out")).unwrap();
    std::fs::create_dir(s.path("spill")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args([
            "run",
            "p.toml",
            "--set",
            "sweeps.fills.memory_budget_mib=1",
            "--set",
            "sweeps.fills.spill_dir=spill",
        ])
        .current_dir(s.dir.path())
        .env("SWEEP_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let (parts, files) = log
        .split(" partition(s), ")
        .next()
        .and_then(|a| a.rsplit(' ').next())
        .and_then(|p| p.parse::<u64>().ok())
        .zip(
            log.split(" partition(s), ")
                .nth(1)
                .and_then(|b| b.split(' ').next())
                .and_then(|f| f.parse::<u64>().ok()),
        )
        .unwrap_or_else(|| panic!("no partition line in\n{log}"));
    // Spilled while reading, more than once: one file per kind per spill.
    assert!(parts > 1 && files >= 4, "{parts} partitions, {files} files");
    assert_eq!(tables(&s), whole);
    assert_eq!(
        std::fs::read_dir(s.path("spill")).unwrap().count(),
        0,
        "spill files are removed"
    );
}

/// Ctrl-C stops a run like a failure: exit 130, no table that looks complete, and the spill
/// folder removed.
#[test]
fn an_interrupted_run_leaves_no_outputs_or_spill_files() {
    let s = Scratch::new();
    let dir = data("sweep_cases");
    // Order events come through a named pipe that stays open, so the analysis is still waiting
    // for its input when the run is interrupted.
    let fifo = s.path("orders.csv");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let toml = job("orders.csv", &dir.join("trades.csv").display().to_string()).replace(
        "trades = \"trades\"",
        "trades = \"trades\"\nspill_dir = \"spill\"",
    );
    s.write("p.toml", toml);
    std::fs::create_dir(s.path("spill")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["run", "p.toml"])
        .current_dir(s.dir.path())
        .env("SWEEP_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let orders = std::fs::read_to_string(dir.join("orders.csv")).unwrap();
    writer.write_all(orders.as_bytes()).unwrap();
    // The spill folder exists once the stage has started.
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(s.path("spill")).unwrap().count() == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "no spill folder"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(writer);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("sweep: interrupted"), "{stderr}");
    assert!(stderr.contains("tables -> out: not written"), "{stderr}");
    assert!(!s.exists("out/sweeps.csv"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(s.path("spill")).unwrap().count(),
        0,
        "spill folder removed"
    );
}
