//! Pipeline files: the pure first phase of configuration.
//!
//! [`load`] parses the TOML, applies `--set` overrides, deserialises every section on its own
//! (so that one bad stage does not hide the problems in the next), resolves values (timezones,
//! times, formats) and checks the graph, collecting every error with its line and column. It
//! touches no file but the pipeline text it is given: opening inputs and outputs is the runtime's
//! build phase.

mod choice;
mod error;
mod graph;
pub(crate) mod model;
pub(crate) mod outputs;
mod resolve;
mod spec;
mod stages;

use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub(crate) use choice::Choice;
pub use error::{ConfigError, ConfigErrors, line_col};
pub(crate) use resolve::Ctx;
pub use spec::*;

/// Sections a pipeline file may have.
const SECTIONS: &[&str] = &[
    "name",
    "runtime",
    "readers",
    "filters",
    "aggregators",
    "sweeps",
    "sinks",
    "monitor",
    "daemon",
];

/// Parses and validates a pipeline. `origin` names the source in messages (usually its path);
/// `overrides` are `key.path=value` strings from `--set`.
pub fn load<'a>(
    origin: &str,
    text: &'a str,
    overrides: &'a [String],
) -> Result<Pipeline, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        origin: origin.to_string(),
        source_text: text.to_string(),
        errors,
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(fail(syntax.iter().map(toml_error).collect()));
    }
    let mut root = root.into_inner();
    let mut errors = Vec::new();
    for o in overrides {
        if let Err(msg) = apply_override(&mut root, o) {
            errors.push(ConfigError::nowhere(format!("--set {o}: {msg}")));
        }
    }
    let raw = sections(root, &mut errors);
    let pipeline = resolve::resolve(raw, &mut errors);
    if errors.is_empty() {
        Ok(pipeline)
    } else {
        Err(fail(errors))
    }
}

fn toml_error(e: &toml::de::Error) -> ConfigError {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(s) => ConfigError::at(s, msg),
        None => ConfigError::nowhere(msg),
    }
}

/// A named stage as written, with the span of its name for messages about the stage itself.
/// `config` is `None` when the stage's table did not deserialise; its name still counts, so
/// references to it are not reported as unknown.
pub(crate) struct Named<T> {
    pub name: String,
    pub span: Range<usize>,
    pub config: Option<T>,
}

/// A stage section resolved the same way for every kind that implements it: the stage's own
/// config struct says what its inputs are and how it becomes a spec, so a new kind of this sort
/// is its folder (with this impl), its `StageKind` variant, and its line in `sections`.
/// Readers, sweep analyses and sinks are resolved by hand: the roles of their inputs and the
/// spans of their paths are checked against other stages.
pub(crate) trait Section {
    /// The stages whose output this one takes.
    fn inputs(&self) -> Vec<Spanned<String>>;
    /// The checked spec, every problem recorded in `cx`.
    fn resolve(&self, cx: &mut Ctx) -> StageKind;
}

/// A stage of a [`Section`] kind; `config` is `None` when its table did not deserialise.
pub(crate) struct SectionStage {
    pub name: String,
    pub span: Range<usize>,
    pub config: Option<Box<dyn Section>>,
    /// What the stage emits, so references to a broken one still check.
    pub emits: Output,
}

/// Every stage of a [`Section`] kind's section, in file order.
fn section<'a, T: Section + Deserialize<'a> + 'static>(
    name: &str,
    emits: Output,
    v: Spanned<DeValue<'a>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<SectionStage> {
    stages::<T>(name, v, errors)
        .into_iter()
        .map(|n| SectionStage {
            name: n.name,
            span: n.span,
            config: n.config.map(|c| Box::new(c) as Box<dyn Section>),
            emits,
        })
        .collect()
}

/// The file's sections, each stage deserialised on its own.
#[derive(Default)]
pub(crate) struct RawPipeline {
    pub name: Option<Spanned<String>>,
    pub runtime: model::RuntimeConfig,
    pub readers: Vec<Named<model::ReaderConfig>>,
    /// The stages of every [`Section`] kind, in the order of `SECTIONS`.
    pub sections: Vec<SectionStage>,
    pub sweeps: Vec<Named<crate::sweeps::SweepsConfig>>,
    pub sinks: Vec<Named<model::SinkConfig>>,
    pub monitor: model::MonitorConfig,
    pub daemon: Option<model::DaemonConfig>,
}

