//! The Nexmark queries: each one's streaming SQL (Flink's Nexmark SQL,
//! `nexmark-flink/src/main/resources/queries/qN.sql` of
//! <https://github.com/nexmark/nexmark>, adapted to weir) and the same query
//! for DataFusion's batch engine over the pre-materialized events.
//!
//! What is adapted, for every query:
//! - weir's `nexmark` connector names the event time `date_time` (Flink:
//!   `dateTime`) and is read as the `bid`, `auction` and `person` tables
//!   directly (Flink reads one combined event stream through views that
//!   filter on the event type);
//! - group windows (`TUMBLE(dateTime, ...)` in `GROUP BY`) are window TVFs;
//! - Flink's functions are spelled as DataFusion's (`MOD` → `%`,
//!   `DATE_FORMAT` → `to_char`, `SPLIT_INDEX(s, d, i)` → `split_part(s, d, i + 1)`,
//!   `HOUR` → `extract(hour ...)`).
//!
//! Each query's doc says what else changed. The batch SQL computes the same
//! result without streaming machinery: a `TUMBLE` window is `date_bin` of the
//! event time, a `HOP` window is a cross join with the window offsets, a
//! `SESSION` window is a gap test over `lag` (SQL window functions).

/// A Nexmark table and the columns this bench declares for it: Flink's
/// nexmark DDL, all columns, with its watermark (4 s of bounded disorder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Person,
    Auction,
    Bid,
}

impl Table {
    /// The table's name in SQL, and the `nexmark` connector's `'table'` option.
    pub fn name(self) -> &'static str {
        match self {
            Table::Person => "person",
            Table::Auction => "auction",
            Table::Bid => "bid",
        }
    }

    /// The column list of `CREATE TABLE`, with the watermark.
    pub fn columns(self) -> &'static str {
        match self {
            Table::Person => {
                "id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR,
                 state VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
                 WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND"
            }
            Table::Auction => {
                "id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT,
                 date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT,
                 extra VARCHAR,
                 WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND"
            }
            Table::Bid => {
                "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
                 date_time TIMESTAMP(3), extra VARCHAR,
                 WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND"
            }
        }
    }

    /// `CREATE TABLE` of this table with the given connector options
    /// (`'key' = 'value', ...`).
    pub fn ddl(self, options: &str) -> String {
        format!(
            "CREATE TABLE {} ({}) WITH ({options})",
            self.name(),
            self.columns()
        )
    }
}

/// One Nexmark query.
#[derive(Debug)]
pub struct Query {
    pub name: &'static str,
    pub what: &'static str,
    /// The tables it reads.
    pub tables: &'static [Table],
    /// The `blackhole` sink table: its columns and its name.
    pub sink_columns: &'static str,
    pub sink: &'static str,
    /// The query, as weir runs it (`INSERT INTO` the sink).
    pub select: &'static str,
    /// The same query for DataFusion's batch engine over the same tables,
    /// when it must be written otherwise (`None`: `select` as it is).
    pub batch: Option<&'static str>,
    /// Whether the streaming output is append-only, so that its row count
    /// must equal the batch result's (an updating query writes a changelog).
    pub append_only: bool,
}

impl Query {
    pub fn by_name(name: &str) -> Option<&'static Query> {
        QUERIES.iter().find(|q| q.name == name)
    }

    /// `CREATE TABLE` of the sink.
    pub fn sink_ddl(&self) -> String {
        format!(
            "CREATE TABLE {} ({}) WITH ('connector' = 'blackhole')",
            self.sink, self.sink_columns
        )
    }

    /// The streaming job: `INSERT INTO` the sink.
    pub fn insert(&self) -> String {
        format!("INSERT INTO {} {}", self.sink, self.select)
    }

    /// The batch query.
    pub fn batch_sql(&self) -> &'static str {
        self.batch.unwrap_or(self.select)
    }
}

/// q0, pass-through: measures the source, a projection and the sink.
const Q0: Query = Query {
    name: "q0",
    what: "pass-through",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra VARCHAR",
    sink: "nexmark_q0",
    select: "SELECT auction, bidder, price, date_time, extra FROM bid",
    batch: None,
    append_only: true,
};

/// q1, currency conversion: the price in euros into a `DECIMAL(23, 3)`, as Flink's sink declares it.
const Q1: Query = Query {
    name: "q1",
    what: "currency conversion",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time TIMESTAMP(3), extra VARCHAR",
    sink: "nexmark_q1",
    select: "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
    batch: Some(
        "SELECT auction, bidder, CAST(0.908 * price AS DECIMAL(23, 3)) AS price, date_time, extra FROM bid",
    ),
    append_only: true,
};

/// q2, selection: the bids of every 123rd auction.
const Q2: Query = Query {
    name: "q2",
    what: "selection",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, price BIGINT",
    sink: "nexmark_q2",
    select: "SELECT auction, price FROM bid WHERE auction % 123 = 0",
    batch: None,
    append_only: true,
};

