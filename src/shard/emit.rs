//! The plan as a cluster engine's job. `sweep plan --shards N --emit slurm` prints a bash script
//! that submits the shards as one Slurm job array (at most K at once), a sweep analysis's reduce
//! shards as a second array, and the merge as a job that waits for every shard to succeed
//! (`afterok`); `--emit k8s` prints a Kubernetes `List` of the plan as a ConfigMap, the shards
//! (and reduce shards) as Indexed Jobs and the merge as a Job, the later ones waiting for the
//! partials they need (Kubernetes has no dependency between Jobs). The engine only starts indexed
//! copies of a command and retries them; the exactly-once commit of each shard's partial and the
//! merge's check of the folder listing are sweep's, so nothing here trusts the engine's
//! bookkeeping.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{ShardError, ShardPlan};

/// What the emitted job runs: the binary on the nodes, the pipeline file and its overrides, and
/// the folder the jobs start in (relative input paths resolve against it).
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    pub pipeline: PathBuf,
    pub set: Vec<String>,
    pub workdir: PathBuf,
    /// Shards running at once (Slurm's `%K`); at least 1, at most the shard count.
    pub throttle: usize,
}

/// Words as one POSIX shell word each.
fn quote(words: &[&str]) -> Result<String, ShardError> {
    shlex::try_join(words.iter().copied())
        .map_err(|e| ShardError::Emit(format!("cannot quote {words:?} for the shell: {e}")))
}

fn text(p: &Path) -> Result<&str, ShardError> {
    p.to_str()
        .ok_or_else(|| ShardError::Emit(format!("{} is not UTF-8", p.display())))
}

/// The plan file's path on the shared folder, beside the run folder (which the merge expects to
/// hold only the stages' partials): `SHARED/<plan-hash>.plan.json`.
pub fn plan_path(plan: &ShardPlan) -> PathBuf {
    Path::new(&plan.shared).join(format!("{}.plan.json", plan.plan_hash))
}

/// Where the jobs' logs go: `SHARED/<plan-hash>.logs/`.
pub fn logs_path(plan: &ShardPlan) -> PathBuf {
    Path::new(&plan.shared).join(format!("{}.logs", plan.plan_hash))
}

/// `sweep VERB <pipeline> [--set ...] --plan <plan.json> [EXTRA]` for the job scripts.
fn command(
    plan: &ShardPlan,
    launch: &Launch,
    verb: &str,
    extra: &[&str],
) -> Result<String, ShardError> {
    let plan_file = plan_path(plan);
    let mut words = vec![text(&launch.binary)?, verb, text(&launch.pipeline)?];
    for s in &launch.set {
        words.extend(["--set", s.as_str()]);
    }
    words.extend(["--plan", text(&plan_file)?]);
    words.extend(extra);
    quote(&words)
}

