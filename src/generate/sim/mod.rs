//! The market simulation behind `sweep generate`: its state, its day loop and the rows it emits.
//!
//! Orders arrive one at a time, in time order, on Zipf-popular securities. Each security has a
//! lit book, a Centre Point book and a reference price (a random walk that new orders are priced
//! from). Orders entered before 10:00 wait for the opening auction, which uncrosses the lit book in
//! the 15 s before 10:00 (`auction.rs`); from then to 16:00 an arriving order trades at once
//! (`matching.rs`): lit orders against the lit book at the resting price, Centre Point orders
//! against the Centre Point book at the NBBO midpoint, sweeps (2048) against Centre Point first and
//! then lit (bi.txt §25.2). Orders entered from 16:00 wait for the closing auction at 16:10; after
//! it nothing trades. Resting orders are later amended (5), cancelled (1/9/10) or purged at 18:50
//! (24, or 26 for other validities); multi-day orders may instead survive the night and be
//! reloaded (30) the next morning, and the first day opens with orders reloaded from before the
//! file, whose arrival the file therefore never shows (`lifecycle.rs`).
//!
//! During continuous trading the NBBO is the lit book's own touch (`book.rs`), so lit trades print
//! at it; for a moment now and then another venue's stale quote locks or crosses it.
//!
//! Events are produced strictly in time order — the next event is the earliest of the next
//! arrival, the earliest pending amend/cancel timer and the next auction — so rows stream straight
//! to disk. Memory is bounded by the book caps: a full book evicts (cancels) its oldest order
//! before another may rest. `--final-state` keeps each live order's latest row (as its state plus
//! an [`book::EventCtx`]) and writes it when the order ends.
//!
//! Deliberate simplifications: no trade reports; no public holidays; one tick of 1c for every
//! security, so that a Centre Point midpoint is always a whole number of price units.
//!
//! `quantity == leavesquantity + totalmatchedquantity` holds on every row except after a
//! "remaining-quantity amend": a changereason-5 row on a partly traded order that reports the new
//! open quantity as `quantity` (as ASX amends of traded orders do, domain.md §1.2: "amended traded
//! orders, where matched > quantity"). From that row on, `leaves + matched - quantity` stays equal
//! to the matched quantity at the amend, until a later amend restores the identity. Only amend rows
//! change that difference.
//!
//! No floating point is used anywhere, so the output depends only on the seed: integer sampling
//! from ChaCha is specified bit for bit, whereas `ln`/`exp` come from the platform's libm.

mod auction;
mod book;
mod codes;
mod day;
mod flow;
mod lifecycle;
mod matching;
mod timers;
mod weighted;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GenerateError;
use super::rows::OrderRow;
use super::sink::Outputs;
use crate::time::{Zone, format_day};
use book::{BookKind, EventCtx, Fill, Order, Security};
use codes::*;
pub use day::trading_days;
use day::{Day, U_END};
use timers::Timers;
use weighted::Weighted;

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
const MILLI: i64 = 1_000_000;

/// How much output to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Exactly this many order event rows.
    Rows(u64),
    /// About this many uncompressed CSV bytes of order events, header included.
    Bytes(u64),
}

/// Which order rows reach the orders file. The simulation, and so the budget, is the same
/// whatever is chosen: the file is a view of the full event log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputMode {
    /// One row per order, its last event, written when the order ends.
    pub final_state: bool,
    /// Only Centre Point orders (any of the bits 64, 256, 2048, 4096).
    pub centre_point_only: bool,
}

impl OutputMode {
    fn selects(self, eot: u32) -> bool {
        !self.centre_point_only || eot & CENTRE_POINT_BITS != 0
    }
}

/// Run-wide counters for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimStats {
    pub orders: u64,
    pub matches: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
}

pub struct Sim<'o> {
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
    /// The session of the day so far (auctions run before any event at or after their time).
    session: Session,
    open_at: i64,
    close_at: i64,
    budget: Budget,
    mode: OutputMode,
    lit_cap: usize,
    cp_cap: usize,
    fills: Vec<Fill>,
    draining: bool,
    out: &'o mut Outputs,
    pub stats: SimStats,
}

