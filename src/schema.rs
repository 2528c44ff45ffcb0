//! The column catalogue of ASX order files: canonical names and their types.
//!
//! Stages refer to columns by these canonical names (the raw orders-file names of docs/domain.md
//! §1.2); a reader's `columns` mapping translates other spellings at ingest. Types are chosen so
//! that no identifier or timestamp ever passes through a float: ids are u64, timestamps, prices and
//! sequences i64, codes u32. A column the catalogue does not know is carried as text.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

/// The physical type a column is parsed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    U64,
    I64,
    U32,
    Utf8,
}

impl ColumnType {
    pub(crate) fn arrow(self) -> DataType {
        match self {
            ColumnType::U64 => DataType::UInt64,
            ColumnType::I64 => DataType::Int64,
            ColumnType::U32 => DataType::UInt32,
            ColumnType::Utf8 => DataType::Utf8,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ColumnType::U64 => "unsigned 64-bit integer",
            ColumnType::I64 => "signed 64-bit integer",
            ColumnType::U32 => "unsigned 32-bit integer",
            ColumnType::Utf8 => "text",
        }
    }
}

/// Canonical column names used by the built-in stages.
pub(crate) mod col {
    pub(crate) const TIMESTAMP: &str = "timestamp";
    pub(crate) const SECURITY: &str = "security_code";
    pub(crate) const PARTICIPANT: &str = "participantid";
    pub(crate) const ORDER_TYPE: &str = "exchangeordertype";
    pub(crate) const QUANTITY: &str = "quantity";
    pub(crate) const PRICE: &str = "price";
}

/// Every column of the orders file (docs/domain.md §1.2) with the type it is parsed into.
pub(crate) const ORDERS_COLUMNS: &[(&str, ColumnType)] = &[
    ("order_id", ColumnType::U64),
    ("exchange", ColumnType::U32),
    ("timestamp", ColumnType::I64),
    ("security_code", ColumnType::U32),
    ("price", ColumnType::I64),
    ("side", ColumnType::U32),
    ("changereason", ColumnType::U32),
    ("orderstatus", ColumnType::U32),
    ("quantity", ColumnType::U64),
    ("leavesquantity", ColumnType::U64),
    ("ordertype", ColumnType::U32),
    ("exchangeordertype", ColumnType::U32),
    ("national_bid", ColumnType::I64),
    ("national_offer", ColumnType::I64),
    ("bid", ColumnType::I64),
    ("offer", ColumnType::I64),
    ("participantid", ColumnType::U32),
    ("preferenceonly", ColumnType::U32),
    ("midtick", ColumnType::U32),
    ("singlefillminimumquantity", ColumnType::U32),
    ("minimumquantity", ColumnType::U64),
    ("sequence", ColumnType::I64),
    ("crossingkey", ColumnType::U64),
    ("totalmatchedquantity", ColumnType::U64),
    ("shortsellquantity", ColumnType::U64),
    ("triggercondition", ColumnType::U32),
    ("timevalidity", ColumnType::U32),
    ("timevaliditydecoded", ColumnType::Utf8),
    ("row_num", ColumnType::U64),
    ("date", ColumnType::Utf8),
];

/// The type a canonical column is parsed into; unknown columns are text.
pub(crate) fn column_type(name: &str) -> ColumnType {
    ORDERS_COLUMNS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(ColumnType::Utf8, |(_, t)| *t)
}

/// Whether the catalogue names `name` (a column it does not know is carried as text).
pub(crate) fn is_catalogued(name: &str) -> bool {
    ORDERS_COLUMNS.iter().any(|(n, _)| *n == name)
}

/// An Arrow schema for the given canonical columns, in order. Columns are non-nullable: a row
/// with an empty required value is rejected at ingest, never carried as a null.
pub(crate) fn arrow_schema(columns: &[String]) -> Arc<Schema> {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c, column_type(c).arrow(), false))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_times_are_integers() {
        assert_eq!(column_type("order_id"), ColumnType::U64);
        assert_eq!(column_type("timestamp"), ColumnType::I64);
        assert_eq!(column_type("exchangeordertype"), ColumnType::U32);
        assert_eq!(column_type("no_such_column"), ColumnType::Utf8);
        assert_eq!(ORDERS_COLUMNS.len(), 30);
    }
}
