//! The rows a stream join keeps, stored directly in the keyed state backend
//! (so that with RocksDB, join state of millions of keys lives on disk, not in
//! memory), one entry per distinct row.
//!
//! # Layout
//!
//! - A row of input `side` with join key `key` (comparable bytes, see
//!   [`super::join::KeyEncoder`]) is the entry
//!   `[ROWS, side, len(key) as u32 BE, key, time_key(t)?, row]`, where `row`
//!   is the row in Arrow's row format and `time_key(t)` (interval joins
//!   only) its event time. Its value is a [`RowValue`]: how many copies of
//!   the row there are and how many rows of the other side match each copy.
//!   All rows of a key are one prefix in one key group, so a probe is one
//!   prefix scan.
//! - Interval joins also index rows by the watermark that expires them:
//!   `[EXPIRY, side, time_key(expire), <the row entry's key after its tag>]`,
//!   with an empty value, so a watermark advance is a range scan.
//!
//! Every entry is in the key group of its join key: on rescale, a row moves
//! with its key. The Arrow row format is stable within a weir build; a
//! checkpoint is read by the same build (savepoints across Arrow upgrades are
//! not promised).

use datafusion::common::{DataFusionError, Result};

use super::join::Side;
use crate::message::EventTime;
use crate::state::{KeyedStateBackend, time_key, time_of_key};

const ROWS: u8 = b'R';
const EXPIRY: u8 = b'X';

/// The size of an encoded [`RowValue`].
const VALUE_BYTES: usize = 24;

/// What is stored per distinct row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowValue {
    /// Copies of the row (a changelog may insert a row twice).
    pub count: i64,
    /// Rows of the other side (with their copies) that match the row and
    /// pass the join condition: 0 means an outer join emitted (or will emit)
    /// the row NULL-padded.
    pub matches: i64,
    /// Processing time (ms since the epoch) of the last write, for the state
    /// TTL.
    pub touched_ms: i64,
}

impl RowValue {
    fn encode(&self) -> [u8; VALUE_BYTES] {
        let mut b = [0u8; VALUE_BYTES];
        b[..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..16].copy_from_slice(&self.matches.to_le_bytes());
        b[16..].copy_from_slice(&self.touched_ms.to_le_bytes());
        b
    }

    fn decode(bytes: &[u8]) -> Result<RowValue> {
        if bytes.len() != VALUE_BYTES {
            return Err(corrupt("a row value is not 24 bytes"));
        }
        let int = |i: usize| i64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Ok(RowValue {
            count: int(0),
            matches: int(8),
            touched_ms: int(16),
        })
    }
}

fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt join state: {what}"))
}

/// A stored row, as found by a probe.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// The key group of the entry.
    pub kg: usize,
    /// The entry's key (to update or delete it).
    pub entry: Vec<u8>,
    /// Where the row bytes start in `entry`.
    row_offset: usize,
    /// The row's event time (interval joins).
    pub time: Option<EventTime>,
    pub value: RowValue,
}

impl StoredRow {
    /// A stored row from its entry key, as returned by
    /// [`JoinRowStore::take_expired`].
    pub fn from_entry(kg: usize, entry: Vec<u8>, value: RowValue, timed: bool) -> Result<StoredRow> {
        let len = entry
            .get(2..6)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| corrupt("short row key"))?;
        let mut row_offset = 6 + len;
        let mut time = None;
        if timed {
            time = Some(
                entry
                    .get(row_offset..row_offset + 8)
                    .and_then(time_of_key)
                    .ok_or_else(|| corrupt("a row key has no time"))?,
            );
            row_offset += 8;
        }
        if entry.len() < row_offset {
            return Err(corrupt("short row key"));
        }
        Ok(StoredRow {
            kg,
            entry,
            row_offset,
            time,
            value,
        })
    }

    /// The row, in Arrow's row format.
    pub fn row(&self) -> &[u8] {
        &self.entry[self.row_offset..]
    }
}

/// Reads and writes join rows in a keyed state backend. `timed` stores each
/// row's event time in its key (interval joins).
#[derive(Debug, Clone, Copy)]
pub struct JoinRowStore {
    pub timed: bool,
}

impl JoinRowStore {
    /// The common prefix of the entries of `key`'s rows of `side`.
    pub fn key_prefix(side: Side, key: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(key.len() + 6 + 8);
        p.push(ROWS);
        p.push(side as u8);
        p.extend_from_slice(&(key.len() as u32).to_be_bytes());
        p.extend_from_slice(key);
        p
    }

    /// The entry key of a row.
    pub fn entry_key(&self, side: Side, key: &[u8], time: EventTime, row: &[u8]) -> Vec<u8> {
        let mut e = Self::key_prefix(side, key);
        if self.timed {
            e.extend_from_slice(&time_key(time));
        }
        e.extend_from_slice(row);
        e
    }

