//! The rows a stream join keeps, stored directly in the keyed state backend
//! (so that with RocksDB, join state of millions of keys lives on disk, not in
//! memory), one entry per distinct row.
//!
//! # Layout
//!
//! - A row of input `side` with join key `key` (comparable bytes, see
//!   [`super::join::KeyEncoder`]) is the entry
//!   `[ROWS, side, len(key) as u32 BE, key, time_key(t)?, row]` (a
//!   [lookup prefix](crate::state::lookup_prefix) and the rest), where `row`
//!   is the row in Arrow's row format, without the columns the key holds
//!   (see [`super::join::RowCodec`]), and `time_key(t)` (interval joins
//!   only) its event time. Its value is a [`RowValue`]: how many copies of
//!   the row there are and how many rows of the other side match each copy.
//!   All rows of a key are one prefix in one key group, so a probe is one
//!   prefix scan.
//! - A row of an append-only input (see [`JoinRowStore::arrivals`]) is never
//!   looked up by its own entry (nothing retracts it), so each arrival is an
//!   entry of its own, `[ARRIVALS, side, len, key, time_key(t)?, row, id]`
//!   with an [`ArrivalIds`] id (8 bytes, big-endian) after the row and a
//!   count of 1: it is written without reading whether an identical row is
//!   stored (the read that would cost more than the write, with RocksDB).
//!   The tag says which layout an entry has, so every entry reads alone;
//!   state written before arrivals had entries of their own (append-only
//!   rows under `ROWS`, counted) is rewritten into this layout on restore
//!   ([`JoinRowStore::upgrade_counted_arrivals`]).
//! - Interval joins, and regular joins whose condition bounds the rows a row
//!   can match, also index rows by the watermark that expires them:
//!   `[EXPIRY, side, time_key(expire), <the row entry's key after its tag>]`
//!   (the tag is the side's: `ARRIVALS` for an append-only side),
//!   with an empty value, so a watermark advance is a range scan.
//!
//! Every entry is in the key group of its join key: on rescale, a row moves
//! with its key. The Arrow row format is stable within a weir build; a
//! checkpoint is read by the same build (savepoints across Arrow upgrades are
//! not promised).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::common::{DataFusionError, HashMap, Result};

use super::join::Side;
use crate::message::EventTime;
use crate::state::lookup_prefix::{LOOKUP_HEADER_BYTES, lookup_prefix_len, write_lookup_prefix};
use crate::state::{EntryExpiry, KeyedStateBackend, time_key, time_of_key, varint};

/// Rows counted per distinct row (updating inputs; append-only inputs of
/// state written before [`ARRIVALS`]).
const ROWS: u8 = b'R';
/// Rows of append-only inputs, an entry per arrival (with an id).
const ARRIVALS: u8 = b'A';
const EXPIRY: u8 = b'X';

/// The longest encoded [`RowValue`]: flags, two varints, two times.
const MAX_VALUE_BYTES: usize = 1 + 10 + 10 + 8 + 8;

/// [`RowValue`] flags: which optional fields follow the count.
const HAS_MATCHES: u8 = 1;
const HAS_TOUCHED: u8 = 2;
const HAS_EXPIRES: u8 = 4;

/// What is stored per distinct row.
///
/// Encoded compactly, since a join may keep millions of rows: a flags byte,
/// the count as a zigzag varint, then `matches` (a zigzag varint) only if
/// it is not 0, `touched_ms` (8 bytes) only if present, and `expires` (8
/// bytes) only if present. A row of an inner join without a TTL or bounds
/// takes 2 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowValue {
    /// Copies of the row (a changelog may insert a row twice).
    pub count: i64,
    /// Rows of the other side (with their copies) that match the row and
    /// pass the join condition: 0 means an outer join emitted (or will emit)
    /// the row NULL-padded. Only kept (and read) for rows of a side whose
    /// unmatched rows are part of the result; 0 for the others.
    pub matches: i64,
    /// Processing time (ms since the epoch) of the last write, for the state
    /// TTL; `None` for a row written without a TTL, which never expires.
    pub touched_ms: Option<i64>,
    /// The watermark from which the row can match no row of the other side
    /// that is not late (see [`ExpiryBound`](super::stream_join::ExpiryBound));
    /// `None` for rows of a side without bounds.
    pub expires: Option<EventTime>,
}

