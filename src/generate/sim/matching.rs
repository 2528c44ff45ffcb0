//! Continuous matching: an arriving order's fills, the rows a match writes, and resting.

use rand::RngExt;

use super::super::rows::TradeRow;
use super::book::{BookKind, Fill, prefers};
use super::codes::*;
use super::flow::Origin;
use super::{GenerateError, MAX_FILLS, Sim};

/// Chance, in percent, that an order arriving in continuous trading comes from the broker of the
/// resting order it meets first: the share of book trades and preferenced matches follows.
const OWN_FLOW_PCT: u32 = 12;

impl Sim<'_> {
    pub(super) fn arrive(&mut self) -> Result<(), GenerateError> {
        let sec = self.sec_weights.sample(&mut self.rng) as u32;
        self.walk(sec);
        let session = self.session;
        let order = self.make_order(sec, Origin::New(session));
        let slot = self.alloc(order);
        self.stats.orders += 1;

        self.fills.clear();
        if session == Session::Continuous {
            if self.draw_pct() < OWN_FLOW_PCT
                && let Some(p) = self.own_flow_participant(slot)
            {
                self.orders[slot as usize].participant = p;
            }
            let eot = self.orders[slot as usize].eot;
            if eot != EOT_LIT && eot != EOT_SHORT {
                self.plan_centre_point(slot);
            }
            if self.orders[slot as usize].rests_lit() {
                self.plan_lit(slot);
            }
        }
        let filled: u64 = self.fills.iter().map(|f| f.qty).sum();
        let o = &self.orders[slot as usize];
        let left = o.quantity - filled;
        // A remainder that could still trade after the most fills one arrival takes is
        // cancelled (9) rather than left crossing the book, which only an arrival would clear.
        let rests = left > 0
            && o.validity != Validity::Bouncing
            && !(session == Session::Continuous && self.still_crosses(slot));
        let status = if rests { ON_BOOK } else { OFF_BOOK };
        self.emit(slot, NEW, status, false)?;

        for i in 0..self.fills.len() {
            let fill = self.fills[i];
            self.execute(slot, fill, status)?;
        }

        if left == 0 {
            self.retire(slot)
        } else if rests {
            self.rest(slot)
        } else {
            // The unfilled part of a bouncing (fill-and-kill) order.
            self.emit(slot, SYSTEM_CANCEL, OFF_BOOK, false)?;
            self.retire(slot)
        }
    }

    /// Plans fills against the Centre Point book at the midpoint: first, with broker preferencing,
    /// the same participant's resting orders (46); then the rest in time priority (47, or 48 when
    /// both sides are the same participant's). Nothing matches while the NBBO is crossed: it has
    /// no midpoint to match at.
    fn plan_centre_point(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let sec = &self.secs[o.sec as usize];
        let (bid, offer) = sec.nbbo(self.now);
        if bid > offer {
            return;
        }
        // Exact: bid and offer are multiples of the (even) tick.
        let mid = (bid + offer) / 2;
        if !o.accepts(mid) {
            return;
        }
        let mut want = o.leaves;
        let book = &sec.cp[1 - o.side_index()];
        for preferenced in [true, false] {
            if preferenced && !prefers(o.participant) {
                continue;
            }
            for &p in book {
                if want == 0 || self.fills.len() >= MAX_FILLS {
                    break;
                }
                let po = &self.orders[p as usize];
                let own = po.participant == o.participant;
                if preferenced && !own
                    || !po.accepts(mid)
                    || self.fills.iter().any(|f| f.passive == p)
                {
                    continue;
                }
                let qty = want.min(po.leaves);
                // Minimum acceptable quantity: a resting order refuses smaller fills while it
                // could still take a larger one.
                if qty < po.min_qty && po.leaves >= po.min_qty {
                    continue;
                }
                let deal = match (preferenced, own) {
                    (true, _) => DEAL_CP_PREFERENCE,
                    (false, true) => DEAL_CP_BOOK,
                    (false, false) => DEAL_CP,
                };
                self.fills.push(Fill {
                    passive: p,
                    qty,
                    price: mid,
                    deal,
                });
                want -= qty;
            }
        }
    }

    /// Whether the arriving order in `slot`, having taken the most fills allowed, would rest in
    /// the lit book at a price an unfilled opposite lit order accepts.
    fn still_crosses(&self, slot: u32) -> bool {
        let o = &self.orders[slot as usize];
        self.fills.len() >= MAX_FILLS
            && o.rests_lit()
            && self.secs[o.sec as usize].lit[1 - o.side_index()]
                .iter()
                .any(|&p| {
                    o.accepts(self.orders[p as usize].price)
                        && self.fills.iter().all(|f| f.passive != p)
                })
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
            let own = self.orders[p as usize].participant == o.participant;
            self.fills.push(Fill {
                passive: p,
                qty,
                price,
                deal: if own { DEAL_LIT_BOOK } else { DEAL_LIT },
            });
            want -= qty;
        }
    }

    /// Applies one planned fill of an arriving order: a trade event on each order and the two
    /// trade rows, the arriving order aggressive.
    fn execute(&mut self, aggressor: u32, fill: Fill, status: u32) -> Result<(), GenerateError> {
        for slot in [aggressor, fill.passive] {
            let o = &mut self.orders[slot as usize];
            o.leaves -= fill.qty;
            o.matched += fill.qty;
        }
        let a_status = if self.orders[aggressor as usize].leaves == 0 {
            OFF_BOOK
        } else {
            status
        };
        self.emit(aggressor, TRADED, a_status, false)?;
        let p_status = if self.orders[fill.passive as usize].leaves == 0 {
            OFF_BOOK
        } else {
            ON_BOOK
        };
        self.emit(fill.passive, TRADED, p_status, false)?;
        self.trade_rows(aggressor, fill.passive, fill, Some(aggressor))?;
        if self.orders[fill.passive as usize].leaves == 0 {
            self.retire(fill.passive)?;
        }
        Ok(())
    }

    /// Writes a match's two trade rows, buy side first, with the NBBO of this instant. The
    /// `aggressor`, if any, is marked 1 and the other side 0; auction matches have none.
    pub(super) fn trade_rows(
        &mut self,
        a: u32,
        b: u32,
        fill: Fill,
        aggressor: Option<u32>,
    ) -> Result<(), GenerateError> {
        self.next_match_id += self.rng.random_range(1..=16i64);
        self.stats.matches += 1;
        let (buyer, seller) = if self.orders[a as usize].is_buy() {
            (a, b)
        } else {
            (b, a)
        };
        for slot in [buyer, seller] {
            let sequence = self.seq();
            let o = &self.orders[slot as usize];
            let sec = &self.secs[o.sec as usize];
            let (national_bid, national_offer) = sec.nbbo(self.now);
            let row = TradeRow {
                exchange: EXCHANGE,
                sequence,
                trade_date: &self.day.date,
                trade_time: self.now,
                security_code: sec.code,
                order_id: o.id,
                deal_source: fill.deal.0,
                deal_source_decoded: fill.deal.1,
                exchange_info: "ON Market",
                match_group_id: self.next_match_id,
                national_bid,
                national_offer,
                price: fill.price,
                quantity: fill.qty,
                side: o.side,
                side_decoded: if o.is_buy() { "Buy" } else { "Sell" },
                participant: o.participant,
                passive_aggressive: u32::from(aggressor == Some(slot)),
                row_num: self.out.trade_row_num,
            };
            self.out.trade(&row)?;
        }
        Ok(())
    }

    /// Puts an order with open quantity on its book, evicting the book's oldest order if full.
    pub(super) fn rest(&mut self, slot: u32) -> Result<(), GenerateError> {
        let o = &self.orders[slot as usize];
        let kind = if o.rests_lit() {
            BookKind::Lit
        } else {
            BookKind::Cp
        };
        let (sec, side, price) = (o.sec as usize, o.side_index(), o.price);
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
            self.retire(oldest)?;
        }
        let s = &mut self.secs[sec];
        match kind {
            BookKind::Cp => s.cp[side].push(slot),
            _ => {
                s.lit[side].push(slot);
                s.best[side] = Some(match (s.best[side], side) {
                    (None, _) => price,
                    (Some(b), 0) => b.max(price),
                    (Some(b), _) => b.min(price),
                });
            }
        }
        self.orders[slot as usize].book = kind;
        self.live += 1;
        self.schedule(slot);
        Ok(())
    }
}
