//! Event times as key bytes that sort in time order.

use crate::message::EventTime;

/// An event time as 8 key bytes whose byte order is the times' order
/// (big-endian, sign bit flipped), for keys and namespaces scanned in time
/// order.
pub fn time_key(t: EventTime) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The event time of 8 bytes made by [`time_key`]; `None` if not 8 bytes.
pub fn time_of_key(bytes: &[u8]) -> Option<EventTime> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_time_order() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(time_key(pair[0]) < time_key(pair[1]));
        }
        for t in times {
            assert_eq!(time_of_key(&time_key(t)), Some(t));
        }
        assert_eq!(time_of_key(&[0; 7]), None);
    }
}