impl RowValue {
    /// Writes the encoding into `buf`, returning its length.
    fn encode(&self, buf: &mut [u8; MAX_VALUE_BYTES]) -> usize {
        let mut flags = 0;
        let mut n = 1;
        n += varint::write(&mut buf[n..], zigzag(self.count));
        if self.matches != 0 {
            flags |= HAS_MATCHES;
            n += varint::write(&mut buf[n..], zigzag(self.matches));
        }
        if let Some(t) = self.touched_ms {
            flags |= HAS_TOUCHED;
            buf[n..n + 8].copy_from_slice(&t.to_le_bytes());
            n += 8;
        }
        if let Some(t) = self.expires {
            flags |= HAS_EXPIRES;
            buf[n..n + 8].copy_from_slice(&t.to_le_bytes());
            n += 8;
        }
        buf[0] = flags;
        n
    }

    fn encoded_len(&self) -> usize {
        self.encode(&mut [0; MAX_VALUE_BYTES])
    }

    fn decode(bytes: &[u8]) -> Result<RowValue> {
        let (&flags, mut rest) = bytes.split_first().ok_or_else(|| corrupt("an empty row value"))?;
        if flags & !(HAS_MATCHES | HAS_TOUCHED | HAS_EXPIRES) != 0 {
            return Err(corrupt("unknown row value flags"));
        }
        let count = unzigzag(take_varint(&mut rest)?);
        let matches = if flags & HAS_MATCHES != 0 {
            unzigzag(take_varint(&mut rest)?)
        } else {
            0
        };
        let mut time = |flag: u8| -> Result<Option<i64>> {
            if flags & flag == 0 {
                return Ok(None);
            }
            let (t, tail) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| corrupt("a row value is cut short"))?;
            rest = tail;
            Ok(Some(i64::from_le_bytes(*t)))
        };
        let touched_ms = time(HAS_TOUCHED)?;
        let expires = time(HAS_EXPIRES)?;
        if !rest.is_empty() {
            return Err(corrupt("a row value has trailing bytes"));
        }
        Ok(RowValue {
            count,
            matches,
            touched_ms,
            expires,
        })
    }
}

/// The value of the first entry whose key starts with `prefix`, reading no
/// further.
fn first_entry(backend: &dyn KeyedStateBackend, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut found = None;
    // The visitor's error ends the scan at the first entry.
    let scan = backend.scan_prefix(prefix, &mut |_, _, v| {
        found = Some(v.to_vec());
        Err(DataFusionError::Internal("first entry found".into()))
    });
    match (scan, found) {
        (_, Some(value)) => Ok(Some(value)),
        (result, None) => result.map(|()| None),
    }
}

/// [`JoinRowStore::entry_expiry`].
#[derive(Debug)]
struct RowExpiry {
    watermark: Arc<AtomicI64>,
}

impl EntryExpiry for RowExpiry {
    fn is_expired(&self, key: &[u8], value: &[u8]) -> bool {
        matches!(key.first(), Some(&(ROWS | ARRIVALS)))
            && RowValue::decode(value)
                .ok()
                .and_then(|v| v.expires)
                .is_some_and(|expires| expires <= self.watermark.load(Ordering::Relaxed))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64> {
    varint::read(bytes).ok_or_else(|| corrupt("a bad varint in a row value"))
}

fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt join state: {what}"))
}

/// Ids that make each arrival of a row of an append-only input an entry of
/// its own (see the module docs).
///
/// # Invariants
///
/// Two entries are the same only if their key group, join key, row and id
/// are. One instance never repeats an id (a counter, wrapping after 2^64);
/// each instance (every start or restore of a join subtask) counts from a
/// random start, so ids of two instances that write the same key group
/// coincide only if one's range of ids reaches the other's start: a chance
/// of about (ids written) / 2^64, and only identical rows would then be
/// counted once.
#[derive(Debug)]
pub struct ArrivalIds {
    next: u64,
}

impl ArrivalIds {
    pub fn new() -> Self {
        ArrivalIds {
            next: crate::state::instance_seed(),
        }
    }

