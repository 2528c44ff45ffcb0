//! Shared helpers: a scratch folder per test, the `sweep` binary and assertions on what it gave
//! back, a pipeline builder, order-file builders, the output contract's table and measure names,
//! and, for tests that run processes beside the binary, free ports, programs on PATH and a guard
//! that kills what a test started.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Every table's measure columns, in output order, after its one key column (the summary has
/// none).
pub const MEASURES: [&str; 12] = [
    "orders",
    "quantity_sum",
    "quantity_mean",
    "quantity_std",
    "price_mean",
    "price_min",
    "price_max",
    "vwap",
    "participants",
    "securities",
    "first_ts",
    "last_ts",
];

/// What one run of the binary gave back. The `assert_*` methods show stderr when they fail.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Which case of a loop this run is, for failure messages; empty outside loops.
    case: String,
}

impl Out {
    /// What a finished process gave back.
    pub fn of(o: std::process::Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            case: String::new(),
        }
    }

    /// Names this run in the messages of failed assertions (a loop's case).
    pub fn case(mut self, what: impl std::fmt::Display) -> Self {
        self.case = format!("{what}: ");
        self
    }

    /// The exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "{}exit code {} instead of {code}; stderr:\n{}",
            self.case, self.code, self.stderr
        );
        self
    }

    /// The exit code is 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// stderr holds `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        self.assert_contains("stderr", &self.stderr, needle)
    }

    /// stdout holds `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        self.assert_contains("stdout", &self.stdout, needle)
    }

    #[track_caller]
    fn assert_contains(&self, stream: &str, text: &str, needle: &str) -> &Self {
        assert!(
            text.contains(needle),
            "{}{stream} lacks {needle:?}:\n{text}",
            self.case
        );
        self
    }
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
        Out::of(o)
    }

    /// Writes `pipeline` as `p.toml` and runs it.
    pub fn run(&self, pipeline: &Pipeline) -> Out {
        self.write("p.toml", pipeline.toml());
        self.sweep(&["run", "p.toml"])
    }

    pub fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("out/execution_metrics.json")).expect("report json")
    }
}

/// The standard job: orders read from `readers.orders.path`, the Centre Point filter in trading
/// hours, the statistics aggregator, its tables to `out/` and the report to
/// `out/execution_metrics.json`.
const STANDARD: &str = r#"name = "t"
[runtime]
workers = 2
[readers.orders]
path = "orders.csv"
[filters.cp]
inputs = ["orders"]
exchange_order_types = [64, 256, 2048, 4096, 4098]
trading_hours = { start = "10:00", end = "16:00" }
[aggregators.stats]
inputs = ["cp"]
[sinks.tables]
inputs = ["stats"]
path = "out"
[monitor]
report = "out/execution_metrics.json"
progress = "off"
"#;

/// A pipeline file built from the standard job: `set` adds or replaces one `key = value` line in
/// a section, `toml` renders the text. Sections keep their order; a new one goes at the end.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Each `[section]` with its lines; the first, unnamed, holds the top-level keys.
    sections: Vec<(String, Vec<String>)>,
}

