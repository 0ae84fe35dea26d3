//! The arithmetic of the Nexmark generator: which event number is a person,
//! an auction or a bid, the ids it refers to, and its timestamp — after
//! Apache Beam's `GeneratorConfig`, `PersonGenerator`, `AuctionGenerator` and
//! `BidGenerator` (also used by Flink's nexmark benchmark).
//!
//! Events are numbered globally `n = 0, 1, 2, ...`. Out of every
//! `total = person + auction + bid` proportions (1 + 3 + 46 = 50 by default),
//! the first `person` numbers are persons, the next `auction` auctions and the
//! rest bids. Ids are derived from the event number, so every person and
//! auction a bid refers to has (or will soon have) been generated.

use crate::random::RowRng;

/// The first person id.
pub const FIRST_PERSON_ID: i64 = 1000;
/// The first auction id.
pub const FIRST_AUCTION_ID: i64 = 1000;
/// The first category id.
pub const FIRST_CATEGORY_ID: i64 = 10;
/// Number of categories.
pub const NUM_CATEGORIES: u64 = 5;
/// Bids and auctions refer to people and auctions up to this far ahead.
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// Hot sellers, bidders and auctions are the first of each batch of this many.
pub const HOT_SELLER_RATIO: u64 = 100;
/// See [`HOT_SELLER_RATIO`].
pub const HOT_BIDDER_RATIO: u64 = 100;
/// See [`HOT_SELLER_RATIO`].
pub const HOT_AUCTION_RATIO: u64 = 100;

/// The three kinds of Nexmark events, each a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new person (a seller or bidder).
    Person,
    /// A new auction.
    Auction,
    /// A bid on an auction.
    Bid,
}

impl EventKind {
    /// The table name (the value of the `table` option).
    pub fn table_name(self) -> &'static str {
        match self {
            EventKind::Person => "person",
            EventKind::Auction => "auction",
            EventKind::Bid => "bid",
        }
    }
}

/// The parameters of one generator run. Pure: every method is a function of
/// its arguments and these parameters.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Persons among every `total_proportion()` events (1).
    pub person_proportion: u64,
    /// Auctions among every `total_proportion()` events (3).
    pub auction_proportion: u64,
    /// Bids among every `total_proportion()` events (46).
    pub bid_proportion: u64,
    /// Event time of event 0, in milliseconds since the epoch.
    pub base_time_ms: i64,
    /// Event time between consecutive events, in nanoseconds.
    pub inter_event_delay_ns: f64,
    /// Event times are moved back by a random amount up to this (0: in order).
    pub max_out_of_order_ms: i64,
    /// Bids go to one of the last this many auctions (100).
    pub num_in_flight_auctions: u64,
    /// Sellers and bidders are among the last this many persons (1000).
    pub num_active_people: u64,
    /// `1 - 1/ratio` of the bids go to a hot auction (2).
    pub hot_auction_ratio: u64,
    /// `1 - 1/ratio` of the auctions are by a hot seller (4).
    pub hot_sellers_ratio: u64,
    /// `1 - 1/ratio` of the bids are by a hot bidder (4).
    pub hot_bidders_ratio: u64,
    /// Average size of a person in bytes, reached with `extra` (200).
    pub avg_person_byte_size: u64,
    /// Average size of an auction in bytes, reached with `extra` (500).
    pub avg_auction_byte_size: u64,
    /// Average size of a bid in bytes, reached with `extra` (100).
    pub avg_bid_byte_size: u64,
}

impl GeneratorConfig {
    /// Beam's defaults for everything but the proportions, times and disorder.
    pub fn new(
        proportions: (u64, u64, u64),
        base_time_ms: i64,
        events_per_second: f64,
        max_out_of_order_ms: i64,
    ) -> Self {
        GeneratorConfig {
            person_proportion: proportions.0,
            auction_proportion: proportions.1,
            bid_proportion: proportions.2,
            base_time_ms,
            inter_event_delay_ns: 1e9 / events_per_second,
            max_out_of_order_ms,
            num_in_flight_auctions: 100,
            num_active_people: 1000,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
        }
    }

