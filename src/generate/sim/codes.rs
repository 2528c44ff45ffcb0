//! The ASX codes the simulation writes (dd.txt, domain.md §1.3–1.4) and its session timetable.

use crate::time::{HOUR_NS, MINUTE_NS, SECOND_NS};

/// Price units (0.1c) per tick: 1c, the equity tick from 200c up (bi.txt).
pub(super) const TICK: i64 = 10;

pub(super) const EXCHANGE: u32 = 3;
pub(super) const ORDER_TYPE_LIMIT: u32 = 1;
/// exchangeordertype is a bitset (dd.txt): a plain lit limit order sets no bit. (1 is the
/// "Force" flag, not "lit".)
pub(super) const EOT_LIT: u32 = 0;
pub(super) const EOT_SHORT: u32 = 2;
pub(super) const EOT_CP: u32 = 64;
pub(super) const EOT_CP_CROSSING: u32 = 256;
pub(super) const EOT_SWEEP: u32 = 2048;
pub(super) const EOT_BLOCK: u32 = 4096;
pub(super) const EOT_BLOCK_SHORT: u32 = 4098;
/// Any Centre Point bit: 64 | 256 | 2048 | 4096 (sweep-analysis.md, "Which orders").
pub(super) const CENTRE_POINT_BITS: u32 = 6464;

/// changeReason.
pub(super) const NEW: u32 = 6;
pub(super) const AMEND: u32 = 5;
pub(super) const TRADED: u32 = 3;
pub(super) const TRADER_CANCEL: u32 = 1;
pub(super) const SYSTEM_CANCEL: u32 = 9;
pub(super) const CANCEL_ON_BEHALF: u32 = 10;
pub(super) const ROD_PURGE: u32 = 24;
pub(super) const NON_ROD_PURGE: u32 = 26;
pub(super) const RELOADED: u32 = 30;
/// orderStatus.
pub(super) const ON_BOOK: u32 = 1;
pub(super) const OFF_BOOK: u32 = 2;

/// A trade's `dealsource` and `dealsourcedecoded` (domain.md §1.4, as the sample decodes them).
pub(super) type Deal = (u32, &'static str);
pub(super) const DEAL_LIT: Deal = (1, "Continuous Lit");
pub(super) const DEAL_AUCTION: Deal = (20, "Auction");
/// Book trades: both sides entered by the same participant (dd.txt 44/45/48).
pub(super) const DEAL_LIT_BOOK: Deal = (44, "Continuous Lit UCP");
pub(super) const DEAL_AUCTION_BOOK: Deal = (45, "Auction UCP");
/// Broker preferencing: a Centre Point match with the same participant's resting order, taken
/// ahead of time priority.
pub(super) const DEAL_CP_PREFERENCE: Deal = (46, "Centre Point Preferencing");
pub(super) const DEAL_CP: Deal = (47, "Centre Point");
pub(super) const DEAL_CP_BOOK: Deal = (48, "Centre Point UCP");

/// The generated session, in local time of day (bi.txt §8.2.1): overnight reloads just before
/// the pre-open at 07:00; the opening auction in the 15 s before 10:00; continuous trading to
/// 16:00; the closing auction at 16:10 plus up to 30 s; post-close activity to 17:30; the purge at
/// 18:50.
pub(super) const RELOAD: i64 = 6 * HOUR_NS + 58 * MINUTE_NS;
pub(super) const PRE_OPEN: i64 = 7 * HOUR_NS;
pub(super) const OPEN: i64 = 10 * HOUR_NS;
pub(super) const OPEN_JITTER: i64 = 15 * SECOND_NS;
pub(super) const CLOSE: i64 = 16 * HOUR_NS;
pub(super) const CLOSING_AUCTION: i64 = 16 * HOUR_NS + 10 * MINUTE_NS;
pub(super) const CLOSE_JITTER: i64 = 30 * SECOND_NS;
pub(super) const LAST_ACTIVITY: i64 = 17 * HOUR_NS + 30 * MINUTE_NS;
pub(super) const PURGE: i64 = 18 * HOUR_NS + 50 * MINUTE_NS;

/// Where the session is at an instant, for one security's book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Session {
    /// Orders are entered but not matched; the opening auction has not run.
    PreOpen,
    /// Continuous matching, from the opening auction to 16:00.
    Continuous,
    /// 16:00 to the closing auction (PRE_CSPA): entered, not matched.
    PreClose,
    /// After the closing auction: no matching, no Centre Point.
    PostClose,
}

impl Session {
    /// Whether orders may be entered crossing the book, to be matched by the next auction.
    pub(super) fn is_call(self) -> bool {
        matches!(self, Session::PreOpen | Session::PreClose)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Validity {
    RestOfDay,
    Bouncing,
    CurrentMax,
    Days(u8),
}

impl Validity {
    /// timeValidity (dd.txt): unit in the high byte, value in the low byte, +64 in the high byte
    /// once purged.
    pub(super) fn code(self, purged: bool) -> u32 {
        let base = match self {
            Validity::RestOfDay => 1 << 8,
            Validity::Bouncing => 0,
            Validity::CurrentMax => 6 << 8,
            Validity::Days(n) => (5 << 8) | u32::from(n),
        };
        if purged { base | (64 << 8) } else { base }
    }

    pub(super) fn decoded(self, purged: bool) -> &'static str {
        match (self, purged) {
            (Validity::RestOfDay, false) => "Rest of Day",
            (Validity::RestOfDay, true) => "Purged Rest of Day",
            (Validity::Bouncing, _) => "Bouncing",
            (Validity::CurrentMax, false) => "Current Max",
            (Validity::CurrentMax, true) => "Purged Current Max",
            (Validity::Days(_), false) => "Days",
            (Validity::Days(_), true) => "Purged Days",
        }
    }

    /// Whether an order of this validity can outlive its trading day (and be reloaded, 30).
    pub(super) fn is_multi_day(self) -> bool {
        matches!(self, Validity::CurrentMax | Validity::Days(_))
    }
}