/// q3, local item suggestion: a regular (unwindowed) join of auctions of
/// category 10 with their sellers from three states. Unchanged.
const Q3: Query = Query {
    name: "q3",
    what: "local item suggestion (join)",
    tables: &[Table::Auction, Table::Person],
    sink_columns: "name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT",
    sink: "nexmark_q3",
    select: "SELECT P.name, P.city, P.state, A.id
        FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
        WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')",
    batch: None,
    append_only: true,
};

/// q4, average price per category: the closing price of each auction (its
/// highest bid within the auction's lifetime), a regular join with a time
/// range, averaged per category over an updating input. Unchanged.
const Q4: Query = Query {
    name: "q4",
    what: "avg closing price per category (join, updating aggregates)",
    tables: &[Table::Auction, Table::Bid],
    sink_columns: "id BIGINT, final BIGINT",
    sink: "nexmark_q4",
    select: "SELECT Q.category, AVG(Q.final)
        FROM (
            SELECT MAX(B.price) AS final, A.category
            FROM auction A, bid B
            WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
            GROUP BY A.id, A.category
        ) Q
        GROUP BY Q.category",
    batch: None,
    append_only: false,
};

/// q5, hot items: the auctions with the most bids in each 10-second window
/// sliding every 2 seconds; the count per auction and window joined with the
/// window's greatest count (a window join of two window aggregates).
const Q5: Query = Query {
    name: "q5",
    what: "hot items (HOP, window join)",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, num BIGINT",
    sink: "nexmark_q5",
    select: "SELECT AuctionBids.auction, AuctionBids.num
        FROM (
            SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end
        ) AS AuctionBids
        JOIN (
            SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
            FROM (
                SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                GROUP BY auction, window_start, window_end
            ) AS CountBids
            GROUP BY CountBids.starttime, CountBids.endtime
        ) AS MaxBids
        ON AuctionBids.starttime = MaxBids.starttime
           AND AuctionBids.endtime = MaxBids.endtime
           AND AuctionBids.num >= MaxBids.maxn",
    // Each bid is in the 5 windows starting at its 2-second slot and the 4
    // before it; the window end follows from the start.
    batch: Some(
        "WITH AuctionBids AS (
            SELECT auction, count(*) AS num, starttime
            FROM (
                SELECT auction, date_bin(INTERVAL '2' SECOND, date_time) - o.k AS starttime
                FROM bid CROSS JOIN (VALUES (INTERVAL '0' SECOND), (INTERVAL '2' SECOND),
                    (INTERVAL '4' SECOND), (INTERVAL '6' SECOND), (INTERVAL '8' SECOND)) AS o(k)
            ) AS hopped
            GROUP BY auction, starttime
        )
        SELECT AuctionBids.auction, AuctionBids.num
        FROM AuctionBids
        JOIN (SELECT max(num) AS maxn, starttime FROM AuctionBids GROUP BY starttime) AS MaxBids
        ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.num >= MaxBids.maxn",
    ),
    append_only: true,
};

/// q7, highest bid: the bids with the highest price of each 10-second
/// tumbling window. Flink joins `bid` with the window maxima on the price and
/// a time range (a regular join); here it is the equivalent window join of
/// the windowed bids with the window's maximum.
const Q7: Query = Query {
    name: "q7",
    what: "highest bid (TUMBLE, window join)",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra VARCHAR",
    sink: "nexmark_q7",
    select: "SELECT B.auction, B.bidder, B.price, B.date_time, B.extra
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) B
        JOIN (
            SELECT max(price) AS maxprice, window_start, window_end
            FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
            GROUP BY window_start, window_end
        ) B1
        ON B.window_start = B1.window_start
           AND B.window_end = B1.window_end
           AND B.price = B1.maxprice",
    batch: Some(
        "WITH B AS (
            SELECT auction, bidder, price, date_time, extra,
                   date_bin(INTERVAL '10' SECOND, date_time) AS window_start
            FROM bid
        )
        SELECT B.auction, B.bidder, B.price, B.date_time, B.extra
        FROM B JOIN (SELECT max(price) AS maxprice, window_start FROM B GROUP BY window_start) B1
        ON B.window_start = B1.window_start AND B.price = B1.maxprice",
    ),
    append_only: true,
};

