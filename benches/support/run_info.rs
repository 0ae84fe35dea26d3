//! What a benchmark reports about a run besides its timings: the commit it
//! measured and the checkpoints of its job. Shared by the bench binaries
//! (`#[path]` module).

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// The short commit of the repository at `dir`, `-dirty` if tracked files
/// changed, or `unknown` outside a git checkout.
pub fn git_commit(dir: &str) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{commit}-dirty") } else { commit }
        }
        _ => "unknown".to_string(),
    }
}

/// The completed checkpoints of a job: how many, their median and longest
/// duration, and the largest state one of them wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointSummary {
    pub completed: u64,
    pub median_ms: f64,
    pub max_ms: f64,
    pub max_bytes: u64,
}

impl CheckpointSummary {
    pub fn of(job: &weir::JobHandle) -> Self {
        let completed: Vec<_> = job
            .checkpoints()
            .into_iter()
            .filter(|c| c.status.name() == "COMPLETED")
            .collect();
        let mut durations: Vec<f64> = completed
            .iter()
            .filter_map(|c| c.duration.map(|d| d.as_secs_f64() * 1000.0))
            .collect();
        durations.sort_by(f64::total_cmp);
        CheckpointSummary {
            completed: completed.len() as u64,
            median_ms: durations.get(durations.len() / 2).copied().unwrap_or(0.0),
            max_ms: durations.last().copied().unwrap_or(0.0),
            max_bytes: completed.iter().map(|c| c.state_size).max().unwrap_or(0),
        }
    }
}
