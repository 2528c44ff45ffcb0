//! The messages that flow along data edges: a typed, columnar slice of one job's rows, and an
//! aggregator's finished tables; and [`column`], the one way a stage reads a typed column of them.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_schema::DataType;

/// One input file is one job; ids are dense indexes into the run's job table.
pub(crate) type JobId = u32;

/// A run of rows from one job. `seq` numbers the batches of a job from 0 in file order, so a
/// sink that must keep file order can restore it after parallel stages have reordered batches.
#[derive(Clone, Debug)]
pub(crate) struct Batch {
    pub job: JobId,
    pub seq: u64,
    pub rows: RecordBatch,
}

impl Batch {
    pub(crate) fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }
}

/// The finished tables of a stage that emits tables (an aggregator, a sweep analysis): what
/// tables sinks receive.
#[derive(Debug)]
pub(crate) struct TableSet {
    /// The stage that made them.
    pub stage: String,
    /// Rows the stage folded in (the JSON summary's `rows_aggregated`).
    pub rows: u64,
    pub tables: Vec<crate::table::Table>,
}

/// Why a stage could not read a column it needs. Stages wrap it with their own prefix ("filter",
/// "the aggregator", "path: partitioning by date"), which completes the sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    #[error("needs column `{name}`, which the input does not have")]
    Missing { name: &'static str },
    #[error("needs column `{name}` as {expected}, but it is {found}")]
    WrongType {
        name: &'static str,
        expected: DataType,
        found: DataType,
    },
    #[error("needs every value of column `{name}`, but {count} are null")]
    Nulls { name: &'static str, count: usize },
}

/// Column `name` of `batch` as Arrow type `T`, with no nulls: a null slot's value is unspecified,
/// so reading it would make up a number. Canonical columns are non-nullable, so the check costs
/// nothing on rows the readers built.
pub(crate) fn column<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<T>, ColumnError> {
    let array = batch
        .column_by_name(name)
        .ok_or(ColumnError::Missing { name })?;
    let typed = array
        .as_primitive_opt::<T>()
        .ok_or_else(|| ColumnError::WrongType {
            name,
            expected: T::DATA_TYPE,
            found: array.data_type().clone(),
        })?;
    match typed.null_count() {
        0 => Ok(typed),
        count => Err(ColumnError::Nulls { name, count }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::{Int64Type, UInt32Type};
    use arrow_array::{ArrayRef, Int64Array, UInt32Array};

    use super::*;

    #[test]
    fn a_column_is_read_typed_and_whole_or_not_at_all() {
        let batch = RecordBatch::try_from_iter([
            ("price", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "security",
                Arc::new(UInt32Array::from(vec![Some(7), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        assert_eq!(
            column::<Int64Type>(&batch, "price").unwrap().values(),
            &[1, 2]
        );
        let errors = [
            column::<Int64Type>(&batch, "quantity").unwrap_err(),
            column::<UInt32Type>(&batch, "price").unwrap_err(),
            column::<UInt32Type>(&batch, "security").unwrap_err(),
        ];
        assert_eq!(
            errors.map(|e| e.to_string()),
            [
                "needs column `quantity`, which the input does not have",
                "needs column `price` as UInt32, but it is Int64",
                "needs every value of column `security`, but 1 are null",
            ]
        );
    }
}
