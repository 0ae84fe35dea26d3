//! [`Leaf`]: a few kilobytes of key-value entries in one buffer, indexed in
//! key order.

use super::backend::KeyVisitor;
use super::segments::SegmentRef;
use super::varint;

/// Key-value entries (keys unique) in one buffer, as `[key length varint,
/// value length varint, key, value]`, in the order they were written, with
/// the offsets of the entries in key order on the side (a slotted page).
///
/// A leaf of the `hashmap` backend's ordered maps: a few bytes of overhead
/// per entry instead of a heap allocation each. A new entry is appended and
/// its offset inserted, so no entry moves; a deleted or rewritten entry
/// leaves garbage, compacted away once it is a quarter of the buffer. The
/// buffers grow by half (in steps of [`DATA_STEP`] bytes and
/// [`OFFSETS_STEP`] entries) and a split or compaction leaves them at the
/// step above their contents, so that a leaf wastes at most a third of its
/// memory while it fills, and little once full.
///
/// Searches skip the prefix that all its keys share (that of its first and
/// last keys) and compare the next 16 bytes as a number before comparing
/// bytes.
#[derive(Debug, Default, Clone)]
pub struct Leaf {
    data: Vec<u8>,
    /// Where each entry starts in `data`, in key order.
    offsets: Vec<u32>,
    /// Bytes of `data` that no entry uses.
    garbage: usize,
    /// The length of the common prefix of the first and last keys (so of
    /// all keys).
    prefix: usize,
    /// Where an incremental snapshot wrote exactly these entries; cleared
    /// by every change to them.
    segment: Option<SegmentRef>,
}

/// The buffers of a leaf have room for a multiple of this many bytes...
const DATA_STEP: usize = 512;
/// ... and of this many entries.
const OFFSETS_STEP: usize = 16;

/// Buffers grow by half their capacity up to these sizes (a leaf splits at
/// about 8 KB), then by what they need, in steps: a leaf filled entry by
/// entry is copied a few times, not once per step.
const DATA_GROWTH_LIMIT: usize = 8 * 1024;
const OFFSETS_GROWTH_LIMIT: usize = 512;

fn round_up(n: usize, step: usize) -> usize {
    n.div_ceil(step) * step
}

/// How much to reserve for `more` items beyond `len` in a buffer of `cap`.
fn growth(len: usize, cap: usize, more: usize, step: usize, limit: usize) -> usize {
    let grown = (cap + cap / 2).min(limit);
    round_up((len + more).max(grown), step) - len
}

/// The first 16 bytes of `key` (padded with zeros) as a big-endian number:
/// `head(a) < head(b)` implies `a < b`, and `head(a) > head(b)` implies
/// `a > b` (equal heads decide nothing).
pub fn head(key: &[u8]) -> u128 {
    match key.first_chunk::<16>() {
        Some(bytes) => u128::from_be_bytes(*bytes),
        None => {
            let mut bytes = [0u8; 16];
            bytes[..key.len()].copy_from_slice(key);
            u128::from_be_bytes(bytes)
        }
    }
}

impl Leaf {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Bytes of its entries' encodings (garbage left out).
    pub fn size(&self) -> usize {
        self.data.len() - self.garbage
    }