    fn next(&mut self) -> u64 {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        id
    }
}

impl Default for ArrivalIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes of an arrival id at the end of an entry key.
const ARRIVAL_ID_BYTES: usize = 8;

/// A stored row, as found by a probe.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// The key group of the entry.
    pub kg: usize,
    /// The entry's key (to update or delete it).
    pub entry: Vec<u8>,
    /// Where the join key ends and the row bytes are in `entry`.
    key_end: usize,
    row_offset: usize,
    row_end: usize,
    /// The row's event time (interval joins).
    pub time: Option<EventTime>,
    pub value: RowValue,
}

impl StoredRow {
    /// The row, in Arrow's row format.
    pub fn row(&self) -> &[u8] {
        &self.entry[self.row_offset..self.row_end]
    }

    /// The row's join key (comparable bytes).
    pub fn key(&self) -> &[u8] {
        &self.entry[LOOKUP_HEADER_BYTES..self.key_end]
    }

    /// The input the row is of.
    pub fn side(&self) -> Side {
        Side::of_input(self.entry[1] as usize)
    }

    /// The row's join key and row, as [`RowCodec::decode`](super::join::RowCodec::decode) takes them.
    pub fn key_and_row(&self) -> (&[u8], &[u8]) {
        (self.key(), self.row())
    }
}

/// What [`JoinRowStore::probe_batch`] found for a batch.
#[derive(Debug)]
pub struct BatchProbe {
    /// The stored rows found (those kept), the rows of one key together.
    pub candidates: Vec<StoredRow>,
    /// Per row of the batch: its candidates, a range of `candidates`.
    pub ranges: Vec<std::ops::Range<usize>>,
}

/// Reads and writes join rows in a keyed state backend.
#[derive(Debug, Clone, Copy)]
pub struct JoinRowStore {
    /// Each row's event time is part of its key (interval joins).
    pub timed: bool,
    /// Per input (`Side as usize`): whether it is append-only, so that each
    /// arrival of a row is an entry of its own (see the module docs). Part
    /// of the layout: a restore must be read with the flags it was written
    /// with (a query's inputs stay append-only or updating).
    pub arrivals: [bool; 2],
}

impl JoinRowStore {
    /// The tag of the entries `side` writes.
    fn tag(&self, side: Side) -> u8 {
        if self.arrivals[side as usize] {
            ARRIVALS
        } else {
            ROWS
        }
    }

    /// Where the row bytes of an entry with tag `tag` start, after a key
    /// prefix of `prefix_len` bytes, and end.
    fn row_bounds(&self, tag: u8, prefix_len: usize, entry_len: usize) -> Result<(usize, usize)> {
        let start = prefix_len + if self.timed { 8 } else { 0 };
        let end = entry_len
            .checked_sub(if tag == ARRIVALS { ARRIVAL_ID_BYTES } else { 0 })
            .filter(|&end| end >= start)
            .ok_or_else(|| corrupt("short row key"))?;
        Ok((start, end))
    }

    /// A stored row from its entry key (as a probe finds it, or as
    /// [`take_expired`](Self::take_expired) returns it).
    pub fn stored_row(&self, kg: usize, entry: Vec<u8>, value: RowValue) -> Result<StoredRow> {
        let key_end = lookup_prefix_len(&entry).ok_or_else(|| corrupt("short row key"))?;
        let (row_offset, row_end) = self.row_bounds(entry[0], key_end, entry.len())?;
        let time = if self.timed {
            Some(
                entry
                    .get(row_offset - 8..row_offset)
                    .and_then(time_of_key)
                    .ok_or_else(|| corrupt("a row key has no time"))?,
            )
        } else {
            None
        };
        Ok(StoredRow {
            kg,
            entry,
            key_end,
            row_offset,
            row_end,
            time,
            value,
        })
    }

