//! [`KeyGroupMap`]: the ordered key-value map of one key group of the
//! `hashmap` backend.

use std::collections::{BTreeMap, btree_map};
use std::ops::Bound;
use std::sync::Arc;

use super::leaf::{Leaf, encoded_len};
use super::segments::SegmentRef;
use super::separator::{Probe, Separator, SeparatorKey};

/// A leaf splits once its entries take more than this many bytes: big
/// enough that per-leaf costs (a tree slot, a separator, an allocation) are
/// spread over many small entries, small enough that what copies a whole
/// leaf (a split, a compaction, the first write to it after a snapshot)
/// stays cheap.
const LEAF_BYTES: usize = 8000;

/// A leaf left smaller than this by a deletion takes in its successor, if
/// both fit in one leaf.
const MIN_LEAF_BYTES: usize = LEAF_BYTES / 4;

/// An entry encoded in more than this many bytes is big: it gets a leaf of
/// its own where it can (see [`KeyGroupMap::put_big`]).
const BIG_ENTRY_BYTES: usize = LEAF_BYTES / 2;

/// The leaves, by separator.
type Leaves = BTreeMap<Separator, Arc<Leaf>>;

/// An ordered map of byte keys to byte values: a B+tree whose leaves
/// ([`Leaf`]s) pack their entries into one buffer each, under a `BTreeMap`
/// from each leaf's [`Separator`] (the least key it may hold) to the leaf.
///
/// Versus a map with an allocation per entry (a `BTreeMap<Vec<u8>,
/// Vec<u8>>`), the many small entries of join state take a fraction of the
/// memory and are freed a few thousand bytes at a time.
///
/// Cloning is O(1) and a clone never sees later writes: the tree and each
/// leaf are behind `Arc`s, copied on their first write while shared (so a
/// snapshot is a clone, and a write after it copies the tree of separators
/// and the leaves it touches).
///
/// Invariants: unless the map is empty, the first separator is the empty
/// key; each leaf is non-empty (except possibly the first) and holds the
/// keys from its separator (inclusive) to the next separator (exclusive).
#[derive(Debug, Clone, Default)]
pub struct KeyGroupMap {
    leaves: Arc<Leaves>,
}

/// What a write found.
enum Found {
    /// The key is at this index of the leaf.
    At(usize),
    /// The key is absent; it belongs at this index of the leaf.
    Absent(usize),
}

/// The leaves with separators up to `key`: the last one holds `key` if
/// present.
fn up_to<'a>(leaves: &'a Leaves, key: &[u8]) -> btree_map::Range<'a, Separator, Arc<Leaf>> {
    let probe = Probe::new(key);
    let probe: &dyn SeparatorKey = &probe;
    leaves.range::<dyn SeparatorKey, _>((Bound::Unbounded, Bound::Included(probe)))
}

impl KeyGroupMap {
    /// The leaf that holds `key` if present, with its separator.
    fn leaf_of(&self, key: &[u8]) -> Option<(&Separator, &Leaf)> {
        up_to(&self.leaves, key)
            .next_back()
            .map(|(sep, leaf)| (sep, &**leaf))
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let (_, leaf) = self.leaf_of(key)?;
        leaf.search(key).ok().map(|i| leaf.entry(i).1)
    }

    /// Calls `f` on the leaf that holds or would hold `key`, writable, with
    /// where the key is in it; then splits the leaf if `f` made it too big.
    fn write<R>(&mut self, key: &[u8], f: impl FnOnce(&mut Leaf, Found) -> R) -> R {
        let leaves = Arc::make_mut(&mut self.leaves);
        if leaves.is_empty() {
            leaves.insert(Separator::new(&[]), Arc::new(Leaf::default()));
        }
        let probe = Probe::new(key);
        let probe: &dyn SeparatorKey = &probe;
        let (_, leaf) = leaves
            .range_mut::<dyn SeparatorKey, _>((Bound::Unbounded, Bound::Included(probe)))
            .next_back()
            .expect("the first separator is the least key");
        let leaf = Arc::make_mut(leaf);
        let (found, appended) = match leaf.search(key) {
            Ok(i) => (Found::At(i), false),
            Err(i) => (Found::Absent(i), i == leaf.len()),
        };
        let result = f(leaf, found);
        if leaf.size() > LEAF_BYTES && leaf.len() > 1 {
            // Increasing keys fill leaves up: the last entry starts a new leaf.
            let at = if appended && leaf.last_key() == Some(key) {
                leaf.len() - 1
            } else {
                leaf.len() / 2
            };
            let right = leaf.split_off(at);
            leaves.insert(Separator::new(right.key(0)), Arc::new(right));
        }
        result
    }

