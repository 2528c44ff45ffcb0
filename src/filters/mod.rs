//! Filters: keep the rows that satisfy every configured condition. `predicate` is the condition
//! evaluated over a batch (order types exact or as a bitset, local dates and trading hours with
//! daylight saving); `actor` runs it as a stage.

mod actor;
mod predicate;
#[cfg(test)]
mod tests;

pub use predicate::{FilterError, Predicate};
