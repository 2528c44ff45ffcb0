//! New orders: their type, side, size, limit and validity, and the reference price they follow.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::Sim;
use super::book::{Action, Away, BookKind, EventCtx, Order};
use super::codes::*;

/// The lowest reference price, in ticks: $1.00, so a step down never reaches zero.
const MIN_FAIR: i64 = 100;
/// Chance per arrival, in 1/10000, that another venue's stale quote locks or crosses the book.
const AWAY_PER_10K: u32 = 40;

/// A reference spread of 1 to 3 ticks. Locked and crossed quotes come only from away-venue
/// episodes, so that they are short.
pub(super) fn draw_spread(rng: &mut ChaCha8Rng) -> i64 {
    match rng.random_range(0..100u32) {
        0..60 => 1,
        60..88 => 2,
        _ => 3,
    }
}

/// What kind of order to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// Entered now, in this session.
    New(Session),
    /// Entered on an earlier day, before the file starts, and reloaded this morning.
    CarriedIn,
}

impl Sim<'_> {
    /// A new order on security `sec`, of a type, size and limit suited to where it comes from.
    pub(super) fn make_order(&mut self, sec: u32, origin: Origin) -> Order {
        let p = self.draw_pct();
        let session = match origin {
            Origin::New(s) => s,
            Origin::CarriedIn => Session::PreOpen,
        };
        let eot = match origin {
            Origin::New(Session::Continuous) => match p {
                0..56 => EOT_LIT,
                56..73 => EOT_SWEEP,
                73..87 => EOT_BLOCK,
                87..93 => EOT_CP,
                93..96 => EOT_BLOCK_SHORT,
                _ => EOT_CP_CROSSING,
            },
            // A sweep is an immediate instruction: it has nothing to do before the open.
            Origin::New(Session::PreOpen) => match p {
                0..73 => EOT_LIT,
                73..85 => EOT_BLOCK,
                85..95 => EOT_CP,
                95..97 => EOT_BLOCK_SHORT,
                _ => EOT_CP_CROSSING,
            },
            // Yesterday's open orders: a sweep's unfilled residual rests in the lit book and
            // carries over like any multi-day lit order.
            Origin::CarriedIn => match p {
                0..55 => EOT_LIT,
                55..75 => EOT_SWEEP,
                75..88 => EOT_BLOCK,
                88..96 => EOT_CP,
                _ => EOT_BLOCK_SHORT,
            },
            // Centre Point is closed from 16:00 (POST_CLOSE excludes CP orders).
            Origin::New(_) => EOT_LIT,
        };
        let side = if eot == EOT_BLOCK_SHORT || self.rng.random::<bool>() {
            2
        } else {
            1
        };
        let centre_point = eot != EOT_LIT;
        let v = self.draw_pct();
        let validity = if origin == Origin::CarriedIn {
            match v {
                0..60 => Validity::Days(8),
                60..80 => Validity::Days(90),
                _ => Validity::CurrentMax,
            }
        } else if session != Session::Continuous {
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
            match v {
                0..57 => Validity::RestOfDay,
                57..97 => Validity::Bouncing,
                _ => Validity::Days(8),
            }
        } else {
            match v {
                0..85 => Validity::RestOfDay,
                85..92 => Validity::Bouncing,
                _ => Validity::CurrentMax,
            }
        };
        let quantity = self.draw_quantity(eot);
        let (nb, no) = self.secs[sec as usize].reference();
        let buy = side == 1;
        let price = if eot == EOT_LIT || origin == Origin::CarriedIn && eot == EOT_SWEEP {
            // Marketable orders trade on arrival in continuous trading; in the auction calls
            // they cross the book and wait for the uncrossing. Carried-in orders were not filled
            // yesterday, so they sit behind the touch.
            let marketable = match origin {
                Origin::New(Session::Continuous) => self.draw_pct() < 35,
                Origin::New(s) if s.is_call() => self.draw_pct() < 30,
                _ => false,
            };
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
        } else {
            // Centre Point and sweep limits sit at or beyond the far touch, so the midpoint is
            // usually acceptable.
            let steps = self.rng.random_range(0..=3i64);
            if buy {
                no + steps * TICK
            } else {
                nb - steps * TICK
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
            last: EventCtx::default(),
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

    /// Moves the security's reference quote a little, as time passes between its orders; in
    /// continuous trading, now and then another venue's stale quote locks or crosses the book
    /// for a moment (5 ms to 1.5 s).
    pub(super) fn walk(&mut self, sec: u32) {
        let p = self.draw_pct();
        let s = &mut self.secs[sec as usize];
        match p {
            0..6 => s.fair = (s.fair - 1).max(MIN_FAIR),
            6..12 => s.fair += 1,
            12..16 => s.spread = draw_spread(&mut self.rng),
            _ => {}
        }
        if !self.secs[sec as usize].continuous
            || self.rng.random_range(0..10_000u32) >= AWAY_PER_10K
        {
            return;
        }
        let (bid, offer) = self.secs[sec as usize].nbbo(self.now);
        // Locked three times in five, else crossed by a tick; on the bid or the offer side.
        let through = if self.draw_pct() < 60 { 0 } else { TICK };
        let width = draw_spread(&mut self.rng) * TICK;
        let away = if self.rng.random::<bool>() {
            let away_bid = offer + through;
            (away_bid, away_bid + width)
        } else {
            let away_offer = (bid - through).max(TICK);
            ((away_offer - width).max(TICK), away_offer)
        };
        let until = self.now + self.rng.random_range(5_000_000..1_500_000_000i64);
        self.secs[sec as usize].away = Some(Away {
            bid: away.0,
            offer: away.1,
            until,
        });
    }

    /// The participant of a resting order the arriving order in `slot` would meet first: a
    /// broker crossing its own clients' orders, which the book reports as a book trade (44/48)
    /// or, with preferencing on, a preferenced Centre Point match (46).
    pub(super) fn own_flow_participant(&mut self, slot: u32) -> Option<u32> {
        let o = &self.orders[slot as usize];
        let s = &self.secs[o.sec as usize];
        let other = 1 - o.side_index();
        if !o.rests_lit() || o.eot == EOT_SWEEP {
            let book = &s.cp[other];
            if book.is_empty() {
                return None;
            }
            let k = self.rng.random_range(0..book.len() as u64) as usize;
            return Some(self.orders[book[k] as usize].participant);
        }
        let best = s.best[other]?;
        s.lit[other]
            .iter()
            .find(|&&p| self.orders[p as usize].price == best)
            .map(|&p| self.orders[p as usize].participant)
    }
}
