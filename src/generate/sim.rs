//! The market simulation behind `sweep generate`.
//!
//! Orders arrive one at a time, in time order, on Zipf-popular securities. Each security has a
//! random-walk NBBO, a lit book and a Centre Point book. During continuous trading (10:00–16:00
//! Sydney) an arriving order trades against resting orders: lit orders against the lit book at
//! the resting price, Centre Point orders against the Centre Point book at the NBBO midpoint, and
//! sweeps (2048) against Centre Point first and then lit (bi.txt §25.2). Both sides of every match
//! get a trade event (changereason 3) at the same instant, and the match is written as one buy and
//! one sell trade row with a shared `matchgroupid`. Resting orders are later amended (5),
//! cancelled (1/9/10), or purged at 18:50 (24, or 26 for non-Rest-of-Day validity); bouncing
//! orders' unfilled remainder is cancelled at once (9).
//!
//! Events are produced strictly in time order — the next event is the earlier of the next arrival
//! and the earliest pending amend/cancel timer — so rows stream straight to disk. Memory is bounded
//! by the book caps: a full book evicts (cancels) its oldest order before another may rest.
//!
//! Deliberate simplifications: no auctions (nothing trades outside 10:00–16:00, and no trade
//! reports); no public holidays; every order ends on the day it arrived (Days/GTC validity orders
//! are purged like the rest, with changereason 26); one tick of 1c for every security, so that a
//! Centre Point midpoint is always a whole number of price units.
//!
//! `quantity == leavesquantity + totalmatchedquantity` holds on every row except after a
//! "remaining-quantity amend": a changereason-5 row on a partly traded order that reports the new
//! open quantity as `quantity` (as ASX amends of traded orders do, docs/domain.md §1.2: "amended traded
//! orders, where matched > quantity"). From that row on, `leaves + matched - quantity` stays equal
//! to the matched quantity at the amend, until a later amend restores the identity. Only amend rows
//! change that difference.
//!
//! No floating point is used anywhere, so the output depends only on the seed: integer sampling
//! from ChaCha is specified bit for bit, whereas `ln`/`exp` come from the platform's libm.

use std::cmp::Ordering;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GenerateError;
use super::rows::{OrderRow, TradeRow};
use super::sink::Outputs;
use crate::time::{DAY_NS, HOUR_NS, MINUTE_NS, SECOND_NS, Zone, day_of_date, format_day};

/// Price units (0.1c) per tick: 1c, the equity tick from 200c up (bi.txt).
const TICK: i64 = 10;
/// The lowest fair price, in ticks: $1.00, so a step down never reaches zero.
const MIN_FAIR: i64 = 100;
/// Resting orders per side of a lit book; a Centre Point book holds half as many.
const LIT_CAP: usize = 96;
/// Resting orders across all books: with many securities the per-book caps shrink (to no less
/// than [`MIN_LIT_CAP`]) so that memory stays bounded whatever `--securities` is.
const LIVE_LIMIT: usize = 300_000;
const MIN_LIT_CAP: usize = 4;
/// Most fills one arriving order takes; bounds the rows one arrival can add.
const MAX_FILLS: usize = 8;
/// Rows one step can add at most (insert, two rows per fill, a cancel) plus slack: in `--rows`
/// mode the last day stops arriving orders once the remaining budget is this small, and then
/// pads to the exact count with single-row amends.
const PAD_THRESHOLD: i128 = 2 * MAX_FILLS as i128 + 8;
/// Assumed uncompressed bytes per order row before any has been written.
const INITIAL_ROW_BYTES: u64 = 200;
/// Assumed rows per order (insert, trades, end) before any order has been made.
const INITIAL_ROWS_PER_ORDER: u64 = 3;

const EXCHANGE: u32 = 3;
const ORDER_TYPE_LIMIT: u32 = 1;
/// exchangeordertype is a bitset (dd.txt): a plain lit limit order sets no bit. (1 is the
/// "Force" flag, not "lit".)
const EOT_LIT: u32 = 0;
const EOT_SHORT: u32 = 2;
const EOT_CP: u32 = 64;
const EOT_CP_CROSSING: u32 = 256;
const EOT_SWEEP: u32 = 2048;
const EOT_BLOCK: u32 = 4096;
const EOT_BLOCK_SHORT: u32 = 4098;

const NEW: u32 = 6;
const AMEND: u32 = 5;
const TRADED: u32 = 3;
const TRADER_CANCEL: u32 = 1;
const SYSTEM_CANCEL: u32 = 9;
const CANCEL_ON_BEHALF: u32 = 10;
const ROD_PURGE: u32 = 24;
const NON_ROD_PURGE: u32 = 26;
const ON_BOOK: u32 = 1;
const OFF_BOOK: u32 = 2;

const DEAL_LIT: (u32, &str) = (1, "Continuous Lit");
const DEAL_CP: (u32, &str) = (47, "Centre Point");

/// The generated session, in local time of day: pre-open from 07:00, continuous trading
/// 10:00–16:00, post-close to 17:30, purge at 18:50 (bi.txt §8.2.1).
const PRE_OPEN: i64 = 7 * HOUR_NS;
const OPEN: i64 = 10 * HOUR_NS;
const CLOSE: i64 = 16 * HOUR_NS;
const LAST_ACTIVITY: i64 = 17 * HOUR_NS + 30 * MINUTE_NS;
const PURGE: i64 = 18 * HOUR_NS + 50 * MINUTE_NS;

