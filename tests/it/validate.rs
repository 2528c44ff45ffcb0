//! `sweep validate`: every problem reported at once, each with its line and column.

use crate::common::Scratch;

#[test]
fn three_mistakes_are_all_reported_with_positions() {
    let s = Scratch::new();
    s.write(
        "bad.toml",
        r#"name = "bad"
[readers.orders]
path = "x.csv"
[filters.cp]
inputs = ["ordrs"]
trading_hours = { start = "10:00", end = "25:00", timezone = "Australia/Sidney" }
[aggregators.stats]
inputs = ["cp"]
[sinks.tables]
inputs = ["stats"]
path = "out"
"#,
    );
    let out = s.sweep(&["validate", "bad.toml"]);
    out.assert_code(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "bad.toml has 3 errors:",
            "  bad.toml:5:11: unknown input `ordrs`; the stages are: cp, orders, stats, tables",
            "  bad.toml:6:42: `25:00` is not a time of day: use HH:MM or HH:MM:SS between 00:00 and 24:00",
            "  bad.toml:6:62: unknown timezone `Australia/Sidney`: use an IANA name such as \"Australia/Sydney\" or a fixed offset such as \"+10:00\"",
        ]
    );
}

#[test]
fn graph_and_schema_mistakes_in_different_stages_are_all_reported() {
    let s = Scratch::new();
    s.write(
        "bad.toml",
        r#"[readers.orders]
path = "x.csv"
colour = "blue"
[filters.a]
inputs = ["b"]
[filters.b]
inputs = ["a"]
[filters.c]
inputs = ["stats"]
[aggregators.stats]
inputs = ["orders"]
group_by = ["weekday"]
[sinks.tables]
inputs = ["stats"]
path = "out"
partition_by = ["date"]
"#,
    );
    let out = s.sweep(&["validate", "bad.toml"]);
    out.assert_code(2);
    let expect = [
        "bad.toml:3:1: unknown field `colour`",
        "bad.toml:4:10: stage `a` is part of a cycle: a <- b <- a",
        "bad.toml:6:10: stage `b` is part of a cycle: b <- a <- b",
        "bad.toml:9:11: filter `c` takes rows, but input `stats` (aggregator) produces aggregate tables",
        "bad.toml:12:13: unknown grouping \"weekday\"",
        "bad.toml:16:16: `partition_by` applies only to a sink that receives rows from a reader or filter",
    ];
    assert!(
        out.stderr.starts_with("bad.toml has 6 errors:"),
        "{}",
        out.stderr
    );
    for e in expect {
        assert!(
            out.stderr.lines().any(|l| l.trim_start().starts_with(e)),
            "missing `{e}` in:\n{}",
            out.stderr
        );
    }
}

#[test]
fn daemon_section_mistakes_are_reported_with_positions() {
    let s = Scratch::new();
    s.write(
        "d.toml",
        r#"[readers.orders]
path = "in/*.csv"
[aggregators.stats]
inputs = ["orders"]
[sinks.tables]
inputs = ["stats"]
path = "out"
[daemon]
state = "st"
complete = "whenever"
settle_secs = -1
changed_files = "merge"
colour = "blue"
"#,
    );
    let out = s.sweep(&["validate", "d.toml"]);
    out.assert_code(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], "d.toml has 1 error:", "{}", out.stderr);
    assert!(
        lines[1].starts_with("  d.toml:13:1: unknown field `colour`"),
        "{}",
        out.stderr
    );
    // Without the unknown key, the values themselves are checked, all at once.
    s.write(
        "d.toml",
        s.read("d.toml").replace("colour = \"blue\"\n", ""),
    );
    let out = s.sweep(&["validate", "d.toml"]);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "d.toml has 3 errors:",
            "  d.toml:10:12: `complete` is \"whenever\"; expected one of \"settle\", \"marker\", \"rename\"",
            "  d.toml:11:15: settle_secs must be between 0 and 3600, not -1",
            "  d.toml:12:17: `changed_files` is \"merge\"; expected one of \"skip\", \"ingest\"",
        ]
    );
    // `sweep daemon` on a pipeline without the section says what to add.
    s.sweep(&["daemon", "p.toml"]).assert_code(2);
    s.write("p.toml", s.read("d.toml").split("[daemon]").next().unwrap());
    s.sweep(&["daemon", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains("no [daemon] section");
}

#[test]
fn daemon_nats_mistakes_are_reported_with_positions() {
    let s = Scratch::new();
    let head = r#"[readers.orders]
path = "in/*.csv"
[aggregators.stats]
inputs = ["orders"]
[sinks.tables]
inputs = ["stats"]
path = "out"
[daemon]
state = "shared"
[daemon.nats]
"#;
    s.write(
        "d.toml",
        format!("{head}urls = [\"nats://h:4222\"]\nack_wait = 3\n"),
    );
    let out = s.sweep(&["validate", "d.toml"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("d.toml:12:1: unknown field `ack_wait`"),
        "{}",
        out.stderr
    );
    s.write(
        "d.toml",
        format!(
            "{head}urls = [\"h:4222\"]\nstream = \"sweep files\"\nsubject = \"a.*\"\n\
             max_deliver = 0\nreplicas = 7\nack_wait_secs = 0\n"
        ),
    );
    let out = s.sweep(&["validate", "d.toml"]);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "d.toml has 6 errors:",
            "  d.toml:11:9: \"h:4222\" is not a server URL; write \"nats://HOST:PORT\" or \"tls://HOST:PORT\"",
            "  d.toml:12:10: `stream` is \"sweep files\"; use letters, digits, `-` and `_` only",
            "  d.toml:13:11: `subject` is \"a.*\"; use dot-separated tokens without `*` or `>`",
            "  d.toml:14:15: max_deliver must be between 1 and 1000, not 0",
            "  d.toml:15:12: replicas must be between 1 and 5, not 7",
            "  d.toml:16:17: ack_wait_secs must be between 1 and 3600, not 0",
        ]
    );
    // Daemons of a bus commit per-file partials: a rows sink is refused before connecting.
    s.write(
        "d.toml",
        format!(
            "{head}urls = [\"nats://127.0.0.1:9\"]\n[sinks.rows]\ninputs = [\"orders\"]\n\
             path = \"out/rows.csv\"\n"
        ),
    );
    s.sweep(&["validate", "d.toml"]).assert_success();
    s.sweep(&["daemon", "d.toml"])
        .assert_code(2)
        .assert_stderr_contains("daemons sharing a bus ([daemon.nats]) commit per-file partials");
}

#[test]
fn the_shipped_pipelines_are_valid() {
    let s = Scratch::new();
    for p in [
        "centrepoint",
        "bench",
        "centrepoint-daemon",
        "centrepoint-bus",
    ] {
        let path = format!("{}/pipelines/{p}.toml", env!("CARGO_MANIFEST_DIR"));
        s.sweep(&["validate", &path])
            .case(p)
            .assert_success()
            .assert_stdout_contains("valid");
    }
}

#[test]
fn set_overrides_values_and_bad_overrides_are_errors() {
    let s = Scratch::new();
    let path = format!("{}/pipelines/bench.toml", env!("CARGO_MANIFEST_DIR"));
    s.sweep(&[
        "validate",
        &path,
        "--set",
        "readers.orders.path=a b.csv",
        "--set",
        "runtime.workers=3",
    ])
    .assert_success();
    s.sweep(&["validate", &path, "--set", "runtime.workers=0"])
        .assert_code(2)
        .assert_stderr_contains("workers must be between 1 and 1024, not 0");
}
