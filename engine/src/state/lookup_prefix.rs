//! Lookup prefixes: the key prefix under which an operator keeps every entry
//! of one lookup key (e.g. a join's rows of one join key), in a layout a
//! backend can recognize in any key, so that it may index them (RocksDB:
//! prefix bloom filters, which let a probe skip every file that has no entry
//! of the key).
//!
//! A lookup prefix is `[tag, sub, len (u32, big-endian), key (len bytes)]`.
//! Its length is a function of its first [`LOOKUP_HEADER_BYTES`] bytes, so
//! [`lookup_prefix_len`] of every key that starts with a lookup prefix `P`
//! is `P`'s length: an index of the lookup prefixes of keys finds exactly the
//! keys that start with `P`, whatever the layout of other keys (read as a
//! lookup prefix, any other key just yields some prefix of itself, or none).

/// Bytes before the key in a lookup prefix: tag, sub-tag, length.
pub const LOOKUP_HEADER_BYTES: usize = 6;

/// Appends the lookup prefix of `key` under `tag` and `sub` to `buf`.
pub fn write_lookup_prefix(buf: &mut Vec<u8>, tag: u8, sub: u8, key: &[u8]) {
    buf.reserve(LOOKUP_HEADER_BYTES + key.len());
    buf.push(tag);
    buf.push(sub);
    buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
    buf.extend_from_slice(key);
}

/// The length of the lookup prefix `key` starts with, read from its header;
/// `None` if `key` is shorter than its header says.
pub fn lookup_prefix_len(key: &[u8]) -> Option<usize> {
    let len = key.get(2..LOOKUP_HEADER_BYTES)?;
    let len = LOOKUP_HEADER_BYTES + u32::from_be_bytes(len.try_into().ok()?) as usize;
    (key.len() >= len).then_some(len)
}

/// Whether `prefix` is a whole lookup prefix (nothing after its key).
pub fn is_lookup_prefix(prefix: &[u8]) -> bool {
    lookup_prefix_len(prefix) == Some(prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_that_starts_with_a_lookup_prefix_yields_it() {
        let mut p = Vec::new();
        write_lookup_prefix(&mut p, b'R', 1, b"key");
        assert_eq!(p.len(), LOOKUP_HEADER_BYTES + 3);
        assert_eq!(lookup_prefix_len(&p), Some(p.len()));
        assert!(is_lookup_prefix(&p));
        assert_eq!(&p[LOOKUP_HEADER_BYTES..], b"key");
        let mut entry = p.clone();
        entry.extend_from_slice(b"row and more");
        assert_eq!(lookup_prefix_len(&entry), Some(p.len()));
        assert!(!is_lookup_prefix(&entry));
        // Shorter than the header says, or than a header: none.
        assert_eq!(lookup_prefix_len(&p[..p.len() - 1]), None);
        assert_eq!(lookup_prefix_len(&p[..4]), None);
        assert_eq!(lookup_prefix_len(&[0, 0, 0xff, 0xff, 0xff, 0xff, 1]), None);
    }
}