/// Arrival "virtual time" per day, split so that 20% of arrivals fall in the pre-open, 70% in
/// continuous trading and 10% after the close (the mix `gen_orders.py` uses).
const U_END: u64 = 1_000_000_000;
const U_OPEN: u64 = 200_000_000;
const U_CLOSE: u64 = 900_000_000;

/// How much output to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Exactly this many order rows.
    Rows(u64),
    /// About this many uncompressed CSV bytes of orders, header included.
    Bytes(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    PreOpen,
    Continuous,
    PostClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    RestOfDay,
    Bouncing,
    CurrentMax,
    Days(u8),
}

impl Validity {
    /// timeValidity (dd.txt): unit in the high byte, value in the low byte, +64 in the high byte
    /// once purged.
    fn code(self, purged: bool) -> u32 {
        let base = match self {
            Validity::RestOfDay => 1 << 8,
            Validity::Bouncing => 0,
            Validity::CurrentMax => 6 << 8,
            Validity::Days(n) => (5 << 8) | u32::from(n),
        };
        if purged { base | (64 << 8) } else { base }
    }

    fn decoded(self, purged: bool) -> &'static str {
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BookKind {
    None,
    Lit,
    Cp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    Cancel,
    Amend,
}

#[derive(Clone, Debug)]
struct Order {
    id: u64,
    sec: u32,
    /// 1 buy, 2 sell.
    side: u32,
    eot: u32,
    price: i64,
    quantity: u64,
    leaves: u64,
    matched: u64,
    participant: u32,
    preference_only: u32,
    midtick: u32,
    single_fill_min_qty: u32,
    min_qty: u64,
    crossing_key: u64,
    short_qty: u64,
    validity: Validity,
    book: BookKind,
    action: Action,
}

impl Order {
    fn is_buy(&self) -> bool {
        self.side == 1
    }

    /// Whether this order's limit allows a fill at `price`.
    fn accepts(&self, price: i64) -> bool {
        if self.is_buy() {
            self.price >= price
        } else {
            self.price <= price
        }
    }

    fn side_index(&self) -> usize {
        if self.is_buy() { 0 } else { 1 }
    }
}

struct Security {
    code: u32,
    /// National best bid, in ticks.
    fair: i64,
    /// National offer minus bid, in ticks; 0 is a locked market.
    spread: i64,
    /// Resting orders, oldest first, per side (buy, sell).
    lit: [Vec<u32>; 2],
    cp: [Vec<u32>; 2],
}

impl Security {
    fn national_bid(&self) -> i64 {
        self.fair * TICK
    }

    fn national_offer(&self) -> i64 {
        (self.fair + self.spread) * TICK
    }

    /// Midpoint of the NBBO. Exact: bid and offer are multiples of the (even) tick.
    fn mid(&self) -> i64 {
        (self.national_bid() + self.national_offer()) / 2
    }
}

/// Cumulative integer weights for sampling an index.
struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    /// Zipf-like weights 1/(k + shift), in integers so the table is identical on every platform.
    fn zipf(n: usize, shift: u64) -> Weighted {
        let mut total = 0u64;
        let cumulative = (0..n as u64)
            .map(|k| {
                total += 1_000_000_000_000 / (k + shift);
                total
            })
            .collect();
        Weighted { cumulative }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let x = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}

/// Min-heap of one pending timer per order slot, with removal: the heap never holds stale
/// entries, so it is bounded by the number of live orders.
#[derive(Default)]
struct Timers {
    heap: Vec<(i64, u64, u32)>,
    pos: Vec<u32>,
}

const NOT_QUEUED: u32 = u32::MAX;

impl Timers {
    fn less(a: &(i64, u64, u32), b: &(i64, u64, u32)) -> bool {
        (a.0, a.1).cmp(&(b.0, b.1)) == Ordering::Less
    }

