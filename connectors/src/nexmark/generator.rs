//! Column-wise generation of Nexmark batches.
//!
//! A batch is a list of event numbers of one kind; each selected column is
//! generated for all of them in one tight loop. Every column draws from its
//! own random stream keyed by `(seed, column)` and the event number, so
//! columns are independent of each other and of which columns are selected:
//! a table that declares three columns generates three columns, and their
//! values are the ones the full table would have.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field};

use super::config::{
    EventKind, ExtraLen, FIRST_AUCTION_ID, FIRST_CATEGORY_ID, FIRST_PERSON_ID, GeneratorConfig,
    HOT_AUCTION_RATIO, HOT_BIDDER_RATIO, HOT_SELLER_RATIO, NUM_CATEGORIES, next_price,
};
use super::strings::{CHANNELS_NUMBER, HOT_CHANNELS, LAST_NAMES, Pools, US_CITIES, US_STATES, pools};
use crate::columns::{ColumnDef, ColumnKind, StrBuilder, timestamp_array, timestamp_unit};
use crate::random::{RowRng, stream_key};
use crate::time::ms_to_unit;

/// A column of one of the Nexmark tables, named as the column (`PersonId`
/// and `AuctionId` are the `id` of `person` and `auction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Col {
    PersonId,
    Name,
    EmailAddress,
    CreditCard,
    City,
    State,
    AuctionId,
    ItemName,
    Description,
    InitialBid,
    Reserve,
    Expires,
    Seller,
    Category,
    Auction,
    Bidder,
    Price,
    Channel,
    Url,
    DateTime,
    Extra,
}

use ColumnKind::{BigInt, Timestamp, Varchar};

/// The `person` table, as Flink's nexmark DDL declares it.
pub const PERSON: &[(ColumnDef, Col)] = &[
    (ColumnDef::new("id", BigInt), Col::PersonId),
    (ColumnDef::new("name", Varchar), Col::Name),
    (ColumnDef::new("emailAddress", Varchar), Col::EmailAddress),
    (ColumnDef::new("creditCard", Varchar), Col::CreditCard),
    (ColumnDef::new("city", Varchar), Col::City),
    (ColumnDef::new("state", Varchar), Col::State),
    (ColumnDef::new("date_time", Timestamp), Col::DateTime),
    (ColumnDef::new("extra", Varchar), Col::Extra),
];

/// The `auction` table, as Flink's nexmark DDL declares it.
pub const AUCTION: &[(ColumnDef, Col)] = &[
    (ColumnDef::new("id", BigInt), Col::AuctionId),
    (ColumnDef::new("itemName", Varchar), Col::ItemName),
    (ColumnDef::new("description", Varchar), Col::Description),
    (ColumnDef::new("initialBid", BigInt), Col::InitialBid),
    (ColumnDef::new("reserve", BigInt), Col::Reserve),
    (ColumnDef::new("date_time", Timestamp), Col::DateTime),
    (ColumnDef::new("expires", Timestamp), Col::Expires),
    (ColumnDef::new("seller", BigInt), Col::Seller),
    (ColumnDef::new("category", BigInt), Col::Category),
    (ColumnDef::new("extra", Varchar), Col::Extra),
];

/// The `bid` table, as Flink's nexmark DDL declares it.
pub const BID: &[(ColumnDef, Col)] = &[
    (ColumnDef::new("auction", BigInt), Col::Auction),
    (ColumnDef::new("bidder", BigInt), Col::Bidder),
    (ColumnDef::new("price", BigInt), Col::Price),
    (ColumnDef::new("channel", Varchar), Col::Channel),
    (ColumnDef::new("url", Varchar), Col::Url),
    (ColumnDef::new("date_time", Timestamp), Col::DateTime),
    (ColumnDef::new("extra", Varchar), Col::Extra),
];

/// The columns of the table of `kind`.
pub fn table_columns(kind: EventKind) -> &'static [(ColumnDef, Col)] {
    match kind {
        EventKind::Person => PERSON,
        EventKind::Auction => AUCTION,
        EventKind::Bid => BID,
    }
}

/// Approximate byte sizes of the other fields of an event, from which `extra`
/// pads it to the configured average size (Beam computes them exactly).
const PERSON_FIXED_SIZE: u64 = 63;
const AUCTION_FIXED_SIZE: u64 = 110;
const BID_FIXED_SIZE: u64 = 32;

