//! The messages that flow along data edges: a typed, columnar slice of one job's rows, and an
//! aggregator's finished tables.

use arrow_array::RecordBatch;

/// One input file is one job; ids are dense indexes into the run's job table.
pub type JobId = u32;

/// A run of rows from one job. `seq` numbers the batches of a job from 0 in file order, so a
/// sink that must keep file order can restore it after parallel stages have reordered batches.
#[derive(Clone, Debug)]
pub struct Batch {
    pub job: JobId,
    pub seq: u64,
    pub rows: RecordBatch,
}

impl Batch {
    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }
}

/// The merged result of an aggregator: what tables sinks receive.
#[derive(Debug)]
pub struct TableSet {
    pub aggregator: String,
    pub rows: u64,
    pub tables: Vec<crate::table::Table>,
}