    /// The common prefix of the entries of `key`'s rows of `side` (a
    /// lookup prefix: backends may index it).
    pub fn key_prefix(&self, side: Side, key: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        write_lookup_prefix(&mut p, self.tag(side), side as u8, key);
        p
    }

    /// Writes the entry key of a row of `side` into `buf` (cleared first), so
    /// that a batch's rows reuse one buffer. For an append-only side, this
    /// is a new arrival's entry: it takes the next of `ids`.
    pub fn entry_key_into(
        &self,
        buf: &mut Vec<u8>,
        side: Side,
        key: &[u8],
        time: EventTime,
        row: &[u8],
        ids: &mut ArrivalIds,
    ) {
        buf.clear();
        write_lookup_prefix(buf, self.tag(side), side as u8, key);
        if self.timed {
            buf.extend_from_slice(&time_key(time));
        }
        buf.extend_from_slice(row);
        if self.arrivals[side as usize] {
            buf.extend_from_slice(&ids.next().to_be_bytes());
        }
    }

    /// Every stored row of `side` with each of `keys` (key group, join
    /// key), in one pass of the backend: calls `f(i, row)` for each row of
    /// `keys[i]`, in the order of `keys`.
    pub fn probe_keys(
        &self,
        backend: &dyn KeyedStateBackend,
        side: Side,
        keys: &[(usize, &[u8])],
        f: &mut dyn FnMut(usize, StoredRow) -> Result<()>,
    ) -> Result<()> {
        let prefixes: Vec<Vec<u8>> = keys.iter().map(|&(_, key)| self.key_prefix(side, key)).collect();
        let probes: Vec<(usize, &[u8])> = keys
            .iter()
            .zip(&prefixes)
            .map(|(&(kg, _), prefix)| (kg, prefix.as_slice()))
            .collect();
        backend.scan_key_group_prefixes(&probes, &mut |i, k, v| {
            f(i, self.stored_row(probes[i].0, k.to_vec(), RowValue::decode(v)?)?)
        })
    }

    /// The stored rows of `side` for each row of a batch, where `probes`
    /// yields each row's (key group, join key), or `None` for a row that
    /// probes nothing: each distinct key is probed once, all in one pass of
    /// the backend. `keep` sees every row found and returns it to make it a
    /// candidate, or takes it (e.g. an expired row).
    pub fn probe_batch<'k>(
        &self,
        backend: &dyn KeyedStateBackend,
        side: Side,
        probes: impl Iterator<Item = Option<(usize, &'k [u8])>>,
        keep: &mut dyn FnMut(StoredRow) -> Option<StoredRow>,
    ) -> Result<BatchProbe> {
        let mut probe_of_row: Vec<Option<u32>> = Vec::new();
        let mut distinct: Vec<(usize, &[u8])> = Vec::new();
        let mut index: HashMap<(usize, &[u8]), u32> = HashMap::new();
        for probe in probes {
            probe_of_row.push(probe.map(|probe| {
                *index.entry(probe).or_insert_with(|| {
                    distinct.push(probe);
                    distinct.len() as u32 - 1
                })
            }));
        }
        let mut candidates: Vec<StoredRow> = Vec::new();
        let mut ranges = vec![0..0; distinct.len()];
        self.probe_keys(backend, side, &distinct, &mut |p, row| {
            if let Some(row) = keep(row) {
                if ranges[p].is_empty() {
                    ranges[p] = candidates.len()..candidates.len();
                }
                candidates.push(row);
                ranges[p].end = candidates.len();
            }
            Ok(())
        })?;
        let ranges = probe_of_row
            .into_iter()
            .map(|p| p.map_or(0..0, |p| ranges[p as usize].clone()))
            .collect();
        Ok(BatchProbe { candidates, ranges })
    }

