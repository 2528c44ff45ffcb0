use super::*;
use crate::config;

/// The pipeline the service runs.
const DAEMON_TOML: &str = include_str!("../../../pipelines/centrepoint-daemon.toml");

/// Every reader and filter key set to something other than its default, two readers feeding
/// one filter, and fixed-offset zones beside IANA ones.
const EVERY_KEY_TOML: &str = r#"
name = "every-key"
[readers.b]
path = "b/*.csv.zst"
format = "csv"
compression = "zstd"
delimiter = ";"
columns = { order_id = "orderid", "security_code" = "sec \"code\"" }
on_error = "reject"
rejects = "out/rejects.csv"
[readers.a]
path = "a/*.parquet"
format = "parquet"
[filters.cp]
inputs = ["b", "a"]
exchange_order_types = [4096, 64, 64]
order_type_match = "any_bit"
securities = [7, 3]
participants = [12]
dates = { from = "2024-09-02", to = "2024-09-06" }
timezone = "+10:00"
trading_hours = { start = "10:00", end = "16:00:30", timezone = "Australia/Lord_Howe" }
[filters.open]
inputs = ["cp"]
dates = { to = "2024-10-01" }
[aggregators.stats]
inputs = ["open"]
[sinks.tables]
inputs = ["stats"]
path = "out"
"#;

/// An aggregator with quantiles that `Debug` prints in exponent form and others it does not.
const QUANTILES_TOML: &str = r#"
name = "quantiles"
[readers.orders]
path = "in/*.csv.gz"
[filters.cp]
inputs = ["orders"]
exchange_order_types = [64]
[aggregators.q]
inputs = ["cp", "orders"]
group_by = ["daily", "security"]
timezone = "-05:30"
quantiles = [0.5, 0.9, 0.99, 1.0, 0.00001, 0.1]
[sinks.tables]
inputs = ["q"]
path = "out"
"#;

fn load(text: &str) -> Pipeline {
    config::load("t.toml", text, &[]).unwrap()
}

/// The version 1 digests of the three pipelines, as the release before version 2 wrote them.
const V1_DAEMON: &str = "40e02262750983c8ec4cd6e2cbb94326";
const V1_EVERY_KEY: &str = "45b68573b6a694ecf74e34509117945e";
const V1_QUANTILES: &str = "dd4e96842db65ff1935e0e0f25bb15d2";

/// The version 2 digests of the same pipelines.
const V2_DAEMON: &str = "v2:516ed34a1ebdb112cd0469edb405b09f";
const V2_EVERY_KEY: &str = "v2:81b5852f90f3ea196dd9330b23d2a482";
const V2_QUANTILES: &str = "v2:a2283ece2fb9bf842b4e1f6296fe93e4";

/// The version 1 code as the release before version 2 had it: `Debug` of the config types.
///
/// It only compiles while the config types print what they printed then. When they are
/// refactored (`AggregatorSpec` merged with `AggSpec`, and so on), delete this function and
/// [`legacy_v1_reproduces_the_debug_digest`]: the pinned `V1_*` constants, which it checked,
/// then carry the proof on their own in [`legacy_v1_digests_are_pinned`].
fn debug_v1_digest(p: &Pipeline) -> String {
    let name = |i: &usize| p.stages[*i].name.clone();
    let mut lines: Vec<String> = p
        .stages
        .iter()
        .filter_map(|s| {
            let inputs: Vec<String> = s.inputs.iter().map(name).collect();
            if let StageKind::Reader(r) = &s.kind {
                return Some(format!(
                    "reader {} format={:?} compression={:?} delimiter={} columns={:?} on_error={:?}",
                    s.name, r.format, r.compression, r.delimiter, r.columns, r.on_error
                ));
            }
            if let StageKind::Filter(f) = &s.kind {
                return Some(format!("filter {} {inputs:?} {f:?}", s.name));
            }
            if let StageKind::Aggregator(a) = &s.kind {
                return Some(format!("aggregator {} {inputs:?} {a:?}", s.name));
            }
            None
        })
        .collect();
    lines.sort();
    format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(lines.join("\n").as_bytes())
    )
}