    /// Every stored row of `side` with join key `key` (in key group `kg`).
    pub fn probe(
        &self,
        backend: &dyn KeyedStateBackend,
        kg: usize,
        side: Side,
        key: &[u8],
        out: &mut Vec<StoredRow>,
    ) -> Result<()> {
        let prefix = Self::key_prefix(side, key);
        let timed = self.timed;
        backend.scan_key_group_prefix(kg, &prefix, &mut |k, v| {
            let (time, row_offset) = if timed {
                let t = k
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(time_of_key)
                    .ok_or_else(|| corrupt("a row key has no time"))?;
                (Some(t), prefix.len() + 8)
            } else {
                (None, prefix.len())
            };
            out.push(StoredRow {
                kg,
                entry: k.to_vec(),
                row_offset,
                time,
                value: RowValue::decode(v)?,
            });
            Ok(())
        })
    }

    pub fn get(&self, backend: &dyn KeyedStateBackend, kg: usize, entry: &[u8]) -> Result<Option<RowValue>> {
        backend.get(kg, entry)?.map(|v| RowValue::decode(&v)).transpose()
    }

    /// Writes a row's value; a count of 0 or less deletes the row. `stored`
    /// says whether the row is stored now (as just read), which spares the
    /// backend a read.
    pub fn put(
        &self,
        backend: &mut dyn KeyedStateBackend,
        kg: usize,
        entry: &[u8],
        value: RowValue,
        stored: bool,
    ) -> Result<()> {
        let previous = stored.then_some(VALUE_BYTES);
        match (value.count > 0, previous) {
            (true, previous) => backend.put_known(kg, entry, &value.encode(), previous),
            (false, Some(previous)) => backend.delete_known(kg, entry, previous),
            (false, None) => Ok(()),
        }
    }

    /// Deletes a row known to be stored.
    pub fn delete(&self, backend: &mut dyn KeyedStateBackend, kg: usize, entry: &[u8]) -> Result<()> {
        backend.delete_known(kg, entry, VALUE_BYTES)
    }

    fn expiry_key(expire: EventTime, entry: &[u8]) -> Result<Vec<u8>> {
        let side = *entry.get(1).ok_or_else(|| corrupt("short row key"))?;
        let mut k = Vec::with_capacity(entry.len() + 9);
        k.push(EXPIRY);
        k.push(side);
        k.extend_from_slice(&time_key(expire));
        k.extend_from_slice(&entry[1..]);
        Ok(k)
    }

    /// Records that row `entry` expires once the watermark reaches `expire`.
    pub fn add_expiry(
        &self,
        backend: &mut dyn KeyedStateBackend,
        kg: usize,
        expire: EventTime,
        entry: &[u8],
    ) -> Result<()> {
        backend.put_known(kg, &Self::expiry_key(expire, entry)?, &[], None)
    }

    /// The rows of `side` whose expiry is in `(after, watermark]` (`after`:
    /// the watermark of the previous call, below which every expiry record
    /// is gone; `None` scans from the start), as (key group, row entry key),
    /// in expiry order per key group; removes their expiry records (the
    /// caller deletes the rows). Starting after the previous watermark
    /// keeps RocksDB from stepping over the tombstones of earlier expiries.
    pub fn take_expired(
        &self,
        backend: &mut dyn KeyedStateBackend,
        side: Side,
        after: Option<EventTime>,
        watermark: EventTime,
    ) -> Result<Vec<(usize, Vec<u8>)>> {
        let mut start = vec![EXPIRY, side as u8];
        start.extend_from_slice(&time_key(match after {
            Some(after) => after.saturating_add(1),
            None => EventTime::MIN,
        }));
        let end = match watermark.checked_add(1) {
            Some(next) => {
                let mut end = vec![EXPIRY, side as u8];
                end.extend_from_slice(&time_key(next));
                end
            }
            None => vec![EXPIRY, side as u8 + 1],
        };
        let mut due = Vec::new();
        backend.scan_range(&start, &end, &mut |kg, k, _| {
            due.push((kg, k.to_vec()));
            Ok(())
        })?;
        let mut rows = Vec::with_capacity(due.len());
        for (kg, k) in due {
            backend.delete_known(kg, &k, 0)?;
            // `k` is [EXPIRY, side, time (8 bytes), side, ...]; the row's is [ROWS, side, ...].
            let mut entry = Vec::with_capacity(k.len() - 9);
            entry.push(ROWS);
            entry.extend_from_slice(k.get(10..).ok_or_else(|| corrupt("short expiry key"))?);
            rows.push((kg, entry));
        }
        Ok(rows)
    }

    /// Every row entry of key group `kg` (for TTL sweeps).
    pub fn scan_key_group(
        &self,
        backend: &dyn KeyedStateBackend,
        kg: usize,
        f: &mut dyn FnMut(&[u8], RowValue) -> Result<()>,
    ) -> Result<()> {
        backend.scan_key_group_prefix(kg, &[ROWS], &mut |k, v| f(k, RowValue::decode(v)?))
    }
}