fn de<'a, T: Deserialize<'a>>(v: Spanned<DeValue<'a>>, errors: &mut Vec<ConfigError>) -> Option<T> {
    T::deserialize(ValueDeserializer::from(v))
        .map_err(|e| errors.push(toml_error(&e)))
        .ok()
}

fn stages<'a, T: Deserialize<'a>>(
    section: &str,
    v: Spanned<DeValue<'a>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Named<T>> {
    let span = v.span();
    let DeValue::Table(t) = v.into_inner() else {
        errors.push(ConfigError::at(
            span,
            format!("`{section}` must be a table of named stages, like [{section}.NAME]"),
        ));
        return Vec::new();
    };
    t.into_iter()
        .map(|(k, v)| {
            let span = k.span();
            let name = k.into_inner().into_owned();
            let config = de::<T>(v, errors);
            Named { name, span, config }
        })
        .collect()
}

fn sections(root: DeTable<'_>, errors: &mut Vec<ConfigError>) -> RawPipeline {
    let mut raw = RawPipeline::default();
    // (rank, stages): stages are resolved section by section in a fixed order, whatever order
    // the file has them in.
    let mut generic: Vec<(usize, Vec<SectionStage>)> = Vec::new();
    for (k, v) in root {
        let key_span = k.span();
        match k.get_ref().as_ref() {
            "name" => raw.name = de(v, errors),
            "runtime" => raw.runtime = de(v, errors).unwrap_or_default(),
            "monitor" => raw.monitor = de(v, errors).unwrap_or_default(),
            "daemon" => raw.daemon = de(v, errors),
            "readers" => raw.readers = stages("readers", v, errors),
            "filters" => generic.push((
                1,
                section::<model::FilterConfig>("filters", Output::Rows, v, errors),
            )),
            "aggregators" => generic.push((
                2,
                section::<model::AggregatorConfig>("aggregators", Output::Tables, v, errors),
            )),
            "sweeps" => raw.sweeps = stages("sweeps", v, errors),
            "sinks" => raw.sinks = stages("sinks", v, errors),
            other => errors.push(ConfigError::at(
                key_span,
                format!(
                    "unknown key `{other}`; a pipeline has {}",
                    SECTIONS.join(", ")
                ),
            )),
        }
    }
    generic.sort_by_key(|(rank, _)| *rank);
    raw.sections = generic.into_iter().flat_map(|(_, s)| s).collect();
    raw
}

/// Applies `a.b.c=value`. The value is read as TOML when it parses (`4`, `true`, `[1, 2]`,
/// `"x"`) and as a plain string otherwise, so paths need no quoting. The new value takes the
/// span of the value it replaces, so later messages still point into the file.
fn apply_override<'a>(root: &mut DeTable<'a>, o: &'a str) -> Result<(), String> {
    let (path, value) = o
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE, e.g. readers.orders.path=data.csv".to_string())?;
    let keys: Vec<&str> = path.trim().split('.').map(str::trim).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("`{path}` is not a key path"));
    }
    let value = value.trim();
    let parsed = match DeValue::parse(value) {
        Ok(v) => v.into_inner(),
        Err(_) => DeValue::String(value.into()),
    };
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut table = root;
    let mut span = 0..0;
    for k in parents {
        let entry = table
            .entry(Spanned::new(span.clone(), (*k).to_string().into()))
            .or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
        span = entry.span();
        match entry.get_mut() {
            DeValue::Table(t) => table = t,
            _ => return Err(format!("`{k}` is not a table")),
        }
    }
    let span = table.get(*last).map_or(span, |v| v.span());
    table.insert(
        Spanned::new(span.clone(), (*last).to_string().into()),
        respan(parsed, &span),
    );
    Ok(())
}

fn respan<'a>(v: DeValue<'a>, span: &Range<usize>) -> Spanned<DeValue<'a>> {
    let v = match v {
        DeValue::Array(a) => DeValue::Array(
            a.into_iter()
                .map(|e| respan(e.into_inner(), span))
                .collect(),
        ),
        DeValue::Table(t) => DeValue::Table(
            t.into_iter()
                .map(|(k, e)| {
                    (
                        Spanned::new(span.clone(), k.into_inner()),
                        respan(e.into_inner(), span),
                    )
                })
                .collect(),
        ),
        other => other,
    };
    Spanned::new(span.clone(), v)
}
