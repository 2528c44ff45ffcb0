//! A resting order's life after arrival: amends, cancels, the purge, overnight reloads, padding.

use rand::RngExt;

use super::book::{Action, BookKind};
use super::codes::*;
use super::flow::Origin;
use super::{GenerateError, MILLI, PAD_THRESHOLD, Sim};
use crate::time::{HOUR_NS, MINUTE_NS, SECOND_NS};

/// Chance, in percent, that a multi-day order resting at the purge survives the night.
const SURVIVE_PCT: u32 = 80;
/// Orders reloaded from before the file on its first morning: one per this many order rows the
/// first day is budgeted, up to [`MAX_CARRY_IN`].
const ROWS_PER_CARRY_IN: u64 = 60;
const MAX_CARRY_IN: u64 = 2_000;

impl Sim<'_> {
    /// Gives a resting order its next amend or cancel time, or none (it then waits for fills
    /// or the purge).
    pub(super) fn schedule(&mut self, slot: u32) {
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

    pub(super) fn fire(&mut self, at: i64, slot: u32) -> Result<(), GenerateError> {
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
                self.retire(slot)
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
        o.min_qty = o.min_qty.min(o.leaves);
        o.short_qty = o.short_qty.min(o.quantity);
        if reprice {
            let price = if up {
                o.price + TICK
            } else {
                (o.price - TICK).max(TICK)
            };
            self.reprice(slot, price);
        }
        self.emit(slot, AMEND, ON_BOOK, false)
    }

    /// Moves a resting order to `price`, unless that would lock or cross the lit book outside
    /// an auction call: only an arriving order trades, so an amend must not reach the other side.
    fn reprice(&mut self, slot: u32, price: i64) {
        let o = &self.orders[slot as usize];
        let (sec, side) = (o.sec as usize, o.side_index());
        if o.book == BookKind::Lit && !self.session.is_call() {
            let reaches = match self.secs[sec].best[1 - side] {
                Some(other) if side == 0 => price >= other,
                Some(other) => price <= other,
                None => false,
            };
            if reaches {
                return;
            }
        }
        let lit = o.book == BookKind::Lit;
        self.orders[slot as usize].price = price;
        if lit {
            self.rescan(sec, side);
        }
    }

    /// Brings the last day to exactly the `--rows` count: single-row amends while orders rest,
    /// else new resting orders (an insert now and a purge later).
    pub(super) fn pad(&mut self, target: u64) -> Result<(), GenerateError> {
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
                let order = self.make_order(sec, Origin::New(Session::PostClose));
                let slot = self.alloc(order);
                self.stats.orders += 1;
                self.emit(slot, NEW, ON_BOOK, false)?;
                self.rest(slot)?;
            } else {
                // One row left and nothing resting: an order that stays open past the end of
                // the file, as a good-till-cancelled order would.
                let sec = self.sec_weights.sample(&mut self.rng) as u32;
                let mut order = self.make_order(sec, Origin::New(Session::PostClose));
                order.validity = Validity::CurrentMax;
                let slot = self.alloc(order);
                self.stats.orders += 1;
                self.emit(slot, NEW, ON_BOOK, false)?;
                self.finish(slot)?;
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

    /// The resting order at position `k` of book `book` (lit buy, lit sell, CP buy, CP sell) of
    /// security `sec`.
    fn book_order(&self, sec: usize, book: usize, k: usize) -> Option<u32> {
        let s = &self.secs[sec];
        let list = if book < 2 {
            &s.lit[book]
        } else {
            &s.cp[book - 2]
        };
        list.get(k).copied()
    }

    /// Ends the day at 18:50: every order still resting is purged, except that, before the last
    /// day, a multi-day order usually survives to be reloaded next morning, while the budget
    /// leaves room for its reload row.
    pub(super) fn purge(&mut self, last_day: bool, target: u64) -> Result<(), GenerateError> {
        self.now = self.now.max(self.day.at(PURGE));
        let reserve = 4 * PAD_THRESHOLD * i128::from(self.row_cost());
        let mut survivors = 0i128;
        for sec in 0..self.secs.len() {
            for book in 0..4 {
                let mut k = 0;
                while let Some(slot) = self.book_order(sec, book, k) {
                    let o = &self.orders[slot as usize];
                    let (validity, multi_day) = (o.validity, o.validity.is_multi_day());
                    let room = self.remaining(target.max(self.total()))
                        - (survivors + 1) * i128::from(self.row_cost());
                    if !last_day && multi_day && room > reserve && self.draw_pct() < SURVIVE_PCT {
                        survivors += 1;
                        k += 1;
                        continue;
                    }
                    let reason = if validity == Validity::RestOfDay {
                        ROD_PURGE
                    } else {
                        NON_ROD_PURGE
                    };
                    self.emit(slot, reason, OFF_BOOK, true)?;
                    self.retire(slot)?;
                    self.now += self.rng.random_range(1_000..200_000i64);
                }
            }
        }
        Ok(())
    }

    /// The morning after: every order that survived the purge is reloaded (30) before the
    /// pre-open, and may be amended or cancelled again.
    pub(super) fn reload(&mut self) -> Result<(), GenerateError> {
        self.now = self.now.max(self.day.at(RELOAD));
        for sec in 0..self.secs.len() {
            for book in 0..4 {
                let mut k = 0;
                while let Some(slot) = self.book_order(sec, book, k) {
                    self.emit(slot, RELOADED, ON_BOOK, false)?;
                    self.schedule(slot);
                    self.now += self.rng.random_range(1_000..200_000i64);
                    k += 1;
                }
            }
        }
        Ok(())
    }

    /// The file's first morning: orders entered on earlier days, before the file starts, are
    /// reloaded (30). Their first row is the reload, so their arrival is unknown to a reader
    /// (sweep-analysis.md, scenario U).
    pub(super) fn carry_in(&mut self, target: u64) -> Result<(), GenerateError> {
        self.now = self.now.max(self.day.at(RELOAD));
        let rows = target.saturating_sub(self.spent()) / self.row_cost().max(1);
        for _ in 0..(rows / ROWS_PER_CARRY_IN).min(MAX_CARRY_IN) {
            let sec = self.sec_weights.sample(&mut self.rng) as u32;
            let order = self.make_order(sec, Origin::CarriedIn);
            let slot = self.alloc(order);
            self.stats.orders += 1;
            self.emit(slot, RELOADED, ON_BOOK, false)?;
            self.rest(slot)?;
            self.now += self.rng.random_range(1_000..200_000i64);
        }
        Ok(())
    }
}