    /// Entry `i` as `(key, value)`.
    pub fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let (key, value_end) = self.spans(self.offsets[i] as usize);
        (&self.data[key.clone()], &self.data[key.end..value_end])
    }

    pub fn key(&self, i: usize) -> &[u8] {
        &self.data[self.spans(self.offsets[i] as usize).0]
    }

    pub fn last_key(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|i| self.key(i))
    }

    /// Where the key of the entry at `offset` is, and where its value ends.
    #[inline]
    fn spans(&self, offset: usize) -> (std::ops::Range<usize>, usize) {
        let mut pos = offset;
        let key_len = read_varint(&self.data, &mut pos);
        let value_len = read_varint(&self.data, &mut pos);
        (pos..pos + key_len, pos + key_len + value_len)
    }

    /// The encoded length of the entry at `offset`.
    fn entry_len(&self, offset: usize) -> usize {
        self.spans(offset).1 - offset
    }

    /// `Ok(i)` if entry `i` has `key`; `Err(i)` if `key` belongs at `i`.
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let Some(&first) = self.offsets.first() else {
            return Err(0);
        };
        // Every key has the prefix: a key without it is before or after all.
        let p = self.prefix;
        let first = &self.data[self.spans(first as usize).0][..p];
        match key[..p.min(key.len())].cmp(first) {
            std::cmp::Ordering::Less => return Err(0),
            std::cmp::Ordering::Greater => return Err(self.len()),
            std::cmp::Ordering::Equal => {}
        }
        let rest = &key[p..];
        let h = head(rest);
        self.offsets.binary_search_by(|&o| {
            let k = &self.data[self.spans(o as usize).0][p..];
            head(k).cmp(&h).then_with(|| k.cmp(rest))
        })
    }

    /// Where an incremental snapshot wrote the leaf's entries, if they have
    /// not changed since.
    pub fn segment(&self) -> Option<SegmentRef> {
        self.segment
    }

    /// Records that the leaf's entries, as they are, are at `segment`.
    pub fn set_segment(&mut self, segment: SegmentRef) {
        self.segment = Some(segment);
    }

    /// Writes the entries in key order, encoded as in the leaf (exactly
    /// [`size`](Self::size) bytes), for [`decode_entries`].
    pub fn write_entries(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        if self.garbage == 0 && self.offsets.is_sorted() {
            // Entries written in key order and never rewritten: as they lie.
            return out.write_all(&self.data);
        }
        for &o in &self.offsets {
            let o = o as usize;
            out.write_all(&self.data[o..o + self.entry_len(o)])?;
        }
        Ok(())
    }

    /// Inserts an entry at `i`, where its key belongs.
    pub fn insert(&mut self, i: usize, key: &[u8], value: &[u8]) {
        self.segment = None;
        debug_assert!(i == 0 || self.key(i - 1) < key, "keys in order");
        debug_assert!(i == self.len() || key < self.key(i), "keys in order");
        let at = self.append_entry(key, value);
        self.reserve(0, 1);
        self.offsets.insert(i, at as u32);
        if i == 0 || i + 1 == self.len() {
            self.update_prefix();
        }
    }

    /// Replaces the value of entry `i`; returns the length of the old one.
    pub fn set_value(&mut self, i: usize, value: &[u8]) -> usize {
        self.segment = None;
        let offset = self.offsets[i] as usize;
        let (key, value_end) = self.spans(offset);
        let old = key.end..value_end;
        let old_len = old.len();
        if old_len == value.len() {
            self.data[old].copy_from_slice(value);
            return old_len;
        }
        let key = self.data[key].to_vec();
        let at = self.append_entry(&key, value);
        self.offsets[i] = at as u32;
        self.garbage += value_end - offset;
        self.maybe_compact();
        old_len
    }

    /// Removes entry `i`; returns the length of its value.
    pub fn remove(&mut self, i: usize) -> usize {
        self.segment = None;
        let offset = self.offsets.remove(i) as usize;
        let (key, value_end) = self.spans(offset);
        self.garbage += value_end - offset;
        if i == 0 || i == self.len() {
            self.update_prefix();
        }
        self.maybe_compact();
        value_end - key.end
    }

    /// Appends an entry whose key is greater than every key in the leaf.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let i = self.len();
        self.insert(i, key, value);
    }

    /// Moves the entries from `at` on into a new leaf; both come out
    /// compacted.
    pub fn split_off(&mut self, at: usize) -> Leaf {
        let right = self.copy_of(at..self.len());
        *self = self.copy_of(0..at);
        right
    }

    /// Appends the entries of `other`, whose keys are all greater.
    pub fn append(&mut self, other: &Leaf) {
        self.segment = None;
        self.reserve(other.size(), other.len());
        for i in 0..other.len() {
            let (k, v) = other.entry(i);
            let at = self.append_entry(k, v);
            self.offsets.push(at as u32);
        }
        self.update_prefix();
    }

    /// A compacted leaf of entries `range`.
    fn copy_of(&self, range: std::ops::Range<usize>) -> Leaf {
        let bytes = self.offsets[range.clone()]
            .iter()
            .map(|&o| self.entry_len(o as usize))
            .sum();
        let mut leaf = Leaf::default();
        leaf.reserve(bytes, range.len());
        for &o in &self.offsets[range] {
            let o = o as usize;
            leaf.offsets.push(leaf.data.len() as u32);
            leaf.data.extend_from_slice(&self.data[o..o + self.entry_len(o)]);
        }
        leaf.update_prefix();
        leaf
    }

    /// Compacts the leaf once garbage is a quarter of it.
    fn maybe_compact(&mut self) {
        if self.garbage > DATA_STEP && self.garbage * 4 > self.data.len() {
            *self = self.copy_of(0..self.len());
        }
    }

    /// Appends an entry's encoding to `data`; returns where it starts.
    fn append_entry(&mut self, key: &[u8], value: &[u8]) -> usize {
        let n = encoded_len(key, value);
        if self.data.len() + n > self.data.capacity() && self.garbage * 4 > self.data.len() {
            // Compacting makes room without growing.
            *self = self.copy_of(0..self.len());
        }
        self.reserve(n, 1);
        let at = self.data.len();
        self.data.resize(at + n, 0);
        write_entry(&mut self.data[at..], key, value);
        at
    }

    fn update_prefix(&mut self) {
        self.prefix = match (self.offsets.first(), self.offsets.last()) {
            (Some(&a), Some(&b)) => {
                let (a, b) = (self.spans(a as usize).0, self.spans(b as usize).0);
                let (a, b) = (&self.data[a], &self.data[b]);
                a.iter().zip(b).take_while(|(x, y)| x == y).count()
            }
            _ => 0,
        };
    }

    /// Makes room for `bytes` more bytes and `entries` more entries: by
    /// half the capacity (up to a limit), in steps.
    fn reserve(&mut self, bytes: usize, entries: usize) {
        let (len, cap) = (self.data.len(), self.data.capacity());
        if len + bytes > cap {
            self.data
                .reserve_exact(growth(len, cap, bytes, DATA_STEP, DATA_GROWTH_LIMIT));
        }
        let (len, cap) = (self.offsets.len(), self.offsets.capacity());
        if len + entries > cap {
            self.offsets
                .reserve_exact(growth(len, cap, entries, OFFSETS_STEP, OFFSETS_GROWTH_LIMIT));
        }
    }
}