    pub fn get(&self, backend: &dyn KeyedStateBackend, kg: usize, entry: &[u8]) -> Result<Option<RowValue>> {
        backend.get(kg, entry)?.map(|v| RowValue::decode(&v)).transpose()
    }

    /// Stores `value` (a count of 1 or more) for a row of `side` unless the
    /// row is stored already: then returns its stored value and writes
    /// nothing. One lookup for a new row of an updating side, none for an
    /// append-only side's (each arrival is a new entry).
    pub fn insert(
        &self,
        backend: &mut dyn KeyedStateBackend,
        kg: usize,
        side: Side,
        entry: &[u8],
        value: RowValue,
    ) -> Result<Option<RowValue>> {
        let mut buf = [0; MAX_VALUE_BYTES];
        let n = value.encode(&mut buf);
        if self.arrivals[side as usize] {
            return backend.put_known(kg, entry, &buf[..n], None).map(|()| None);
        }
        backend
            .put_if_absent(kg, entry, &buf[..n])?
            .map(|v| RowValue::decode(&v))
            .transpose()
    }

    /// Writes a row's value; a count of 0 or less deletes the row.
    /// `previous` is the row's value as just read (`None`: not stored),
    /// which spares the backend a read.
    pub fn put(
        &self,
        backend: &mut dyn KeyedStateBackend,
        kg: usize,
        entry: &[u8],
        value: RowValue,
        previous: Option<RowValue>,
    ) -> Result<()> {
        let previous = previous.map(|v| v.encoded_len());
        match (value.count > 0, previous) {
            (true, previous) => {
                let mut buf = [0; MAX_VALUE_BYTES];
                let n = value.encode(&mut buf);
                backend.put_known(kg, entry, &buf[..n], previous)
            }
            (false, Some(previous)) => backend.delete_known(kg, entry, previous),
            (false, None) => Ok(()),
        }
    }

