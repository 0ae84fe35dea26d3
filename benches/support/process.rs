//! What a benchmark reads about its own process from `/proc`: cores, CPU
//! time, memory. Shared by the bench binaries (`#[path]` module).

#![allow(dead_code)]

/// Cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Clock ticks per second of `/proc/*/stat` times: `AT_CLKTCK` from the aux
/// vector (what `sysconf(_SC_CLK_TCK)` returns), 100 if unreadable.
pub fn clock_ticks_per_second() -> f64 {
    const AT_CLKTCK: u64 = 17;
    if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
        for pair in auxv.chunks_exact(16) {
            let key = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
            let value = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
            if key == AT_CLKTCK && value > 0 {
                return value as f64;
            }
        }
    }
    100.0
}

/// User + system CPU time of this process (all threads, live and exited), in seconds.
pub fn process_cpu_seconds(ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is parenthesised and may hold spaces: split after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second)
}

/// A `kB` line of `/proc/self/status` (`VmHWM`, `VmRSS`), in MiB.
pub fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    let kb: f64 = line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
