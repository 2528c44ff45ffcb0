//! Sinks: where kept rows and aggregate tables are written. `atomic` makes every file appear
//! whole or not at all; `format` names the formats and partition keys the configuration
//! chooses from; `rows` is the rows sink (its actor and writers); `tables` the tables sink;
//! `report` the HTML report sink (the page itself is `crate::report`).

pub(crate) mod atomic;
pub(crate) mod format;
pub(crate) mod report;
pub(crate) mod rows;
pub(crate) mod tables;