/// The Slurm submission script of `plan`. Running it writes the plan to the shared folder
/// ([`plan_path`]; the jobs' logs go to [`logs_path`]),
/// submits the array and the merge, and prints their job ids (`ARRAY MERGE`). A plan with a
/// sweep analysis has a second array, the reduce shards, between them: it starts once every map
/// shard has succeeded, and the merge once every reduce shard has (`ARRAY REDUCE MERGE`).
///
/// The shards' partials are committed at most once, so Slurm may rerun a task (`--requeue`, node
/// failure, `scontrol requeue`) freely; the merge is cancelled rather than left pending forever
/// if a shard fails for good (`--kill-on-invalid-dep`).
pub fn slurm(plan: &ShardPlan, launch: &Launch) -> Result<String, ShardError> {
    for p in [&launch.binary, &launch.pipeline, &launch.workdir] {
        if !p.is_absolute() {
            return Err(ShardError::Emit(format!(
                "{} must be an absolute path: the jobs start on other nodes",
                p.display()
            )));
        }
    }
    if !Path::new(&plan.shared).is_absolute() {
        return Err(ShardError::Emit(format!(
            "the shared folder `{}` must be an absolute path: the jobs start on other nodes",
            plan.shared
        )));
    }
    let n = plan.shards.len();
    let throttle = launch.throttle.clamp(1, n.max(1));
    let logs = logs_path(plan);
    let short = &plan.plan_hash[..plan.plan_hash.len().min(8)];
    let mut json = plan.to_json();
    if !json.ends_with('\n') {
        json.push('\n');
    }
    if json.lines().any(|l| l == "SWEEP_PLAN") {
        return Err(ShardError::Emit(
            "the plan holds a line that ends its here-document".into(),
        ));
    }
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(s, "#!/usr/bin/env bash");
    let _ = writeln!(
        s,
        "# sweep: plan {} of pipeline `{}`: {} shard(s) over {} file(s), {} bytes, on Slurm.",
        plan.plan_hash,
        plan.pipeline,
        n,
        plan.units.len(),
        plan.total_bytes
    );
    let _ = writeln!(
        s,
        "# Submits the shards as one job array, at most {throttle} at once, then the merge, which \
         runs only\n# once every shard has succeeded (afterok). Prints the two job ids."
    );
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "mkdir -p {}", quote(&[text(&logs)?])?);
    let _ = writeln!(
        s,
        "# The plan the shards and the merge read: the same bytes on every submission."
    );
    let _ = writeln!(
        s,
        "cat > {} <<'SWEEP_PLAN'\n{json}SWEEP_PLAN",
        quote(&[text(&plan_path(plan))?])?
    );
    let shard_log = logs.join("shard-%a.out");
    let merge_log = logs.join("merge.out");
    let _ = writeln!(
        s,
        "array=$(sbatch --parsable --job-name={} --array=0-{}%{throttle} --requeue --chdir={} \
         --output={} --wrap={})",
        quote(&[&format!("sweep-{short}")])?,
        n.saturating_sub(1),
        quote(&[text(&launch.workdir)?])?,
        quote(&[text(&shard_log)?])?,
        quote(&[&command(plan, launch, "run", &[])?])?
    );
    let mut before = "array";
    if !plan.sweeps.is_empty() {
        let _ = writeln!(
            s,
            "reduce=$(sbatch --parsable --job-name={} --array=0-{}%{throttle} --requeue \
             --dependency=\"afterok:${{array}}\" --kill-on-invalid-dep=yes --chdir={} \
             --output={} --wrap={})",
            quote(&[&format!("sweep-reduce-{short}")])?,
            n.saturating_sub(1),
            quote(&[text(&launch.workdir)?])?,
            quote(&[text(&logs.join("reduce-%a.out"))?])?,
            quote(&[&command(plan, launch, "run", &["--stage", "reduce"])?])?
        );
        before = "reduce";
    }
    let _ = writeln!(
        s,
        "merge=$(sbatch --parsable --job-name={} --dependency=\"afterok:${{{before}}}\" \
         --kill-on-invalid-dep=yes --chdir={} --output={} --wrap={})",
        quote(&[&format!("sweep-merge-{short}")])?,
        quote(&[text(&launch.workdir)?])?,
        quote(&[text(&merge_log)?])?,
        quote(&[&command(plan, launch, "merge", &[])?])?
    );
    if plan.sweeps.is_empty() {
        let _ = writeln!(s, "echo \"$array $merge\"");
    } else {
        let _ = writeln!(s, "echo \"$array $reduce $merge\"");
    }
    Ok(s)
}

/// What the Kubernetes Jobs run besides [`Launch`]: the image, the claim that holds the shared
/// folder (mounted at the same path in every pod), and where the plan's ConfigMap is mounted.
#[derive(Debug, Clone)]
pub struct Pods {
    pub image: String,
    pub claim: String,
    pub plan_mount: PathBuf,
    /// Retries of one shard before the Job gives up on it (`backoffLimitPerIndex`).
    pub retries: u32,
    /// How long the merge waits for every shard to commit.
    pub merge_wait_secs: u64,
}

