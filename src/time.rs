//! Local civil time for nanosecond UTC timestamps, as the filter and aggregators need it.
//!
//! Timezone arithmetic through chrono-tz costs a binary search of the zone's transition table per
//! call. Order files are time-ordered, so [`LocalClock`] caches the UTC offset for the current UTC
//! hour and only consults the zone again when a timestamp leaves that hour. The cache is only
//! filled when the offset is the same at both ends of the hour, so a transition that falls inside
//! an hour (Lord Howe's half-hour shifts, historic local mean times) is still computed per row.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, Offset, TimeZone};

pub(crate) const SECOND_NS: i64 = 1_000_000_000;
pub(crate) const MINUTE_NS: i64 = 60 * SECOND_NS;
pub(crate) const HOUR_NS: i64 = 60 * MINUTE_NS;
pub(crate) const DAY_NS: i64 = 24 * HOUR_NS;

/// A timezone: an IANA zone with its daylight-saving rules, or a fixed offset (the seed's UTC+10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Iana(chrono_tz::Tz),
    /// Offset east of UTC, in seconds.
    Fixed(i32),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Iana(chrono_tz::Australia::Sydney)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Iana(tz) => f.write_str(tz.name()),
            Zone::Fixed(secs) => {
                let sign = if *secs < 0 { '-' } else { '+' };
                let a = secs.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
            }
        }
    }
}

/// Why a timezone or time-of-day string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "unknown timezone `{0}`: use an IANA name such as \"Australia/Sydney\" or a fixed offset such as \"+10:00\""
    )]
    UnknownZone(String),
    #[error("`{0}` is not a time of day: use HH:MM or HH:MM:SS between 00:00 and 24:00")]
    BadTimeOfDay(String),
    #[error("`{0}` is not a date: use YYYY-MM-DD")]
    BadDate(String),
}

impl FromStr for Zone {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let fixed = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        if let Some(secs) = parse_offset(fixed) {
            return Ok(Zone::Fixed(secs));
        }
        t.parse::<chrono_tz::Tz>()
            .map(Zone::Iana)
            .map_err(|_| TimeError::UnknownZone(s.to_string()))
    }
}

/// "+10:00", "-05:30", "+10", "+1000" → seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

impl Zone {
    /// Offset east of UTC in nanoseconds at the UTC instant `ts`.
    pub(crate) fn offset_ns(&self, ts: i64) -> i64 {
        match self {
            Zone::Fixed(secs) => i64::from(*secs) * SECOND_NS,
            Zone::Iana(tz) => {
                // Every i64 nanosecond count (years 1677..2262) is a valid chrono instant.
                let dt = DateTime::from_timestamp_nanos(ts).naive_utc();
                i64::from(tz.offset_from_utc_datetime(&dt).fix().local_minus_utc()) * SECOND_NS
            }
        }
    }
}

/// The earliest and latest UTC instants whose local time in `zone` can be `tod` nanoseconds
/// after local midnight of `day` (days since 1970-01-01): `local − offset` for every offset the
/// zone has within a day either side, saturating at the ends of the i64 range. A wall time that
/// occurs twice (a fold) lies between the two; one that never occurs (a gap) gives bounds that
/// still hold every instant after it. Used to turn local dates and hours into timestamp ranges
/// for pruning, where a bound may be loose but must never be tight.
pub(crate) fn utc_bounds(zone: Zone, day: i32, tod: i64) -> (i64, i64) {
    let local = i64::from(day).saturating_mul(DAY_NS).saturating_add(tod);
    // Offsets change at most once in two days in every real zone, so probing every six hours
    // across the window sees each offset in force near `local`.
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for k in -4..=4 {
        let off = zone.offset_ns(local.saturating_add(k * 6 * HOUR_NS));
        min = min.min(off);
        max = max.max(off);
    }
    (local.saturating_sub(max), local.saturating_sub(min))
}

/// Converts UTC nanosecond timestamps to local days, hours and times of day, caching the offset
/// per UTC hour.
///
/// Local nanoseconds since the epoch do not always fit i64: a timestamp within the zone's offset
/// of either end of the i64 range (2262-04-11 for Sydney's positive offsets) is already on a day
/// that i64 nanoseconds cannot name. So the local time is handed out as a day, an hour number or
/// a time of day, which always fit; the sum is formed only when it does not overflow.
#[derive(Clone, Debug)]
pub(crate) struct LocalClock {
    zone: Zone,
    cached_hour: i64,
    cached_offset: i64,
}

impl LocalClock {
    pub(crate) fn new(zone: Zone) -> Self {
        LocalClock {
            zone,
            cached_hour: i64::MIN,
            cached_offset: 0,
        }
    }

    /// Local wall-clock time of `ts` as nanoseconds since the local epoch, or `None` when that
    /// is outside the i64 range.
    /// Used by tests to check the generator's and the cache's offsets.
    #[cfg(test)]
    #[inline]
    pub(crate) fn local_ns(&mut self, ts: i64) -> Option<i64> {
        ts.checked_add(self.offset(ts))
    }

