//! The observability assets in `grafana/` against a real Prometheus (issue 5).
//!
//! A throttled `sweep run`, a `sweep daemon` and a daemon of a bus (`[daemon.nats]`, on a
//! nats-server of the test's own) serve `/metrics` on ports of their own while a Prometheus of
//! the test's own (1 s scrapes, temp storage, `grafana/alerts.yml` as its rules) scrapes them. Every PromQL
//! expression of the dashboard and of the alert rules must then return data through Prometheus's
//! HTTP API, `promtool check rules` must pass, and sweep's own `/metrics` must render every metric
//! the dashboard and alerts are built on. Every process is killed when the test ends, pass or
//! fail. Everything listens on 127.0.0.1 only.
//!
//! Without a `prometheus` binary on PATH the test fails under CI (`.ci/run` installs Debian's
//! `prometheus` package) and is skipped with a note otherwise.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    HEADER, NatsServer, Pipeline, Processes, Row, Scratch, free_ports, on_path, syd, wait_for,
};

/// Every metric family sweep's exporter renders, as Prometheus text names.
const METRICS: [&str; 16] = [
    "sweep_component_received_records_total",
    "sweep_component_sent_records_total",
    "sweep_component_discarded_records_total",
    "sweep_component_errors_total",
    "sweep_component_batch_duration_seconds_bucket",
    "sweep_component_batch_duration_seconds_sum",
    "sweep_component_batch_duration_seconds_count",
    "sweep_edge_in_flight",
    "sweep_edge_capacity",
    "sweep_input_bytes_total",
    "sweep_jobs",
    "sweep_process_cpu_seconds_total",
    "sweep_process_resident_memory_bytes",
    "sweep_process_disk_read_bytes_total",
    "sweep_process_disk_written_bytes_total",
    "sweep_build_info",
];

/// The daemon's own metric families.
const DAEMON_METRICS: [&str; 7] = [
    "sweep_daemon_files_total",
    "sweep_daemon_ingest_lag_seconds_bucket",
    "sweep_daemon_last_commit_timestamp_seconds",
    "sweep_daemon_state_bytes",
    "sweep_daemon_state_version",
    "sweep_daemon_pending_files",
    "sweep_daemon_reloads_total",
];

/// The series of daemons sharing a bus.
const BUS_METRICS: [&str; 2] = ["sweep_bus_notices_total", "sweep_bus_consumer_pending"];

/// What Grafana's interval variables stand for when an expression is run outside Grafana: several
/// 1 s scrapes, as `$__rate_interval` would be for this scrape interval.
const RANGE: &str = "30s";

/// How long expressions may take to return data once Prometheus scrapes sweep.
const QUERY_DEADLINE: Duration = Duration::from_secs(30);

/// Rows in the generated file: with 64 KiB blocks and 50 ms per batch at the rows sink the run
/// lasts about 12 s, long enough for a dozen scrapes.
const ROWS: &str = "100000";
const PAUSE_MS: u64 = 50;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// An HTTP client for loopback only: no proxy from the environment, short timeouts, and the body
/// of a non-2xx answer returned rather than turned into an error.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, query: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut req = agent.get(url);
    for (k, v) in query {
        req = req.query(*k, *v);
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((status, body))
}

/// A Prometheus API call's `data`, or why there is none.
fn api(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Value, String> {
    let (status, body) = get(agent, &format!("{base}{path}"), query)?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(format!("{path} answered {status}: {body}"));
    }
    Ok(v["data"].clone())
}

