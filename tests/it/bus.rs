//! Daemons sharing a bus (`[daemon.nats]`) against real nats-servers, with `sweep run` over the
//! distinct files as the oracle.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use sweep::daemon::nats::{Bus, NatsSpec, Notice, partials_dir};
use sweep::daemon::watch::fingerprint;

use crate::common::{NatsServer, Pipeline, Scratch, tail};
use crate::daemon::{assert_out_equals_batch, generate};

/// The same against a 3-node cluster in network namespaces, losing its stream leader.
mod cluster;

/// The commit pause the daemons run with: the window a mid-commit kill lands in.
const COMMIT_PAUSE_MS: &str = "150";

/// The standard job over `incoming/*.csv.gz` as a daemon of the bus at `urls`, with short
/// timings so a killed daemon's notice comes back within seconds.
pub(crate) fn bus_pipeline(urls: &[String], replicas: u32) -> Pipeline {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    Pipeline::standard("incoming/*.csv.gz")
        .section(
            "daemon",
            &[
                "state = \"shared\"",
                "complete = \"rename\"",
                "poll_secs = 0.2",
                "outputs_interval_secs = 0.2",
            ],
        )
        .section(
            "daemon.nats",
            &[
                &format!("urls = [{}]", urls.join(", ")),
                "ack_wait_secs = 2",
                "max_deliver = 50",
                "duplicate_window_secs = 3",
                "lease_secs = 2",
                &format!("replicas = {replicas}"),
            ],
        )
}

/// The spec the pipeline above resolves to, for the test's own client.
pub(crate) fn spec(urls: &[String], replicas: usize) -> NatsSpec {
    NatsSpec {
        urls: urls.to_vec(),
        stream: "SWEEP_FILES".into(),
        subject: "sweep.files".into(),
        consumer: "sweep-workers".into(),
        bucket: "sweep_files".into(),
        ack_wait: Duration::from_secs(2),
        max_deliver: 50,
        duplicate_window: Duration::from_secs(3),
        replicas,
        lease: Duration::from_secs(2),
        credentials: None,
    }
}

/// The daemons of a test, each restartable; all killed when dropped. Every incarnation logs to
/// a file of its own, so the logs of killed ones are kept for counting.
pub(crate) struct Fleet {
    dir: PathBuf,
    /// The command prefix a daemon runs under (`ip netns exec NS` in the cluster test).
    wrap: Vec<Vec<String>>,
    children: Vec<Option<Child>>,
    pub logs: Vec<PathBuf>,
}

impl Fleet {
    pub(crate) fn new(s: &Scratch, wrap: Vec<Vec<String>>) -> Fleet {
        let n = wrap.len();
        let mut f = Fleet {
            dir: s.dir.path().to_path_buf(),
            wrap,
            children: (0..n).map(|_| None).collect(),
            logs: Vec::new(),
        };
        for i in 0..n {
            f.start(i);
        }
        f
    }