    /// Local day of `ts`, as days since 1970-01-01.
    #[inline]
    pub(crate) fn local_day(&mut self, ts: i64) -> i32 {
        // i64 nanoseconds span ±106,751 days, well within i32.
        self.floor_local(ts, DAY_NS).0 as i32
    }

    /// Nanoseconds since local midnight of `ts`.
    #[inline]
    pub(crate) fn time_of_day(&mut self, ts: i64) -> i64 {
        self.floor_local(ts, DAY_NS).1
    }

    /// Local hours since the local epoch of `ts`: `local_day * 24 + hour of day`.
    #[inline]
    pub(crate) fn local_hour(&mut self, ts: i64) -> i64 {
        self.floor_local(ts, HOUR_NS).0
    }

    /// The local time of `ts` divided by `unit` (at most a day): quotient rounded down and
    /// remainder.
    #[inline]
    fn floor_local(&mut self, ts: i64, unit: i64) -> (i64, i64) {
        let offset = self.offset(ts);
        match ts.checked_add(offset) {
            Some(local) => (local.div_euclid(unit), local.rem_euclid(unit)),
            None => split_floor(ts, offset, unit),
        }
    }

    /// The zone's offset at `ts`, in nanoseconds.
    #[inline]
    fn offset(&mut self, ts: i64) -> i64 {
        if ts.div_euclid(HOUR_NS) == self.cached_hour {
            return self.cached_offset;
        }
        self.offset_slow(ts)
    }

    #[cold]
    fn offset_slow(&mut self, ts: i64) -> i64 {
        let offset = self.zone.offset_ns(ts);
        let hour = ts.div_euclid(HOUR_NS);
        let start = hour.saturating_mul(HOUR_NS);
        let end = start.saturating_add(HOUR_NS - 1);
        if self.zone.offset_ns(start) == offset && self.zone.offset_ns(end) == offset {
            self.cached_hour = hour;
            self.cached_offset = offset;
        } else {
            self.cached_hour = i64::MIN;
        }
        offset
    }
}

/// `(ts + offset) div unit` and `(ts + offset) mod unit`, rounding down, without forming
/// `ts + offset`: `ts = q·unit + r` with `0 <= r < unit`, and `r + offset` cannot overflow
/// because offsets are under a day.
#[cold]
fn split_floor(ts: i64, offset: i64, unit: i64) -> (i64, i64) {
    let r = ts.rem_euclid(unit) + offset;
    (ts.div_euclid(unit) + r.div_euclid(unit), r.rem_euclid(unit))
}

/// The calendar date of a day number (days since 1970-01-01).
pub(crate) fn date_of_day(day: i32) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    if day >= 0 {
        epoch.checked_add_days(Days::new(day as u64))
    } else {
        epoch.checked_sub_days(Days::new(u64::from(day.unsigned_abs())))
    }
    .unwrap_or(epoch)
}

/// The day number of a calendar date.
pub(crate) fn day_of_date(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (date - epoch).num_days() as i32
}

/// `YYYY-MM-DD` of a day number.
pub(crate) fn format_day(day: i32) -> String {
    date_of_day(day).format("%Y-%m-%d").to_string()
}

/// Parses `YYYY-MM-DD` into a day number.
pub(crate) fn parse_day(s: &str) -> Result<i32, TimeError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map(day_of_date)
        .map_err(|_| TimeError::BadDate(s.to_string()))
}