/// Random stream ids, one per column (and purpose).
mod stream {
    pub const DISORDER: u64 = 1;
    pub const NAME: u64 = 10;
    pub const EMAIL: u64 = 11;
    pub const CARD: u64 = 12;
    pub const CITY: u64 = 13;
    pub const STATE: u64 = 14;
    pub const PERSON_EXTRA: u64 = 15;
    pub const ITEM_NAME: u64 = 20;
    pub const DESCRIPTION: u64 = 21;
    pub const PRICES: u64 = 22;
    pub const EXPIRES: u64 = 23;
    pub const SELLER: u64 = 24;
    pub const CATEGORY: u64 = 25;
    pub const AUCTION_EXTRA: u64 = 26;
    pub const AUCTION: u64 = 30;
    pub const BIDDER: u64 = 31;
    pub const PRICE: u64 = 32;
    pub const CHANNEL: u64 = 33;
    pub const BID_EXTRA: u64 = 34;
}

/// Generates columns of Nexmark events; immutable and cheap to share.
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    seed: u64,
    horizon_ms: i64,
    pools: &'static Pools,
}

impl Generator {
    /// A generator of `config`'s events with random values from `seed`.
    pub fn new(config: GeneratorConfig, seed: u64) -> Self {
        let horizon_ms = config.auction_horizon_ms();
        Generator {
            config,
            seed,
            horizon_ms,
            pools: pools(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The event time of event `n` in ms, after disorder.
    #[inline]
    fn date_time_ms(&self, disorder_key: u64, n: u64) -> i64 {
        let t = self.config.timestamp_ms(n);
        if self.config.max_out_of_order_ms > 1 {
            // Less than the bound: a watermark `date_time - bound` makes no event late.
            let max = self.config.max_out_of_order_ms - 1;
            t.saturating_sub(RowRng::new(disorder_key, n).range_i64(0, max))
        } else {
            t
        }
    }

    /// Column `col` of `field`'s type for the events `ns` (all of kind `kind`).
    pub fn column(&self, kind: EventKind, col: Col, field: &Field, ns: &[u64]) -> ArrayRef {
        let c = &self.config;
        let p = self.pools;
        let dt = field.data_type();
        let key = |s: u64| stream_key(self.seed, s);
        match col {
            Col::PersonId => ints(ns, |n| c.last_base0_person_id(n) as i64 + FIRST_PERSON_ID),
            Col::AuctionId => ints(ns, |n| c.last_base0_auction_id(n) as i64 + FIRST_AUCTION_ID),
            Col::Name => {
                let k = key(stream::NAME);
                strings(dt, ns, 12, |n| {
                    let mut r = RowRng::new(k, n);
                    let first = r.index(11);
                    &p.names[first * LAST_NAMES.len() + r.index(LAST_NAMES.len())]
                })
            }
            Col::EmailAddress => {
                let k = key(stream::EMAIL);
                strings(dt, ns, 16, |n| &p.emails[RowRng::new(k, n).index(p.emails.len())])
            }
            Col::CreditCard => {
                let k = key(stream::CARD);
                strings(dt, ns, 19, |n| {
                    &p.credit_cards[RowRng::new(k, n).index(p.credit_cards.len())]
                })
            }
            Col::City => {
                let k = key(stream::CITY);
                strings(dt, ns, 8, |n| US_CITIES[RowRng::new(k, n).index(US_CITIES.len())])
            }
            Col::State => {
                let k = key(stream::STATE);
                strings(dt, ns, 2, |n| US_STATES[RowRng::new(k, n).index(US_STATES.len())])
            }
            Col::ItemName => {
                let k = key(stream::ITEM_NAME);
                strings(dt, ns, 11, |n| p.next_string(&mut RowRng::new(k, n), 20))
            }
            Col::Description => {
                let k = key(stream::DESCRIPTION);
                strings(dt, ns, 51, |n| p.next_string(&mut RowRng::new(k, n), 100))
            }
            Col::InitialBid => {
                let k = key(stream::PRICES);
                ints(ns, |n| next_price(&mut RowRng::new(k, n)))
            }
            Col::Reserve => {
                let k = key(stream::PRICES);
                ints(ns, |n| {
                    let mut r = RowRng::new(k, n);
                    next_price(&mut r) + next_price(&mut r)
                })
            }
            Col::Seller => {
                let k = key(stream::SELLER);
                ints(ns, |n| {
                    let mut r = RowRng::new(k, n);
                    let base0 = if r.below(c.hot_sellers_ratio) > 0 {
                        (c.last_base0_person_id(n) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
                    } else {
                        c.next_base0_person_id(n, &mut r)
                    };
                    base0 as i64 + FIRST_PERSON_ID
                })
            }
            Col::Category => {
                let k = key(stream::CATEGORY);
                ints(ns, |n| {
                    FIRST_CATEGORY_ID + RowRng::new(k, n).below(NUM_CATEGORIES) as i64
                })
            }
            Col::Auction => {
                let k = key(stream::AUCTION);
                ints(ns, |n| {
                    let mut r = RowRng::new(k, n);
                    let base0 = if r.below(c.hot_auction_ratio) > 0 {
                        (c.last_base0_auction_id(n) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
                    } else {
                        c.next_base0_auction_id(n, &mut r)
                    };
                    base0 as i64 + FIRST_AUCTION_ID
                })
            }
            Col::Bidder => {
                let k = key(stream::BIDDER);
                ints(ns, |n| {
                    let mut r = RowRng::new(k, n);
                    let base0 = if r.below(c.hot_bidders_ratio) > 0 {
                        // The second person of the batch, so that hot bidders
                        // and hot sellers differ.
                        (c.last_base0_person_id(n) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
                    } else {
                        c.next_base0_person_id(n, &mut r)
                    };
                    base0 as i64 + FIRST_PERSON_ID
                })
            }
            Col::Price => {
                let k = key(stream::PRICE);
                ints(ns, |n| next_price(&mut RowRng::new(k, n)))
            }
            Col::Channel => {
                let k = key(stream::CHANNEL);
                strings(dt, ns, 10, |n| &p.channels[channel_index(k, n)])
            }
            Col::Url => {
                let k = key(stream::CHANNEL);
                strings(dt, ns, 80, |n| &p.urls[channel_index(k, n)])
            }
            Col::DateTime => {
                let k = key(stream::DISORDER);
                let unit = timestamp_unit(dt);
                let values = ns
                    .iter()
                    .map(|&n| ms_to_unit(self.date_time_ms(k, n), unit))
                    .collect();
                timestamp_array(dt, values, None)
            }
            Col::Expires => {
                let k = key(stream::DISORDER);
                let ke = key(stream::EXPIRES);
                let unit = timestamp_unit(dt);
                let span = self.horizon_ms.max(1).saturating_mul(2) as u64;
                let values = ns
                    .iter()
                    .map(|&n| {
                        let length = 1 + RowRng::new(ke, n).below(span) as i64;
                        ms_to_unit(self.date_time_ms(k, n).saturating_add(length), unit)
                    })
                    .collect();
                timestamp_array(dt, values, None)
            }
            Col::Extra => {
                let (s, fixed, avg) = match kind {
                    EventKind::Person => (stream::PERSON_EXTRA, PERSON_FIXED_SIZE, c.avg_person_byte_size),
                    EventKind::Auction => {
                        (stream::AUCTION_EXTRA, AUCTION_FIXED_SIZE, c.avg_auction_byte_size)
                    }
                    EventKind::Bid => (stream::BID_EXTRA, BID_FIXED_SIZE, c.avg_bid_byte_size),
                };
                let k = key(s);
                let lengths = ExtraLen::new(fixed, avg);
                strings(dt, ns, avg.saturating_sub(fixed) as usize, |n| {
                    let mut r = RowRng::new(k, n);
                    let len = lengths.next(&mut r);
                    p.exact_string(&mut r, len)
                })
            }
        }
    }
}

/// The channel of a bid: one of the hot channels half of the time, else one
/// of the channel cache.
#[inline]
fn channel_index(key: u64, n: u64) -> usize {
    let mut r = RowRng::new(key, n);
    if r.below(2) > 0 {
        r.index(HOT_CHANNELS.len())
    } else {
        HOT_CHANNELS.len() + r.index(CHANNELS_NUMBER)
    }
}

fn ints(ns: &[u64], f: impl Fn(u64) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(ns.iter().map(|&n| f(n))))
}

fn strings<'a>(dt: &DataType, ns: &[u64], avg_len: usize, mut f: impl FnMut(u64) -> &'a str) -> ArrayRef {
    let Some(mut b) = StrBuilder::new(dt, ns.len(), ns.len() * avg_len) else {
        // Unreachable: column types are checked when the table is created.
        return Arc::new(arrow::array::new_null_array(dt, ns.len()));
    };
    for &n in ns {
        b.append_value(f(n));
    }
    b.finish()
}
