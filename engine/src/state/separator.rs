//! [`Separator`]: how a [`KeyGroupMap`](super::key_group_map::KeyGroupMap)
//! finds the leaf of a key, comparing a number before any bytes.

use std::borrow::Borrow;
use std::cmp::Ordering;

use super::leaf::head;

/// The least key a leaf may hold, with the key's [`head`]: ordered as the
/// key, but two separators (or a separator and a [`Probe`]) are compared by
/// their heads first, inline in the tree's nodes, and by their bytes (behind
/// a pointer) only when the heads tie.
#[derive(Debug, Clone)]
pub struct Separator {
    head: u128,
    key: Box<[u8]>,
}

impl Separator {
    pub fn new(key: &[u8]) -> Self {
        Separator {
            head: head(key),
            key: key.into(),
        }
    }

    /// Whether it is the empty key, the least of all.
    pub fn is_least(&self) -> bool {
        self.key.is_empty()
    }
}

/// A key compared as separators are: a [`Separator`], or a [`Probe`]
/// borrowing the key looked up. A tree keyed by separators is searched
/// through `dyn SeparatorKey`, so that a lookup allocates nothing.
pub trait SeparatorKey {
    fn head(&self) -> u128;
    fn key(&self) -> &[u8];
}

/// A key looked up in a tree of [`Separator`]s.
pub struct Probe<'a> {
    head: u128,
    key: &'a [u8],
}

impl<'a> Probe<'a> {
    pub fn new(key: &'a [u8]) -> Self {
        Probe { head: head(key), key }
    }
}

impl SeparatorKey for Separator {
    fn head(&self) -> u128 {
        self.head
    }

    fn key(&self) -> &[u8] {
        &self.key
    }
}

impl SeparatorKey for Probe<'_> {
    fn head(&self) -> u128 {
        self.head
    }

    fn key(&self) -> &[u8] {
        self.key
    }
}

impl Ord for dyn SeparatorKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        // Heads order as their keys, unless they tie.
        self.head()
            .cmp(&other.head())
            .then_with(|| self.key().cmp(other.key()))
    }
}

impl PartialOrd for dyn SeparatorKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn SeparatorKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn SeparatorKey + '_ {}

impl<'a> Borrow<dyn SeparatorKey + 'a> for Separator {
    fn borrow(&self) -> &(dyn SeparatorKey + 'a) {
        self
    }
}

impl Ord for Separator {
    fn cmp(&self, other: &Self) -> Ordering {
        (self as &dyn SeparatorKey).cmp(other as &dyn SeparatorKey)
    }
}

impl PartialOrd for Separator {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Separator {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Separator {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::Bound;

    use super::*;

    #[test]
    fn a_tree_of_separators_is_searched_with_borrowed_keys() {
        let long = |last: u8| [&[b'm'; 20][..], &[last]].concat();
        let mut tree = BTreeMap::new();
        for (i, key) in [b"".to_vec(), b"b".to_vec(), long(1), long(5), b"z".to_vec()]
            .into_iter()
            .enumerate()
        {
            tree.insert(Separator::new(&key), i);
        }
        let floor = |key: &[u8]| {
            let probe = Probe::new(key);
            let probe: &dyn SeparatorKey = &probe;
            tree.range::<dyn SeparatorKey, _>((Bound::Unbounded, Bound::Included(probe)))
                .next_back()
                .map(|(_, i)| *i)
        };
        assert_eq!(floor(b""), Some(0));
        assert_eq!(floor(b"a"), Some(0));
        assert_eq!(floor(b"b"), Some(1));
        assert_eq!(floor(&long(0)), Some(1));
        assert_eq!(floor(&long(1)), Some(2));
        assert_eq!(floor(&long(4)), Some(2));
        assert_eq!(floor(&long(200)), Some(3));
        assert_eq!(floor(b"zz"), Some(4));
        assert!(tree.keys().next().unwrap().is_least());
    }
}
