//! The two generated tables: their columns, one row of each, and CSV formatting.
//!
//! A row is turned into a fixed array of typed [`Value`]s once; the CSV writer, the parquet
//! writer and the dirty-row injector all read that array, so the three can never disagree about a
//! column's position or type.

use crate::schema::{ColumnType, column_type};

/// The orders header, in the column order of the benchmark generator `gen_orders.py` (outside
/// this repository; the real DRR `orders_final` layout), so files from either generator are
/// interchangeable.
pub(crate) const ORDER_COLUMNS: [&str; 30] = [
    "order_id",
    "exchange",
    "timestamp",
    "security_code",
    "price",
    "side",
    "changereason",
    "orderstatus",
    "quantity",
    "leavesquantity",
    "ordertype",
    "exchangeordertype",
    "national_bid",
    "national_offer",
    "bid",
    "offer",
    "participantid",
    "preferenceonly",
    "midtick",
    "singlefillminimumquantity",
    "minimumquantity",
    "sequence",
    "crossingkey",
    "totalmatchedquantity",
    "shortsellquantity",
    "triggercondition",
    "timevaliditydecoded",
    "row_num",
    "timevalidity",
    "date",
];

/// Column indexes the dirty-row injector corrupts.
pub(crate) const COL_ORDER_ID: usize = 0;
pub(crate) const COL_TIMESTAMP: usize = 2;
pub(crate) const COL_PRICE: usize = 4;
pub(crate) const COL_QUANTITY: usize = 8;
pub(crate) const COL_TIME_VALIDITY_DECODED: usize = 26;

/// The trades header of domain.md §1.4, written in the catalogue's order and types.
pub use crate::schema::TRADES_COLUMNS as TRADE_COLUMNS;

/// The orders columns with the types the project's readers parse them into.
pub(crate) fn order_columns() -> Vec<(&'static str, ColumnType)> {
    ORDER_COLUMNS
        .iter()
        .map(|&name| (name, column_type(name)))
        .collect()
}

/// One typed cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    U64(u64),
    I64(i64),
    U32(u32),
    Str(&'a str),
}

impl Value<'_> {
    #[cfg(test)]
    pub(crate) fn column_type(&self) -> ColumnType {
        match self {
            Value::U64(_) => ColumnType::U64,
            Value::I64(_) => ColumnType::I64,
            Value::U32(_) => ColumnType::U32,
            Value::Str(_) => ColumnType::Utf8,
        }
    }

    /// Appends the CSV text of the value. Generated text never holds a comma, quote or newline,
    /// so no quoting is needed.
    #[inline]
    pub(crate) fn write_csv(&self, buf: &mut Vec<u8>) {
        match *self {
            Value::U64(v) => push_u64(buf, v),
            Value::I64(v) => push_i64(buf, v),
            Value::U32(v) => push_u64(buf, u64::from(v)),
            Value::Str(s) => buf.extend_from_slice(s.as_bytes()),
        }
    }
}

#[inline]
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[inline]
pub(crate) fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Appends `values` as one CSV line, newline included.
pub(crate) fn write_csv_line(buf: &mut Vec<u8>, values: &[Value<'_>]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        v.write_csv(buf);
    }
    buf.push(b'\n');
}

/// Appends a header line.
pub(crate) fn write_header(buf: &mut Vec<u8>, names: impl IntoIterator<Item = &'static str>) {
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(name.as_bytes());
    }
    buf.push(b'\n');
}

/// One order event (docs/domain.md §1.2).
#[derive(Clone, Debug)]
pub(crate) struct OrderRow<'a> {
    pub order_id: u64,
    pub exchange: u32,
    pub timestamp: i64,
    pub security_code: u32,
    pub price: i64,
    pub side: u32,
    pub change_reason: u32,
    pub order_status: u32,
    pub quantity: u64,
    pub leaves: u64,
    pub order_type: u32,
    pub exchange_order_type: u32,
    pub national_bid: i64,
    pub national_offer: i64,
    pub bid: i64,
    pub offer: i64,
    pub participant: u32,
    pub preference_only: u32,
    pub midtick: u32,
    pub single_fill_min_qty: u32,
    pub min_qty: u64,
    pub sequence: i64,
    pub crossing_key: u64,
    pub matched: u64,
    pub short_sell_qty: u64,
    pub trigger_condition: u32,
    pub time_validity_decoded: &'a str,
    pub row_num: u64,
    pub time_validity: u32,
    pub date: &'a str,
}

