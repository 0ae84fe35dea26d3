//! The canonical keyed-state file: every entry of a subtask's snapshot, in
//! key group order. Written by the `hashmap` backend for checkpoints and by
//! every backend for savepoints; read by every backend.
//!
//! Format, version 1 (all integers little-endian):
//!
//! ```text
//! "WEIRKV01"
//! entry*            key_group: u16, key_len: u32, key, value_len: u32, value
//! footer            entry_count: u64, "WEIRKVOK"
//! ```
//!
//! The footer makes a truncated file detectable even without `_metadata`'s size.

use datafusion::common::{DataFusionError, Result};

const MAGIC: &[u8; 8] = b"WEIRKV01";
const END: &[u8; 8] = b"WEIRKVOK";

fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt keyed state file: {what}"))
}

/// Writes a file of `entries` (`(key_group, key, value)`, in any order the
/// caller wants preserved) to `out` (e.g. a buffered file, so that a big
/// snapshot is never one buffer in memory).
pub fn write_kv_entries<'a>(
    out: &mut dyn std::io::Write,
    entries: impl Iterator<Item = (usize, &'a [u8], &'a [u8])>,
) -> std::io::Result<()> {
    let mut file = KvFileWriter::new(out)?;
    for (kg, k, v) in entries {
        file.entry(kg, k, v)?;
    }
    file.finish().map(|_| ())
}

/// Writes the file of [`write_kv_entries`] entry by entry, for entries that
/// are not at hand as one iterator (e.g. read from a RocksDB iterator).
/// Lifecycle: [`new`](Self::new) writes the header, [`entry`](Self::entry)
/// each entry, [`finish`](Self::finish) the footer; a file not finished is
/// truncated and rejected by [`read_kv_file`].
pub struct KvFileWriter<'w> {
    out: &'w mut dyn std::io::Write,
    count: u64,
}

impl<'w> KvFileWriter<'w> {
    pub fn new(out: &'w mut dyn std::io::Write) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(KvFileWriter { out, count: 0 })
    }

    /// Writes one entry.
    pub fn entry(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let out = &mut self.out;
        out.write_all(&(key_group as u16).to_le_bytes())?;
        out.write_all(&(key.len() as u32).to_le_bytes())?;
        out.write_all(key)?;
        out.write_all(&(value.len() as u32).to_le_bytes())?;
        out.write_all(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the footer; returns the number of entries written.
    pub fn finish(self) -> std::io::Result<u64> {
        self.out.write_all(&self.count.to_le_bytes())?;
        self.out.write_all(END)?;
        Ok(self.count)
    }
}

/// Parses a file written by [`write_kv_entries`], calling `f` for each entry.
/// Fails, before calling `f` at all, on a file that is truncated or corrupt.
pub fn read_kv_file(data: &[u8], f: &mut super::EntryVisitor<'_>) -> Result<()> {
    if data.len() < 24 || &data[..8] != MAGIC {
        return Err(corrupt("bad header"));
    }
    if &data[data.len() - 8..] != END {
        return Err(corrupt("missing footer (truncated?)"));
    }
    let body = &data[8..data.len() - 16];
    let expected = u64::from_le_bytes(data[data.len() - 16..data.len() - 8].try_into().expect("8 bytes"));
    // Validate the framing first, so a corrupt file is never half-applied.
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = body
            .get(*pos..*pos + n)
            .ok_or_else(|| corrupt("entry past the end"))?;
        *pos += n;
        Ok(s)
    };
    while pos < body.len() {
        let kg = u16::from_le_bytes(take(&mut pos, 2)?.try_into().expect("2 bytes")) as usize;
        let klen = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4 bytes")) as usize;
        let k = take(&mut pos, klen)?;
        let vlen = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4 bytes")) as usize;
        let v = take(&mut pos, vlen)?;
        entries.push((kg, k, v));
    }
    if entries.len() as u64 != expected {
        return Err(corrupt("entry count does not match the footer"));
    }
    for (kg, k, v) in entries {
        f(kg, k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation_is_detected() {
        let entries: Vec<(usize, Vec<u8>, Vec<u8>)> =
            vec![(0, b"a".to_vec(), b"1".to_vec()), (5, b"bb".to_vec(), vec![])];
        let mut data = Vec::new();
        write_kv_entries(&mut data, entries.iter().map(|(g, k, v)| (*g, &k[..], &v[..]))).unwrap();
        let mut got = Vec::new();
        read_kv_file(&data, &mut |g, k, v| {
            got.push((g, k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, entries);
        for cut in [1, 9, data.len() - 1] {
            let mut called = false;
            let r = read_kv_file(&data[..data.len() - cut], &mut |_, _, _| {
                called = true;
                Ok(())
            });
            assert!(r.is_err(), "cut {cut}");
            assert!(!called);
        }
    }
}