/// Parses `HH:MM` or `HH:MM:SS` (00:00 to 24:00 inclusive) into nanoseconds since midnight.
pub(crate) fn parse_time_of_day(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::BadTimeOfDay(s.to_string());
    let parts: Vec<&str> = s.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let num = |p: &str| p.parse::<i64>().map_err(|_| bad());
    let h = num(parts[0])?;
    let m = num(parts[1])?;
    let sec = if parts.len() == 3 { num(parts[2])? } else { 0 };
    if h > 24 || m > 59 || sec > 59 || (h == 24 && (m > 0 || sec > 0)) {
        return Err(bad());
    }
    Ok(h * HOUR_NS + m * MINUTE_NS + sec * SECOND_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sydney() -> LocalClock {
        LocalClock::new("Australia/Sydney".parse().unwrap())
    }

    #[test]
    fn drr_opening_auction_is_10_02_16_sydney() {
        // docs/domain.md §1.1: 1725494536001032398 is 2024-09-05 10:02:16 Sydney (AEST, UTC+10).
        let mut c = sydney();
        let ts = 1_725_494_536_001_032_398;
        assert_eq!(format_day(c.local_day(ts)), "2024-09-05");
        assert_eq!(c.time_of_day(ts) / SECOND_NS, 10 * 3600 + 2 * 60 + 16);
        assert_eq!(c.local_hour(ts), i64::from(c.local_day(ts)) * 24 + 10);
    }

    #[test]
    fn daylight_saving_switch_is_applied() {
        let mut c = sydney();
        // 2024-10-06 02:00 AEST the clocks jump to 03:00 AEDT. 2024-10-05T15:59:59Z is 01:59:59
        // AEST; one second later it is 03:00:00 AEDT.
        let before = 1_728_143_999 * SECOND_NS;
        assert_eq!(c.time_of_day(before) / SECOND_NS, 3600 + 59 * 60 + 59);
        assert_eq!(c.time_of_day(before + SECOND_NS) / SECOND_NS, 3 * 3600);
        // And back: a summer day is UTC+11.
        let summer = 1_733_000_000 * SECOND_NS;
        assert_eq!(c.local_ns(summer), Some(summer + 11 * HOUR_NS));
    }

    #[test]
    fn cache_never_changes_an_answer() {
        let zone: Zone = "Australia/Lord_Howe".parse().unwrap();
        let mut cached = LocalClock::new(zone);
        // Step through a year in 7-minute steps, which crosses both half-hour transitions.
        let mut ts = 1_700_000_000 * SECOND_NS;
        for _ in 0..(366 * 24 * 60 / 7) {
            assert_eq!(cached.local_ns(ts), Some(ts + zone.offset_ns(ts)));
            ts += 7 * MINUTE_NS;
        }
    }

    #[test]
    fn local_times_past_the_ends_of_i64_do_not_wrap() {
        // i64::MAX is 2262-04-11 23:47:16.854775807 UTC: 09:47:16 on 04-12 at UTC+10, a local
        // time i64 nanoseconds cannot hold. It used to wrap round to 1677-09-21 10:12:43, which
        // the standard job's filter then judged as trading hours.
        let mut east = LocalClock::new("+10:00".parse().unwrap());
        assert_eq!(east.local_ns(i64::MAX), None);
        assert_eq!(format_day(east.local_day(i64::MAX)), "2262-04-12");
        let tod = 9 * HOUR_NS + 47 * MINUTE_NS + 16 * SECOND_NS + 854_775_807;
        assert_eq!(east.time_of_day(i64::MAX), tod);
        let hour = i64::from(east.local_day(i64::MAX)) * 24 + 9;
        assert_eq!(east.local_hour(i64::MAX), hour);
        // The last timestamp whose local time still fits agrees with the plain sum.
        let last = i64::MAX - 10 * HOUR_NS;
        assert_eq!(east.local_ns(last), Some(i64::MAX));
        assert_eq!(east.time_of_day(last), i64::MAX.rem_euclid(DAY_NS));

        // A zone west of UTC overflows at the other end: i64::MIN is 1677-09-21 00:12:43 UTC.
        let mut west = LocalClock::new("-05:00".parse().unwrap());
        assert_eq!(west.local_ns(i64::MIN), None);
        assert_eq!(format_day(west.local_day(i64::MIN)), "1677-09-20");
        let tod = 19 * HOUR_NS + 12 * MINUTE_NS + 43 * SECOND_NS + 145_224_192;
        assert_eq!(west.time_of_day(i64::MIN), tod);
        let hour = i64::from(west.local_day(i64::MIN)) * 24 + 19;
        assert_eq!(west.local_hour(i64::MIN), hour);

        // Sydney near the top of the range agrees with chrono's own local time.
        let mut c = sydney();
        for back in [0, 1, HOUR_NS, 11 * HOUR_NS, 11 * HOUR_NS + 1, DAY_NS] {
            let ts = i64::MAX - back;
            let naive = chrono_tz::Australia::Sydney
                .timestamp_nanos(ts)
                .naive_local();
            assert_eq!(date_of_day(c.local_day(ts)), naive.date(), "{ts}");
            let tod = naive.time() - chrono::NaiveTime::MIN;
            assert_eq!(Some(c.time_of_day(ts)), tod.num_nanoseconds(), "{ts}");
        }
    }

    #[test]
    fn zones_and_times_parse_or_explain() {
        assert_eq!("+10:00".parse::<Zone>().unwrap(), Zone::Fixed(36000));
        assert_eq!("UTC+10".parse::<Zone>().unwrap(), Zone::Fixed(36000));
        assert_eq!("-05:30".parse::<Zone>().unwrap(), Zone::Fixed(-19800));
        assert!("Australia/Sidney".parse::<Zone>().is_err());
        assert_eq!(parse_time_of_day("10:00").unwrap(), 10 * HOUR_NS);
        assert_eq!(parse_time_of_day("24:00").unwrap(), DAY_NS);
        assert!(parse_time_of_day("25:00").is_err());
        assert!(parse_time_of_day("10:60").is_err());
        assert!(parse_time_of_day("1000").is_err());
        assert_eq!(format_day(parse_day("2024-10-06").unwrap()), "2024-10-06");
        assert_eq!(format_day(-1), "1969-12-31");
    }
}