impl Pipeline {
    /// The standard job ([`STANDARD`]) over `input`.
    pub fn standard(input: &str) -> Self {
        let mut p = Pipeline {
            sections: vec![(String::new(), Vec::new())],
        };
        for line in STANDARD.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                p.sections.push((name.to_string(), Vec::new()));
            } else if let Some((_, lines)) = p.sections.last_mut() {
                lines.push(line.to_string());
            }
        }
        p.set("readers.orders", &format!("path = \"{input}\""))
    }

    /// `line` (`key = value`) in `[section]`, in place of the key's line if it has one.
    pub fn set(mut self, section: &str, line: &str) -> Self {
        let key = |l: &str| l.split('=').next().unwrap_or_default().trim().to_string();
        let lines = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => &mut self.sections[i].1,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                &mut self.sections.last_mut().expect("just pushed").1
            }
        };
        match lines.iter().position(|l| key(l) == key(line)) {
            Some(i) => lines[i] = line.to_string(),
            None => lines.push(line.to_string()),
        }
        self
    }

    /// Each of `lines` set in `[section]`.
    pub fn section(self, section: &str, lines: &[&str]) -> Self {
        lines.iter().fold(self, |p, l| p.set(section, l))
    }

    /// A sink `[sinks.NAME]` of the filter's rows (an extract) at `path`.
    pub fn sink(self, name: &str, path: &str) -> Self {
        self.section(
            &format!("sinks.{name}"),
            &["inputs = [\"cp\"]", &format!("path = \"{path}\"")],
        )
    }

    /// Bad rows rejected to `path` instead of failing the job.
    pub fn rejects(self, path: &str) -> Self {
        self.section(
            "readers.orders",
            &["on_error = \"reject\"", &format!("rejects = \"{path}\"")],
        )
    }

    /// The pipeline file's text.
    pub fn toml(&self) -> String {
        let mut text = String::new();
        for (name, lines) in &self.sections {
            if !name.is_empty() {
                text.push_str(&format!("[{name}]\n"));
            }
            for l in lines {
                text.push_str(l);
                text.push('\n');
            }
        }
        text
    }
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

/// The report's `totals` named by `keys`, in their order.
pub fn totals<const N: usize>(report: &serde_json::Value, keys: [&str; N]) -> [Option<u64>; N] {
    keys.map(|k| report["totals"][k].as_u64())
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

/// `name` found on PATH, as a shell would find it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `N` distinct free loopback ports (all held until all are known).
pub fn free_ports<const N: usize>() -> [u16; N] {
    // All bound at once, so no two are the same.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("addr").port())
}

/// The processes a test started: each is killed and reaped when this is dropped, so a failed
/// assertion (a panic) still shuts everything down. On a panic the tail of each log is printed.
pub struct Processes {
    pub children: Vec<(&'static str, Child, PathBuf)>,
}

impl Processes {
    /// Starts `cmd` as `name`, its stdout and stderr going to `log`.
    pub fn spawn(&mut self, name: &'static str, cmd: &mut Command, log: PathBuf) {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name, child, log));
    }

    /// Kills and reaps `name` now, as a crash would end it.
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|c| c.0 == name) {
            let (_, mut child, _) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Panics if a process has exited: the test cannot go on without it.
    pub fn check_alive(&mut self) {
        for (name, child, log) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited early ({status}):\n{}",
                    tail(log, 40).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (name, child, log) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- {name} log (last lines) ---");
                eprintln!("{}", tail(log, 30).unwrap_or_default());
            }
        }
    }
}

/// The last `lines` lines of the file at `path`.
pub fn tail(path: &Path, lines: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let all: Vec<&str> = text.lines().collect();
    Some(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// Polls `f` every 250 ms until it gives `Ok`, or panics after `limit` with `what` and the last
/// reason `f` gave.
pub fn wait_for<T>(
    procs: &mut Processes,
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        procs.check_alive();
        match f() {
            Ok(v) => return v,
            Err(why) if start.elapsed() >= limit => {
                panic!("{what}: not within {limit:?}: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The `nats-server` binary (Debian's package puts it in /usr/sbin, which root's PATH may lack).
/// The tests that need it fail without it: `.ci/deps` installs it.
pub fn nats_server_bin() -> PathBuf {
    on_path("nats-server")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
        .expect("nats-server is not installed; `bash .ci/deps` installs Debian's nats-server")
}

/// A nats-server with JetStream on a free loopback port, its store in a folder of its own,
/// killed by its process id when dropped (also when the test fails).
pub struct NatsServer {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl NatsServer {
    /// Starts one in `dir` (store `dir/store`, log `dir/nats.log`) and waits until it listens.
    pub fn start(dir: &Path) -> NatsServer {
        std::fs::create_dir_all(dir).expect("nats dir");
        let [port] = free_ports();
        let log = dir.join("nats.log");
        let out = std::fs::File::create(&log).expect("nats log");
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start nats-server");
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            log,
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {port}:\n{}",
                tail(&server.log, 20).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