/// Calls `f(key, value)` for each entry of `bytes`, entries encoded as by
/// [`Leaf::write_entries`]; an error if they do not parse.
pub fn decode_entries(mut bytes: &[u8], f: &mut KeyVisitor<'_>) -> datafusion::common::Result<()> {
    while !bytes.is_empty() {
        let lengths = varint::read(&mut bytes).zip(varint::read(&mut bytes));
        let Some((key_len, value_len)) = lengths
            .map(|(k, v)| (k as usize, v as usize))
            .filter(|(k, v)| k.checked_add(*v).is_some_and(|n| n <= bytes.len()))
        else {
            return Err(datafusion::common::DataFusionError::Execution(
                "corrupt keyed state segment: an entry runs past its end".into(),
            ));
        };
        let (key, rest) = bytes.split_at(key_len);
        let (value, rest) = rest.split_at(value_len);
        f(key, value)?;
        bytes = rest;
    }
    Ok(())
}

/// The size of an entry's encoding.
pub fn encoded_len(key: &[u8], value: &[u8]) -> usize {
    varint::len(key.len() as u64) + varint::len(value.len() as u64) + key.len() + value.len()
}

fn write_entry(buf: &mut [u8], key: &[u8], value: &[u8]) {
    let mut pos = varint::write(buf, key.len() as u64);
    pos += varint::write(&mut buf[pos..], value.len() as u64);
    buf[pos..pos + key.len()].copy_from_slice(key);
    buf[pos + key.len()..pos + key.len() + value.len()].copy_from_slice(value);
}

/// Reads a length at `pos` of a leaf's data and moves `pos` past it.
#[inline]
fn read_varint(buf: &[u8], pos: &mut usize) -> usize {
    let mut rest = &buf[*pos..];
    let v = varint::read(&mut rest).expect("the leaf wrote a whole varint");
    *pos = buf.len() - rest.len();
    v as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(leaf: &Leaf) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..leaf.len())
            .map(|i| {
                let (k, v) = leaf.entry(i);
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    #[test]
    fn sorted_entries_written_in_place() {
        let long = vec![7u8; 300];
        let mut leaf = Leaf::default();
        leaf.push(b"b", b"2");
        leaf.insert(0, b"a", b"");
        leaf.insert(2, b"d", &long);
        leaf.insert(2, b"c", b"3");
        assert_eq!((leaf.search(b"c"), leaf.search(b"bb")), (Ok(2), Err(2)));
        assert_eq!(leaf.set_value(2, b"x"), 1);
        assert_eq!(leaf.set_value(1, &long), 1);
        assert_eq!(leaf.set_value(1, b"22"), 300);
        assert_eq!(leaf.remove(0), 0);
        assert_eq!(
            entries(&leaf),
            vec![
                (b"b".to_vec(), b"22".to_vec()),
                (b"c".to_vec(), b"x".to_vec()),
                (b"d".to_vec(), long.clone()),
            ]
        );
        assert_eq!(leaf.size(), 5 + 4 + 304);
        let right = leaf.split_off(1);
        assert_eq!((leaf.len(), right.len()), (1, 2));
        assert_eq!((leaf.size(), leaf.garbage), (5, 0));
        assert_eq!(right.entry(1), (&b"d"[..], &long[..]));
        leaf.append(&right);
        assert_eq!(leaf.len(), 3);
        assert_eq!(leaf.last_key(), Some(&b"d"[..]));
    }

    #[test]
    fn searches_skip_the_shared_prefix() {
        let key = |i: u32| [&b"shared prefix longer than a head: "[..], &i.to_be_bytes()].concat();
        let mut leaf = Leaf::default();
        for i in (10..200).step_by(10) {
            leaf.push(&key(i), b"v");
        }
        assert_eq!(leaf.prefix, key(0).len() - 1);
        assert_eq!(leaf.search(&key(50)), Ok(4));
        assert_eq!(leaf.search(&key(55)), Err(5));
        assert_eq!(leaf.search(&key(5)), Err(0));
        assert_eq!(leaf.search(&key(500)), Err(19));
        assert_eq!(leaf.search(b"a"), Err(0));
        assert_eq!(leaf.search(b"z"), Err(19));
        assert_eq!(leaf.search(b"shared"), Err(0));
        // Garbage is compacted away.
        for _ in 0..100 {
            leaf.set_value(3, &[1; 40]);
            leaf.set_value(3, b"v");
        }
        assert!(leaf.garbage * 4 <= leaf.data.len().max(4 * DATA_STEP));
        assert_eq!(leaf.search(&key(40)), Ok(3));
        assert_eq!(leaf.entry(3).1, b"v");
    }
}
