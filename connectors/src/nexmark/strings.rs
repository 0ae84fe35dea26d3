//! Precomputed string pools of the Nexmark generator, built once per process
//! from a fixed seed, so that generating an event appends slices of them
//! instead of allocating.
//!
//! Beam generates each random string character by character; weir instead
//! takes a random slice of a large random text (same alphabet, same length
//! distribution), and picks emails, credit cards and channel URLs from pools
//! of 10,000 — far more than any Nexmark query distinguishes.

use std::sync::OnceLock;

use crate::random::{RowRng, stream_key};

/// Beam's first names.
pub const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
/// Beam's last names.
pub const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
/// Beam's US states.
pub const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
/// Beam's US cities.
pub const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
/// Flink nexmark's hot channels.
pub const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Number of (cold) channels in the channel cache.
pub const CHANNELS_NUMBER: usize = 10_000;
/// Size of the email and credit-card pools.
const POOL_SIZE: usize = 10_000;
/// Size of the random texts.
const TEXT_LEN: usize = 1 << 16;
/// Beam's shortest random string.
pub const MIN_STRING_LENGTH: usize = 3;

/// The pools; see [`pools`].
#[derive(Debug)]
pub struct Pools {
    /// Lowercase letters with a space about every 13 characters (Beam's `nextString`).
    pub spaced: String,
    /// Lowercase letters only (Beam's `nextExactString`, for `extra`).
    pub letters: String,
    /// `FIRST_NAMES x LAST_NAMES`, as "First Last".
    pub names: Vec<String>,
    /// `<3..7 letters>@<3..5 letters>.com`.
    pub emails: Vec<String>,
    /// `dddd dddd dddd dddd`.
    pub credit_cards: Vec<String>,
    /// Channel names: the 4 hot ones, then `channel-0 .. channel-9999`.
    pub channels: Vec<String>,
    /// The URL of each channel (same indexes as `channels`).
    pub urls: Vec<String>,
}

impl Pools {
    /// A random slice of `spaced` of length `3..max_len` with surrounding
    /// spaces trimmed (Beam's `nextString(maxLength)`).
    #[inline]
    pub fn next_string(&self, rng: &mut RowRng, max_len: usize) -> &str {
        let len = MIN_STRING_LENGTH + rng.index(max_len - MIN_STRING_LENGTH);
        let start = rng.index(self.spaced.len() - len);
        self.spaced[start..start + len].trim_matches(' ')
    }

    /// A random slice of `letters` of exactly `len` characters (at most the
    /// text's length).
    #[inline]
    pub fn exact_string(&self, rng: &mut RowRng, len: usize) -> &str {
        let len = len.min(self.letters.len());
        let start = rng.index(self.letters.len() - len + 1);
        &self.letters[start..start + len]
    }
}

fn random_text(rng: &mut RowRng, len: usize, special: Option<u8>) -> String {
    (0..len)
        .map(|_| match special {
            Some(s) if rng.below(13) == 0 => s as char,
            _ => (b'a' + rng.below(26) as u8) as char,
        })
        .collect()
}

/// Beam's `nextString(random, maxLength, special)`, allocating (pool building only).
fn owned_string(rng: &mut RowRng, max_len: usize, special: u8) -> String {
    let len = MIN_STRING_LENGTH + rng.index(max_len - MIN_STRING_LENGTH);
    random_text(rng, len, Some(special))
        .trim_matches(special as char)
        .to_string()
}

/// Flink nexmark's `getBaseUrl`.
fn base_url(rng: &mut RowRng) -> String {
    format!(
        "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
        owned_string(rng, 5, b'_'),
        owned_string(rng, 5, b'_'),
        owned_string(rng, 5, b'_')
    )
}

/// The process-wide pools (built on first use, in a few milliseconds).
pub fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let key = stream_key(0x004E_4558_4D41_524B, 0);
        let mut rng = RowRng::new(key, 0);
        let spaced = random_text(&mut rng, TEXT_LEN, Some(b' '));
        let letters = random_text(&mut rng, TEXT_LEN, None);
        let names = FIRST_NAMES
            .iter()
            .flat_map(|f| LAST_NAMES.iter().map(move |l| format!("{f} {l}")))
            .collect();
        let emails = (0..POOL_SIZE)
            .map(|_| {
                format!(
                    "{}@{}.com",
                    owned_string(&mut rng, 7, b' '),
                    owned_string(&mut rng, 5, b' ')
                )
            })
            .collect();
        let credit_cards = (0..POOL_SIZE)
            .map(|_| {
                let g: Vec<u64> = (0..4).map(|_| rng.below(10_000)).collect();
                format!("{:04} {:04} {:04} {:04}", g[0], g[1], g[2], g[3])
            })
            .collect();
        let mut channels: Vec<String> = HOT_CHANNELS.iter().map(|c| c.to_string()).collect();
        let mut urls: Vec<String> = HOT_CHANNELS.iter().map(|_| base_url(&mut rng)).collect();
        for i in 0..CHANNELS_NUMBER {
            channels.push(format!("channel-{i}"));
            let mut url = base_url(&mut rng);
            if rng.below(10) > 0 {
                url.push_str(&format!(
                    "&channel_id={}",
                    (i as i32).reverse_bits().unsigned_abs()
                ));
            }
            urls.push(url);
        }
        Pools {
            spaced,
            letters,
            names,
            emails,
            credit_cards,
            channels,
            urls,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_have_the_expected_shapes() {
        let p = pools();
        assert_eq!(p.names.len(), 99);
        assert_eq!(p.channels.len(), 4 + CHANNELS_NUMBER);
        assert_eq!(p.urls.len(), p.channels.len());
        assert!(p.emails.iter().all(|e| e.ends_with(".com") && e.contains('@')));
        assert!(p.credit_cards.iter().all(|c| c.len() == 19));
        assert!(p.letters.bytes().all(|b| b.is_ascii_lowercase()));
        let mut rng = RowRng::new(1, 1);
        for _ in 0..100 {
            let s = p.next_string(&mut rng, 20);
            assert!(s.len() < 20 && !s.starts_with(' ') && !s.ends_with(' '));
            assert_eq!(p.exact_string(&mut rng, 70).len(), 70);
        }
    }
}
