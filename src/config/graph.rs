//! Whole-graph checks: names, inputs, kinds, cycles, dead ends, and which columns each reader
//! must materialise. Every problem is recorded; none stops the others from being found.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use serde_spanned::Spanned;

use super::ConfigError;
use super::model::SinkConfig;
use super::spec::{ColumnNeed, FilterSpec, Output, Stage, StageKind};
use crate::schema::{ORDERS_COLUMNS, TRADES_COLUMNS, col};
use crate::sinks::format::PartitionKey;

pub(super) struct Node {
    name: String,
    span: Range<usize>,
    inputs: Vec<Spanned<String>>,
    kind: StageKind,
    /// Sinks keep their raw config until their inputs tell whether they take rows or tables.
    pub(super) sink: Option<SinkConfig>,
}

impl Node {
    pub(super) fn new(
        name: &str,
        span: &Range<usize>,
        inputs: Vec<Spanned<String>>,
        kind: StageKind,
    ) -> Self {
        Node {
            name: name.to_string(),
            span: span.clone(),
            inputs,
            kind,
            sink: None,
        }
    }
}

/// `broken` names stages whose tables did not deserialise (already reported): they resolve as
/// inputs, and checks that could only repeat their error are skipped.
pub(super) fn check(
    mut nodes: Vec<Node>,
    broken: &[(String, Output)],
    errors: &mut Vec<ConfigError>,
    build_sink: impl Fn(&SinkConfig, bool, &mut Vec<ConfigError>) -> StageKind,
) -> Vec<Stage> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(&first) = index.get(&n.name) {
            let first = &nodes[first];
            errors.push(ConfigError::at(
                n.span.clone(),
                format!("stage name `{}` is used twice (a {} and a {}); names must be unique across sections", n.name, first.kind.label(), n.kind.label()),
            ));
        } else {
            index.insert(n.name.clone(), i);
        }
    }
    let broken_output = |name: &str| broken.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
    if !nodes.iter().any(|n| matches!(n.kind, StageKind::Reader(_)))
        && !broken.iter().any(|(_, o)| *o == Output::Rows)
    {
        errors.push(ConfigError::nowhere(
            "the pipeline has no reader: add a [readers.NAME] section",
        ));
    }
    if !nodes.iter().any(|n| n.sink.is_some()) && !broken.iter().any(|(_, o)| *o == Output::Nothing)
    {
        errors.push(ConfigError::nowhere(
            "the pipeline has no sink: add a [sinks.NAME] section",
        ));
    }
    let mut unknown_inputs = false;

    // Resolve inputs, then settle each sink's kind from what feeds it.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.sink.is_none() && matches!(n.kind, StageKind::Reader(_)) {
            continue;
        }
        if n.inputs.is_empty() {
            errors.push(ConfigError::at(
                n.span.clone(),
                format!("{} `{}` has no inputs", n.kind.label(), n.name),
            ));
        }
        for input in &n.inputs {
            match index.get(input.get_ref().as_str()) {
                Some(&j) if j == i => errors.push(ConfigError::at(
                    input.span(),
                    format!("`{}` lists itself as an input", n.name),
                )),
                Some(&j) if edges[i].contains(&j) => errors.push(ConfigError::at(
                    input.span(),
                    format!("input `{}` is listed twice", input.get_ref()),
                )),
                Some(&j) => edges[i].push(j),
                None if broken_output(input.get_ref()).is_some() => {}
                None => {
                    unknown_inputs = true;
                    let mut known: Vec<&str> = index.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    errors.push(ConfigError::at(
                        input.span(),
                        format!(
                            "unknown input `{}`; the stages are: {}",
                            input.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    for i in 0..nodes.len() {
        let Some(cfg) = nodes[i].sink.take() else {
            continue;
        };
        let outputs: Vec<(Output, usize)> = edges[i]
            .iter()
            .map(|&j| (output_of(&nodes[j]), j))
            .collect();
        let rows = outputs.iter().filter(|(o, _)| *o == Output::Rows).count();
        let tables = outputs.iter().filter(|(o, _)| *o == Output::Tables).count();
        if rows > 0 && tables > 0 {
            errors.push(ConfigError::at(
                cfg.inputs.span(),
                format!("sink `{}` mixes rows (from readers or filters) and tables (from aggregators); use one sink for each", nodes[i].name),
            ));
        }
        for (o, j) in &outputs {
            if *o == Output::Nothing {
                let span = span_of_input(&nodes[i].inputs, &nodes[*j].name);
                errors.push(ConfigError::at(
                    span,
                    format!(
                        "`{}` is a sink and produces nothing to consume",
                        nodes[*j].name
                    ),
                ));
            }
        }
        nodes[i].kind = build_sink(&cfg, tables == 0, errors);
        nodes[i].sink = Some(cfg);
    }
    for (i, n) in nodes.iter().enumerate() {
        if !matches!(n.kind, StageKind::Filter(_) | StageKind::Aggregator(_)) {
            continue;
        }
        for &j in &edges[i] {
            let o = output_of(&nodes[j]);
            if o != Output::Rows {
                let what = if o == Output::Tables {
                    "aggregate tables"
                } else {
                    "nothing"
                };
                errors.push(ConfigError::at(
                    span_of_input(&n.inputs, &nodes[j].name),
                    format!(
                        "{} `{}` takes rows, but input `{}` ({}) produces {what}",
                        n.kind.label(),
                        n.name,
                        nodes[j].name,
                        nodes[j].kind.label()
                    ),
                ));
            }
        }
    }

    // Every reader, filter and aggregator must feed something. A misspelt or unreadable
    // consumer would make this repeat an error already reported, so it waits for those.
    for (i, n) in nodes.iter().enumerate() {
        if n.sink.is_some() || unknown_inputs || !broken.is_empty() {
            continue;
        }
        if !edges.iter().any(|e| e.contains(&i)) {
            errors.push(ConfigError::at(
                n.span.clone(),
                format!(
                    "{} `{}` is not an input of any stage, so its output would be lost",
                    n.kind.label(),
                    n.name
                ),
            ));
        }
    }

    let order = topological(&nodes, &edges, errors);
    let mut position = vec![0; nodes.len()];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
    }
    let mut stages: Vec<Stage> = order
        .iter()
        .map(|&i| Stage {
            name: nodes[i].name.clone(),
            inputs: edges[i].iter().map(|&j| position[j]).collect(),
            kind: nodes[i].kind.clone(),
        })
        .collect();
    column_needs(&mut stages);
    pushdown(&mut stages);
    stages
}

/// Each reader's pushdown: its consumers' filters, when every consumer is a filter (a row that
/// none of them keeps then reaches no stage at all).
fn pushdown(stages: &mut [Stage]) {
    for r in 0..stages.len() {
        if !matches!(stages[r].kind, StageKind::Reader(_)) {
            continue;
        }
        let consumers: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].inputs.contains(&r))
            .collect();
        let filters: Option<Vec<(usize, FilterSpec)>> = consumers
            .iter()
            .map(|&i| match &stages[i].kind {
                StageKind::Filter(f) => Some((i, f.clone())),
                _ => None,
            })
            .collect();
        if let StageKind::Reader(spec) = &mut stages[r].kind {
            spec.pushdown = filters.filter(|f| !f.is_empty()).unwrap_or_default();
        }
    }
}

fn output_of(n: &Node) -> Output {
    if n.sink.is_some() {
        Output::Nothing
    } else {
        n.kind.output()
    }
}

fn span_of_input(inputs: &[Spanned<String>], name: &str) -> Range<usize> {
    inputs
        .iter()
        .find(|i| i.get_ref() == name)
        .map_or(0..0, |i| i.span())
}

/// Kahn's algorithm in declaration order; the nodes left over form cycles, each reported.
fn topological(nodes: &[Node], edges: &[Vec<usize>], errors: &mut Vec<ConfigError>) -> Vec<usize> {
    let mut indegree: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut done = vec![false; nodes.len()];
    while let Some(i) = (0..nodes.len()).find(|&i| !done[i] && indegree[i] == 0) {
        done[i] = true;
        order.push(i);
        for (k, e) in edges.iter().enumerate() {
            indegree[k] -= e.iter().filter(|&&j| j == i).count();
        }
    }
    for i in (0..nodes.len()).filter(|&i| !done[i]) {
        // Walk inputs that are also stuck until a node repeats: that is the cycle through `i`.
        let mut path = vec![i];
        let mut cur = i;
        while let Some(&next) = edges[cur].iter().find(|&&j| !done[j]) {
            if let Some(p) = path.iter().position(|&x| x == next) {
                if path[p] == i {
                    let names: Vec<&str> = path[p..]
                        .iter()
                        .chain(std::iter::once(&next))
                        .map(|&x| nodes[x].name.as_str())
                        .collect();
                    errors.push(ConfigError::at(
                        nodes[i].span.clone(),
                        format!(
                            "stage `{}` is part of a cycle: {}",
                            nodes[i].name,
                            names.join(" <- ")
                        ),
                    ));
                }
                break;
            }
            path.push(next);
            cur = next;
        }
        order.push(i);
    }
    order
}

/// Which columns each reader must parse: the union of what every stage downstream of it uses.
fn column_needs(stages: &mut [Stage]) {
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    for (i, s) in stages.iter().enumerate() {
        for &j in &s.inputs {
            consumers[j].push(i);
        }
    }
    for r in 0..stages.len() {
        if !matches!(stages[r].kind, StageKind::Reader(_)) {
            continue;
        }
        let mut all = false;
        let mut cols: BTreeSet<String> = BTreeSet::new();
        // (stage, the stage it is reached from): a stage with inputs of different roles needs
        // different columns through each.
        let mut seen = vec![false; stages.len()];
        let mut stack: Vec<(usize, usize)> = consumers[r].iter().map(|&i| (i, r)).collect();
        while let Some((i, from)) = stack.pop() {
            if let StageKind::Sweeps(_) = &stages[i].kind {
                // Inputs are [orders, trades]; nothing downstream of an analysis reads rows.
                let trades = stages[i].inputs.get(1) == Some(&from);
                let needed: &[&str] = if trades {
                    &crate::sweeps::TRADE_COLUMNS
                } else {
                    &crate::sweeps::ORDER_COLUMNS
                };
                cols.extend(needed.iter().map(|c| c.to_string()));
                continue;
            }
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            match &stages[i].kind {
                StageKind::Filter(f) => cols.extend(f.columns().into_iter().map(String::from)),
                StageKind::Aggregator(_) => cols.extend(
                    [
                        col::TIMESTAMP,
                        col::SECURITY,
                        col::PARTICIPANT,
                        col::QUANTITY,
                        col::PRICE,
                    ]
                    .map(String::from),
                ),
                StageKind::RowSink(s) => {
                    match &s.columns {
                        Some(c) => cols.extend(c.iter().cloned()),
                        None => all = true,
                    }
                    for p in &s.partition_by {
                        cols.insert(match p {
                            PartitionKey::Date => col::TIMESTAMP.to_string(),
                            PartitionKey::Security => col::SECURITY.to_string(),
                        });
                    }
                }
                _ => {}
            }
            stack.extend(consumers[i].iter().map(|&c| (c, i)));
        }
        // Catalogue order first, then any other named columns in name order.
        let mut v: Vec<String> = Vec::new();
        for (n, _) in ORDERS_COLUMNS.iter().chain(TRADES_COLUMNS) {
            if cols.contains(*n) && !v.iter().any(|c| c == n) {
                v.push(n.to_string());
            }
        }
        v.extend(
            cols.iter()
                .filter(|c| !v.contains(c))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let need = if all {
            ColumnNeed::All { required: v }
        } else {
            ColumnNeed::Some(v)
        };
        if let StageKind::Reader(spec) = &mut stages[r].kind {
            spec.need = need;
        }
    }
}
