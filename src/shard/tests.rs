//! The plan's determinism and balance (property tests), the partial's names, round trip and
//! exactly-once commit.

use std::sync::Arc;

use proptest::prelude::*;

use super::partial::{self, Committed, Header, is_temp_name, parse_final_name};
use super::plan::{ShardPlan, Unit, Work, load_plan};
use crate::aggregators::AggState;
use crate::config::StageKind;

fn unit(reader: &str, path: &str, bytes: u64) -> Unit {
    Unit {
        bytes,
        head: format!("{:032x}", bytes.wrapping_mul(2654435761)),
        index: 0,
        path: path.into(),
        reader: reader.into(),
        seq: 0,
    }
}

/// One aggregator, `stats`.
fn stats() -> Work {
    Work {
        aggregators: vec!["stats".into()],
        ..Work::default()
    }
}

/// One sweep analysis, `fills`, cut into `partitions`.
fn fills(partitions: usize) -> Work {
    Work {
        sweeps: vec![("fills".into(), partitions)],
        ..Work::default()
    }
}

fn build(units: Vec<Unit>, shards: usize) -> ShardPlan {
    ShardPlan::build("p", "v2:abc", &stats(), units, shards, "/shared")
}

/// Units with distinct paths (a reader names a file once), sizes drawn so that ties happen.
fn units() -> impl Strategy<Value = Vec<Unit>> {
    prop::collection::vec((0..2usize, 0..6u64, 0..3u64), 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (r, size, scale))| {
                let bytes = size * 10u64.pow(scale as u32 * 3);
                unit(["orders", "more"][r], &format!("in/f{i:03}.csv"), bytes)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn the_plan_is_deterministic_and_balanced(
        (units, shuffled) in units().prop_flat_map(|u| (Just(u.clone()), Just(u).prop_shuffle())),
        shards in 1..9usize,
    ) {
        let plan = build(units.clone(), shards);
        // Same inputs, same bytes; the order files were found in changes nothing.
        prop_assert_eq!(plan.to_json(), build(units.clone(), shards).to_json());
        prop_assert_eq!(plan.to_json(), build(shuffled, shards).to_json());
        // Every unit is on exactly one shard.
        let mut seen: Vec<usize> = plan.shards.iter().flat_map(|s| s.units.clone()).collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..units.len()).collect::<Vec<_>>());
        // No shard more than the largest unit above the mean: max·n − total ≤ largest·n.
        let n = shards as u128;
        let total: u128 = plan.shards.iter().map(|s| s.bytes as u128).sum();
        let max = plan.shards.iter().map(|s| s.bytes as u128).max().unwrap_or(0);
        let largest = units.iter().map(|u| u.bytes as u128).max().unwrap_or(0);
        prop_assert!(max * n <= total + largest * n, "max {max}, total {total}, largest {largest}");
    }

    /// A sweep analysis's partitions: at least one per reduce shard, each on exactly one shard,
    /// in contiguous ranges whose sizes differ by at most one; the plan stays deterministic.
    #[test]
    fn the_reduce_ranges_cover_every_partition_once_and_balance(
        units in units(),
        shards in 1..9usize,
        partitions in 1..5000usize,
    ) {
        let plan = ShardPlan::build(
            "p", "v2:abc", &fills(partitions), units.clone(), shards, "/shared",
        );
        let again = ShardPlan::build(
            "p", "v2:abc", &fills(partitions), units, shards, "/shared",
        );
        prop_assert_eq!(plan.to_json(), again.to_json());
        let w = &plan.sweeps[0];
        prop_assert_eq!(w.partitions, partitions.max(shards));
        prop_assert_eq!(w.reduce.len(), shards);
        prop_assert_eq!(w.reduce[0].from, 0);
        prop_assert_eq!(w.reduce[shards - 1].to, w.partitions);
        for (i, r) in w.reduce.iter().enumerate() {
            prop_assert_eq!(r.index, i);
            prop_assert!(r.to > r.from);
            if i > 0 {
                prop_assert_eq!(w.reduce[i - 1].to, r.from);
            }
        }
        let sizes: Vec<usize> = w.reduce.iter().map(|r| r.to - r.from).collect();
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        prop_assert!(hi - lo <= 1, "{sizes:?}");
    }
}