/// The words a pod runs: `sweep VERB <pipeline> [--set ...] --plan <mount>/plan.json [extra]`.
fn pod_command(
    launch: &Launch,
    pods: &Pods,
    verb: &str,
    extra: &[String],
) -> Result<Vec<String>, ShardError> {
    let mut words = vec![
        text(&launch.binary)?.to_string(),
        verb.to_string(),
        text(&launch.pipeline)?.to_string(),
    ];
    for s in &launch.set {
        words.extend(["--set".to_string(), s.clone()]);
    }
    words.extend([
        "--plan".to_string(),
        text(&pods.plan_mount.join("plan.json"))?.to_string(),
    ]);
    words.extend(extra.iter().cloned());
    Ok(words)
}

/// The Kubernetes manifests of `plan`, as one JSON `List` for `kubectl apply -f`: a ConfigMap
/// holding the plan; an Indexed Job of the shards (`completionMode: Indexed`, so each pod's
/// `JOB_COMPLETION_INDEX` is its shard; `backoffLimitPerIndex` retries a shard on its own;
/// `parallelism` is the throttle); with a sweep analysis, a second Indexed Job of the reduce
/// shards, which wait for the map's partials (`--stage reduce --wait`); and the merge Job,
/// which starts with them and runs `sweep merge --wait` until every partial is committed.
pub fn k8s(plan: &ShardPlan, launch: &Launch, pods: &Pods) -> Result<String, ShardError> {
    for p in [&launch.pipeline, &launch.workdir, &pods.plan_mount] {
        if !p.is_absolute() {
            return Err(ShardError::Emit(format!(
                "{} must be an absolute path: it is a path inside the pods",
                p.display()
            )));
        }
    }
    if !Path::new(&plan.shared).is_absolute() {
        return Err(ShardError::Emit(format!(
            "the shared folder `{}` must be an absolute path: it is a path inside the pods",
            plan.shared
        )));
    }
    let n = plan.shards.len();
    let short = &plan.plan_hash[..plan.plan_hash.len().min(8)];
    let (config, shards, merge) = (
        format!("sweep-{short}-plan"),
        format!("sweep-{short}"),
        format!("sweep-merge-{short}"),
    );
    let labels = json!({"app.kubernetes.io/name": "sweep", "sweep/plan": plan.plan_hash});
    let mounts = json!([
        {"name": "shared", "mountPath": plan.shared},
        {"name": "plan", "mountPath": text(&pods.plan_mount)?, "readOnly": true},
    ]);
    let volumes = json!([
        {"name": "shared", "persistentVolumeClaim": {"claimName": pods.claim}},
        {"name": "plan", "configMap": {"name": config}},
    ]);
    let pod = |name: &str, command: Vec<String>| {
        json!({
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": name,
                    "image": pods.image,
                    "command": command,
                    "workingDir": launch.workdir,
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            }
        })
    };
    let wait = vec!["--wait".to_string(), pods.merge_wait_secs.to_string()];
    let reduce_args = vec![
        "--stage".to_string(),
        "reduce".to_string(),
        "--wait".to_string(),
        pods.merge_wait_secs.to_string(),
    ];
    let indexed = |name: &str, container: &str, args: &[String]| -> Result<_, ShardError> {
        Ok(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "completionMode": "Indexed",
                "completions": n,
                "parallelism": launch.throttle.clamp(1, n.max(1)),
                "backoffLimitPerIndex": pods.retries,
                // One shard that fails for good fails the Job, and the merge with it.
                "maxFailedIndexes": 0,
                "template": pod(container, pod_command(launch, pods, "run", args)?),
            }
        }))
    };
    let mut jobs = vec![indexed(&shards, "shard", &[])?];
    if !plan.sweeps.is_empty() {
        // Kubernetes has no dependency between Jobs: the reduce shards start with the map's
        // and wait for their partials.
        jobs.push(indexed(
            &format!("sweep-reduce-{short}"),
            "reduce",
            &reduce_args,
        )?);
    }
    let mut items = vec![json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config, "labels": labels},
        "data": {"plan.json": plan.to_json()},
    })];
    items.extend(jobs);
    items.push(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": merge, "labels": labels},
        "spec": {
            "completions": 1,
            "backoffLimit": pods.retries,
            "template": pod("merge", pod_command(launch, pods, "merge", &wait)?),
        }
    }));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    serde_json::to_string_pretty(&list)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| ShardError::Emit(e.to_string()))
}
