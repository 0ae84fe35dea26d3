//! The hash table of [`super::join_index::JoinIndex`]: from a key hash to
//! the newest row of each input with that hash.

/// One slot: a key hash and, per input, 1 + its newest row with that hash
/// (0: none). Sixteen bytes, four to a cache line.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: u64,
    heads: [u32; 2],
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.heads == [0, 0]
    }
}

/// Fewest slots a table has.
const MIN_SLOTS: usize = 1024;

/// An open-addressing table (linear probing) from a key hash to the newest
/// row of each input of a join with that hash.
///
/// A join looks up every row of a batch, and in a table larger than the
/// cache every lookup misses it. Here the hash and the heads sit together in
/// one slot, so a lookup usually reads one cache line, and
/// [`prefetch`](Self::prefetch) lets the caller fetch the lines of the rows
/// it will look up next while it handles the current one (hashbrown keeps
/// its control bytes apart from its entries, two misses per lookup, and has
/// no way to fetch ahead).
///
/// # Invariants
///
/// A slot is empty exactly when both its heads are 0; every entry has a
/// distinct hash and sits at the end of the run of occupied slots that
/// starts at its hash's home slot (`hash & mask`); at most half the slots
/// are occupied, so runs stay short. The hashes are the keys' hashes, well
/// mixed: the table does not hash them again.
#[derive(Debug)]
pub struct HeadTable {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for HeadTable {
    fn default() -> Self {
        HeadTable {
            slots: vec![Slot::default(); MIN_SLOTS],
            len: 0,
        }
    }
}

impl HeadTable {
    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Asks the CPU to start loading the slot `hash` starts probing at: a
    /// hint, with no effect on the table's contents.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot = self.slots.as_ptr().wrapping_add(hash as usize & self.mask());
            // SAFETY: a prefetch never faults and reads nothing the program
            // sees; the address is within the slots anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast::<i8>());
            }
        }
    }

    /// The heads of `hash` ([0, 0] if it has no entry).
    pub fn get(&self, hash: u64) -> [u32; 2] {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.is_empty() {
                return [0, 0];
            }
            if slot.hash == hash {
                return slot.heads;
            }
            i = (i + 1) & mask;
        }
    }

    /// Makes `head` (not 0) the head of input `side` for `hash`; returns the
    /// heads it had before ([0, 0] if it had no entry).
    pub fn replace(&mut self, hash: u64, side: usize, head: u32) -> [u32; 2] {
        debug_assert_ne!(head, 0, "a head names a row");
        if (self.len + 1) * 2 > self.slots.len() {
            self.resize(self.slots.len() * 2);
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.is_empty() {
                slot.hash = hash;
                slot.heads[side] = head;
                self.len += 1;
                return [0, 0];
            }
            if slot.hash == hash {
                let before = slot.heads;
                slot.heads[side] = head;
                return before;
            }
            i = (i + 1) & mask;
        }
    }

    /// Keeps the entries for which `keep` returns true, after it changed
    /// their heads as it likes (an entry whose heads it sets to [0, 0] goes).
    ///
    /// In place, in two sequential passes over the slots: a rebuild would
    /// write every kept entry to a random slot of a newly allocated table
    /// (a cache miss and, for a large table, page faults each). The table
    /// shrinks only when at most an eighth of it is left in use.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut [u32; 2]) -> bool) {
        for slot in &mut self.slots {
            if !slot.is_empty() && (!keep(&mut slot.heads) || slot.is_empty()) {
                *slot = Slot::default();
                self.len -= 1;
            }
        }
        if self.slots.len() > MIN_SLOTS && self.len * 8 <= self.slots.len() {
            self.resize((self.len * 2).next_power_of_two().max(MIN_SLOTS));
            return;
        }
        self.close_gaps();
    }

    /// Restores the invariant after entries were emptied: an entry whose
    /// run now has an empty slot between its home and itself moves to the
    /// first empty slot from its home.
    ///
    /// The sweep starts after an empty slot and goes once around, so it is a
    /// pass over a plain array: an entry only moves back to a slot already
    /// swept, and a swept slot is only ever filled again, so the runs behind
    /// the sweep stay whole. Entries whose run wraps past the starting slot
    /// are set aside and inserted anew at the end.
    fn close_gaps(&mut self) {
        let Some(start) = self.slots.iter().position(Slot::is_empty) else {
            return;
        };
        let mask = self.mask();
        let mut wrapped = Vec::new();
        for step in 1..self.slots.len() {
            let i = (start + step) & mask;
            if self.slots[i].is_empty() {
                continue;
            }
            let slot = std::mem::take(&mut self.slots[i]);
            let home = slot.hash as usize & mask;
            // How far the entry is from its home, and from the start.
            if (i.wrapping_sub(home) & mask) >= step {
                self.len -= 1;
                wrapped.push(slot);
                continue;
            }
            let mut j = home;
            while !self.slots[j].is_empty() {
                j = (j + 1) & mask;
            }
            self.slots[j] = slot;
        }
        for slot in wrapped {
            self.insert_new(slot);
        }
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); slots]);
        self.len = 0;
        for slot in old.into_iter().filter(|s| !s.is_empty()) {
            self.insert_new(slot);
        }
    }

    /// Puts `slot`, whose hash has no entry, in the first empty slot of its
    /// run (the table has room).
    fn insert_new(&mut self, slot: Slot) {
        let mask = self.mask();
        let mut i = slot.hash as usize & mask;
        while !self.slots[i].is_empty() {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn entries_survive_growth_collisions_and_retain() {
        let mut table = HeadTable::default();
        let mut expected: HashMap<u64, [u32; 2]> = HashMap::new();
        // Hashes that share home slots (multiples of the table sizes) and
        // enough of them to grow the table several times.
        let hashes: Vec<u64> = (0..5000u64).map(|i| (i % 700) * 4096 + i / 700).collect();
        for (n, &h) in hashes.iter().enumerate() {
            let side = n % 2;
            let head = n as u32 + 1;
            let before = table.replace(h, side, head);
            let entry = expected.entry(h).or_insert([0, 0]);
            assert_eq!(before, *entry, "hash {h}");
            entry[side] = head;
        }
        assert_eq!(table.len(), expected.len());
        assert!(table.slots.len() >= 2 * expected.len());
        for (&h, &heads) in &expected {
            assert_eq!(table.get(h), heads);
        }
        assert_eq!(table.get(u64::MAX), [0, 0]);

        // Drop the left heads below 2500, and every entry left without a head.
        table.retain(|heads| {
            if heads[0] < 2500 {
                heads[0] = 0;
            }
            true
        });
        for heads in expected.values_mut() {
            if heads[0] < 2500 {
                heads[0] = 0;
            }
        }
        expected.retain(|_, heads| *heads != [0, 0]);
        assert_eq!(table.len(), expected.len());
        for (&h, &heads) in &expected {
            assert_eq!(table.get(h), heads);
        }
        for &h in &hashes {
            if !expected.contains_key(&h) {
                assert_eq!(table.get(h), [0, 0]);
            }
        }
        table.prefetch(12345);
    }

    #[test]
    fn retain_closes_gaps_in_runs_that_wrap_around() {
        // Homes crowded around the table's last slot, so runs wrap past slot
        // 0; rounds of inserts and retains, against a HashMap.
        let mut table = HeadTable::default();
        let mut expected: HashMap<u64, [u32; 2]> = HashMap::new();
        let mut random = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let mut head = 0u32;
        for round in 0..200 {
            for _ in 0..next() % 300 {
                let r = next();
                let home = (MIN_SLOTS as u64 - 24 + r % 48) % MIN_SLOTS as u64;
                let hash = (r >> 32) << 20 | home;
                head += 1;
                let side = (r >> 16) as usize % 2;
                let before = table.replace(hash, side, head);
                let entry = expected.entry(hash).or_insert([0, 0]);
                assert_eq!(before, *entry, "round {round}");
                entry[side] = head;
            }
            let cut = head.saturating_sub(150 + (next() % 200) as u32);
            let drop_old = |heads: &mut [u32; 2]| {
                for h in heads.iter_mut() {
                    if *h <= cut {
                        *h = 0;
                    }
                }
                heads[0] % 7 != 1
            };
            table.retain(drop_old);
            expected.retain(|_, heads| drop_old(heads) && *heads != [0, 0]);
            assert_eq!(table.len(), expected.len(), "round {round}");
            for (&hash, &heads) in &expected {
                assert_eq!(table.get(hash), heads, "round {round}");
            }
        }
        assert!(table.slots.len() <= 2 * MIN_SLOTS);

        // Mostly empty: the table shrinks, and keeps what is left.
        let mut grown = HeadTable::default();
        for n in 0..5000u64 {
            grown.replace(n << 20 | n, 0, 1 + n as u32);
        }
        let big = grown.slots.len();
        grown.retain(|heads| heads[0] <= 10);
        assert!(grown.slots.len() < big);
        assert_eq!(grown.len(), 10);
        assert_eq!(grown.get(9 << 20 | 9), [10, 0]);
        assert_eq!(grown.get(10 << 20 | 10), [0, 0]);
    }
}
