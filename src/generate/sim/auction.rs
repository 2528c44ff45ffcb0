//! The opening and closing auctions: uncrossing each lit book at a single price.
//!
//! Orders entered in the pre-open (and, for the close, from 16:00) may cross the book. At the
//! auction each security's crossing orders are matched in price-time priority — best bid against
//! best offer, oldest first at a price — until the book no longer crosses, which also gives the
//! largest matchable volume. All matches print at one price: the reference midpoint (on the tick
//! below) moved into the range that leaves no unmatched order better than it. Both sides are
//! passive (`passiveaggressive` 0/0, the sample's pairs), `dealsource` 20, or 45 when both orders
//! are the same participant's. Centre Point orders take no part (Centre Point has no auction).

use rand::RngExt;

use super::book::Fill;
use super::codes::*;
use super::{GenerateError, PAD_THRESHOLD, Sim};

/// One planned auction match: buy order slot, sell order slot, quantity.
type Cross = (u32, u32, u64);

impl Sim<'_> {
    /// Runs the opening (`open`) or closing auction over every security. With `exact_target`
    /// (the last day of a `--rows` run) a security's auction that would spend the rows reserved
    /// for padding is not run, and `false` tells the day to stop.
    pub(super) fn auction(
        &mut self,
        open: bool,
        exact_target: Option<u64>,
    ) -> Result<bool, GenerateError> {
        self.now = self
            .now
            .max(if open { self.open_at } else { self.close_at });
        let mut plan: Vec<Cross> = Vec::new();
        for sec in 0..self.secs.len() {
            let price = self.plan_auction(sec, &mut plan);
            if let Some(target) = exact_target {
                let rows = 2 * plan.len() as i128 * i128::from(self.row_cost());
                if rows + PAD_THRESHOLD >= self.remaining(target) {
                    return Ok(false);
                }
            }
            for &(buy, sell, qty) in &plan {
                for slot in [buy, sell] {
                    let o = &mut self.orders[slot as usize];
                    o.leaves -= qty;
                    o.matched += qty;
                }
                for slot in [buy, sell] {
                    let status = if self.orders[slot as usize].leaves == 0 {
                        OFF_BOOK
                    } else {
                        ON_BOOK
                    };
                    self.emit(slot, TRADED, status, false)?;
                }
                let own =
                    self.orders[buy as usize].participant == self.orders[sell as usize].participant;
                let fill = Fill {
                    passive: sell,
                    qty,
                    price,
                    deal: if own { DEAL_AUCTION_BOOK } else { DEAL_AUCTION },
                };
                self.trade_rows(buy, sell, fill, None)?;
                for slot in [buy, sell] {
                    if self.orders[slot as usize].leaves == 0 {
                        self.retire(slot)?;
                    }
                }
            }
            let s = &mut self.secs[sec];
            s.shown = None;
            s.continuous = open;
            if !plan.is_empty() {
                self.now += self.rng.random_range(1_000..200_000i64);
            }
        }
        self.session = if open {
            Session::Continuous
        } else {
            Session::PostClose
        };
        Ok(true)
    }

    /// Plans the uncrossing of security `sec`'s lit book into `plan` and returns its price.
    /// While the matches are written the security shows the touch the uncrossing leaves (set in
    /// `shown`), so that every auction trade prints inside its NBBO snapshot.
    fn plan_auction(&mut self, sec: usize, plan: &mut Vec<Cross>) -> i64 {
        plan.clear();
        let s = &self.secs[sec];
        let orders = &self.orders;
        // (price, time priority, slot); the books hold orders oldest first.
        let ranked = |side: usize| -> Vec<(i64, usize, u32)> {
            s.lit[side]
                .iter()
                .enumerate()
                .map(|(k, &slot)| (orders[slot as usize].price, k, slot))
                .collect()
        };
        let mut buys = ranked(0);
        let mut sells = ranked(1);
        buys.sort_unstable_by_key(|&(p, k, _)| (std::cmp::Reverse(p), k));
        sells.sort_unstable_by_key(|&(p, k, _)| (p, k));

        let (mut i, mut j) = (0, 0);
        let mut left_b = buys.first().map_or(0, |b| orders[b.2 as usize].leaves);
        let mut left_s = sells.first().map_or(0, |o| orders[o.2 as usize].leaves);
        let (mut last_bid, mut last_ask) = (0, 0);
        while i < buys.len() && j < sells.len() && buys[i].0 >= sells[j].0 {
            let q = left_b.min(left_s);
            plan.push((buys[i].2, sells[j].2, q));
            (last_bid, last_ask) = (buys[i].0, sells[j].0);
            left_b -= q;
            left_s -= q;
            if left_b == 0 {
                i += 1;
                left_b = buys.get(i).map_or(0, |b| orders[b.2 as usize].leaves);
            }
            if left_s == 0 {
                j += 1;
                left_s = sells.get(j).map_or(0, |o| orders[o.2 as usize].leaves);
            }
        }
        let rem_bid = buys.get(i).map(|b| b.0);
        let rem_ask = sells.get(j).map(|o| o.0);
        let (rb, ro) = s.reference();
        let reference = (rb + ro) / 2 / TICK * TICK;
        // Not below the last matched offer or an unmatched bid, not above the last matched bid
        // or an unmatched offer; price-time priority makes this range non-empty.
        let lo = last_ask.max(rem_bid.unwrap_or(i64::MIN));
        let hi = last_bid.min(rem_ask.unwrap_or(i64::MAX));
        let price = if lo <= hi {
            reference.clamp(lo, hi)
        } else {
            lo
        };
        if !plan.is_empty() {
            let bid = rem_bid.unwrap_or_else(|| rb.min(price));
            let offer = rem_ask.unwrap_or_else(|| ro.max(price));
            self.secs[sec].shown = Some((bid, offer.max(bid)));
        }
        price
    }
}