    fn place(&mut self, i: usize) {
        let slot = self.heap[i].2 as usize;
        self.pos[slot] = i as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !Self::less(&self.heap[i], &self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            self.place(i);
            i = parent;
        }
        self.place(i);
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let l = 2 * i + 1;
            let r = l + 1;
            let mut m = i;
            if l < self.heap.len() && Self::less(&self.heap[l], &self.heap[m]) {
                m = l;
            }
            if r < self.heap.len() && Self::less(&self.heap[r], &self.heap[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap.swap(i, m);
            self.place(i);
            i = m;
        }
        self.place(i);
    }

    fn set(&mut self, slot: u32, time: i64, stamp: u64) {
        self.remove(slot);
        if self.pos.len() <= slot as usize {
            self.pos.resize(slot as usize + 1, NOT_QUEUED);
        }
        self.heap.push((time, stamp, slot));
        self.sift_up(self.heap.len() - 1);
    }

    fn remove(&mut self, slot: u32) {
        let Some(&i) = self.pos.get(slot as usize) else {
            return;
        };
        if i == NOT_QUEUED {
            return;
        }
        let i = i as usize;
        self.pos[slot as usize] = NOT_QUEUED;
        let last = self.heap.len() - 1;
        if i != last {
            self.heap.swap(i, last);
            self.heap.pop();
            self.place(i);
            self.sift_down(i);
            self.sift_up(i);
        } else {
            self.heap.pop();
        }
    }

    fn peek(&self) -> Option<(i64, u32)> {
        self.heap.first().map(|&(t, _, slot)| (t, slot))
    }

    fn clear(&mut self) {
        for &(_, _, slot) in &self.heap {
            self.pos[slot as usize] = NOT_QUEUED;
        }
        self.heap.clear();
    }
}

#[derive(Clone, Copy, Debug)]
struct Fill {
    passive: u32,
    qty: u64,
    price: i64,
    centre_point: bool,
}

/// One Sydney trading day.
struct Day {
    date: String,
    /// UTC nanoseconds of the day's local midnight.
    midnight: i64,
}

impl Day {
    fn new(zone: Zone, day: i32) -> Day {
        let start = i64::from(day) * DAY_NS;
        // The offset in force at 02:00 UTC, i.e. around local noon: a trading day never spans a
        // daylight-saving change (those happen in the small hours of a Sunday).
        let offset = zone.offset_ns(start + 2 * HOUR_NS);
        Day {
            date: format_day(day),
            midnight: start - offset,
        }
    }

    fn at(&self, time_of_day: i64) -> i64 {
        self.midnight + time_of_day
    }

    /// Maps arrival virtual time to UTC, piecewise-linearly over the three phases.
    fn at_virtual(&self, u: u64) -> (i64, Phase) {
        let lerp = |u0: u64, u1: u64, t0: i64, t1: i64| {
            let span = i128::from(t1 - t0) * i128::from(u - u0) / i128::from(u1 - u0);
            t0 + span as i64
        };
        let (tod, phase) = if u < U_OPEN {
            (lerp(0, U_OPEN, PRE_OPEN, OPEN), Phase::PreOpen)
        } else if u < U_CLOSE {
            (lerp(U_OPEN, U_CLOSE, OPEN, CLOSE), Phase::Continuous)
        } else {
            (lerp(U_CLOSE, U_END, CLOSE, LAST_ACTIVITY), Phase::PostClose)
        };
        (self.at(tod), phase)
    }
}

/// Run-wide counters for the report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SimStats {
    pub orders: u64,
    pub matches: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
}

pub(crate) struct Sim<'o> {
    rng: ChaCha8Rng,
    zone: Zone,
    secs: Vec<Security>,
    sec_weights: Weighted,
    participants: Weighted,
    orders: Vec<Order>,
    free: Vec<u32>,
    timers: Timers,
    live: u64,
    next_order_id: u64,
    next_match_id: i64,
    sequence: i64,
    stamp: u64,
    now: i64,
    day: Day,
    budget: Budget,
    lit_cap: usize,
    cp_cap: usize,
    fills: Vec<Fill>,
    draining: bool,
    out: &'o mut Outputs,
    pub stats: SimStats,
}

impl<'o> Sim<'o> {
    pub(crate) fn new(seed: u64, securities: u32, budget: Budget, out: &'o mut Outputs) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let secs = (0..securities)
            .map(|k| {
                // Distinct by construction: each security owns its own block of 37 codes.
                let code = 100_000 + k * 37 + rng.random_range(0..37u32);
                let fair = match rng.random_range(0..100u32) {
                    0..40 => rng.random_range(200..1_000i64),
                    40..80 => rng.random_range(1_000..5_000i64),
                    _ => rng.random_range(5_000..20_000i64),
                };
                let spread = draw_spread(&mut rng);
                Security {
                    code,
                    fair,
                    spread,
                    lit: [Vec::new(), Vec::new()],
                    cp: [Vec::new(), Vec::new()],
                }
            })
            .collect();
        // Ids like the real ones: 19 digits, just above 7.89e18, increasing with arrival.
        let next_order_id = 7_898_856_358_160_837_782 + rng.random_range(0..1_000_000_000_000u64);
        let next_match_id = 6_500_000_000_000_000_000 + rng.random_range(0..1_000_000_000_000i64);
        let sequence = 1_000_000 + rng.random_range(0..1_000_000i64);
        // Two sides of a lit book and of a half-size Centre Point book per security.
        let lit_cap = (LIVE_LIMIT / (3 * securities.max(1) as usize)).clamp(MIN_LIT_CAP, LIT_CAP);
        Sim {
            rng,
            zone: Zone::default(),
            sec_weights: Weighted::zipf(securities as usize, 1),
            // A gentler skew than securities: brokers are many and less concentrated.
            participants: Weighted::zipf(300, 10),
            secs,
            orders: Vec::new(),
            free: Vec::new(),
            timers: Timers::default(),
            live: 0,
            next_order_id,
            next_match_id,
            sequence,
            stamp: 0,
            now: i64::MIN,
            day: Day {
                date: String::new(),
                midnight: 0,
            },
            budget,
            lit_cap,
            cp_cap: lit_cap / 2,
            fills: Vec::with_capacity(MAX_FILLS),
            draining: false,
            out,
            stats: SimStats::default(),
        }
    }

