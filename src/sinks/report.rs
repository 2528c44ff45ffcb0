//! The report sink: renders the tables it receives, with the run report, as one self-contained
//! HTML page (see `crate::report`).
//!
//! The page shows the run's ledger, timings and settings, which are known only once every sink
//! has reported. So the worker folds each stage's tables into the page's aggregates as they
//! arrive (holding no table), and the page is drawn and written when the run report is made
//! (`Wiring::after_run`); the sink's entry in the report then says what was written.

use std::path::Path;
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use crate::batch::TableSet;
use crate::config::ReportSinkSpec;
use crate::flow::edge::Envelope;
use crate::flow::{ErrorKind, Inbox, Outlets, ReportGuard, StageCtx, Start, Wiring};
use crate::monitor::{RunReport, RunStatus};
use crate::report::{self, Report, Section};

/// The page's aggregates, handed from the worker to the end of the run; `None` until the
/// worker has stopped with every stage's tables folded.
type Staged = Arc<Mutex<Option<Vec<Section>>>>;

impl Start for ReportSinkSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, _: Outlets) -> Inbox {
        let staged: Staged = Arc::default();
        let (path, reports, handoff) = (self.path.clone(), w.reports.clone(), staged.clone());
        let name = ctx.name.to_string();
        let addr = SyncArbiter::start(1, move || ReportSinkWorker {
            report: ReportGuard::new(&ctx, path.clone(), reports.clone()),
            ctx: ctx.clone(),
            sections: Vec::new(),
            received: false,
            error: None,
            staged: handoff.clone(),
        });
        let (path, pipeline) = (self.path.clone(), w.pipeline.clone());
        w.after_run(
            &name,
            Box::new(move |run| render(&path, &pipeline, &staged, run)),
        );
        Inbox::Tables(addr.recipient())
    }
}

/// Draws and writes the page once the run report is known; nothing when the run failed.
fn render(path: &Path, pipeline: &str, staged: &Staged, run: &RunReport) -> Result<String, String> {
    let sections = staged.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(sections) = sections.filter(|_| run.status == RunStatus::Ok) else {
        return Err("not written: the run failed".to_string());
    };
    write_page(path, pipeline, sections, run)
}

/// Draws the page of `sections` and the run report `run` and writes it to `path`; says what it
/// wrote. The merge of a sharded run draws its pages through this too.
pub(crate) fn write_page(
    path: &Path,
    pipeline: &str,
    sections: Vec<Section>,
    run: &RunReport,
) -> Result<String, String> {
    let page = Report {
        title: pipeline.to_string(),
        origin: format!(
            "the run of pipeline `{pipeline}` started {}",
            run.started_at
        ),
        sections,
        run: report::run_info(run),
    };
    let html = page.render().map_err(|e| e.to_string())?;
    report::write(path, &html).map_err(|e| e.to_string())?;
    Ok(format!("1 file, {} kB", html.len().div_ceil(1000)))
}

struct ReportSinkWorker {
    ctx: StageCtx,
    report: ReportGuard,
    sections: Vec<Section>,
    received: bool,
    error: Option<String>,
    staged: Staged,
}

impl Actor for ReportSinkWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.report.set(match (&self.error, self.received) {
            (Some(e), _) => Err(e.clone()),
            (None, false) => Err("not written: the run failed".to_string()),
            (None, true) => {
                *self.staged.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::mem::take(&mut self.sections));
                Ok("to be rendered when the run report is made".to_string())
            }
        });
    }
}

impl Handler<Envelope<Arc<TableSet>>> for ReportSinkWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Arc<TableSet>>, _: &mut Self::Context) {
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        self.received = true;
        match Section::from_tables(&msg.item.stage, &msg.item.tables) {
            Ok(Some(s)) => self.sections.push(s),
            Ok(None) => {}
            Err(e) => {
                let e = format!("sink `{}`: {e}", self.ctx.name);
                self.ctx.fail(ErrorKind::Output, e.clone());
                self.error = Some(e);
            }
        }
        let rows: u64 = msg.item.tables.iter().map(|t| t.len()).sum();
        self.ctx.stats.batch(rows, rows, msg.started.elapsed());
    }
}