/// q8, monitor new users: the persons who opened an auction in the
/// 10-second window in which they registered; two tumbling window
/// aggregates joined on the window (a window join).
const Q8: Query = Query {
    name: "q8",
    what: "new users (TUMBLE, window join)",
    tables: &[Table::Auction, Table::Person],
    sink_columns: "id BIGINT, name VARCHAR, stime TIMESTAMP(3)",
    sink: "nexmark_q8",
    select: "SELECT P.id, P.name, P.starttime
        FROM (
            SELECT id, name, window_start AS starttime, window_end AS endtime
            FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
            GROUP BY id, name, window_start, window_end
        ) P
        JOIN (
            SELECT seller, window_start AS starttime, window_end AS endtime
            FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
            GROUP BY seller, window_start, window_end
        ) A
        ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
    batch: Some(
        "SELECT P.id, P.name, P.starttime
        FROM (
            SELECT id, name, date_bin(INTERVAL '10' SECOND, date_time) AS starttime
            FROM person GROUP BY id, name, date_bin(INTERVAL '10' SECOND, date_time)
        ) P
        JOIN (
            SELECT seller, date_bin(INTERVAL '10' SECOND, date_time) AS starttime
            FROM auction GROUP BY seller, date_bin(INTERVAL '10' SECOND, date_time)
        ) A
        ON P.id = A.seller AND P.starttime = A.starttime",
    ),
    append_only: true,
};

/// q10, log to file system: every bid with its day and minute as strings.
/// Flink writes it to a partitioned file system sink; here, as for every
/// query, into `blackhole`.
const Q10: Query = Query {
    name: "q10",
    what: "bids with formatted dates",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra VARCHAR,
        dt VARCHAR, hm VARCHAR",
    sink: "nexmark_q10",
    select: "SELECT auction, bidder, price, date_time, extra,
               to_char(date_time, '%Y-%m-%d'), to_char(date_time, '%H:%M')
        FROM bid",
    batch: None,
    append_only: true,
};

/// q11, user sessions: bids per bidder and session (10-second gap), with a
/// `SESSION` window TVF partitioned by bidder.
const Q11: Query = Query {
    name: "q11",
    what: "user sessions (SESSION)",
    tables: &[Table::Bid],
    sink_columns: "bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
    sink: "nexmark_q11",
    select: "SELECT bidder, count(*) AS bid_count, window_start, window_end
        FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
        GROUP BY bidder, window_start, window_end",
    // A bid opens a session if the bidder's previous bid is 10 s or more
    // before it; the running count of openings numbers the sessions.
    batch: Some(
        "WITH gaps AS (
            SELECT bidder, date_time,
                   CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                             < INTERVAL '10' SECOND
                        THEN 0 ELSE 1 END AS opens
            FROM bid
        ), sessions AS (
            SELECT bidder, date_time,
                   sum(opens) OVER (PARTITION BY bidder ORDER BY date_time
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
            FROM gaps
        )
        SELECT bidder, count(*) AS bid_count, min(date_time) AS starttime,
               max(date_time) + INTERVAL '10' SECOND AS endtime
        FROM sessions GROUP BY bidder, session",
    ),
    append_only: true,
};

/// q14, calculation: a filter on the converted price, a `CASE` on the hour
/// and Flink's `count_char` UDF as string functions.
const Q14: Query = Query {
    name: "q14",
    what: "calculation (CASE, string functions)",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), bidTimeType VARCHAR,
        date_time TIMESTAMP(3), extra VARCHAR, c_counts BIGINT",
    sink: "nexmark_q14",
    select: "SELECT auction, bidder, 0.908 * price AS price,
            CASE
                WHEN extract(hour FROM date_time) >= 8 AND extract(hour FROM date_time) <= 18 THEN 'dayTime'
                WHEN extract(hour FROM date_time) <= 6 OR extract(hour FROM date_time) >= 20 THEN 'nightTime'
                ELSE 'otherTime'
            END AS bidTimeType,
            date_time, extra,
            character_length(extra) - character_length(replace(extra, 'c', '')) AS c_counts
        FROM bid
        WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000",
    batch: Some(
        "SELECT auction, bidder, CAST(0.908 * price AS DECIMAL(23, 3)) AS price,
            CASE
                WHEN extract(hour FROM date_time) >= 8 AND extract(hour FROM date_time) <= 18 THEN 'dayTime'
                WHEN extract(hour FROM date_time) <= 6 OR extract(hour FROM date_time) >= 20 THEN 'nightTime'
                ELSE 'otherTime'
            END AS bidTimeType,
            date_time, extra,
            character_length(extra) - character_length(replace(extra, 'c', '')) AS c_counts
        FROM bid
        WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000",
    ),
    append_only: true,
};