/// A plan without a sweep analysis has no `sweeps` key (so it hashes as before they existed);
/// one with it hashes differently, and by its partition count.
#[test]
fn the_sweeps_part_of_a_plan_is_hashed_only_when_there() {
    let units = vec![unit("orders", "a.csv", 10), unit("trades", "b.csv", 4)];
    let plain = build(units.clone(), 2);
    assert!(!plain.to_json().contains("\"sweeps\""));
    let with = |parts: usize| {
        ShardPlan::build(
            "p",
            "v2:abc",
            &Work {
                aggregators: vec!["stats".into()],
                ..fills(parts)
            },
            units.clone(),
            2,
            "/shared",
        )
    };
    assert_ne!(with(8).plan_hash, plain.plan_hash);
    assert_ne!(with(8).plan_hash, with(9).plan_hash);
    assert_eq!(with(8).plan_hash, with(8).plan_hash);
    // Folders: one per aggregator, two per sweep analysis for the map, one for the reduce.
    assert_eq!(
        with(8).map_folders(),
        ["stats", "fills.orders", "fills.trades"]
    );
    assert_eq!(with(8).reduce_folders(), ["fills.reduce"]);
}

#[test]
fn ties_go_to_the_lowest_shard_and_keys_are_sorted() {
    let plan = build(
        vec![
            unit("orders", "b.csv", 10),
            unit("orders", "a.csv", 10),
            unit("orders", "c.csv", 30),
        ],
        2,
    );
    // c (30) to shard 0; a and b (10 each, a first by path) to shard 1, the least loaded.
    let paths = |i: usize| -> Vec<&str> {
        plan.shards[i]
            .units
            .iter()
            .map(|&u| plan.units[u].path.as_str())
            .collect()
    };
    assert_eq!(paths(0), ["c.csv"]);
    assert_eq!(paths(1), ["a.csv", "b.csv"]);
    let v: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        keys, sorted,
        "serde_json sorts map keys; the plan must not depend on that"
    );
    let text = plan.to_json();
    let mut at = 0;
    for k in [
        "\"format\"",
        "\"pipeline\"",
        "\"pipeline_digest\"",
        "\"plan_hash\"",
        "\"shards\"",
        "\"shared\"",
        "\"stages\"",
        "\"total_bytes\"",
        "\"units\"",
    ] {
        let i = text[at..]
            .find(k)
            .unwrap_or_else(|| panic!("{k} out of order"))
            + at;
        at = i;
    }
}

#[test]
fn the_hash_covers_files_and_shard_count_but_not_the_shared_folder() {
    let a = build(vec![unit("orders", "a.csv", 10)], 2);
    let more = build(vec![unit("orders", "a.csv", 11)], 2);
    let cut = build(vec![unit("orders", "a.csv", 10)], 3);
    let moved = ShardPlan::build(
        "p",
        "v2:abc",
        &stats(),
        vec![unit("orders", "a.csv", 10)],
        2,
        "/elsewhere",
    );
    assert_ne!(a.plan_hash, more.plan_hash);
    assert_ne!(a.plan_hash, cut.plan_hash);
    assert_eq!(a.plan_hash, moved.plan_hash);
}

#[test]
fn an_edited_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = build(
        vec![unit("orders", "a.csv", 10), unit("orders", "b.csv", 20)],
        2,
    );
    let f = dir.path().join("plan.json");
    std::fs::write(&f, plan.to_json()).unwrap();
    assert_eq!(load_plan(&f).unwrap(), plan);
    std::fs::write(&f, plan.to_json().replace("\"bytes\": 20", "\"bytes\": 21")).unwrap();
    let e = load_plan(&f).unwrap_err().to_string();
    assert!(e.contains("edited or damaged"), "{e}");
}