/// Every `targets[].expr` of a dashboard, in panel order, rows' nested panels included, each with
/// its panel's title.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.to_string(), e.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every datasource uid a dashboard names (panels' and targets'), rows' nested panels included.
fn dashboard_datasource_uids(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            let targets = p["targets"].as_array().into_iter().flatten();
            for ds in std::iter::once(&p["datasource"]).chain(targets.map(|t| &t["datasource"])) {
                if let Some(uid) = ds["uid"].as_str() {
                    out.push(uid.to_string());
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's interval variables replaced by [`RANGE`]; any other `$variable` is a failure, since
/// the dashboard is meant to run without template variables.
fn concrete(expr: &str) -> String {
    let mut e = expr.to_string();
    for var in [
        "${__rate_interval}",
        "$__rate_interval",
        "${__interval}",
        "$__interval",
        "${__range}",
        "$__range",
    ] {
        e = e.replace(var, RANGE);
    }
    assert!(
        !e.contains('$'),
        "dashboard expression uses a template variable this test cannot fill in: {expr}"
    );
    e
}

/// `expr` with `bool` after every comparison operator (outside label matchers, ranges and
/// strings), so that a comparison yields 0 or 1 for each series instead of dropping the series
/// where it is false. An alert's condition is false in a healthy run (no stall, memory well under
/// the limit), yet its metrics, labels and arithmetic must still match real series: this form
/// returns data exactly when they do.
fn comparisons_as_bool(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 16);
    let (mut braces, mut brackets) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' && q != '`' {
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                    i += 1;
                }
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        let next = chars.get(i + 1).copied();
        let op_len = if braces > 0 || brackets > 0 {
            0
        } else {
            match (c, next) {
                ('=', Some('=')) | ('!', Some('=')) | ('>', Some('=')) | ('<', Some('=')) => 2,
                ('>', _) | ('<', _) => 1,
                _ => 0,
            }
        };
        if op_len == 0 {
            out.push(c);
            i += 1;
            continue;
        }
        out.extend(&chars[i..i + op_len]);
        i += op_len;
        let rest: String = chars[i..].iter().collect();
        let already = rest
            .trim_start()
            .strip_prefix("bool")
            .is_some_and(|r| !r.starts_with(|c: char| c.is_alphanumeric() || c == '_'));
        if !already {
            out.push_str(" bool");
            if chars.get(i).is_some_and(|c| !c.is_whitespace()) {
                out.push(' ');
            }
        }
    }
    out
}

/// The result of an instant query when it holds at least one sample with a finite value.
fn data_of(agent: &ureq::Agent, base: &str, expr: &str) -> Result<Value, String> {
    let data = api(agent, base, "/api/v1/query", &[("query", expr)])?;
    let result = &data["result"];
    let values: Vec<&Value> = match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| &s["value"][1])
            .collect(),
        Some("scalar") => vec![&result[1]],
        other => return Err(format!("result type {other:?}")),
    };
    let finite = values
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(|v| v.parse::<f64>().ok())
        .any(f64::is_finite);
    if finite {
        Ok(result.clone())
    } else {
        Err(format!("no data yet: {result}"))
    }
}

/// One metric line's value from the exposition text, matched by its name and labels as written
/// (e.g. `sweep_jobs{state="done"}`).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}

#[test]
fn dashboard_and_alert_expressions_return_data_in_prometheus() {
    let Some(prometheus) = on_path("prometheus") else {
        if std::env::var_os("CI").is_some() {
            panic!("prometheus is not on PATH: .ci/run installs Debian's prometheus package");
        }
        let _ = writeln!(
            std::io::stderr(),
            "note: prometheus is not on PATH, so the Prometheus test is skipped \
             (apt-get install prometheus to run it; under CI it fails instead)"
        );
        return;
    };
    let promtool = on_path("promtool").expect("promtool on PATH beside prometheus");
    let started = Instant::now();

    // The assets, checked for consistency before anything starts.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("grafana/dashboards/sweep.json")).unwrap(),
    )
    .expect("sweep.json is JSON");
    let datasources =
        std::fs::read_to_string(repo("grafana/provisioning/datasources/prometheus.yml")).unwrap();
    let uid = datasources
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches('"').to_string())
        .expect("the provisioned datasource has a uid");
    for u in dashboard_datasource_uids(&dashboard) {
        assert_eq!(
            u, uid,
            "the dashboard names a datasource that is not provisioned"
        );
    }
    let dash_exprs: Vec<(String, String)> = dashboard_exprs(&dashboard)
        .into_iter()
        .map(|(title, e)| (title, concrete(&e)))
        .collect();
    assert!(dash_exprs.len() >= 10, "too few dashboard expressions");
    let alerts_yml = std::fs::read_to_string(repo("grafana/alerts.yml")).unwrap();
    let mut alert_names: Vec<String> = alerts_yml
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    alert_names.sort();
    assert!(!alert_names.is_empty(), "alerts.yml has no alert rules");

    let s = Scratch::new();
    let [sweep_port, prom_port, daemon_port, bus_port] = free_ports();
    let generated = s.sweep(&[
        "generate",
        "--orders",
        "orders.csv",
        "--trades",
        "trades.csv",
        "--rows",
        ROWS,
        "--seed",
        "1",
        "--dirty",
        "0.001",
    ]);
    generated.case("generate").assert_success();

    // Every stage kind, bad rows rejected (so rejections and errors are counted), a rows sink
    // slow enough to fill its edge (backpressure) and make the run last several scrapes, and a
    // sweep analysis whose 1 MiB budget makes it spill. hold_secs keeps /metrics up after the run
    // so the end state can be read.
    std::fs::create_dir(s.path("spill")).unwrap();
    let p = Pipeline::standard("orders.csv")
        .rejects("out/rejects.csv")
        .set("monitor", "hold_secs = 60")
        .sink("kept", "out/kept.csv")
        .set("sinks.kept", &format!("pause_per_batch_ms = {PAUSE_MS}"))
        .section("readers.trades", &["path = \"trades.csv\""])
        .section(
            "sweeps.fills",
            &[
                "orders = \"orders\"",
                "trades = \"trades\"",
                "memory_budget_mib = 1",
                "spill_dir = \"spill\"",
            ],
        )
        .section(
            "sinks.sweeps",
            &["inputs = [\"fills\"]", "path = \"out/sweeps\""],
        );
    s.write("p.toml", p.toml());
    s.write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: sweep\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{sweep_port}\", \"127.0.0.1:{daemon_port}\", \
             \"127.0.0.1:{bus_port}\"]\n"
        ),
    );
    s.write("alerts.yml", &alerts_yml);

    let mut procs = Processes {
        children: Vec::new(),
    };
    let metrics_addr = format!("127.0.0.1:{sweep_port}");
    procs.spawn(
        "sweep",
        Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args([
                "run",
                "p.toml",
                "--set",
                "runtime.block_bytes=65536",
                "--set",
            ])
            .arg(format!("monitor.prometheus={metrics_addr}"))
            .current_dir(s.dir.path())
            .env("SWEEP_LOG", "warn"),
        s.path("sweep.log"),
    );
    procs.spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                s.path("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", s.path("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=warn")
            .current_dir(s.dir.path()),
        s.path("prometheus.log"),
    );

    // A daemon beside the batch run, for the daemon's panels and alerts: it ingests good files,
    // fails one that lacks columns, and rejects a reload of an invalid pipeline.
    let daemon_job = Pipeline::standard("incoming/*.csv")
        .rejects("out/daemon-rejects.csv")
        .set(
            "monitor",
            &format!("prometheus = \"127.0.0.1:{daemon_port}\""),
        )
        .section(
            "daemon",
            &[
                "state = \"dstate\"",
                "complete = \"rename\"",
                "poll_secs = 0.2",
            ],
        );
    s.write("d.toml", daemon_job.toml());
    procs.spawn(
        "sweep daemon",
        Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args(["daemon", "d.toml", "--set", "sinks.tables.path=out/daemon"])
            .current_dir(s.dir.path())
            .env("SWEEP_LOG", "info"),
        s.path("daemon.log"),
    );
    let daemon_pid = procs.children.last().map(|c| c.1.id()).expect("daemon");

    // A daemon of a bus ([daemon.nats]) on a nats-server of the test's own, for the bus row and
    // its backlog alert: it folds a clean file, and gives up on the dirty one (a bad row fails
    // it) at its first delivery (max_deliver = 1).
    s.sweep(&[
        "generate",
        "--orders",
        "clean.csv",
        "--rows",
        "2000",
        "--seed",
        "2",
    ])
    .case("generate clean")
    .assert_success();
    let nats = NatsServer::start(&s.path("nats"));
    let bus_job = Pipeline::standard("busin/*.csv")
        .set("monitor", &format!("prometheus = \"127.0.0.1:{bus_port}\""))
        .section(
            "daemon",
            &[
                "state = \"bstate\"",
                "complete = \"rename\"",
                "poll_secs = 0.2",
            ],
        )
        .section(
            "daemon.nats",
            &[&format!("urls = [\"{}\"]", nats.url), "max_deliver = 1"],
        );
    s.write("b.toml", bus_job.toml());
    procs.spawn(
        "sweep bus daemon",
        Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args(["daemon", "b.toml", "--set", "sinks.tables.path=out/bus"])
            .current_dir(s.dir.path())
            .env("SWEEP_LOG", "info"),
        s.path("bus-daemon.log"),
    );
    let bus_metrics = format!("http://127.0.0.1:{bus_port}/metrics");
    wait_for(
        &mut procs,
        Duration::from_secs(20),
        "bus daemon metrics",
        || get(&agent(), &bus_metrics, &[]).map(drop),
    );
    for (from, to) in [("clean.csv", "a.csv"), ("orders.csv", "dirty.csv")] {
        s.write(
            &format!("busin/.{to}.tmp"),
            std::fs::read(s.path(from)).unwrap(),
        );
        std::fs::rename(
            s.path(&format!("busin/.{to}.tmp")),
            s.path(&format!("busin/{to}")),
        )
        .unwrap();
    }

    let http = agent();
    let daemon_metrics = format!("http://127.0.0.1:{daemon_port}/metrics");
    wait_for(
        &mut procs,
        Duration::from_secs(20),
        "daemon metrics",
        || get(&http, &daemon_metrics, &[]).map(drop),
    );
    s.drop_in("a.csv", std::fs::read(s.path("orders.csv")).unwrap());

    let base = format!("http://127.0.0.1:{prom_port}");
    wait_for(
        &mut procs,
        Duration::from_secs(20),
        "prometheus ready",
        || match get(&http, &format!("{base}/-/ready"), &[])? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        },
    );
    wait_for(
        &mut procs,
        Duration::from_secs(15),
        "both sweep targets up",
        || {
            let data = api(&http, &base, "/api/v1/targets", &[("state", "active")])?;
            let targets = data["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match targets.iter().find(|t| t["health"] != "up") {
                _ if targets.len() < 3 => Err(format!("{} active target(s)", targets.len())),
                None => Ok(()),
                Some(t) => Err(format!("target {}: {}", t["health"], t["lastError"])),
            }
        },
    );
    let up_after = started.elapsed();
    // A second good file once Prometheus has scraped the first: the lag histogram then has an
    // increase to take quantiles of.
    std::thread::sleep(Duration::from_secs(3));
    // The first 2000 lines (the generated file has dirty rows, not all of it UTF-8).
    let all = std::fs::read(s.path("orders.csv")).unwrap();
    let cut = all
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1999)
        .map_or(all.len(), |(i, _)| i + 1);
    s.drop_in("c.csv", &all[..cut]);
    // And, while Prometheus watches, a file that fails and a reload that is refused.
    s.drop_in("b.csv", "order_id,timestamp\n1,2\n");
    s.write("d.toml", "[daemon\n");
    let hup = Command::new("kill")
        .args(["-HUP", &daemon_pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());

    // The alert rules as Prometheus loaded them from the copy of alerts.yml.
    let rules = wait_for(
        &mut procs,
        Duration::from_secs(10),
        "rules evaluated",
        || {
            let data = api(&http, &base, "/api/v1/rules", &[])?;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            // A rule not yet evaluated reports Go's zero time.
            let evaluated = |r: &Value| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001-"))
            };
            if !rules.is_empty() && rules.iter().all(evaluated) {
                Ok(rules)
            } else {
                Err("a rule has not been evaluated yet".into())
            }
        },
    );
    let mut loaded: Vec<String> = rules
        .iter()
        .filter(|r| r["type"] == "alerting")
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    loaded.sort();
    assert_eq!(
        loaded, alert_names,
        "Prometheus loaded other rules than alerts.yml names"
    );
    let alert_exprs: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap_or_default().to_string();
            let query = r["query"].as_str().expect("rule query").to_string();
            (name, comparisons_as_bool(&query))
        })
        .collect();

    // Every expression must return data; each is retried until it does or the deadline passes.
    let mut pending: Vec<(&str, &str, &str)> = dash_exprs
        .iter()
        .map(|(t, e)| ("dashboard", t.as_str(), e.as_str()))
        .chain(
            alert_exprs
                .iter()
                .map(|(n, e)| ("alert", n.as_str(), e.as_str())),
        )
        .collect();
    let mut last_error: Vec<String> = Vec::new();
    let query_start = Instant::now();
    while !pending.is_empty() && query_start.elapsed() < QUERY_DEADLINE {
        procs.check_alive();
        last_error.clear();
        pending.retain(|&(kind, name, expr)| match data_of(&http, &base, expr) {
            Ok(_) => false,
            Err(why) => {
                last_error.push(format!("{kind} {name:?}: {expr}\n    {why}"));
                true
            }
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(
        pending.is_empty(),
        "{} expression(s) returned no data within {QUERY_DEADLINE:?}:\n{}",
        pending.len(),
        last_error.join("\n")
    );
    // Written past the test harness's capture, so CI's log shows what was checked.
    let _ = writeln!(
        std::io::stderr(),
        "prometheus test: {} dashboard expressions and {} alert expressions returned data \
         (target up after {:.1} s, all data after {:.1} s more)",
        dash_exprs.len(),
        alert_exprs.len(),
        up_after.as_secs_f64(),
        query_start.elapsed().as_secs_f64()
    );

    // Prometheus evaluated each rule without error. Which alerts are pending or firing is shown,
    // not asserted: it depends on the machine (backpressure needs 5 minutes to fire).
    let data = api(&http, &base, "/api/v1/rules", &[]).expect("rules");
    let mut states = String::new();
    for g in data["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            assert_eq!(
                r["health"], "ok",
                "rule {} failed: {}",
                r["name"], r["lastError"]
            );
            let _ = write!(
                states,
                " {}={}",
                r["name"].as_str().unwrap_or("?"),
                r["state"]
            );
        }
    }
    let _ = writeln!(std::io::stderr(), "prometheus test: alert states:{states}");
    // The daemon's failed file and refused reload happened under Prometheus's eyes, and those
    // rules have no `for`: they fire.
    wait_for(
        &mut procs,
        Duration::from_secs(30),
        "the daemon's alerts to fire",
        || {
            let data = api(&http, &base, "/api/v1/rules", &[])?;
            let state = |name: &str| {
                data["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .find(|r| r["name"] == name)
                    .map(|r| r["state"].clone())
            };
            let states = [
                state("SweepDaemonFileFailed"),
                state("SweepDaemonReloadRejected"),
            ];
            if states
                .iter()
                .all(|s| s.as_ref().is_some_and(|s| s == "firing"))
            {
                Ok(())
            } else {
                Err(format!("{states:?}"))
            }
        },
    );

    // promtool lints the rules file of the repository.
    let lint = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(repo("grafana/alerts.yml"))
        .output()
        .expect("run promtool");
    let lint_out = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        lint.status.success(),
        "promtool check rules failed:\n{lint_out}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "prometheus test: promtool check rules grafana/alerts.yml: {}",
        lint_out.split_whitespace().collect::<Vec<_>>().join(" ")
    );

    // sweep's own /metrics once the run is over (hold_secs keeps it up): every metric, the
    // histogram's buckets, and the job done.
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let metrics = wait_for(
        &mut procs,
        Duration::from_secs(40),
        "the run to finish",
        || {
            let (code, text) = get(&http, &metrics_url, &[])?;
            let done = sample(&text, "sweep_jobs{state=\"done\"}");
            let running = sample(&text, "sweep_jobs{state=\"running\"}");
            // Two jobs: the orders file and the sweep analysis's trades file.
            if code == 200 && done == Some(2.0) && running == Some(0.0) {
                Ok(text)
            } else {
                Err(format!("{code}: done {done:?}, running {running:?}"))
            }
        },
    );
    for name in METRICS {
        let series = metrics.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        });
        assert!(series, "/metrics has no {name} series:\n{metrics}");
    }
    assert!(
        metrics.contains("sweep_component_batch_duration_seconds_bucket{")
            && metrics.contains("le=\"+Inf\""),
        "the batch duration is not a histogram with buckets:\n{metrics}"
    );
    assert_eq!(sample(&metrics, "sweep_jobs{state=\"failed\"}"), Some(0.0));

    // The daemon's own series, with what it did: two files ingested, one failed, a reload refused.
    let (_, dm) = get(&http, &daemon_metrics, &[]).expect("daemon metrics");
    for name in DAEMON_METRICS {
        assert!(dm.contains(name), "daemon /metrics has no {name}:\n{dm}");
    }
    for (series, want) in [
        ("sweep_daemon_files_total{outcome=\"ingested\"}", 2.0),
        ("sweep_daemon_files_total{outcome=\"failed\"}", 1.0),
        ("sweep_daemon_reloads_total{result=\"rejected\"}", 1.0),
        ("sweep_daemon_state_version", 3.0),
    ] {
        assert_eq!(sample(&dm, series), Some(want), "{series}:\n{dm}");
    }

    // The bus daemon's series: two files announced, one folded, one given up, nothing left
    // pending.
    let bm = wait_for(
        &mut procs,
        Duration::from_secs(20),
        "the bus daemon's file folded and its backlog read as empty",
        || {
            let (_, bm) = get(&http, &bus_metrics, &[])?;
            let done = sample(&bm, "sweep_daemon_files_total{outcome=\"ingested\"}") == Some(1.0)
                && sample(&bm, "sweep_bus_notices_total{outcome=\"terminated\"}") == Some(1.0)
                && sample(&bm, "sweep_bus_consumer_pending") == Some(0.0);
            if done { Ok(bm) } else { Err(bm) }
        },
    );
    for name in BUS_METRICS {
        assert!(
            bm.contains(name),
            "bus daemon /metrics has no {name}:\n{bm}"
        );
    }
    for (series, want) in [
        ("sweep_bus_notices_total{outcome=\"published\"}", 2.0),
        ("sweep_bus_notices_total{outcome=\"deduped\"}", 0.0),
        ("sweep_bus_notices_total{outcome=\"redelivered\"}", 0.0),
        ("sweep_bus_notices_total{outcome=\"terminated\"}", 1.0),
        ("sweep_daemon_files_total{outcome=\"failed\"}", 1.0),
    ] {
        assert_eq!(sample(&bm, series), Some(want), "{series}:\n{bm}");
    }
    drop(procs);
    drop(nats);
    let _ = writeln!(
        std::io::stderr(),
        "prometheus test: took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn comparisons_become_bool() {
    assert_eq!(
        comparisons_as_bool("sweep_edge_in_flight >= sweep_edge_capacity"),
        "sweep_edge_in_flight >= bool sweep_edge_capacity"
    );
    assert_eq!(
        comparisons_as_bool(
            r#"sum(sweep_jobs{state="running",x!="a>b"}) > 0 and on () sum(rate(m[1m])) == 0"#
        ),
        r#"sum(sweep_jobs{state="running",x!="a>b"}) > bool 0 and on () sum(rate(m[1m])) == bool 0"#
    );
    assert_eq!(comparisons_as_bool("a<bool 1"), "a<bool 1");
    assert_eq!(comparisons_as_bool("a != b"), "a != bool b");
    assert_eq!(comparisons_as_bool("a<booly"), "a< bool booly");
}

/// Starts `sweep run` on `p` in `s`, serving metrics on `port`: the process (killed when dropped),
/// an HTTP client and the `/metrics` address.
fn serve_run(s: &Scratch, p: &Pipeline, port: u16) -> (Processes, ureq::Agent, String) {
    s.write("p.toml", p.toml());
    let mut procs = Processes {
        children: Vec::new(),
    };
    procs.spawn(
        "sweep run",
        Command::new(env!("CARGO_BIN_EXE_sweep"))
            .args(["run", "p.toml"])
            .current_dir(s.dir.path()),
        s.path("run.log"),
    );
    (procs, agent(), format!("http://127.0.0.1:{port}/metrics"))
}

/// A run far shorter than the monitor's 1 s tick still serves every gauge, and a scrape during
/// `hold_secs` sees the final values. Needs no Prometheus: it reads the endpoint directly.
#[test]
fn a_short_run_serves_its_gauges_with_final_values() {
    let s = Scratch::new();
    let rows: String = (0..50)
        .map(|i| {
            let mut r = Row::new(syd("2024-09-02 11:00:00") + i);
            r.id += i as u64;
            format!("{}\n", r.line())
        })
        .collect();
    s.write("in.csv", format!("{HEADER}\n{rows}"));
    let [port] = free_ports::<1>();
    let p = Pipeline::standard("in.csv").section(
        "monitor",
        &[
            "hold_secs = 30",
            &format!("prometheus = \"127.0.0.1:{port}\""),
        ],
    );
    let (mut procs, agent, url) = serve_run(&s, &p, port);
    let body = wait_for(
        &mut procs,
        Duration::from_secs(30),
        "the run's final metrics",
        || {
            // The run is over once its one job is done; the process is then in its hold
            // (`wait_for` fails if it has exited).
            let (_, body) = get(&agent, &url, &[])?;
            match sample(&body, "sweep_jobs{state=\"done\"}") {
                Some(1.0) => Ok(body),
                _ => Err(format!("not done yet:\n{body}")),
            }
        },
    );
    assert_eq!(
        sample(&body, "sweep_jobs{state=\"done\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sweep_jobs{state=\"pending\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sweep_jobs{state=\"running\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sweep_edge_capacity{from=\"orders\",to=\"cp\"}"),
        Some(8.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sweep_edge_in_flight{from=\"orders\",to=\"cp\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(
        sample(&body, "sweep_process_resident_memory_bytes").is_some_and(|v| v > 1e6),
        "{body}"
    );
    // Present; its value is in clock ticks (10 ms), which a 50-row run may not reach.
    assert!(
        sample(&body, "sweep_process_cpu_seconds_total").is_some_and(|v| v >= 0.0),
        "{body}"
    );
}

/// The gauges are served from the start of a run, born at their start values, not only after
/// the monitor's first 1 s tick: a scrape in a run's first moments sees the jobs and the edges.
#[test]
fn gauges_are_served_from_the_start_of_a_run() {
    let s = Scratch::new();
    s.write(
        "in.csv",
        format!(
            "{HEADER}\n{}\n",
            Row::new(syd("2024-09-02 11:00:00")).line()
        ),
    );
    let [port] = free_ports::<1>();
    // The extract sleeps 3 s on its one batch, so the run is still going when it is scraped.
    let p = Pipeline::standard("in.csv")
        .sink("extract", "out/x.csv")
        .set("sinks.extract", "pause_per_batch_ms = 3000")
        .section("monitor", &[&format!("prometheus = \"127.0.0.1:{port}\"")]);
    let (mut procs, agent, url) = serve_run(&s, &p, port);
    // The stages' counters exist as soon as the stages do; the gauges must be there with them.
    let (first, seen_at) = wait_for(
        &mut procs,
        Duration::from_secs(30),
        "the stages' series",
        || {
            let (_, body) = get(&agent, &url, &[])?;
            if body.contains("sweep_component_received_records_total") {
                Ok((body, Instant::now()))
            } else {
                Err("no stage series yet".to_string())
            }
        },
    );
    let body = if first.contains("sweep_jobs{") {
        first
    } else {
        wait_for(&mut procs, Duration::from_secs(30), "the gauges", || {
            let (_, body) = get(&agent, &url, &[])?;
            if body.contains("sweep_jobs{") {
                Ok(body)
            } else {
                Err("no gauges yet".to_string())
            }
        })
    };
    let late = seen_at.elapsed();
    assert!(
        late < Duration::from_millis(500),
        "gauges came {late:?} after the stages' series (the monitor ticks each second)"
    );
    assert_eq!(
        sample(&body, "sweep_jobs{state=\"done\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sweep_edge_capacity{from=\"orders\",to=\"cp\"}"),
        Some(8.0),
        "{body}"
    );
}