impl<'o> Sim<'o> {
    pub fn new(
        seed: u64,
        securities: u32,
        budget: Budget,
        mode: OutputMode,
        out: &'o mut Outputs,
    ) -> Self {
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
                let spread = flow::draw_spread(&mut rng);
                Security {
                    code,
                    fair,
                    spread,
                    lit: [Vec::new(), Vec::new()],
                    cp: [Vec::new(), Vec::new()],
                    best: [None, None],
                    away: None,
                    continuous: false,
                    shown: None,
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
                number: 0,
                date: String::new(),
                midnight: 0,
            },
            session: Session::PreOpen,
            open_at: 0,
            close_at: 0,
            budget,
            mode,
            lit_cap,
            cp_cap: lit_cap / 2,
            fills: Vec::with_capacity(MAX_FILLS),
            draining: false,
            out,
            stats: SimStats::default(),
        }
    }

    /// Simulates the given trading days (day numbers since 1970-01-01), in order. The last day's
    /// purge ends every order but the one `--rows` padding may leave open, whose `--final-state`
    /// row the padding writes itself.
    pub fn run(&mut self, days: &[i32]) -> Result<(), GenerateError> {
        for (i, &day) in days.iter().enumerate() {
            self.run_day(day, i == 0, days.len() - i)?;
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
            Budget::Rows(_) => self.out.log_rows,
            Budget::Bytes(_) => self.out.log_bytes,
        }
    }

    /// Budget units one order row costs, on average so far.
    fn row_cost(&self) -> u64 {
        match self.budget {
            Budget::Rows(_) => 1,
            Budget::Bytes(_) if self.out.log_rows == 0 => INITIAL_ROW_BYTES,
            Budget::Bytes(_) => (self.out.log_bytes - self.out.header_bytes) / self.out.log_rows,
        }
    }

    /// Budget left before `target` once every live order has its end row.
    fn remaining(&self, target: u64) -> i128 {
        let pending = i128::from(self.live) * i128::from(self.row_cost());
        i128::from(target) - i128::from(self.spent()) - pending
    }

    /// The virtual time and UTC time of the next arrival after virtual time `u`, spacing arrivals
    /// so that the day's budget is used up evenly over what is left of the day; `None` once it is
    /// used up.
    fn next_arrival(&mut self, u: u64, target: u64) -> Option<(u64, i64)> {
        let r = self.remaining(target);
        if r <= 0 {
            return None;
        }
        let data_spent = match self.budget {
            Budget::Rows(_) => self.out.log_rows,
            Budget::Bytes(_) => self.out.log_bytes - self.out.header_bytes,
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
        let t = self.day.at_virtual(next);
        let t_end = self.day.at_virtual(next + 1);
        let t = t + self.rng.random_range(0..(t_end - t).max(1));
        Some((next, t))
    }

    fn run_day(
        &mut self,
        day: i32,
        first_day: bool,
        days_left: usize,
    ) -> Result<(), GenerateError> {
        self.day = Day::new(self.zone, day);
        self.session = Session::PreOpen;
        self.open_at = self.day.at(OPEN - OPEN_JITTER) + self.rng.random_range(0..OPEN_JITTER);
        self.close_at = self.day.at(CLOSING_AUCTION) + self.rng.random_range(0..CLOSE_JITTER);
        let last_day = days_left == 1;
        let spent = self.spent();
        let target = if last_day {
            self.total()
        } else {
            spent + self.total().saturating_sub(spent) / days_left as u64
        };
        let exact = last_day && matches!(self.budget, Budget::Rows(_));
        if first_day {
            self.carry_in(target)?;
        } else {
            self.reload()?;
        }
        let window_end = self.day.at(LAST_ACTIVITY);
        let close = self.day.at(CLOSE);
        let mut next = self.next_arrival(0, target);
        loop {
            if exact && self.remaining(target) <= PAD_THRESHOLD {
                break;
            }
            let timer = self.timers.peek().filter(|&(t, _)| t < window_end);
            let due = match (timer, next) {
                (Some((t, _)), Some((_, ta))) => t.min(ta),
                (Some((t, _)), None) => t,
                (None, Some((_, ta))) => ta,
                (None, None) => i64::MAX,
            };
            // Session changes due before the next event happen first, even when no event is
            // left: the day's auctions always run (budget permitting).
            match self.session {
                Session::PreOpen if due >= self.open_at => {
                    if !self.auction(true, exact.then_some(target))? {
                        break;
                    }
                    continue;
                }
                Session::Continuous if due >= close => {
                    self.end_continuous(close);
                    continue;
                }
                Session::PreClose if due >= self.close_at => {
                    if !self.auction(false, exact.then_some(target))? {
                        break;
                    }
                    continue;
                }
                _ => {}
            }
            match (timer, next) {
                (Some((t, slot)), Some((_, ta))) if t <= ta => self.fire(t, slot)?,
                (Some((t, slot)), None) => self.fire(t, slot)?,
                (_, Some((u, ta))) => {
                    self.now = self.now.max(ta);
                    self.arrive()?;
                    next = self.next_arrival(u, target);
                }
                (None, None) => break,
            }
        }
        self.timers.clear();
        self.end_continuous(close);
        if exact {
            self.pad(target)?;
        }
        self.purge(last_day, target)
    }

    /// 16:00: continuous matching stops; books show the reference quote again.
    fn end_continuous(&mut self, close: i64) {
        if self.session == Session::Continuous || self.session == Session::PreOpen {
            self.session = Session::PreClose;
            self.now = self.now.max(close);
        }
        for s in &mut self.secs {
            s.continuous = false;
            s.away = None;
        }
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

    /// Writes one event of the order in `slot`, with the order's current state.
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
        let (nb, no) = self.secs[o.sec as usize].nbbo(self.now);
        // The second-best snapshot equals the national one in most rows (89% in the sample).
        let (bid, offer) = if self.rng.random_range(0..100u32) < 89 {
            (nb, no)
        } else {
            (nb - TICK, no + TICK)
        };
        let ctx = EventCtx {
            timestamp: self.now,
            sequence,
            row_num: self.out.log_rows,
            national_bid: nb,
            national_offer: no,
            bid,
            offer,
            reason,
            status,
            purged,
            day: self.day.number,
        };
        let o = &mut self.orders[slot as usize];
        o.last = ctx;
        let write = !self.mode.final_state && self.mode.selects(o.eot);
        let row = order_row(o, self.secs[o.sec as usize].code, &ctx, &self.day.date);
        self.out.order(&row, write)
    }

    /// The order in `slot` has had its last event: `--final-state` writes it now.
    fn finish(&mut self, slot: u32) -> Result<(), GenerateError> {
        let o = &self.orders[slot as usize];
        if !self.mode.final_state || !self.mode.selects(o.eot) {
            return Ok(());
        }
        let other_day;
        let date = if o.last.day == self.day.number {
            &self.day.date
        } else {
            other_day = format_day(o.last.day);
            &other_day
        };
        let row = order_row(o, self.secs[o.sec as usize].code, &o.last, date);
        self.out.write_order(&row)
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

    /// Ends an order: writes its final row if asked, takes it off its book and frees its slot.
    fn retire(&mut self, slot: u32) -> Result<(), GenerateError> {
        self.finish(slot)?;
        let o = &self.orders[slot as usize];
        let (side, price, kind) = (o.side_index(), o.price, o.book);
        let sec_index = o.sec as usize;
        let sec = &mut self.secs[sec_index];
        let book = match kind {
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
        if kind == BookKind::Lit && sec.best[side] == Some(price) {
            self.rescan(sec_index, side);
        }
        self.orders[slot as usize].book = BookKind::None;
        self.timers.remove(slot);
        self.free.push(slot);
        Ok(())
    }

    /// Recomputes the best lit price of one side of a security's book.
    fn rescan(&mut self, sec: usize, side: usize) {
        let orders = &self.orders;
        let prices = self.secs[sec].lit[side]
            .iter()
            .map(|&s| orders[s as usize].price);
        self.secs[sec].best[side] = if side == 0 {
            prices.max()
        } else {
            prices.min()
        };
    }

    fn new_order_id(&mut self) -> u64 {
        self.next_order_id += self.rng.random_range(1..=4_096u64);
        self.next_order_id
    }
}

/// The order row of `o` at the event `ctx`.
fn order_row<'a>(o: &Order, code: u32, ctx: &EventCtx, date: &'a str) -> OrderRow<'a> {
    OrderRow {
        order_id: o.id,
        exchange: EXCHANGE,
        timestamp: ctx.timestamp,
        security_code: code,
        price: o.price,
        side: o.side,
        change_reason: ctx.reason,
        order_status: ctx.status,
        quantity: o.quantity,
        leaves: o.leaves,
        order_type: ORDER_TYPE_LIMIT,
        exchange_order_type: o.eot,
        national_bid: ctx.national_bid,
        national_offer: ctx.national_offer,
        bid: ctx.bid,
        offer: ctx.offer,
        participant: o.participant,
        preference_only: o.preference_only,
        midtick: o.midtick,
        single_fill_min_qty: o.single_fill_min_qty,
        min_qty: o.min_qty,
        sequence: ctx.sequence,
        crossing_key: o.crossing_key,
        matched: o.matched,
        short_sell_qty: o.short_qty,
        trigger_condition: 0,
        time_validity_decoded: o.validity.decoded(ctx.purged),
        row_num: ctx.row_num,
        time_validity: o.validity.code(ctx.purged),
        date,
    }
}
