//! One Sydney trading day: its local clock and the spread of arrivals over its sessions.

use super::codes::{CLOSE, CLOSING_AUCTION, LAST_ACTIVITY, OPEN, PRE_OPEN};
use crate::time::{DAY_NS, HOUR_NS, Zone, day_of_date, format_day};

/// Arrival "virtual time" per day, split so that 20% of arrivals fall in the pre-open, 70% in
/// continuous trading and 10% after the close (the mix `gen_orders.py` uses), 4 points of those
/// 10 in the ten minutes before the closing auction.
pub(super) const U_END: u64 = 1_000_000_000;
pub(super) const U_OPEN: u64 = 200_000_000;
pub(super) const U_CLOSE: u64 = 900_000_000;
pub(super) const U_PRE_CLOSE: u64 = 940_000_000;

/// One Sydney trading day.
pub(super) struct Day {
    pub number: i32,
    pub date: String,
    /// UTC nanoseconds of the day's local midnight.
    pub midnight: i64,
}

impl Day {
    pub(super) fn new(zone: Zone, day: i32) -> Day {
        let start = i64::from(day) * DAY_NS;
        // The offset in force at 02:00 UTC, i.e. around local noon: a trading day never spans a
        // daylight-saving change (those happen in the small hours of a Sunday).
        let offset = zone.offset_ns(start + 2 * HOUR_NS);
        Day {
            number: day,
            date: format_day(day),
            midnight: start - offset,
        }
    }

    pub(super) fn at(&self, time_of_day: i64) -> i64 {
        self.midnight + time_of_day
    }

    /// Maps arrival virtual time to UTC, piecewise-linearly over the session's phases.
    pub(super) fn at_virtual(&self, u: u64) -> i64 {
        let lerp = |u0: u64, u1: u64, t0: i64, t1: i64| {
            let span = i128::from(t1 - t0) * i128::from(u - u0) / i128::from(u1 - u0);
            t0 + span as i64
        };
        let tod = if u < U_OPEN {
            lerp(0, U_OPEN, PRE_OPEN, OPEN)
        } else if u < U_CLOSE {
            lerp(U_OPEN, U_CLOSE, OPEN, CLOSE)
        } else if u < U_PRE_CLOSE {
            lerp(U_CLOSE, U_PRE_CLOSE, CLOSE, CLOSING_AUCTION)
        } else {
            lerp(U_PRE_CLOSE, U_END, CLOSING_AUCTION, LAST_ACTIVITY)
        };
        self.at(tod)
    }
}

/// The first `count` weekdays from `start` (inclusive), as day numbers.
pub fn trading_days(start: chrono::NaiveDate, count: u32) -> Option<Vec<i32>> {
    use chrono::Datelike;
    let mut days = Vec::with_capacity(count as usize);
    let mut d = start;
    while days.len() < count as usize {
        if d.weekday().number_from_monday() <= 5 {
            days.push(day_of_date(d));
        }
        d = d.succ_opt()?;
    }
    Some(days)
}
