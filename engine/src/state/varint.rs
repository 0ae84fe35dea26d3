//! LEB128 varints: the lengths in a [`Leaf`](super::leaf::Leaf)'s entries
//! and the counts in join row values, small numbers in one byte.

/// The encoded length of `v`, 1 to 10 bytes.
pub fn len(v: u64) -> usize {
    (u64::BITS - (v | 1).leading_zeros()).div_ceil(7) as usize
}

/// Writes `v` at the start of `buf` (which must have [`len`]`(v)` bytes),
/// returning its length.
pub fn write(buf: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    n + 1
}

/// Reads a varint from the front of `bytes` and advances past it; `None`
/// if `bytes` ends inside one or it runs longer than 10 bytes.
#[inline]
pub fn read(bytes: &mut &[u8]) -> Option<u64> {
    // Most lengths and counts are under 128: one byte.
    if let Some((&first, rest)) = bytes.split_first()
        && first < 0x80
    {
        *bytes = rest;
        return Some(u64::from(first));
    }
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_cut_varints() {
        assert_eq!((len(0), len(127), len(128), len(u64::MAX)), (1, 1, 2, 10));
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = [0; 12];
            let n = write(&mut buf, v);
            assert_eq!(n, len(v));
            buf[n] = 0xAA;
            let mut rest = &buf[..];
            assert_eq!(read(&mut rest), Some(v));
            assert_eq!(rest[0], 0xAA, "advanced past the varint only");
            if n > 1 {
                assert_eq!(read(&mut &buf[..n - 1]), None, "cut short");
            }
        }
    }
}
