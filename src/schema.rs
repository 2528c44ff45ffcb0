//! The column catalogue of ASX order and trade files: canonical names and their types.
//!
//! Stages refer to columns by these canonical names (the raw file names of docs/domain.md §1.2 for
//! orders and §1.4 for trades); a reader's `columns` mapping translates other spellings at
//! ingest. The two files share a few names (`quantity`, `side`, `sequence`, `participantid`,
//! `row_num`), always with the same type, so one lookup serves both. Types are chosen so
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
pub mod col {
    pub const ORDER_ID: &str = "order_id";
    pub const TIMESTAMP: &str = "timestamp";
    pub const SECURITY: &str = "security_code";
    pub const PARTICIPANT: &str = "participantid";
    pub const ORDER_TYPE: &str = "exchangeordertype";
    pub const QUANTITY: &str = "quantity";
    pub const PRICE: &str = "price";
    pub const SEQUENCE: &str = "sequence";
    pub const SIDE: &str = "side";
    pub const LEAVES: &str = "leavesquantity";
    pub const MATCHED: &str = "totalmatchedquantity";
    pub const CHANGE_REASON: &str = "changereason";
    pub const NATIONAL_BID: &str = "national_bid";
    pub const NATIONAL_OFFER: &str = "national_offer";
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

/// Every column of the trades file (docs/domain.md §1.4, one row per side per match) with the type
/// it is parsed into.
pub const TRADES_COLUMNS: &[(&str, ColumnType)] = &[
    ("EXCHANGE", ColumnType::U32),
    ("sequence", ColumnType::I64),
    ("tradedate", ColumnType::Utf8),
    ("tradetime", ColumnType::I64),
    ("securitycode", ColumnType::U32),
    ("orderid", ColumnType::U64),
    ("dealsource", ColumnType::U32),
    ("dealsourcedecoded", ColumnType::Utf8),
    ("exchangeinfo", ColumnType::Utf8),
    ("matchgroupid", ColumnType::I64),
    ("nationalbidpricesnapshot", ColumnType::I64),
    ("nationalofferpricesnapshot", ColumnType::I64),
    ("tradeprice", ColumnType::I64),
    ("quantity", ColumnType::U64),
    ("side", ColumnType::U32),
    ("sidedecoded", ColumnType::Utf8),
    ("participantid", ColumnType::U32),
    ("passiveaggressive", ColumnType::U32),
    ("row_num", ColumnType::U64),
];

/// Which kind of file a reader reads: its catalogue and how to recognise it by its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Order events (docs/domain.md §1.2).
    Orders,
    /// Trades, one row per side per match (docs/domain.md §1.4).
    Trades,
}

impl FileKind {
    pub fn columns(self) -> &'static [(&'static str, ColumnType)] {
        match self {
            FileKind::Orders => ORDERS_COLUMNS,
            FileKind::Trades => TRADES_COLUMNS,
        }
    }

    /// The kind a header belongs to, by the id column only one of the two files has.
    pub fn of_header<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<FileKind> {
        let names: Vec<&str> = names.into_iter().collect();
        let has = |c: &str| names.iter().any(|n| n.trim() == c);
        match (has(col::ORDER_ID), has(trade::ORDER_ID)) {
            (true, false) => Some(FileKind::Orders),
            (false, true) => Some(FileKind::Trades),
            _ => None,
        }
    }
}

/// Canonical names of the trade columns the built-in stages use.
pub mod trade {
    pub const ORDER_ID: &str = "orderid";
    pub const TIME: &str = "tradetime";
    pub const SECURITY: &str = "securitycode";
    pub const DEALSOURCE: &str = "dealsource";
    pub const PRICE: &str = "tradeprice";
    pub const QUANTITY: &str = "quantity";
    pub const PASSIVE_AGGRESSIVE: &str = "passiveaggressive";
    pub const NATIONAL_BID: &str = "nationalbidpricesnapshot";
    pub const NATIONAL_OFFER: &str = "nationalofferpricesnapshot";
}

fn lookup(name: &str) -> Option<ColumnType> {
    ORDERS_COLUMNS
        .iter()
        .chain(TRADES_COLUMNS)
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// The type a canonical column is parsed into; unknown columns are text.
pub fn column_type(name: &str) -> ColumnType {
    lookup(name).unwrap_or(ColumnType::Utf8)
}

/// Whether the catalogue names `name` (a column it does not know is carried as text).
pub fn is_catalogued(name: &str) -> bool {
    lookup(name).is_some()
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
        assert_eq!(TRADES_COLUMNS.len(), 19);
        assert_eq!(column_type("orderid"), ColumnType::U64);
        assert_eq!(column_type("tradetime"), ColumnType::I64);
    }

    /// One lookup serves both files only while a shared name has one type.
    #[test]
    fn names_shared_by_both_files_have_one_type() {
        for (name, t) in TRADES_COLUMNS {
            if let Some((_, o)) = ORDERS_COLUMNS.iter().find(|(n, _)| n == name) {
                assert_eq!(o, t, "{name}");
            }
        }
        assert_eq!(
            FileKind::of_header(["order_id", "timestamp"]),
            Some(FileKind::Orders)
        );
        assert_eq!(
            FileKind::of_header(["EXCHANGE", " orderid "]),
            Some(FileKind::Trades)
        );
        assert_eq!(FileKind::of_header(["a", "b"]), None);
    }
}
