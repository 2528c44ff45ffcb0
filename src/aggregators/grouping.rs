//! The tables an aggregator can produce: the configuration names, the output file stems and
//! the key columns. Kept apart from the aggregation state so that configuration can name them
//! without importing it.

use std::fmt;
use std::str::FromStr;

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
    /// Every grouping, in the order their tables are output.
    pub const ALL: [Grouping; 7] = [
        Grouping::Security,
        Grouping::Date,
        Grouping::Participant,
        Grouping::Hour,
        Grouping::Size,
        Grouping::Hourly,
        Grouping::Daily,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Grouping::Security => "security",
            Grouping::Date => "date",
            Grouping::Participant => "participant",
            Grouping::Hour => "hour",
            Grouping::Size => "size",
            Grouping::Hourly => "hourly",
            Grouping::Daily => "daily",
        }
    }

    /// The output file stem.
    pub fn table_name(self) -> &'static str {
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
    pub fn key_column(self) -> &'static str {
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

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A grouping name that is not one of [`Grouping::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown grouping `{0}`: use one of security, date, participant, hour, size, hourly, daily"
)]
pub struct ParseGroupingError(pub String);

impl FromStr for Grouping {
    type Err = ParseGroupingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Grouping::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseGroupingError(s.to_string()))
    }
}
