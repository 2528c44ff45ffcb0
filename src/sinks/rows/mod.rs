//! The rows sink: kept rows, in input-file order, to CSV (plain, gzip, zstd) or Parquet, as one
//! file or partitioned into folders. `actor` is the stage (ordering, bookkeeping); `writer` the
//! formats and the atomic file; `partition` the partitioned folder; `sort` the external sort
//! (`sort = true`).

mod actor;
mod extract;
mod partition;
pub(crate) mod sort;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use extract::Extract;
pub use extract::HandedRows;