/// q15, bidding statistics per day: counts and distinct counts with
/// `FILTER`, an updating (unwindowed) aggregate. Unchanged.
const Q15: Query = Query {
    name: "q15",
    what: "bidding statistics (distinct, FILTER; updating)",
    tables: &[Table::Bid],
    sink_columns: "day VARCHAR, total_bids BIGINT, rank1_bids BIGINT, rank2_bids BIGINT, rank3_bids BIGINT,
        total_bidders BIGINT, rank1_bidders BIGINT, rank2_bidders BIGINT, rank3_bidders BIGINT,
        total_auctions BIGINT, rank1_auctions BIGINT, rank2_auctions BIGINT, rank3_auctions BIGINT",
    sink: "nexmark_q15",
    select: "SELECT to_char(date_time, '%Y-%m-%d') AS day,
            count(*) AS total_bids,
            count(*) FILTER (WHERE price < 10000) AS rank1_bids,
            count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
            count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
            count(DISTINCT bidder) AS total_bidders,
            count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders,
            count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders,
            count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders,
            count(DISTINCT auction) AS total_auctions,
            count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions,
            count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions,
            count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions
        FROM bid
        GROUP BY to_char(date_time, '%Y-%m-%d')",
    batch: None,
    append_only: false,
};

/// q17, auction statistics per day: counts, min, max, avg and sum per
/// auction and day, an updating aggregate. Unchanged.
const Q17: Query = Query {
    name: "q17",
    what: "auction statistics (updating)",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, day VARCHAR, total_bids BIGINT, rank1_bids BIGINT, rank2_bids BIGINT,
        rank3_bids BIGINT, min_price BIGINT, max_price BIGINT, avg_price BIGINT, sum_price BIGINT",
    sink: "nexmark_q17",
    select: "SELECT auction, to_char(date_time, '%Y-%m-%d') AS day,
            count(*) AS total_bids,
            count(*) FILTER (WHERE price < 10000) AS rank1_bids,
            count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
            count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
            min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price,
            sum(price) AS sum_price
        FROM bid
        GROUP BY auction, to_char(date_time, '%Y-%m-%d')",
    batch: Some(
        "SELECT auction, to_char(date_time, '%Y-%m-%d') AS day,
            count(*) AS total_bids,
            count(*) FILTER (WHERE price < 10000) AS rank1_bids,
            count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
            count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
            min(price) AS min_price, max(price) AS max_price, CAST(avg(price) AS BIGINT) AS avg_price,
            sum(price) AS sum_price
        FROM bid
        GROUP BY auction, to_char(date_time, '%Y-%m-%d')",
    ),
    append_only: false,
};

/// q20, expand bid with auction: every bid joined with its auction when the
/// auction is of category 10; a regular join, both sides kept. Unchanged.
const Q20: Query = Query {
    name: "q20",
    what: "bids with their auction (join)",
    tables: &[Table::Auction, Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
        bid_date_time TIMESTAMP(3), bid_extra VARCHAR, itemName VARCHAR, description VARCHAR,
        initialBid BIGINT, reserve BIGINT, auction_date_time TIMESTAMP(3), expires TIMESTAMP(3),
        seller BIGINT, category BIGINT, auction_extra VARCHAR",
    sink: "nexmark_q20",
    select: "SELECT auction, bidder, price, channel, url, B.date_time, B.extra, itemName, description,
               initialBid, reserve, A.date_time, expires, seller, category, A.extra
        FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
        WHERE A.category = 10",
    batch: None,
    append_only: true,
};

/// q21, add channel id: a `CASE` on the channel, else the `channel_id`
/// parameter of the URL. Flink's `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`
/// is a `regexp_replace` of the whole URL with the group (the parameter
/// follows `&` in the generated URLs).
const Q21: Query = Query {
    name: "q21",
    what: "channel id (CASE, regex)",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, channel_id VARCHAR",
    sink: "nexmark_q21",
    select: "SELECT auction, bidder, price, channel,
            CASE
                WHEN lower(channel) = 'apple' THEN '0'
                WHEN lower(channel) = 'google' THEN '1'
                WHEN lower(channel) = 'facebook' THEN '2'
                WHEN lower(channel) = 'baidu' THEN '3'
                ELSE regexp_replace(url, '^.*(&|\\?)channel_id=([^&]*).*$', '\\2')
            END AS channel_id
        FROM bid
        WHERE regexp_like(url, '(&|\\?)channel_id=')
           OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')",
    batch: None,
    append_only: true,
};

/// q22, URL directories: the first three path segments of the URL.
const Q22: Query = Query {
    name: "q22",
    what: "URL directories (split_part)",
    tables: &[Table::Bid],
    sink_columns: "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
        dir1 VARCHAR, dir2 VARCHAR, dir3 VARCHAR",
    sink: "nexmark_q22",
    select: "SELECT auction, bidder, price, channel,
               split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2,
               split_part(url, '/', 6) AS dir3
        FROM bid",
    batch: None,
    append_only: true,
};

/// Every query, in Nexmark's order.
pub const QUERIES: &[Query] = &[
    Q0, Q1, Q2, Q3, Q4, Q5, Q7, Q8, Q10, Q11, Q14, Q15, Q17, Q20, Q21, Q22,
];

/// The queries the targets name, run by default.
pub const DEFAULT_QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"];