#[test]
fn legacy_v1_reproduces_the_debug_digest() {
    for text in [DAEMON_TOML, EVERY_KEY_TOML, QUANTILES_TOML] {
        let p = load(text);
        assert_eq!(legacy_v1_digest(&p), debug_v1_digest(&p), "{}", p.name);
    }
}

#[test]
fn legacy_v1_digests_are_pinned() {
    let got: Vec<String> = [DAEMON_TOML, EVERY_KEY_TOML, QUANTILES_TOML]
        .map(|t| legacy_v1_digest(&load(t)))
        .into();
    assert_eq!(got, [V1_DAEMON, V1_EVERY_KEY, V1_QUANTILES]);
}

/// The version 2 digest is pinned. Its keys are spelled out by `#[serde(rename)]` and its
/// values built field by field in `digest.rs`, so renaming a field of `ReaderSpec`,
/// `FilterSpec` or `AggregatorSpec` cannot change it: such a rename changes only the Rust
/// expressions that read the field, never the JSON hashed. If this test fails, states written
/// by the running release would be refused: bump the version and migrate instead.
#[test]
fn v2_digests_are_pinned() {
    let got: Vec<String> = [DAEMON_TOML, EVERY_KEY_TOML, QUANTILES_TOML]
        .map(|t| digest(&load(t)))
        .into();
    assert_eq!(got, [V2_DAEMON, V2_EVERY_KEY, V2_QUANTILES]);
}

/// The hashed text itself, for the service's pipeline: what version 2 covers, key by key.
#[test]
fn v2_shape_spells_out_its_keys() {
    let json = serde_json::to_string(&Shape::of(&load(DAEMON_TOML))).unwrap();
    assert_eq!(
        json,
        r#"{"version":2,"readers":{"orders":{"format":"auto","compression":"auto","delimiter":44,"columns":{},"on_error":"reject"}},"filters":{"centrepoint":{"inputs":["orders"],"order_types":{"match":"exact","codes":[64,256,2048,4096,4098]},"securities":null,"participants":null,"dates":null,"trading_hours":{"start_ns":36000000000000,"end_ns":57600000000000,"timezone":{"iana":"Australia/Sydney"}}}},"aggregators":{"stats":{"inputs":["centrepoint"],"group_by":["security","date","participant","hour","size","hourly","daily"],"timezone":{"iana":"Australia/Sydney"},"quantiles":[]}}}"#
    );
}

/// Replaces the first `from` in `text`, which must be there.
fn edit(text: &str, from: &str, to: &str) -> Pipeline {
    assert!(text.contains(from), "{from}");
    load(&text.replacen(from, to, 1))
}