    /// Writes `value` under `key`; returns the length of the value it
    /// replaces, if the key was present.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Option<usize> {
        if encoded_len(key, value) > BIG_ENTRY_BYTES
            && let Some(previous) = self.put_big(key, value)
        {
            return previous;
        }
        self.write(key, |leaf, found| match found {
            Found::At(i) => Some(leaf.set_value(i, value)),
            Found::Absent(i) => {
                leaf.insert(i, key, value);
                None
            }
        })
    }

    /// Writes a big entry (e.g. a window's rows) as a leaf of its own when
    /// that needs no other leaf written: when it replaces the only entry of
    /// a leaf, or comes after every key of the leaf it belongs in. Then no
    /// neighbour is copied (as a leaf shared with a snapshot is on its first
    /// write) and the value is copied once, where an insert into a leaf and
    /// the split it causes would copy it and the leaf's other entries again.
    /// Returns `None` if it did not apply, else what [`put`](Self::put)
    /// returns.
    fn put_big(&mut self, key: &[u8], value: &[u8]) -> Option<Option<usize>> {
        let (sep, leaf) = self.leaf_of(key)?;
        let own = || {
            let mut leaf = Leaf::default();
            leaf.push(key, value);
            Arc::new(leaf)
        };
        match leaf.search(key) {
            Ok(0) if leaf.len() == 1 => {
                let previous = leaf.entry(0).1.len();
                let sep = sep.clone();
                *Arc::make_mut(&mut self.leaves)
                    .get_mut(&sep)
                    .expect("found above") = own();
                Some(Some(previous))
            }
            Err(i) if i == leaf.len() && i > 0 => {
                Arc::make_mut(&mut self.leaves).insert(Separator::new(key), own());
                Some(None)
            }
            _ => None,
        }
    }

    /// Writes `value` under `key` if the key is absent (returning `None`);
    /// otherwise returns the present value and writes nothing.
    pub fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        self.write(key, |leaf, found| match found {
            Found::At(i) => Some(leaf.entry(i).1.to_vec()),
            Found::Absent(i) => {
                leaf.insert(i, key, value);
                None
            }
        })
    }

    /// Deletes `key`; returns the length of its value, if it was present.
    pub fn delete(&mut self, key: &[u8]) -> Option<usize> {
        let (sep, leaf) = self.leaf_of(key)?;
        let i = leaf.search(key).ok()?;
        let only = (leaf.len() == 1).then(|| leaf.entry(0).1.len());
        let sep = sep.clone();
        let leaves = Arc::make_mut(&mut self.leaves);
        if let Some(previous) = only {
            // Its only entry (often a big one): drop the leaf rather than
            // copy it to remove the entry, if a snapshot shares it.
            if sep.is_least() {
                leaves.insert(sep, Arc::new(Leaf::default()));
            } else {
                leaves.remove(&sep);
            }
            return Some(previous);
        }
        let leaf = Arc::make_mut(leaves.get_mut(&sep).expect("found above"));
        let previous = leaf.remove(i);
        if leaf.size() < MIN_LEAF_BYTES {
            Self::shrink(leaves, sep);
        }
        Some(previous)
    }

    /// After a deletion left leaf `sep` small: drops it if empty (its range
    /// goes to its predecessor), else takes in its successor if they fit in
    /// one leaf.
    fn shrink(leaves: &mut Leaves, sep: Separator) {
        if leaves.get(&sep).is_some_and(|l| l.is_empty()) && !sep.is_least() {
            leaves.remove(&sep);
            return;
        }
        let Some((next_sep, next)) = leaves
            .range::<Separator, _>((Bound::Excluded(&sep), Bound::Unbounded))
            .next()
            .map(|(s, l)| (s.clone(), l.clone()))
        else {
            return;
        };
        let leaf = Arc::make_mut(leaves.get_mut(&sep).expect("a leaf"));
        if leaf.size() + next.size() <= LEAF_BYTES {
            leaf.append(&next);
            leaves.remove(&next_sep);
        }
    }

    /// The entries with keys in `(start, end)`, in key order.
    pub fn range<'a, 'k>(&'a self, start: Bound<&[u8]>, end: Bound<&'k [u8]>) -> Entries<'a, 'k> {
        let from = match start {
            Bound::Included(k) | Bound::Excluded(k) => self.leaf_of(k).map(|(sep, leaf)| {
                let i = match (leaf.search(k), start) {
                    (Ok(i), Bound::Excluded(_)) => i + 1,
                    (Ok(i) | Err(i), _) => i,
                };
                (sep, i)
            }),
            Bound::Unbounded => None,
        };
        let (leaves, next) = match from {
            Some((sep, i)) => (
                self.leaves
                    .range::<Separator, _>((Bound::Included(sep), Bound::Unbounded)),
                i,
            ),
            None => (self.leaves.range::<Separator, _>(..), 0),
        };
        Entries {
            leaves,
            leaf: None,
            next,
            end,
        }
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Entries<'_, 'static> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// The leaves, in key order (the first may be empty).
    pub fn leaves(&self) -> impl Iterator<Item = &Leaf> {
        self.leaves.values().map(|l| &**l)
    }

    /// Sets the segment of every leaf for which `assign` gives one, in key
    /// order; `needs(leaf)` says first whether `assign` would (so a map
    /// none of whose leaves needs one is not copied if a snapshot shares it).
    pub fn assign_segments(
        &mut self,
        needs: impl Fn(&Leaf) -> bool,
        mut assign: impl FnMut(&Leaf) -> SegmentRef,
    ) {
        if !self.leaves.values().any(|l| needs(l)) {
            return;
        }
        for leaf in Arc::make_mut(&mut self.leaves).values_mut() {
            if needs(leaf) {
                let segment = assign(leaf);
                Arc::make_mut(leaf).set_segment(segment);
            }
        }
    }

    /// Adds an entry read from a snapshot: appended to the last leaf when it
    /// comes after every key (snapshots list keys in order), written as any
    /// other otherwise. Returns the length of the value it replaces.
    pub fn load(&mut self, key: &[u8], value: &[u8]) -> Option<usize> {
        let leaves = Arc::make_mut(&mut self.leaves);
        if let Some(mut last) = leaves.last_entry()
            && last.get().last_key().is_some_and(|k| k < key)
        {
            if last.get().size() + encoded_len(key, value) <= LEAF_BYTES {
                Arc::make_mut(last.get_mut()).push(key, value);
            } else {
                let mut next = Leaf::default();
                next.push(key, value);
                leaves.insert(Separator::new(key), Arc::new(next));
            }
            return None;
        }
        self.put(key, value)
    }
}