    /// `person + auction + bid` proportions.
    #[inline]
    pub fn total_proportion(&self) -> u64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }

    /// The kind of event number `n`.
    #[inline]
    pub fn kind(&self, n: u64) -> EventKind {
        let rem = n % self.total_proportion();
        if rem < self.person_proportion {
            EventKind::Person
        } else if rem < self.person_proportion + self.auction_proportion {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    fn proportion_and_offset(&self, kind: EventKind) -> (u64, u64) {
        match kind {
            EventKind::Person => (self.person_proportion, 0),
            EventKind::Auction => (self.auction_proportion, self.person_proportion),
            EventKind::Bid => (
                self.bid_proportion,
                self.person_proportion + self.auction_proportion,
            ),
        }
    }

    /// The event number of the `k`-th event of kind `kind` (0-based).
    #[inline]
    pub fn event_number(&self, kind: EventKind, k: u64) -> u64 {
        let (prop, offset) = self.proportion_and_offset(kind);
        (k / prop) * self.total_proportion() + offset + k % prop
    }

    /// How many events of kind `kind` have an event number below `n`.
    pub fn count_below(&self, kind: EventKind, n: u64) -> u64 {
        let (prop, offset) = self.proportion_and_offset(kind);
        let total = self.total_proportion();
        (n / total) * prop + (n % total).saturating_sub(offset).min(prop)
    }

    /// The event time of event number `n` before any disorder, in ms.
    #[inline]
    pub fn timestamp_ms(&self, n: u64) -> i64 {
        self.base_time_ms
            .saturating_add((n as f64 * self.inter_event_delay_ns / 1e6) as i64)
    }

    /// Milliseconds of event time between `numInFlightAuctions` auctions: the
    /// average length of an auction is this horizon.
    pub fn auction_horizon_ms(&self) -> i64 {
        let events = self.num_in_flight_auctions * self.total_proportion() / self.auction_proportion;
        (events as f64 * self.inter_event_delay_ns / 1e6) as i64
    }

    /// The 0-based id of the last person generated at or before event `n`.
    #[inline]
    pub fn last_base0_person_id(&self, n: u64) -> u64 {
        let total = self.total_proportion();
        let epoch = n / total;
        let offset = (n % total).min(self.person_proportion - 1);
        epoch * self.person_proportion + offset
    }

    /// The 0-based id of the last auction generated at or before event `n`.
    #[inline]
    pub fn last_base0_auction_id(&self, n: u64) -> u64 {
        let total = self.total_proportion();
        let mut epoch = n / total;
        let mut offset = n % total;
        if offset < self.person_proportion {
            // A person: the last auction is in the previous epoch.
            if epoch == 0 {
                return 0;
            }
            epoch -= 1;
            offset = self.auction_proportion - 1;
        } else if offset >= self.person_proportion + self.auction_proportion {
            offset = self.auction_proportion - 1;
        } else {
            offset -= self.person_proportion;
        }
        epoch * self.auction_proportion + offset
    }

    /// A recent (0-based) person id, for a seller or bidder: one of the last
    /// `numActivePeople`, or up to `PERSON_ID_LEAD` ahead.
    #[inline]
    pub fn next_base0_person_id(&self, n: u64, rng: &mut RowRng) -> u64 {
        let num_people = self.last_base0_person_id(n) + 1;
        let active = num_people.min(self.num_active_people);
        num_people - active + rng.below(active + PERSON_ID_LEAD)
    }

    /// A recent (0-based) auction id: one of the last `numInFlightAuctions`,
    /// or up to `AUCTION_ID_LEAD` ahead.
    #[inline]
    pub fn next_base0_auction_id(&self, n: u64, rng: &mut RowRng) -> u64 {
        let max = self.last_base0_auction_id(n);
        let min = max.saturating_sub(self.num_in_flight_auctions);
        min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
    }
}

/// A price in cents, log-uniform between $1 and $1M (Beam's `nextPrice`).
#[inline]
pub fn next_price(rng: &mut RowRng) -> i64 {
    // 10^(6u) as 2^(6u·log2 10): `exp2` costs a fraction of `powf` (the
    // generator's hottest call), and agrees with it to the last bit or two,
    // which rounding to a cent absorbs.
    // The value is at least 100, so adding a half and truncating rounds
    // (without `round`, a libm call on baseline x86-64).
    ((rng.next_f64() * (6.0 * std::f64::consts::LOG2_10)).exp2() * 100.0 + 0.5) as i64
}

/// The lengths of the `extra` padding that brings an event of `current_size`
/// bytes to `avg_size` bytes on average, ±20% (Beam's `nextExtra`): the
/// range is the same for every event of a kind, so it is computed once.
#[derive(Debug, Clone, Copy)]
pub struct ExtraLen {
    min: u64,
    spread: u64,
}

impl ExtraLen {
    /// The lengths for events whose other fields take `current_size` bytes.
    pub fn new(current_size: u64, avg_size: u64) -> Self {
        if current_size > avg_size {
            return ExtraLen { min: 0, spread: 0 };
        }
        let desired = avg_size - current_size;
        let delta = (desired as f64 * 0.2).round() as u64;
        ExtraLen {
            min: desired - delta,
            spread: 2 * delta,
        }
    }

    /// The next length.
    #[inline]
    pub fn next(self, rng: &mut RowRng) -> usize {
        (self.min
            + if self.spread == 0 {
                0
            } else {
                rng.below(self.spread)
            }) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp2` gives Beam's prices, `round(10^(6u) * 100)`: at most a cent
    /// apart, and nearly always equal.
    #[test]
    fn prices_are_beams() {
        let (mut equal, n) = (0, 200_000);
        for i in 0..n {
            let mut a = RowRng::new(7, i);
            let mut b = RowRng::new(7, i);
            let beam = (10f64.powf(b.next_f64() * 6.0) * 100.0).round() as i64;
            let ours = next_price(&mut a);
            assert!((ours - beam).abs() <= 1, "{ours} vs {beam}");
            equal += usize::from(ours == beam);
        }
        assert!(equal >= n as usize - 2, "{equal} of {n} equal");
    }

    fn config() -> GeneratorConfig {
        GeneratorConfig::new((1, 3, 46), 0, 1000.0, 0)
    }

    #[test]
    fn event_numbers_and_counts_invert() {
        let c = config();
        for kind in [EventKind::Person, EventKind::Auction, EventKind::Bid] {
            let numbers: Vec<u64> = (0..500).filter(|n| c.kind(*n) == kind).collect();
            for (k, n) in numbers.iter().enumerate() {
                assert_eq!(c.event_number(kind, k as u64), *n);
            }
            for n in 0..500 {
                assert_eq!(
                    c.count_below(kind, n),
                    numbers.iter().filter(|m| **m < n).count() as u64
                );
            }
        }
        assert_eq!(c.count_below(EventKind::Bid, 50), 46);
    }

    #[test]
    fn ids_follow_beam() {
        let c = config();
        assert_eq!(c.last_base0_person_id(0), 0);
        assert_eq!(c.last_base0_person_id(49), 0);
        assert_eq!(c.last_base0_person_id(50), 1);
        assert_eq!(c.last_base0_auction_id(1), 0);
        assert_eq!(c.last_base0_auction_id(3), 2);
        assert_eq!(c.last_base0_auction_id(10), 2);
        assert_eq!(c.last_base0_auction_id(50), 2);
        assert_eq!(c.last_base0_auction_id(52), 4);
        assert_eq!(c.timestamp_ms(1000), 1000);
    }
}