#[test]
fn meaningful_settings_change_v2_and_others_do_not() {
    let base = digest(&load(DAEMON_TOML));
    let changes = [
        (
            "exchange_order_types = [64, 256, 2048, 4096, 4098]",
            "exchange_order_types = [64, 256]",
        ),
        (
            "exchange_order_types = [64, 256, 2048, 4096, 4098]",
            "exchange_order_types = [64, 256, 2048, 4096, 4098]\norder_type_match = \"any_bit\"",
        ),
        (
            r#"group_by = ["security", "date", "participant", "hour", "size", "hourly", "daily"]"#,
            r#"group_by = ["security", "date"]"#,
        ),
        (
            r#"group_by = ["security""#,
            "quantiles = [0.5]\ngroup_by = [\"security\"",
        ),
        (r#"end = "16:00""#, r#"end = "16:10""#),
        (r#"timezone = "Australia/Sydney""#, r#"timezone = "+10:00""#),
        ("on_error = \"reject\"\n", "on_error = \"fail\"\n#"),
        (
            "[filters.centrepoint]\ninputs = [\"orders\"]",
            "[readers.more]\npath = \"more/*.csv\"\n[filters.centrepoint]\ninputs = [\"orders\", \"more\"]",
        ),
    ];
    for (from, to) in changes {
        assert_ne!(digest(&edit(DAEMON_TOML, from, to)), base, "{from} → {to}");
    }
    let neutral = [
        (
            r#"path = "out/centrepoint-daemon/orders.csv.gz""#,
            r#"path = "elsewhere/orders.csv.zst""#,
        ),
        (
            r#"path = "out/centrepoint-daemon""#,
            r#"path = "tables/elsewhere""#,
        ),
        (
            r#"path = "incoming/*.csv.gz""#,
            r#"path = "drop/**/*.csv.gz""#,
        ),
        (
            r#"rejects = "out/centrepoint-daemon/rejects.csv""#,
            r#"rejects = "bad.csv""#,
        ),
        (
            "[monitor]",
            "[runtime]\nworkers = 3\nedge_capacity = 2\n[monitor]",
        ),
        (r#"poll_secs = 1.0"#, r#"poll_secs = 5.0"#),
        // Listed the same codes twice, or in another order: the same set.
        (
            "exchange_order_types = [64, 256, 2048, 4096, 4098]",
            "exchange_order_types = [4098, 4096, 2048, 256, 64, 64]",
        ),
    ];
    for (from, to) in neutral {
        assert_eq!(digest(&edit(DAEMON_TOML, from, to)), base, "{from} → {to}");
    }
}

#[test]
fn input_order_does_not_change_v2_but_names_do() {
    let base = digest(&load(EVERY_KEY_TOML));
    let swapped = edit(
        EVERY_KEY_TOML,
        r#"inputs = ["b", "a"]"#,
        r#"inputs = ["a", "b"]"#,
    );
    assert_eq!(digest(&swapped), base);
    // Stages are known by name: the same reader under another name is another pipeline.
    let renamed = EVERY_KEY_TOML
        .replacen("[readers.b]", "[readers.c]", 1)
        .replacen(r#"inputs = ["b", "a"]"#, r#"inputs = ["c", "a"]"#, 1);
    assert_ne!(digest(&load(&renamed)), base);
}

#[test]
fn the_date_zone_counts_only_with_a_date_window() {
    let with_dates = load(EVERY_KEY_TOML);
    let other_zone = edit(
        EVERY_KEY_TOML,
        r#"timezone = "+10:00""#,
        r#"timezone = "+09:30""#,
    );
    assert_ne!(digest(&with_dates), digest(&other_zone));
    let plain = edit(
        QUANTILES_TOML,
        "exchange_order_types = [64]",
        "exchange_order_types = [64]\ntimezone = \"+09:30\"",
    );
    assert_eq!(digest(&plain), digest(&load(QUANTILES_TOML)));
}

#[test]
fn quantiles_are_hashed_exactly() {
    // The next `f64` after 0.99: equal to it in any printing that rounds.
    let next = edit(QUANTILES_TOML, "0.99,", "0.9900000000000001,");
    assert_ne!(digest(&next), digest(&load(QUANTILES_TOML)));
    // The same value written another way is the same quantile.
    let same = edit(QUANTILES_TOML, "0.99,", "9.9e-1,");
    assert_eq!(digest(&same), digest(&load(QUANTILES_TOML)));
}

#[test]
fn a_state_is_accepted_by_its_own_pipeline_or_its_version_1_digest_only() {
    let p = load(DAEMON_TOML);
    assert_eq!(compare(V2_DAEMON, &p), Verdict::Same);
    assert_eq!(compare(V1_DAEMON, &p), Verdict::LegacyV1);
    // Another pipeline's digests, of either version, are refused.
    for other in [V1_QUANTILES, V2_QUANTILES, "", "v2:", "v3:0"] {
        assert_eq!(compare(other, &p), Verdict::Different, "{other}");
    }
    // A version 2 state is never taken for a version 1 one, whatever its hex.
    assert_eq!(compare(&format!("v2:{V1_DAEMON}"), &p), Verdict::Different);
}
