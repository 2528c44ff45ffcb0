//! `sweep top` as a person sees it: in a tmux pane of 160 × 50 on a tmux server of the test's
//! own, watching a `sweep run` kept going by a throttled rows sink. The test reads the pane with
//! `capture-pane`, types with `send-keys`, and reads top's exit code from a file its shell writes.
//!
//! tmux must be on PATH: `.ci/run` installs it. Without it the test fails rather than skips.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Pipeline, Processes, Row, Scratch, csv, free_ports, on_path, syd, wait_for};

/// The stages of the pipeline the test watches.
const STAGES: [&str; 5] = ["orders", "cp", "stats", "kept", "tables"];

/// A tmux server of the test's own (its socket in the scratch folder), killed when dropped.
struct Tmux {
    bin: PathBuf,
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The pane's text.
    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The words of the stage table's row for `stage`: name, kind, IN/S, OUT/S, ...
fn row<'a>(screen: &'a str, stage: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|l| {
        let words: Vec<&str> = l
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .collect();
        (words.first() == Some(&stage) && words.len() >= 4 && words[1] != "→").then_some(words)
    })
}

/// A rate cell that shows rows moving: digits, not all of them 0.
fn moving(cell: &str) -> bool {
    cell.chars().any(|c| ('1'..='9').contains(&c))
}

fn exit_code(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|_| "top has not exited".to_string())
}

#[test]
fn top_shows_a_running_pipeline_then_its_end_and_quits_on_q() {
    let tmux = on_path("tmux").unwrap_or_else(|| {
        panic!("tmux is not on PATH: .ci/run installs it (apt-get install tmux)")
    });
    let s = Scratch::new();
    let [port] = free_ports();
    let addr = format!("127.0.0.1:{port}");
    // ~2.4 MB in 16 KiB blocks, each held 50 ms by the rows sink: about 7 s of run, cut short
    // below once top has shown it.
    let t = syd("2024-09-03 11:00:00");
    let rows: Vec<Row> = (0..40_000)
        .map(|i| Row {
            id: i,
            ..Row::new(t + i as i64)
        })
        .collect();
    s.write("orders.csv", csv(&rows));
    let p = Pipeline::standard("orders.csv")
        .section("runtime", &["block_bytes = 16384", "edge_capacity = 2"])
        .sink("kept", "out/kept.csv")
        .set("sinks.kept", "pause_per_batch_ms = 50")
        .set("monitor", &format!("prometheus = \"{addr}\""));
    s.write("p.toml", p.toml());
    let mut procs = Processes {
        children: Vec::new(),
    };
    procs.spawn(
        "sweep run",
        Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args(["run", "p.toml"])
            .current_dir(s.dir.path())
            .env("SWEEP_LOG", "warn"),
        s.path("run.log"),
    );
    wait_for(
        &mut procs,
        Duration::from_secs(10),
        "metrics served",
        || TcpStream::connect(&addr).map_err(|e| e.to_string()),
    );

    // Outside a terminal there is nothing to draw on: a usage error, said on stderr.
    s.sweep(&["top", &addr])
        .assert_code(2)
        .assert_stderr_contains("sweep: top: the view needs a terminal");

    // The pane stays after top exits, so that what top left on the terminal can be read.
    let conf = s.write("tmux.conf", "set -g remain-on-exit on\nset -g status off\n");
    let exit_file = s.path("top.exit");
    let tmux = Tmux {
        bin: tmux,
        socket: s.path("tmux.sock"),
    };
    let shell = format!(
        "'{}' top {addr}; echo $? > '{}'",
        env!("CARGO_BIN_EXE_sweep"),
        exit_file.display()
    );
    let started = Command::new(&tmux.bin)
        .arg("-S")
        .arg(&tmux.socket)
        .arg("-f")
        .arg(&conf)
        .args(["new-session", "-d", "-x", "160", "-y", "50", "-s", "top"])
        .arg(&shell)
        .env("TERM", "xterm-256color")
        .current_dir(s.dir.path())
        .output()
        .expect("run tmux");
    assert!(
        started.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    // Rates need two scrapes, a second apart.
    let live = wait_for(
        &mut procs,
        Duration::from_secs(15),
        "every stage and a rate on screen",
        || {
            let screen = tmux.screen();
            let reader = row(&screen, "orders").filter(|w| moving(w[2]));
            match reader {
                Some(_) if STAGES.iter().all(|st| row(&screen, st).is_some()) => Ok(screen),
                _ => Err(screen),
            }
        },
    );
    for stage in STAGES {
        let words = row(&live, stage).expect("a row per stage");
        assert_eq!(words.len(), 12, "{stage}'s row: {words:?}\n{live}");
    }
    assert_eq!(row(&live, "orders").unwrap()[1], "reader", "{live}");
    assert_eq!(row(&live, "kept").unwrap()[1], "rows_sink", "{live}");
    assert!(live.contains(&format!("http://{addr}/metrics")), "{live}");
    assert!(live.contains("cp → kept"), "{live}");
    assert!(live.contains(" live "), "{live}");

    // The run dies: top says so and keeps its last figures.
    procs.kill("sweep run");
    let gone = wait_for(
        &mut procs,
        Duration::from_secs(5),
        "the endpoint's loss on screen",
        || {
            let screen = tmux.screen();
            if screen.contains("endpoint went away: connection refused; last seen") {
                Ok(screen)
            } else {
                Err(screen)
            }
        },
    );
    assert!(gone.contains("press q to quit"), "{gone}");
    assert!(row(&gone, "orders").is_some(), "{gone}");

    let sent = tmux.cmd(&["send-keys", "-t", "top", "q"]);
    assert!(sent.status.success(), "tmux send-keys");
    let code = wait_for(&mut procs, Duration::from_secs(5), "top's exit", || {
        exit_code(&exit_file)
    });
    assert_eq!(code, "0", "top's exit code; screen:\n{}", tmux.screen());
    // The terminal is back as it was: the alternate screen with top's view is gone.
    let after = tmux.screen();
    assert!(
        !after.contains("sweep top") && !after.contains("STAGE"),
        "{after}"
    );
}

#[test]
fn top_of_an_endpoint_that_is_not_there_fails_with_exit_1() {
    let s = Scratch::new();
    let [port] = free_ports();
    s.sweep(&["top", &port.to_string()])
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "sweep: top: cannot read http://127.0.0.1:{port}/metrics: connection refused"
        ));
}

#[test]
fn top_of_a_bad_address_is_a_usage_error() {
    let s = Scratch::new();
    s.sweep(&["top", "not an address"])
        .assert_code(2)
        .assert_stderr_contains("sweep: top: `not an address` is not a metrics address");
    s.sweep(&["top", "https://127.0.0.1:9898/metrics"])
        .assert_code(2)
        .assert_stderr_contains("plain http, not https");
}