    pub(crate) fn start(&mut self, i: usize) {
        let log = self.dir.join(format!("daemon-{i}-{}.log", self.logs.len()));
        let prefix = &self.wrap[i];
        let mut cmd = match prefix.split_first() {
            Some((bin, args)) => {
                let mut c = Command::new(bin);
                c.args(args).arg(env!("CARGO_BIN_EXE_sweep"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_sweep")),
        };
        cmd.args(["daemon", "p.toml"])
            .current_dir(&self.dir)
            .env("SWEEP_LOG", "info")
            .env("SWEEP_TEST_COMMIT_PAUSE_MS", COMMIT_PAUSE_MS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log"));
        self.children[i] = Some(cmd.spawn().expect("start daemon"));
        self.logs.push(log);
    }

    /// SIGKILL, as a machine failure would end it, then a new incarnation.
    pub(crate) fn kill_and_restart(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start(i);
    }

    /// The log of daemon `i`'s current incarnation.
    pub(crate) fn current_log(&self, i: usize) -> PathBuf {
        let name = format!("daemon-{i}-");
        self.logs
            .iter()
            .rev()
            .find(|l| {
                l.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&name))
            })
            .cloned()
            .expect("a log")
    }

    /// Every incarnation's log, concatenated.
    pub(crate) fn all_logs(&self) -> String {
        self.logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM to every daemon; each must exit 0 within 20 s.
    pub(crate) fn stop_all(&mut self) {
        for (i, c) in self.children.iter_mut().enumerate() {
            let Some(child) = c.as_mut() else { continue };
            let ok = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -TERM daemon {i}");
            let t0 = Instant::now();
            let status = loop {
                if let Some(st) = child.try_wait().expect("wait") {
                    break st;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "daemon {i}: no exit"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(status.success(), "daemon {i} exited with {status}");
            *c = None;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for l in &self.logs {
                eprintln!(
                    "--- {} ---\n{}",
                    l.display(),
                    tail(l, 15).unwrap_or_default()
                );
            }
        }
    }
}

/// The committed partials' ledgers: (file, rows read, kept, filtered out, rejected) each.
pub(crate) fn ledgers(dir: &Path) -> Vec<(String, [u64; 4])> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let r = arrow_ipc::reader::FileReader::try_new(File::open(e.path()).expect("open"), None)
            .expect("a partial is an Arrow IPC file");
        let ledger: serde_json::Value =
            serde_json::from_str(&r.schema().metadata()["sweep.ledger"]).expect("ledger json");
        for f in ledger.as_array().expect("a list") {
            let n = |k: &str| f[k].as_u64().expect(k);
            out.push((
                f["file"].as_str().expect("file").to_string(),
                [
                    n("rows_read"),
                    n("rows_kept"),
                    n("rows_filtered_out"),
                    n("rows_rejected"),
                ],
            ));
        }
    }
    out
}

/// Runs `sweep run` over `src/*.csv.gz` into `batch/`: the oracle.
pub(crate) fn batch(s: &Scratch) -> u64 {
    s.write("batch.toml", Pipeline::standard("src/*.csv.gz").toml());
    s.sweep(&[
        "run",
        "batch.toml",
        "--set",
        "sinks.tables.path=batch",
        "--set",
        "monitor.report=batch/execution_metrics.json",
    ])
    .assert_success();
    let report: serde_json::Value =
        serde_json::from_str(&s.read("batch/execution_metrics.json")).expect("report");
    report["totals"]["rows_read"].as_u64().expect("rows_read")
}

/// Waits until every one of `names` is committed, nothing is pending on the bus and the tables
/// equal the oracle's; then checks the ledgers account for every row exactly once.
pub(crate) fn settle_and_check(
    s: &Scratch,
    rt: &tokio::runtime::Runtime,
    bus: &Bus,
    names: &[String],
    rows_read: u64,
    fleet: &Fleet,
) {
    let dir = partials_dir(&s.path("shared"), "stats");
    let t0 = Instant::now();
    loop {
        let committed = ledgers(&dir).len();
        let pending = rt.block_on(bus.pending()).unwrap_or(u64::MAX);
        let tables_equal = crate::common::TABLES.iter().all(|t| {
            let (a, b) = (
                std::fs::read(s.path(&format!("out/{t}.csv"))).ok(),
                std::fs::read(s.path(&format!("batch/{t}.csv"))).ok(),
            );
            a.is_some() && a == b
        });
        if committed == names.len() && pending == 0 && tables_equal {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "not settled after 120 s: {committed} of {} files committed, {pending} pending, \
             tables equal: {tables_equal}\n{}",
            names.len(),
            fleet
                .logs
                .iter()
                .map(|l| tail(l, 8).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n--\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every file counted once: one ledger entry per distinct file, and the rows add up.
    let ledger = ledgers(&dir);
    let files: BTreeSet<&str> = ledger.iter().map(|(f, _)| f.as_str()).collect();
    let want: BTreeSet<String> = names.iter().map(|n| format!("incoming/{n}")).collect();
    assert_eq!(
        files,
        want.iter().map(String::as_str).collect(),
        "the partials' files"
    );
    assert_eq!(ledger.len(), names.len(), "one partial per file");
    let sum = |k: usize| ledger.iter().map(|(_, r)| r[k]).sum::<u64>();
    assert_eq!(
        sum(0),
        rows_read,
        "rows read over the partials = sweep run's"
    );
    assert_eq!(
        sum(0),
        sum(1) + sum(2) + sum(3),
        "read = kept + filtered out + rejected"
    );
    assert_out_equals_batch(s, || fleet.all_logs());
}

/// The acceptance test: 3 daemons, 50 files fed while daemons are SIGKILLed and restarted 10
/// times (5 at random moments, 5 in the middle of a commit, between the partial and its ack),
/// and one file's notice published twice inside the dedupe window and once outside it, and
/// its content dropped again under another name. The tables equal `sweep run` over the 50
/// distinct files, byte for byte, and every file is in exactly one committed partial.
#[test]
fn three_daemons_killed_ten_times_count_every_file_once() {
    let s = Scratch::new();
    let names = generate(&s, 50, 600);
    let rows_read = batch(&s);
    let server = NatsServer::start(&s.path("nats"));
    let urls = vec![server.url.clone()];
    s.write("p.toml", bus_pipeline(&urls, 1).toml());
    let mut fleet = Fleet::new(&s, vec![Vec::new(); 3]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bus = rt.block_on(async {
        let t0 = Instant::now();
        loop {
            match Bus::connect(&spec(&urls, 1), "test").await {
                Ok(b) => break b,
                Err(e) if t0.elapsed() > Duration::from_secs(20) => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });

    // The first file's notice, twice inside the dedupe window: the server drops the second.
    s.drop_in(
        &names[0],
        std::fs::read(s.path(&format!("src/{}", names[0]))).unwrap(),
    );
    let fp = fingerprint(&s.path(&format!("incoming/{}", names[0])))
        .unwrap()
        .key();
    let notice = serde_json::to_vec(&Notice {
        reader: "orders".into(),
        path: format!("incoming/{}", names[0]),
        fingerprint: fp.clone(),
    })
    .unwrap();
    let first = Instant::now();
    let publish = |b: &Bus| {
        rt.block_on(b.publish_raw(&fp, notice.clone().into()))
            .unwrap()
    };
    let dups = [publish(&bus), publish(&bus)];

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    let mut kills_in_commit = 0;
    let mut fed = 1;
    let mut outside = None;
    let commits = |fleet: &Fleet, i: usize| {
        std::fs::read_to_string(fleet.current_log(i))
            .map_or(0, |l| l.matches("committing its partials").count())
    };
    for round in 0..10 {
        // Counted before this round's files land, so one of them is the commit waited for.
        let before: Vec<usize> = (0..3).map(|i| commits(&fleet, i)).collect();
        for n in names.iter().skip(fed).take(5) {
            s.drop_in(n, std::fs::read(s.path(&format!("src/{n}"))).unwrap());
        }
        fed = (fed + 5).min(names.len());
        if round == 3 {
            // The same content under another name: the watchers' claim refuses it.
            s.drop_in(
                "copy-of-f01.csv.gz",
                std::fs::read(s.path(&format!("src/{}", names[1]))).unwrap(),
            );
            // Once more outside the window: the server takes it, and the partials make it a
            // no-op.
            std::thread::sleep(Duration::from_secs(3).saturating_sub(first.elapsed()));
            std::thread::sleep(Duration::from_millis(500));
            outside = Some(publish(&bus));
        }
        let victim = rng.random_range(0..3);
        if round % 2 == 1 {
            // In the middle of a commit: as soon as a daemon says it is committing a new file.
            let t0 = Instant::now();
            let found = loop {
                let hit = (0..3).find(|&i| commits(&fleet, i) > before[i]);
                if hit.is_some() || t0.elapsed() > Duration::from_secs(20) {
                    break hit;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let i = found.expect("no daemon committed within 20 s");
            fleet.kill_and_restart(i);
            kills_in_commit += 1;
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..1200)));
            fleet.kill_and_restart(victim);
        }
    }
    assert_eq!(
        dups,
        [false, true],
        "inside the window the server drops the repeat"
    );
    assert_eq!(
        outside,
        Some(false),
        "outside the window the server takes it"
    );
    assert_eq!(fed, names.len());

    settle_and_check(&s, &rt, &bus, &names, rows_read, &fleet);
    let logs = fleet.all_logs();
    let redeliveries = logs.matches("redelivered: ").count();
    let already = logs.matches("is committed already").count();
    println!(
        "bus test: 50 files, 10 kills ({kills_in_commit} in mid-commit), {redeliveries} \
         redeliveries, {already} notices found committed already and acknowledged without folding"
    );
    assert_eq!(kills_in_commit, 5);
    // A daemon killed between its partial and its ack leaves the notice to come back.
    assert!(
        redeliveries >= kills_in_commit,
        "{redeliveries} redeliveries"
    );
    // Notices whose partials a killed daemon had committed come back and are acknowledged
    // without folding the file again.
    assert!(already >= 1, "no notice was found committed already");
    let fp1 = fingerprint(&s.path(&format!("src/{}", names[1])))
        .unwrap()
        .key();
    let refused = format!("incoming/copy-of-f01.csv.gz: notice {fp1} (Refused)");
    assert!(logs.contains(&refused), "no daemon logged {refused:?}");
    assert!(!logs.contains("terminated"), "a notice was terminated");
    fleet.stop_all();
    assert_out_equals_batch(&s, || fleet.all_logs());
    // Another filter would mix two pipelines' results in the shared folder: refused at start.
    let other = bus_pipeline(&urls, 1).set("filters.cp", "exchange_order_types = [64]");
    s.write("other.toml", other.toml());
    s.sweep(&["daemon", "other.toml"])
        .assert_code(2)
        .assert_stderr_contains("this state was built by a pipeline with other readers");
    // An extract and a rejects file have no per-file partial: refused at start, each named.
    let rows = bus_pipeline(&urls, 1)
        .sink("extract", "out/orders.csv.gz")
        .rejects("out/rejects.csv");
    s.write("rows.toml", rows.toml());
    s.sweep(&["daemon", "rows.toml"])
        .assert_code(2)
        .assert_stderr_contains("rows sink `extract`: its extract is one file in input order")
        .assert_stderr_contains("reader `orders` writes a rejects file");
    drop(server);
}