/// The entries of a [`KeyGroupMap`] in a key range, in key order.
pub struct Entries<'a, 'k> {
    leaves: btree_map::Range<'a, Separator, Arc<Leaf>>,
    leaf: Option<&'a Leaf>,
    /// The next entry of `leaf` (of the first leaf, before it is taken).
    next: usize,
    end: Bound<&'k [u8]>,
}

impl<'a> Iterator for Entries<'a, '_> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.leaf {
                Some(leaf) if self.next < leaf.len() => {
                    let (k, v) = leaf.entry(self.next);
                    let within = match self.end {
                        Bound::Included(end) => k <= end,
                        Bound::Excluded(end) => k < end,
                        Bound::Unbounded => true,
                    };
                    if !within {
                        self.leaves = btree_map::Range::default();
                        self.leaf = None;
                        return None;
                    }
                    self.next += 1;
                    return Some((k, v));
                }
                Some(_) => {
                    self.leaf = Some(self.leaves.next()?.1);
                    self.next = 0;
                }
                None => self.leaf = Some(self.leaves.next()?.1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Keys longer than a [`head`], whose heads often tie.
    fn key(k: u64) -> Vec<u8> {
        [&[7u8; 13][..], &k.to_be_bytes()].concat()
    }

    fn contents(m: &KeyGroupMap) -> Vec<(Vec<u8>, Vec<u8>)> {
        m.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    fn check_invariants(m: &KeyGroupMap) {
        let seps: Vec<&[u8]> = m.leaves.keys().map(|s| s.key()).collect();
        if let Some(first) = seps.first() {
            assert!(first.is_empty(), "the first separator is the empty key");
        }
        for (i, leaf) in m.leaves.values().enumerate() {
            assert!(i == 0 || !leaf.is_empty(), "only the first leaf may be empty");
            for j in 0..leaf.len() {
                assert!(leaf.key(j) >= seps[i]);
                if let Some(next) = seps.get(i + 1) {
                    assert!(leaf.key(j) < *next);
                }
            }
        }
    }

    /// Random writes, deletes and snapshots against a `BTreeMap` model,
    /// across many leaf splits and merges.
    #[test]
    fn behaves_as_an_ordered_map() {
        type Model = BTreeMap<Vec<u8>, Vec<u8>>;
        let mut m = KeyGroupMap::default();
        let mut model = Model::new();
        let mut snapshots: Vec<(KeyGroupMap, Model)> = Vec::new();
        let mut seed = 7u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..30_000u64 {
            // Mostly increasing keys (appends), some anywhere.
            let k = if rand(3) == 0 { rand(5000) } else { step / 3 };
            let key = key(k);
            match rand(10) {
                0..=4 => {
                    // Now and then a big value, which gets a leaf of its own.
                    let len = if rand(25) == 0 {
                        BIG_ENTRY_BYTES as u64 + rand(LEAF_BYTES as u64)
                    } else {
                        rand(40)
                    };
                    let value = vec![step as u8; len as usize];
                    let previous = model.insert(key.clone(), value.clone()).map(|v| v.len());
                    assert_eq!(m.put(&key, &value), previous);
                }
                5 | 6 => {
                    let value = vec![1u8; rand(3) as usize];
                    assert_eq!(m.put_if_absent(&key, &value), model.get(&key).cloned());
                    model.entry(key).or_insert(value);
                }
                _ => assert_eq!(m.delete(&key), model.remove(&key).map(|v| v.len())),
            }
            if step % 3000 == 0 {
                check_invariants(&m);
                snapshots.push((m.clone(), model.clone()));
            }
        }
        check_invariants(&m);
        assert!(m.leaves.len() > 10, "many leaves");
        let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(contents(&m), want);
        for (k, v) in &model {
            assert_eq!(m.get(k), Some(&v[..]));
        }
        for (snap, model) in &snapshots {
            let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(contents(snap), want, "a snapshot keeps what it saw");
        }
        for (lo, hi) in [(100u64, 2000u64), (0, 0), (4999, 20_000), (7, 8)] {
            let (lo, hi) = (key(lo), key(hi));
            for (start, end) in [
                (Bound::Excluded(&lo[..]), Bound::Included(&hi[..])),
                (Bound::Included(&lo[..]), Bound::Excluded(&hi[..])),
                (Bound::Included(&lo[..]), Bound::Unbounded),
            ] {
                let ranged: Vec<_> = m
                    .range(start, end)
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                let want: Vec<_> = model
                    .range::<[u8], _>((start, end))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(ranged, want);
            }
        }
        for (k, _) in model {
            m.delete(&k);
        }
        check_invariants(&m);
        assert_eq!((m.iter().count(), m.leaves.len()), (0, 1));
    }

    #[test]
    fn big_entries_get_leaves_of_their_own_that_snapshots_share() {
        let big = |b: u8| vec![b; LEAF_BYTES];
        let mut m = KeyGroupMap::default();
        m.put(&key(1), b"small");
        for k in 2..6 {
            assert_eq!(m.put(&key(k), &big(k as u8)), None);
        }
        check_invariants(&m);
        assert_eq!(m.leaves.len(), 5, "the small entry's leaf and one per big entry");
        let snapshot = m.clone();
        assert_eq!(m.put(&key(6), &big(6)), None);
        assert_eq!(m.put(&key(3), &big(33)), Some(LEAF_BYTES));
        assert_eq!(m.delete(&key(4)), Some(LEAF_BYTES));
        check_invariants(&m);
        let leaf_of = |m: &KeyGroupMap, k: u64| m.leaves[&Separator::new(&key(k))].clone();
        assert!(Arc::ptr_eq(&leaf_of(&m, 5), &leaf_of(&snapshot, 5)), "not copied");
        assert!(Arc::ptr_eq(&leaf_of(&m, 2), &leaf_of(&snapshot, 2)), "not copied");
        assert_eq!(m.get(&key(3)), Some(&big(33)[..]));
        assert_eq!(snapshot.get(&key(3)), Some(&big(3)[..]));
        assert_eq!(snapshot.get(&key(4)), Some(&big(4)[..]));
        assert_eq!(m.get(&key(4)), None);
        assert_eq!(contents(&m).len(), 5);
    }

    #[test]
    fn loads_keys_in_order_into_full_leaves() {
        let mut m = KeyGroupMap::default();
        for i in 0..3000u32 {
            assert_eq!(m.load(&i.to_be_bytes(), b"v"), None);
        }
        check_invariants(&m);
        let per_leaf = LEAF_BYTES / encoded_len(&[0; 4], b"v");
        assert_eq!(m.leaves.len(), 3000usize.div_ceil(per_leaf), "full leaves");
        assert_eq!(m.load(&5u32.to_be_bytes(), b"w"), Some(1));
        assert_eq!(m.get(&5u32.to_be_bytes()), Some(&b"w"[..]));
        assert_eq!(m.iter().count(), 3000);
    }
}
