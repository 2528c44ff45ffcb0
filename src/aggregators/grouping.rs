//! The tables an aggregator can produce: the configuration names, the output file stems and
//! the key columns. Kept apart from the aggregation state so that configuration can name them
//! without importing it.

use std::fmt;
use std::str::FromStr;

use crate::config::Choice;

/// One aggregation table of the standard job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grouping {
    Security,
    Date,
    Participant,
    Hour,
    Size,
    Hourly,
    Daily,
}

impl Grouping {
    /// The output file stem.
    pub(crate) fn table_name(self) -> &'static str {
        match self {
            Grouping::Security => "by_security",
            Grouping::Date => "by_date",
            Grouping::Participant => "by_participant",
            Grouping::Hour => "by_hour",
            Grouping::Size => "by_size",
            Grouping::Hourly => "hourly",
            Grouping::Daily => "daily",
        }
    }

    /// The table's key column.
    pub(crate) fn key_column(self) -> &'static str {
        match self {
            Grouping::Security => "security_code",
            Grouping::Date | Grouping::Daily => "date",
            Grouping::Participant => "participantid",
            Grouping::Hour => "hour",
            Grouping::Size => "size_bucket",
            Grouping::Hourly => "hour_start",
        }
    }
}

/// Every grouping with its configuration name, in the order their tables are output.
impl Choice for Grouping {
    const ALL: &'static [(&'static str, Self)] = &[
        ("security", Grouping::Security),
        ("date", Grouping::Date),
        ("participant", Grouping::Participant),
        ("hour", Grouping::Hour),
        ("size", Grouping::Size),
        ("hourly", Grouping::Hourly),
        ("daily", Grouping::Daily),
    ];
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A grouping name that is not one of [`Grouping`]'s [`Choice::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown grouping `{0}`: use one of {names}", names = Grouping::expected())]
pub struct ParseGroupingError(pub String);

impl FromStr for Grouping {
    type Err = ParseGroupingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grouping::from_name(s).ok_or_else(|| ParseGroupingError(s.to_string()))
    }
}