impl<'a> OrderRow<'a> {
    /// The cells in [`ORDER_COLUMNS`] order.
    pub(crate) fn values(&self) -> [Value<'a>; 30] {
        use Value::*;
        [
            U64(self.order_id),
            U32(self.exchange),
            I64(self.timestamp),
            U32(self.security_code),
            I64(self.price),
            U32(self.side),
            U32(self.change_reason),
            U32(self.order_status),
            U64(self.quantity),
            U64(self.leaves),
            U32(self.order_type),
            U32(self.exchange_order_type),
            I64(self.national_bid),
            I64(self.national_offer),
            I64(self.bid),
            I64(self.offer),
            U32(self.participant),
            U32(self.preference_only),
            U32(self.midtick),
            U32(self.single_fill_min_qty),
            U64(self.min_qty),
            I64(self.sequence),
            U64(self.crossing_key),
            U64(self.matched),
            U64(self.short_sell_qty),
            U32(self.trigger_condition),
            Str(self.time_validity_decoded),
            U64(self.row_num),
            U32(self.time_validity),
            Str(self.date),
        ]
    }
}

/// One side of one match (docs/domain.md §1.4).
#[derive(Clone, Debug)]
pub(crate) struct TradeRow<'a> {
    pub exchange: u32,
    pub sequence: i64,
    pub trade_date: &'a str,
    pub trade_time: i64,
    pub security_code: u32,
    pub order_id: u64,
    pub deal_source: u32,
    pub deal_source_decoded: &'a str,
    pub exchange_info: &'a str,
    pub match_group_id: i64,
    pub national_bid: i64,
    pub national_offer: i64,
    pub price: i64,
    pub quantity: u64,
    pub side: u32,
    pub side_decoded: &'a str,
    pub participant: u32,
    pub passive_aggressive: u32,
    pub row_num: u64,
}

impl<'a> TradeRow<'a> {
    /// The cells in [`TRADE_COLUMNS`] order.
    pub(crate) fn values(&self) -> [Value<'a>; 19] {
        use Value::*;
        [
            U32(self.exchange),
            I64(self.sequence),
            Str(self.trade_date),
            I64(self.trade_time),
            U32(self.security_code),
            U64(self.order_id),
            U32(self.deal_source),
            Str(self.deal_source_decoded),
            Str(self.exchange_info),
            I64(self.match_group_id),
            I64(self.national_bid),
            I64(self.national_offer),
            I64(self.price),
            U64(self.quantity),
            U32(self.side),
            Str(self.side_decoded),
            U32(self.participant),
            U32(self.passive_aggressive),
            U64(self.row_num),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_format_like_display() {
        let mut buf = Vec::new();
        for v in [0u64, 7, 10, 99, 7_904_398_175_939_685_642, u64::MAX] {
            buf.clear();
            push_u64(&mut buf, v);
            assert_eq!(buf, v.to_string().as_bytes());
        }
        for v in [0i64, -1, -3330, i64::MIN, i64::MAX] {
            buf.clear();
            push_i64(&mut buf, v);
            assert_eq!(buf, v.to_string().as_bytes());
        }
    }

    #[test]
    fn row_values_have_the_catalogue_types() {
        let row = OrderRow {
            order_id: 1,
            exchange: 3,
            timestamp: 0,
            security_code: 0,
            price: 0,
            side: 1,
            change_reason: 6,
            order_status: 1,
            quantity: 1,
            leaves: 1,
            order_type: 1,
            exchange_order_type: 0,
            national_bid: 0,
            national_offer: 0,
            bid: 0,
            offer: 0,
            participant: 1,
            preference_only: 0,
            midtick: 0,
            single_fill_min_qty: 0,
            min_qty: 0,
            sequence: 0,
            crossing_key: 0,
            matched: 0,
            short_sell_qty: 0,
            trigger_condition: 0,
            time_validity_decoded: "Rest of Day",
            row_num: 0,
            time_validity: 256,
            date: "2024-09-30",
        };
        let types: Vec<ColumnType> = row.values().iter().map(Value::column_type).collect();
        let expected: Vec<ColumnType> = order_columns().iter().map(|(_, t)| *t).collect();
        assert_eq!(types, expected);
    }
}