#[test]
fn partial_names_are_canonical() {
    assert_eq!(parse_final_name("shard-0"), Some(0));
    assert_eq!(parse_final_name("shard-12"), Some(12));
    for bad in [
        "shard-",
        "shard-01",
        "shard-+1",
        "shard-1.tmp",
        "shard1",
        ".shard-1",
    ] {
        assert_eq!(parse_final_name(bad), None, "{bad}");
    }
    assert!(is_temp_name(".shard-3.tmp-a1B2c3"));
    assert!(!is_temp_name("shard-3") && !is_temp_name(".shard-.tmp-x"));
}

fn stats_state() -> AggState {
    let p = crate::config::load(
        "t.toml",
        r#"[readers.o]
path = "o.csv"
[aggregators.stats]
inputs = ["o"]
quantiles = [0.5]
[sinks.t]
inputs = ["stats"]
path = "out"
"#,
        &[],
    )
    .unwrap();
    let spec = p
        .stages
        .iter()
        .find_map(|s| match &s.kind {
            StageKind::Aggregator(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    AggState::new(Arc::new(spec))
}

fn header(index: usize) -> Header {
    Header {
        plan_hash: "0123".into(),
        pipeline_digest: "v2:abc".into(),
        shard_index: index,
        shard_count: 4,
        stage: "stats".into(),
        rows: 0,
        duration_sec: 0.5,
        ledger: vec![partial::LedgerEntry {
            bytes_read: 9,
            duration_sec: 0.25,
            file: "in/a.csv".into(),
            file_bytes: 9,
            paths: None,
            reader: "o".into(),
            rows_filtered_out: 2,
            rows_kept: 3,
            rows_read: 6,
            rows_rejected: 1,
            unit: 5,
        }],
    }
}

#[test]
fn a_partial_describes_itself_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let state = stats_state();
    let bytes = partial::encode(&header(2), &state).unwrap();
    let target = dir.path().join("shard-2");
    let temp = partial::create_temp(dir.path(), "shard-2").unwrap();
    assert_eq!(
        partial::commit(temp, &bytes, &target).unwrap(),
        Committed::Created
    );
    let (h, snap) = partial::read(&target).unwrap();
    assert_eq!((h.shard_index, h.shard_count), (2, 4));
    assert_eq!(h.ledger, header(2).ledger);
    assert_eq!(snap, state.snapshot());
    // Only the partial is left: the temporary's name went with the commit.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["shard-2"]);
}

#[test]
fn racing_commits_leave_exactly_one_partial() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("shard-1");
    let state = stats_state();
    let outcomes: Vec<Committed> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (dir, target, state) = (dir.path(), &target, &state);
                s.spawn(move || {
                    let bytes = partial::encode(&header(1), state).unwrap();
                    let temp = partial::create_temp(dir, "shard-1").unwrap();
                    partial::commit(temp, &bytes, target).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = outcomes
        .iter()
        .filter(|&&c| c == Committed::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A temporary removed under a live attempt (a later attempt's clean-up) is written again.
    let other = dir.path().join("shard-3");
    let temp = partial::create_temp(dir.path(), "shard-3").unwrap();
    assert_eq!(partial::remove_stale_temps(dir.path(), "shard-3"), 1);
    let bytes = partial::encode(&header(3), &state).unwrap();
    assert_eq!(
        partial::commit(temp, &bytes, &other).unwrap(),
        Committed::Created
    );
    assert!(partial::read(&other).is_ok());
}

fn launch(throttle: usize) -> super::Launch {
    super::Launch {
        binary: "/opt/sweep/bin/sweep".into(),
        pipeline: "/jobs/day one.toml".into(),
        set: vec!["sinks.tables.path=/out/it's".into()],
        workdir: "/jobs".into(),
        throttle,
    }
}

/// The Slurm script: the plan written beside the run folder, an array of every shard with the
/// throttle (clamped to the shard count), the merge on `afterok`, and every path quoted once for
/// the shell, the overrides passed to both.
#[test]
fn the_slurm_script_submits_an_array_then_the_merge() {
    let plan = build(
        vec![unit("o", "a", 5), unit("o", "b", 4), unit("o", "c", 3)],
        3,
    );
    let script = super::slurm(&plan, &launch(2)).unwrap();
    let h = &plan.plan_hash;
    let short = &h[..8];
    assert!(script.starts_with("#!/usr/bin/env bash\n"));
    assert!(script.contains(&format!("cat > /shared/{h}.plan.json <<'SWEEP_PLAN'\n{{")));
    assert!(script.contains(&plan.to_json()));
    // The words each job runs, read back the way the shell reads them.
    let wrapped = |prefix: &str| -> (Vec<String>, Vec<String>) {
        let line = script.lines().find(|l| l.starts_with(prefix)).unwrap();
        let inner = line
            .strip_prefix(prefix)
            .and_then(|l| l.strip_suffix(')'))
            .unwrap();
        let words = shlex::split(inner).unwrap();
        let wrap = words
            .iter()
            .find_map(|w| w.strip_prefix("--wrap="))
            .unwrap();
        (words.clone(), shlex::split(wrap).unwrap())
    };
    let job = |verb: &str| -> Vec<String> {
        [
            "/opt/sweep/bin/sweep",
            verb,
            "/jobs/day one.toml",
            "--set",
            "sinks.tables.path=/out/it's",
            "--plan",
            &format!("/shared/{h}.plan.json"),
        ]
        .map(String::from)
        .to_vec()
    };
    let (array, run) = wrapped("array=$(");
    assert_eq!(
        array[..7],
        [
            "sbatch",
            "--parsable",
            &format!("--job-name=sweep-{short}"),
            "--array=0-2%2",
            "--requeue",
            "--chdir=/jobs",
            &format!("--output=/shared/{h}.logs/shard-%a.out"),
        ]
    );
    assert_eq!(run, job("run"));
    let (merge, merged) = wrapped("merge=$(");
    assert_eq!(
        merge[..5],
        [
            "sbatch",
            "--parsable",
            &format!("--job-name=sweep-merge-{short}"),
            "--dependency=afterok:${array}",
            "--kill-on-invalid-dep=yes",
        ]
    );
    assert_eq!(merged, job("merge"));
    assert!(script.ends_with("echo \"$array $merge\"\n"));
    // A throttle above the shard count is the shard count.
    assert!(
        super::slurm(&plan, &launch(9))
            .unwrap()
            .contains("--array=0-2%3 ")
    );
}

/// With a sweep analysis the script submits the reduce shards as a second array that starts
/// once every map shard succeeded, and the merge after the reduce.
#[test]
fn the_slurm_script_of_a_sweep_analysis_chains_map_reduce_and_merge() {
    let plan = ShardPlan::build(
        "p",
        "v2:abc",
        &fills(12),
        vec![unit("orders", "a", 5), unit("trades", "b", 4)],
        3,
        "/shared",
    );
    let script = super::slurm(&plan, &launch(2)).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    let reduce = lines
        .iter()
        .find(|l| l.starts_with("reduce=$(sbatch"))
        .expect("a reduce array");
    assert!(reduce.contains("--array=0-2%2 "), "{reduce}");
    assert!(
        reduce.contains("--dependency=\"afterok:${array}\""),
        "{reduce}"
    );
    assert!(reduce.contains("--stage reduce"), "{reduce}");
    assert!(reduce.contains("--requeue"), "{reduce}");
    let merge = lines
        .iter()
        .find(|l| l.starts_with("merge=$(sbatch"))
        .expect("the merge");
    assert!(
        merge.contains("--dependency=\"afterok:${reduce}\""),
        "{merge}"
    );
    assert!(script.ends_with("echo \"$array $reduce $merge\"\n"));
}

/// Paths the nodes use must be absolute: a relative one would resolve on each node differently.
#[test]
fn the_slurm_script_needs_absolute_paths() {
    let plan = build(vec![unit("o", "a", 5)], 1);
    let mut l = launch(1);
    l.pipeline = "day.toml".into();
    let e = super::slurm(&plan, &l).unwrap_err().to_string();
    assert!(e.contains("day.toml must be an absolute path"), "{e}");
    let mut relative = plan.clone();
    relative.shared = "shared".into();
    let e = super::slurm(&relative, &launch(1)).unwrap_err().to_string();
    assert!(
        e.contains("the shared folder `shared` must be an absolute path"),
        "{e}"
    );
}