    /// Simulates the given trading days (day numbers since 1970-01-01), in order.
    pub(crate) fn run(&mut self, days: &[i32]) -> Result<(), GenerateError> {
        for (i, &day) in days.iter().enumerate() {
            self.run_day(day, days.len() - i)?;
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        match self.budget {
            Budget::Rows(n) | Budget::Bytes(n) => n,
        }
    }

    fn spent(&self) -> u64 {
        match self.budget {
            Budget::Rows(_) => self.out.orders_rows,
            Budget::Bytes(_) => self.out.orders_bytes,
        }
    }

    /// Budget units one order row costs, on average so far.
    fn row_cost(&self) -> u64 {
        match self.budget {
            Budget::Rows(_) => 1,
            Budget::Bytes(_) if self.out.orders_rows == 0 => INITIAL_ROW_BYTES,
            Budget::Bytes(_) => {
                (self.out.orders_bytes - self.out.header_bytes) / self.out.orders_rows
            }
        }
    }

    /// Budget left before `target` once every live order has its end row.
    fn remaining(&self, target: u64) -> i128 {
        let pending = i128::from(self.live) * i128::from(self.row_cost());
        i128::from(target) - i128::from(self.spent()) - pending
    }

    /// The virtual time, UTC time and phase of the next arrival after virtual time `u`, spacing
    /// arrivals so that the day's budget is used up evenly over what is left of the day; `None`
    /// once it is used up.
    fn next_arrival(&mut self, u: u64, target: u64) -> Option<(u64, i64, Phase)> {
        let r = self.remaining(target);
        if r <= 0 {
            return None;
        }
        let data_spent = match self.budget {
            Budget::Rows(_) => self.out.orders_rows,
            Budget::Bytes(_) => self.out.orders_bytes - self.out.header_bytes,
        };
        let committed =
            i128::from(data_spent) + i128::from(self.live) * i128::from(self.row_cost());
        let (cost, orders) = if self.stats.orders == 0 {
            (i128::from(INITIAL_ROWS_PER_ORDER * self.row_cost()), 1i128)
        } else {
            (committed.max(1), i128::from(self.stats.orders))
        };
        // Mean gap = left / (r / cost-per-order), in integers.
        let left = i128::from(U_END - u);
        let mean = (left * cost / (orders * r)).max(1);
        let gap = self
            .rng
            .random_range(1..=(2 * mean).min(i128::from(U_END)) as u64);
        let next = u + gap;
        if next >= U_END {
            return None;
        }
        // A virtual-time unit spans tens of microseconds; spread arrivals within it so that
        // timestamps do not all end in the same digits. Stays below the next unit's start, so
        // arrival times still increase.
        let (t, phase) = self.day.at_virtual(next);
        let (t_end, _) = self.day.at_virtual(next + 1);
        let t = t + self.rng.random_range(0..(t_end - t).max(1));
        Some((next, t, phase))
    }

    fn run_day(&mut self, day: i32, days_left: usize) -> Result<(), GenerateError> {
        self.day = Day::new(self.zone, day);
        let last_day = days_left == 1;
        let spent = self.spent();
        let target = if last_day {
            self.total()
        } else {
            spent + self.total().saturating_sub(spent) / days_left as u64
        };
        let exact = last_day && matches!(self.budget, Budget::Rows(_));
        let window_end = self.day.at(LAST_ACTIVITY);
        let mut next = self.next_arrival(0, target);
        loop {
            if exact && self.remaining(target) <= PAD_THRESHOLD {
                break;
            }
            let timer = self.timers.peek().filter(|&(t, _)| t < window_end);
            match (timer, next) {
                (Some((t, slot)), Some((_, ta, _))) if t <= ta => self.fire(t, slot)?,
                (Some((t, slot)), None) => self.fire(t, slot)?,
                (_, Some((u, ta, phase))) => {
                    self.now = self.now.max(ta);
                    self.arrive(phase)?;
                    next = self.next_arrival(u, target);
                }
                (None, None) => break,
            }
        }
        self.timers.clear();
        if exact {
            self.pad(target)?;
        }
        self.purge()
    }

    fn draw_pct(&mut self) -> u32 {
        self.rng.random_range(0..100u32)
    }

    fn seq(&mut self) -> i64 {
        self.sequence += 1;
        self.sequence
    }

    fn note_time(&mut self) {
        let t = self.now;
        self.stats.first_timestamp.get_or_insert(t);
        self.stats.last_timestamp = Some(t);
    }

    fn emit(
        &mut self,
        slot: u32,
        reason: u32,
        status: u32,
        purged: bool,
    ) -> Result<(), GenerateError> {
        let sequence = self.seq();
        self.note_time();
        let o = &self.orders[slot as usize];
        let sec = &self.secs[o.sec as usize];
        let (nb, no) = (sec.national_bid(), sec.national_offer());
        // The second-best snapshot equals the national one in most rows (89% in the sample).
        let (bid, offer) = if self.rng.random_range(0..100u32) < 89 {
            (nb, no)
        } else {
            (nb - TICK, no + TICK)
        };
        let row = OrderRow {
            order_id: o.id,
            exchange: EXCHANGE,
            timestamp: self.now,
            security_code: sec.code,
            price: o.price,
            side: o.side,
            change_reason: reason,
            order_status: status,
            quantity: o.quantity,
            leaves: o.leaves,
            order_type: ORDER_TYPE_LIMIT,
            exchange_order_type: o.eot,
            national_bid: nb,
            national_offer: no,
            bid,
            offer,
            participant: o.participant,
            preference_only: o.preference_only,
            midtick: o.midtick,
            single_fill_min_qty: o.single_fill_min_qty,
            min_qty: o.min_qty,
            sequence,
            crossing_key: o.crossing_key,
            matched: o.matched,
            short_sell_qty: o.short_qty,
            trigger_condition: 0,
            time_validity_decoded: o.validity.decoded(purged),
            row_num: self.out.orders_rows,
            time_validity: o.validity.code(purged),
            date: &self.day.date,
        };
        self.out.order(&row)
    }

    fn alloc(&mut self, order: Order) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.orders[slot as usize] = order;
                slot
            }
            None => {
                self.orders.push(order);
                (self.orders.len() - 1) as u32
            }
        }
    }

    /// Takes a resting order off its book and frees its slot.
    fn retire(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let side = o.side_index();
        let sec = &mut self.secs[o.sec as usize];
        let book = match o.book {
            BookKind::Lit => Some(&mut sec.lit[side]),
            BookKind::Cp => Some(&mut sec.cp[side]),
            BookKind::None => None,
        };
        if let Some(book) = book {
            if let Some(i) = book.iter().position(|&s| s == slot) {
                book.remove(i);
            }
            self.live -= 1;
        }
        self.orders[slot as usize].book = BookKind::None;
        self.timers.remove(slot);
        self.free.push(slot);
    }

    fn new_order_id(&mut self) -> u64 {
        self.next_order_id += self.rng.random_range(1..=4_096u64);
        self.next_order_id
    }

    /// A new order on security `sec`, of a type, size and limit suited to `phase`.
    fn make_order(&mut self, sec: u32, phase: Phase) -> Order {
        let p = self.draw_pct();
        let eot = match phase {
            Phase::Continuous => match p {
                0..56 => EOT_LIT,
                56..73 => EOT_SWEEP,
                73..87 => EOT_BLOCK,
                87..93 => EOT_CP,
                93..96 => EOT_BLOCK_SHORT,
                _ => EOT_CP_CROSSING,
            },
            // A sweep is an immediate instruction: it has nothing to do before the open.
            Phase::PreOpen => match p {
                0..73 => EOT_LIT,
                73..85 => EOT_BLOCK,
                85..95 => EOT_CP,
                95..97 => EOT_BLOCK_SHORT,
                _ => EOT_CP_CROSSING,
            },
            // Centre Point is closed after 16:10 (POST_CLOSE excludes CP orders).
            Phase::PostClose => EOT_LIT,
        };
        let side = if eot == EOT_BLOCK_SHORT || self.rng.random::<bool>() {
            2
        } else {
            1
        };
        let centre_point = eot != EOT_LIT;
        let v = self.draw_pct();
        let validity = if phase != Phase::Continuous {
            match v {
                0..90 => Validity::RestOfDay,
                90..96 => Validity::CurrentMax,
                _ => Validity::Days(8),
            }
        } else if eot == EOT_LIT {
            match v {
                0..70 => Validity::RestOfDay,
                70..90 => Validity::Bouncing,
                90..96 => Validity::CurrentMax,
                96..99 => Validity::Days(8),
                _ => Validity::Days(90),
            }
        } else if eot == EOT_SWEEP {
            if v < 60 {
                Validity::RestOfDay
            } else {
                Validity::Bouncing
            }
        } else {
            match v {
                0..85 => Validity::RestOfDay,
                85..92 => Validity::Bouncing,
                _ => Validity::CurrentMax,
            }
        };
        let quantity = self.draw_quantity(eot);
        let s = &self.secs[sec as usize];
        let (nb, no) = (s.national_bid(), s.national_offer());
        let buy = side == 1;
        let price = match eot {
            EOT_LIT => {
                let marketable =
                    phase == Phase::Continuous && self.rng.random_range(0..100u32) < 35;
                let steps = if marketable {
                    self.rng.random_range(0..=1i64)
                } else {
                    self.rng.random_range(0..=4i64)
                };
                match (buy, marketable) {
                    (true, true) => no + steps * TICK,
                    (true, false) => nb - steps * TICK,
                    (false, true) => nb - steps * TICK,
                    (false, false) => no + steps * TICK,
                }
            }
            _ => {
                // Centre Point and sweep limits sit at or beyond the far touch, so the midpoint
                // is usually acceptable.
                let steps = self.rng.random_range(0..=3i64);
                if buy {
                    no + steps * TICK
                } else {
                    nb - steps * TICK
                }
            }
        }
        .max(TICK);
        let mut eot = eot;
        let mut short_qty = 0;
        if eot == EOT_BLOCK_SHORT {
            short_qty = quantity;
        } else if eot == EOT_LIT && !buy && self.rng.random_range(0..100u32) < 2 {
            eot = EOT_SHORT;
            short_qty = quantity;
        }
        let cp_resting = centre_point && eot != EOT_SWEEP;
        let min_qty = if cp_resting && self.rng.random_range(0..100u32) >= 93 {
            self.rng.random_range(1..=quantity.min(2_414))
        } else {
            0
        };
        let (preference_only, midtick, single_fill_min_qty) = if !centre_point {
            (0, 0, 0)
        } else {
            let pref = if self.rng.random_range(0..10u32) < 9 {
                2
            } else {
                0
            };
            // Every sweep in the sample has midtick 2.
            let midtick = if eot == EOT_SWEEP {
                2
            } else {
                self.rng.random_range(1..=2u32)
            };
            let sfmq = match self.rng.random_range(0..10u32) {
                0..8 => 2,
                8 => 1,
                _ => 0,
            };
            (pref, midtick, sfmq)
        };
        let crossing_key = if eot == EOT_CP_CROSSING {
            self.rng.random_range(1..1_158_603_000u64)
        } else {
            0
        };
        let participant = self.participants.sample(&mut self.rng) as u32 + 1;
        Order {
            id: self.new_order_id(),
            sec,
            side,
            eot,
            price,
            quantity,
            leaves: quantity,
            matched: 0,
            participant,
            preference_only,
            midtick,
            single_fill_min_qty,
            min_qty,
            crossing_key,
            short_qty,
            validity,
            book: BookKind::None,
            action: Action::None,
        }
    }

    fn draw_quantity(&mut self, eot: u32) -> u64 {
        // Heavy-tailed like the sample (max 742,267), as a mixture of log-spaced uniform bands.
        let bands: &[(u64, u64, u32)] = match eot {
            EOT_LIT | EOT_SHORT => &[
                (1, 100, 25),
                (100, 1_000, 45),
                (1_000, 10_000, 24),
                (10_000, 100_000, 5),
                (100_000, 750_000, 1),
            ],
            EOT_BLOCK | EOT_BLOCK_SHORT => &[
                (5_000, 50_000, 60),
                (50_000, 300_000, 35),
                (300_000, 750_000, 5),
            ],
            _ => &[(1, 1_000, 40), (1_000, 10_000, 45), (10_000, 100_000, 15)],
        };
        let mut x = self.draw_pct();
        let &(lo, hi, _) = bands
            .iter()
            .find(|&&(_, _, w)| {
                if x < w {
                    true
                } else {
                    x -= w;
                    false
                }
            })
            .unwrap_or(&bands[0]);
        let q = self.rng.random_range(lo..hi);
        // Round lots are common above a thousand shares.
        if q >= 1_000 && self.rng.random::<bool>() {
            q / 100 * 100
        } else {
            q
        }
    }

    /// Moves the security's NBBO a little, as time passes between its orders.
    fn walk(&mut self, sec: u32) {
        let p = self.draw_pct();
        let s = &mut self.secs[sec as usize];
        match p {
            0..6 => s.fair = (s.fair - 1).max(MIN_FAIR),
            6..12 => s.fair += 1,
            12..16 => s.spread = draw_spread(&mut self.rng),
            _ => {}
        }
    }

    fn arrive(&mut self, phase: Phase) -> Result<(), GenerateError> {
        let sec = self.sec_weights.sample(&mut self.rng) as u32;
        self.walk(sec);
        let order = self.make_order(sec, phase);
        let slot = self.alloc(order);
        self.stats.orders += 1;

        self.fills.clear();
        if phase == Phase::Continuous {
            let eot = self.orders[slot as usize].eot;
            if eot != EOT_LIT && eot != EOT_SHORT {
                self.plan_centre_point(slot);
            }
            if eot == EOT_LIT || eot == EOT_SHORT || eot == EOT_SWEEP {
                self.plan_lit(slot);
            }
        }
        let filled: u64 = self.fills.iter().map(|f| f.qty).sum();
        let o = &self.orders[slot as usize];
        let left = o.quantity - filled;
        let rests = left > 0 && o.validity != Validity::Bouncing;
        let status = if rests { ON_BOOK } else { OFF_BOOK };
        self.emit(slot, NEW, status, false)?;

        for i in 0..self.fills.len() {
            let fill = self.fills[i];
            self.execute(slot, fill, status)?;
        }

        if left == 0 {
            self.retire(slot);
        } else if rests {
            self.rest(slot)?;
        } else {
            // The unfilled part of a bouncing (fill-and-kill) order.
            self.emit(slot, SYSTEM_CANCEL, OFF_BOOK, false)?;
            self.retire(slot);
        }
        Ok(())
    }

    /// Plans fills against the Centre Point book, at the midpoint, in time priority.
    fn plan_centre_point(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let sec = &self.secs[o.sec as usize];
        let mid = sec.mid();
        if !o.accepts(mid) {
            return;
        }
        let mut want = o.leaves;
        for &p in &sec.cp[1 - o.side_index()] {
            if want == 0 || self.fills.len() >= MAX_FILLS {
                break;
            }
            let po = &self.orders[p as usize];
            if !po.accepts(mid) {
                continue;
            }
            let qty = want.min(po.leaves);
            // Minimum acceptable quantity: a resting order refuses smaller fills while it could
            // still take a larger one.
            if qty < po.min_qty && po.leaves >= po.min_qty {
                continue;
            }
            self.fills.push(Fill {
                passive: p,
                qty,
                price: mid,
                centre_point: true,
            });
            want -= qty;
        }
    }

    /// Plans fills against the lit book at the resting prices, best price first, then oldest.
    fn plan_lit(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let sec = &self.secs[o.sec as usize];
        let buy = o.is_buy();
        let mut want = o.leaves - self.fills.iter().map(|f| f.qty).sum::<u64>();
        while want > 0 && self.fills.len() < MAX_FILLS {
            let mut best: Option<(u32, i64)> = None;
            for &p in &sec.lit[1 - o.side_index()] {
                let price = self.orders[p as usize].price;
                if !o.accepts(price) || self.fills.iter().any(|f| f.passive == p) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((_, b)) => {
                        if buy {
                            price < b
                        } else {
                            price > b
                        }
                    }
                };
                if better {
                    best = Some((p, price));
                }
            }
            let Some((p, price)) = best else { break };
            let qty = want.min(self.orders[p as usize].leaves);
            self.fills.push(Fill {
                passive: p,
                qty,
                price,
                centre_point: false,
            });
            want -= qty;
        }
    }

    /// Applies one planned fill: a trade event on each order and the two trade rows.
    fn execute(&mut self, aggressor: u32, fill: Fill, status: u32) -> Result<(), GenerateError> {
        for slot in [aggressor, fill.passive] {
            let o = &mut self.orders[slot as usize];
            o.leaves -= fill.qty;
            o.matched += fill.qty;
        }
        let a = &self.orders[aggressor as usize];
        let a_status = if a.leaves == 0 { OFF_BOOK } else { status };
        self.emit(aggressor, TRADED, a_status, false)?;
        let p_status = if self.orders[fill.passive as usize].leaves == 0 {
            OFF_BOOK
        } else {
            ON_BOOK
        };
        self.emit(fill.passive, TRADED, p_status, false)?;

        self.next_match_id += self.rng.random_range(1..=16i64);
        self.stats.matches += 1;
        let (buyer, seller) = if self.orders[aggressor as usize].is_buy() {
            (aggressor, fill.passive)
        } else {
            (fill.passive, aggressor)
        };
        for slot in [buyer, seller] {
            let sequence = self.seq();
            let o = &self.orders[slot as usize];
            let sec = &self.secs[o.sec as usize];
            let (deal_source, deal_source_decoded) =
                if fill.centre_point { DEAL_CP } else { DEAL_LIT };
            let row = TradeRow {
                exchange: EXCHANGE,
                sequence,
                trade_date: &self.day.date,
                trade_time: self.now,
                security_code: sec.code,
                order_id: o.id,
                deal_source,
                deal_source_decoded,
                exchange_info: "ON Market",
                match_group_id: self.next_match_id,
                national_bid: sec.national_bid(),
                national_offer: sec.national_offer(),
                price: fill.price,
                quantity: fill.qty,
                side: o.side,
                side_decoded: if o.is_buy() { "Buy" } else { "Sell" },
                participant: o.participant,
                passive_aggressive: u32::from(slot == aggressor),
                row_num: self.out.trade_row_num,
            };
            self.out.trade(&row)?;
        }
        if self.orders[fill.passive as usize].leaves == 0 {
            self.retire(fill.passive);
        }
        Ok(())
    }

    /// Puts an order with open quantity on its book, evicting the book's oldest order if full.
    fn rest(&mut self, slot: u32) -> Result<(), GenerateError> {
        let o = &self.orders[slot as usize];
        // A sweep's residual rests in the lit book (bi.txt §25.2).
        let kind = if o.eot == EOT_LIT || o.eot == EOT_SHORT || o.eot == EOT_SWEEP {
            BookKind::Lit
        } else {
            BookKind::Cp
        };
        let (sec, side) = (o.sec as usize, o.side_index());
        let (len, cap) = match kind {
            BookKind::Cp => (self.secs[sec].cp[side].len(), self.cp_cap),
            _ => (self.secs[sec].lit[side].len(), self.lit_cap),
        };
        if len >= cap {
            let oldest = match kind {
                BookKind::Cp => self.secs[sec].cp[side][0],
                _ => self.secs[sec].lit[side][0],
            };
            self.emit(oldest, TRADER_CANCEL, OFF_BOOK, false)?;
            self.retire(oldest);
        }
        match kind {
            BookKind::Cp => self.secs[sec].cp[side].push(slot),
            _ => self.secs[sec].lit[side].push(slot),
        }
        self.orders[slot as usize].book = kind;
        self.live += 1;
        self.schedule(slot);
        Ok(())
    }

    /// Gives a resting order its next amend or cancel time, or none (it then waits for fills
    /// or the purge).
    fn schedule(&mut self, slot: u32) {
        if self.draining {
            return;
        }
        let action = match self.draw_pct() {
            0..62 => Action::Cancel,
            62..80 => Action::Amend,
            _ => Action::None,
        };
        self.orders[slot as usize].action = Action::None;
        if action == Action::None {
            return;
        }
        let delay = match self.draw_pct() {
            0..35 => self.rng.random_range(MILLI..2 * SECOND_NS),
            35..70 => self.rng.random_range(2 * SECOND_NS..2 * MINUTE_NS),
            70..90 => self.rng.random_range(2 * MINUTE_NS..30 * MINUTE_NS),
            _ => self.rng.random_range(30 * MINUTE_NS..4 * HOUR_NS),
        };
        let at = self.now + delay;
        if at >= self.day.at(LAST_ACTIVITY) {
            return;
        }
        self.orders[slot as usize].action = action;
        self.stamp += 1;
        self.timers.set(slot, at, self.stamp);
    }

    fn fire(&mut self, at: i64, slot: u32) -> Result<(), GenerateError> {
        self.timers.remove(slot);
        self.now = self.now.max(at);
        match self.orders[slot as usize].action {
            Action::Cancel => {
                let reason = match self.draw_pct() {
                    0..85 => TRADER_CANCEL,
                    85..95 => SYSTEM_CANCEL,
                    _ => CANCEL_ON_BEHALF,
                };
                self.emit(slot, reason, OFF_BOOK, false)?;
                self.retire(slot);
                Ok(())
            }
            Action::Amend => {
                self.amend(slot)?;
                self.schedule(slot);
                Ok(())
            }
            Action::None => Ok(()),
        }
    }

    fn amend(&mut self, slot: u32) -> Result<(), GenerateError> {
        let remaining_style = self.orders[slot as usize].matched > 0 && self.draw_pct() < 10;
        let factor = self.rng.random_range(50..=150u64);
        let reprice = self.draw_pct() < 30;
        let up = self.rng.random::<bool>();
        let o = &mut self.orders[slot as usize];
        if remaining_style {
            // See the module notes: quantity becomes the new open quantity.
            let leaves = o.leaves.max(1);
            o.leaves = leaves.min(leaves * factor / 100).max(1);
            o.quantity = o.leaves;
        } else {
            o.leaves = (o.leaves * factor / 100).max(1);
            o.quantity = o.matched + o.leaves;
        }
        if reprice {
            o.price = if up {
                o.price + TICK
            } else {
                (o.price - TICK).max(TICK)
            };
        }
        o.min_qty = o.min_qty.min(o.leaves);
        o.short_qty = o.short_qty.min(o.quantity);
        self.emit(slot, AMEND, ON_BOOK, false)
    }

    /// Brings the last day to exactly the `--rows` count: single-row amends while orders rest,
    /// else new resting orders (an insert now and a purge later).
    fn pad(&mut self, target: u64) -> Result<(), GenerateError> {
        self.draining = true;
        let start = self.now.max(self.day.at(PRE_OPEN));
        self.now = start;
        loop {
            let r = self.remaining(target);
            if r <= 0 {
                break;
            }
            self.now += self.rng.random_range(MILLI..50 * MILLI);
            if self.live > 0 {
                let slot = self.some_live_order();
                self.amend(slot)?;
            } else if r >= 2 {
                let sec = self.sec_weights.sample(&mut self.rng) as u32;
                let order = self.make_order(sec, Phase::PostClose);
                let slot = self.alloc(order);
                self.stats.orders += 1;
                self.emit(slot, NEW, ON_BOOK, false)?;
                self.rest(slot)?;
            } else {
                // One row left and nothing resting: an order that stays open past the end of
                // the file, as a good-till-cancelled order would.
                let sec = self.sec_weights.sample(&mut self.rng) as u32;
                let mut order = self.make_order(sec, Phase::PostClose);
                order.validity = Validity::CurrentMax;
                let slot = self.alloc(order);
                self.stats.orders += 1;
                self.emit(slot, NEW, ON_BOOK, false)?;
                self.free.push(slot);
            }
        }
        self.draining = false;
        Ok(())
    }

    fn some_live_order(&mut self) -> u32 {
        let n = self.secs.len();
        let start = self.rng.random_range(0..n as u64) as usize;
        for k in 0..n {
            let s = &self.secs[(start + k) % n];
            if let Some(&slot) = s.lit.iter().chain(&s.cp).find_map(|b| b.first()) {
                return slot;
            }
        }
        // `live > 0` guarantees a resting order; slot 0 exists whenever any order does.
        0
    }

    /// Ends the day: every order still resting is purged at 18:50.
    fn purge(&mut self) -> Result<(), GenerateError> {
        self.now = self.now.max(self.day.at(PURGE));
        for sec in 0..self.secs.len() {
            for book in 0..4 {
                loop {
                    let s = &self.secs[sec];
                    let list = if book < 2 {
                        &s.lit[book]
                    } else {
                        &s.cp[book - 2]
                    };
                    let Some(&slot) = list.first() else { break };
                    let reason = if self.orders[slot as usize].validity == Validity::RestOfDay {
                        ROD_PURGE
                    } else {
                        NON_ROD_PURGE
                    };
                    self.emit(slot, reason, OFF_BOOK, true)?;
                    self.retire(slot);
                    self.now += self.rng.random_range(1_000..200_000i64);
                }
            }
        }
        Ok(())
    }
}

const MILLI: i64 = 1_000_000;

fn draw_spread(rng: &mut ChaCha8Rng) -> i64 {
    match rng.random_range(0..100u32) {
        0 => 0,
        1..60 => 1,
        60..88 => 2,
        _ => 3,
    }
}

/// The first `count` weekdays from `start` (inclusive), as day numbers.
pub(crate) fn trading_days(start: chrono::NaiveDate, count: u32) -> Option<Vec<i32>> {
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
