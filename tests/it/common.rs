//! Shared helpers: a scratch folder per test, the `sweep` binary, and order-file builders.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{NaiveDateTime, TimeZone};

/// The standard job's tables, in output order; the summary is last.
pub const TABLES: [&str; 8] = [
    "by_security",
    "by_date",
    "by_participant",
    "by_hour",
    "by_size",
    "hourly",
    "daily",
    "summary",
];

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A scratch folder the binary runs in; pipelines use paths relative to it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, contents).expect("write");
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Drops `contents` into `incoming/NAME` the way exchanges deliver files to a daemon: written
    /// under a hidden temporary name, then renamed in whole.
    pub fn drop_in(&self, name: &str, contents: impl AsRef<[u8]>) {
        let tmp = self.write(&format!("incoming/.{name}.tmp"), contents);
        std::fs::rename(tmp, self.path(&format!("incoming/{name}"))).expect("rename in");
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn sweep(&self, args: &[&str]) -> Out {
        let o = Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args(args)
            .current_dir(self.dir.path())
            .env("SWEEP_LOG", "warn")
            .output()
            .expect("run sweep");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Writes `toml` as `p.toml` and runs it.
    pub fn run(&self, toml: &str) -> Out {
        self.write("p.toml", toml);
        self.sweep(&["run", "p.toml"])
    }

    pub fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("out/execution_metrics.json")).expect("report json")
    }
}

/// The standard job over `input`, tables to `out/`, report to `out/execution_metrics.json`,
/// with `extra` appended (more sections or keys).
pub fn standard(input: &str, reader_extra: &str, extra: &str) -> String {
    format!(
        r#"name = "t"
[runtime]
workers = 2
[readers.orders]
path = "{input}"
{reader_extra}
[filters.cp]
inputs = ["orders"]
exchange_order_types = [64, 256, 2048, 4096, 4098]
trading_hours = {{ start = "10:00", end = "16:00" }}
[aggregators.stats]
inputs = ["cp"]
[sinks.tables]
inputs = ["stats"]
path = "out"
[monitor]
report = "out/execution_metrics.json"
progress = "off"
{extra}
"#
    )
}

/// One order event with the columns the standard job uses.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub id: u64,
    pub ts: i64,
    pub sec: u32,
    pub part: u32,
    pub typ: u32,
    pub qty: u64,
    pub price: i64,
}

pub const HEADER: &str =
    "order_id,timestamp,security_code,participantid,exchangeordertype,quantity,price";

impl Row {
    pub fn new(ts: i64) -> Self {
        Row {
            id: 7_904_398_175_939_685_642,
            ts,
            sec: 110621,
            part: 7,
            typ: 2048,
            qty: 100,
            price: 3340,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.id, self.ts, self.sec, self.part, self.typ, self.qty, self.price
        )
    }
}

pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&r.line());
        s.push('\n');
    }
    s
}

/// UTC nanoseconds of a Sydney wall-clock time `YYYY-MM-DD HH:MM:SS[.fffffffff]`.
pub fn syd(local: &str) -> i64 {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f").expect("local time");
    let t = chrono_tz::Australia::Sydney
        .from_local_datetime(&naive)
        .single()
        .expect("unambiguous");
    t.timestamp_nanos_opt().expect("in range")
}

/// A table's rows without the header.
pub fn body(table: &str) -> Vec<String> {
    table.lines().skip(1).map(String::from).collect()
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}