    /// Deletes a row known to be stored, with value `previous` if known (its
    /// size only keeps the backend's size metric exact).
    pub fn delete(
        &self,
        backend: &mut dyn KeyedStateBackend,
        kg: usize,
        entry: &[u8],
        previous: Option<RowValue>,
    ) -> Result<()> {
        let size = previous.unwrap_or(RowValue {
            count: 1,
            ..RowValue::default()
        });
        backend.delete_known(kg, entry, size.encoded_len())
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
            // `k` is [EXPIRY, side, time (8 bytes), side, ...]; the row's is [tag, side, ...].
            let mut entry = Vec::with_capacity(k.len() - 9);
            entry.push(self.tag(side));
            entry.extend_from_slice(k.get(10..).ok_or_else(|| corrupt("short expiry key"))?);
            rows.push((kg, entry));
        }
        Ok(rows)
    }

    /// Deletes every row entry and expiry record, returning the rows (to
    /// move them into another layout).
    pub fn take_all(&self, backend: &mut dyn KeyedStateBackend) -> Result<Vec<StoredRow>> {
        let mut found = Vec::new();
        for tag in [ROWS, ARRIVALS] {
            backend.scan_prefix(&[tag], &mut |kg, k, v| {
                found.push(self.stored_row(kg, k.to_vec(), RowValue::decode(v)?)?);
                Ok(())
            })?;
        }
        for row in &found {
            self.delete(backend, row.kg, &row.entry, Some(row.value))?;
        }
        self.delete_expiry_records(backend)?;
        Ok(found)
    }

    /// Every stored row of `side`.
    pub fn rows_of_side(&self, backend: &dyn KeyedStateBackend, side: Side) -> Result<Vec<StoredRow>> {
        let mut found = Vec::new();
        backend.scan_prefix(&[self.tag(side), side as u8], &mut |kg, k, v| {
            found.push(self.stored_row(kg, k.to_vec(), RowValue::decode(v)?)?);
            Ok(())
        })?;
        Ok(found)
    }

    /// Whether any row of `side` has an expiry record (reads one entry).
    pub fn has_expiry_records(&self, backend: &dyn KeyedStateBackend, side: Side) -> Result<bool> {
        Ok(first_entry(backend, &[EXPIRY, side as u8])?.is_some())
    }

    /// Whether the first row of `side` (if any) was written without its
    /// [`RowValue::expires`] (by a join without bounds, or by a weir before
    /// rows kept it): a state is written by one join, so then all were.
    pub fn rows_lack_expiry(&self, backend: &dyn KeyedStateBackend, side: Side) -> Result<bool> {
        match first_entry(backend, &[self.tag(side), side as u8])? {
            Some(value) => Ok(RowValue::decode(&value)?.expires.is_none()),
            None => Ok(false),
        }
    }

    /// Deletes every expiry record (the backend drops expired rows itself).
    pub fn delete_expiry_records(&self, backend: &mut dyn KeyedStateBackend) -> Result<()> {
        let mut records = Vec::new();
        backend.scan_prefix(&[EXPIRY], &mut |kg, k, _| {
            records.push((kg, k.to_vec()));
            Ok(())
        })?;
        for (kg, k) in records {
            backend.delete_known(kg, &k, 0)?;
        }
        Ok(())
    }

    /// What a backend that drops expired entries itself asks of this
    /// layout: a row entry is expired once `watermark` (which the join
    /// advances) reaches its [`RowValue::expires`]. Expiry records and other
    /// entries never are.
    pub fn entry_expiry(watermark: Arc<AtomicI64>) -> Arc<dyn EntryExpiry> {
        Arc::new(RowExpiry { watermark })
    }

    /// Every row entry of key group `kg` (for TTL sweeps).
    pub fn scan_key_group(
        &self,
        backend: &dyn KeyedStateBackend,
        kg: usize,
        f: &mut dyn FnMut(&[u8], RowValue) -> Result<()>,
    ) -> Result<()> {
        for tag in [ROWS, ARRIVALS] {
            backend.scan_key_group_prefix(kg, &[tag], &mut |k, v| f(k, RowValue::decode(v)?))?;
        }
        Ok(())
    }

    /// Rewrites the counted rows of append-only sides (state written before
    /// each arrival had an entry of its own, which probes of this layout do
    /// not see) as arrivals: an entry with an id of `ids` per copy, with the
    /// copy's value, and its expiry records (interval joins) with it.
    /// Returns how many entries it rewrote, and logs it for `operator`
    /// subtask `subtask` if any; a restore of this layout finds none (one
    /// prefix scan per append-only side).
    pub fn upgrade_counted_arrivals(
        &self,
        backend: &mut dyn KeyedStateBackend,
        ids: &mut ArrivalIds,
        operator: &str,
        subtask: usize,
    ) -> Result<usize> {
        let mut rewritten = 0;
        for side in [Side::Left, Side::Right] {
            if !self.arrivals[side as usize] {
                continue;
            }
            let mut counted = Vec::new();
            backend.scan_prefix(&[ROWS, side as u8], &mut |kg, k, v| {
                counted.push((kg, k.to_vec(), RowValue::decode(v)?));
                Ok(())
            })?;
            if counted.is_empty() {
                continue;
            }
            // Expiry records name a row by its entry after the tag.
            let mut expiries: HashMap<(usize, Vec<u8>), Vec<EventTime>> = HashMap::new();
            backend.scan_prefix(&[EXPIRY, side as u8], &mut |kg, k, _| {
                let time = k
                    .get(2..10)
                    .and_then(time_of_key)
                    .ok_or_else(|| corrupt("short expiry key"))?;
                expiries.entry((kg, k[10..].to_vec())).or_default().push(time);
                Ok(())
            })?;
            let mut arrival = Vec::new();
            for (kg, entry, value) in counted {
                let expire = expiries.remove(&(kg, entry[1..].to_vec())).unwrap_or_default();
                for &t in &expire {
                    backend.delete_known(kg, &Self::expiry_key(t, &entry)?, 0)?;
                }
                self.delete(backend, kg, &entry, Some(value))?;
                let copy = RowValue { count: 1, ..value };
                for _ in 0..value.count.max(0) {
                    arrival.clear();
                    arrival.push(ARRIVALS);
                    arrival.extend_from_slice(&entry[1..]);
                    arrival.extend_from_slice(&ids.next().to_be_bytes());
                    self.insert(backend, kg, side, &arrival, copy)?;
                    for &t in &expire {
                        self.add_expiry(backend, kg, t, &arrival)?;
                    }
                }
                rewritten += 1;
            }
        }
        if rewritten > 0 {
            tracing::info!(
                "{operator} subtask {subtask}: {rewritten} stored join rows rewritten into this build's layout"
            );
        }
        Ok(rewritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HashMapStateBackend;
    use crate::state::testing::scope;

    fn round_trip(v: RowValue) -> usize {
        let mut buf = [0; MAX_VALUE_BYTES];
        let n = v.encode(&mut buf);
        assert_eq!(RowValue::decode(&buf[..n]).unwrap(), v);
        assert_eq!(v.encoded_len(), n);
        n
    }

    #[test]
    fn row_values_are_compact_and_round_trip() {
        let one = RowValue {
            count: 1,
            ..RowValue::default()
        };
        assert_eq!(round_trip(one), 2, "an inner join's row without a TTL");
        assert_eq!(round_trip(RowValue { matches: 3, ..one }), 3);
        assert_eq!(
            round_trip(RowValue {
                touched_ms: Some(1_700_000_000_000),
                ..one
            }),
            10
        );
        let expiring = RowValue {
            expires: Some(i64::MIN),
            ..one
        };
        assert_eq!(round_trip(expiring), 10);
        for v in [
            RowValue {
                count: i64::MAX,
                matches: i64::MIN,
                touched_ms: Some(-1),
                expires: Some(i64::MAX),
            },
            RowValue {
                count: -5,
                matches: -1,
                touched_ms: None,
                expires: None,
            },
            RowValue {
                touched_ms: Some(7),
                ..expiring
            },
        ] {
            round_trip(v);
        }
    }

    /// Stores `row` twice under join key `key` of `side`, then probes it.
    fn store_twice(store: JoinRowStore, side: Side, time: EventTime) -> (Vec<StoredRow>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = HashMapStateBackend::new(scope(dir.path(), 0, 1, "join"));
        let mut ids = ArrivalIds::new();
        let (key, row) = (b"k".as_slice(), b"row".as_slice());
        let one = RowValue {
            count: 1,
            ..RowValue::default()
        };
        let mut entry = Vec::new();
        for _ in 0..2 {
            store.entry_key_into(&mut entry, side, key, time, row, &mut ids);
            if let Some(stored) = store.insert(&mut backend, 3, side, &entry, one).unwrap() {
                let value = RowValue {
                    count: stored.count + 1,
                    ..stored
                };
                store.put(&mut backend, 3, &entry, value, Some(stored)).unwrap();
            }
        }
        // Two rows of the key (one probe) and a row that probes nothing.
        let BatchProbe { candidates, ranges } = store
            .probe_batch(
                &backend,
                side,
                [Some((3, key)), None, Some((3, key))].into_iter(),
                &mut Some,
            )
            .unwrap();
        assert_eq!(ranges, [0..candidates.len(), 0..0, 0..candidates.len()]);
        let found = candidates;
        for f in &found {
            assert_eq!(f.key_and_row(), (key, row));
            assert_eq!(f.side(), side);
            assert_eq!(f.time, store.timed.then_some(time));
            let again = store.stored_row(f.kg, f.entry.clone(), f.value).unwrap();
            assert_eq!((again.row(), again.time), (f.row(), f.time));
        }
        (found, backend.len())
    }

    #[test]
    fn each_arrival_of_an_append_only_side_is_an_entry_and_updating_sides_count_copies() {
        for timed in [false, true] {
            let store = JoinRowStore {
                timed,
                arrivals: [true, false],
            };
            let (arrivals, entries) = store_twice(store, Side::Left, 1_000);
            assert_eq!(entries, 2);
            assert_eq!(arrivals.len(), 2);
            assert!(arrivals.iter().all(|r| r.value.count == 1));
            assert_ne!(arrivals[0].entry, arrivals[1].entry);

            let (copies, entries) = store_twice(store, Side::Right, 1_000);
            assert_eq!(entries, 1);
            assert_eq!(copies.len(), 1);
            assert_eq!(copies[0].value.count, 2);
        }
    }

    #[test]
    fn counted_rows_of_append_only_sides_are_upgraded_to_arrivals_with_their_expiries() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = HashMapStateBackend::new(scope(dir.path(), 0, 1, "join"));
        let mut ids = ArrivalIds::new();
        // State as builds before `ARRIVALS` wrote it: every side counted.
        let old = JoinRowStore {
            timed: true,
            arrivals: [false, false],
        };
        let (key, t) = (b"k".as_slice(), 1_000);
        let mut entry = Vec::new();
        for (side, row, count) in [
            (Side::Left, b"a".as_slice(), 2),
            (Side::Right, b"b".as_slice(), 3),
        ] {
            old.entry_key_into(&mut entry, side, key, t, row, &mut ids);
            let value = RowValue {
                count,
                matches: 1,
                touched_ms: None,
                expires: None,
            };
            assert!(
                old.insert(&mut backend, 3, side, &entry, value)
                    .unwrap()
                    .is_none()
            );
            old.add_expiry(&mut backend, 3, t + 10, &entry).unwrap();
        }
        let store = JoinRowStore {
            timed: true,
            arrivals: [true, false],
        };
        let probe = |backend: &HashMapStateBackend, side| {
            let mut found = Vec::new();
            store
                .probe_keys(backend, side, &[(3, key)], &mut |_, r| {
                    found.push(r);
                    Ok(())
                })
                .unwrap();
            found
        };
        assert!(
            probe(&backend, Side::Left).is_empty(),
            "this layout does not see counted arrivals"
        );

        assert_eq!(
            store
                .upgrade_counted_arrivals(&mut backend, &mut ids, "join", 0)
                .unwrap(),
            1
        );
        let left = probe(&backend, Side::Left);
        assert_eq!(left.len(), 2);
        for r in &left {
            assert_eq!((r.key_and_row(), r.time), ((key, b"a".as_slice()), Some(t)));
            assert_eq!((r.value.count, r.value.matches), (1, 1));
        }
        let right = probe(&backend, Side::Right);
        assert_eq!(right.len(), 1, "an updating side keeps its counted rows");
        assert_eq!(right[0].value.count, 3);
        // 2 arrivals, their 2 expiries, the right row and its expiry.
        assert_eq!(backend.len(), 6);
        assert_eq!(
            store
                .upgrade_counted_arrivals(&mut backend, &mut ids, "join", 0)
                .unwrap(),
            0
        );

        // The expiries moved with the rows: both arrivals expire.
        let mut due = store
            .take_expired(&mut backend, Side::Left, None, t + 10)
            .unwrap();
        due.sort();
        let mut arrivals: Vec<_> = left.iter().map(|r| (r.kg, r.entry.clone())).collect();
        arrivals.sort();
        assert_eq!(due, arrivals);
        // take_all reads both layouts.
        assert_eq!(store.take_all(&mut backend).unwrap().len(), 3);
    }

    #[test]
    fn corrupt_row_values_are_errors() {
        for bytes in [&[][..], &[0], &[4, 2], &[0, 2, 0], &[2, 2, 1], &[0, 0x80]] {
            assert!(RowValue::decode(bytes).is_err(), "{bytes:?}");
        }
    }
}
