//! Event times of the tests' generated rows: row r happens at
//! 2024-01-01 00:00:00 + r ms, written as Flink's SQL timestamp text.

// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

/// 2024-01-01T00:00:00Z in epoch milliseconds.
pub const BASE_MS: i64 = 1_704_067_200_000;

/// `ms` (on 2024-01-01) as `2024-01-01 HH:MM:SS.mmm`.
pub fn timestamp_text(ms: i64) -> String {
    let secs = ms / 1000 - BASE_MS / 1000;
    format!(
        "2024-01-01 {:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

/// Epoch milliseconds of a timestamp on 2024-01-01 (`SQL` or `ISO-8601` text).
pub fn parse_ms(text: &str) -> i64 {
    let time = text.split([' ', 'T']).nth(1).expect("date and time");
    let mut parts = time.split(':');
    let h: i64 = parts.next().unwrap().parse().unwrap();
    let m: i64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().trim_end_matches('Z').parse().unwrap();
    BASE_MS + (h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as i64
}

/// The index of the 1-second window of a `window_start` text.
pub fn window_index(window_start: &str) -> i64 {
    (parse_ms(window_start) - BASE_MS) / 1000
}
