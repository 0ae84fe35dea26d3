//! Checkpointing: the coordinator's decision logic (pure), checkpoint storage,
//! the `_metadata` format, where snapshots go, and restoring them.

pub mod config;
pub mod coordinator;
mod direct_file;
pub mod metadata;
pub mod restore;
pub mod stats;
pub mod storage;
pub mod targets;

/// The directory, inside a job's checkpoint directory, where the job records
/// the savepoints it took (one file per savepoint id, holding its location),
/// so that an automatic resume never goes back behind a savepoint whose
/// output was committed.
pub const SAVEPOINT_POINTERS: &str = "savepoints";

/// The savepoint id a pointer file of [`SAVEPOINT_POINTERS`] is named by
/// (`path` is its path or name); `None` for any other file.
pub fn savepoint_pointer_id(path: &str) -> Option<crate::message::CheckpointId> {
    path.rsplit('/').next()?.parse().ok()
}

/// The directory of job `job_name` inside the checkpoint directory: the name
/// with every character other than ASCII letters, digits, `-` and `_`
/// replaced by `_` (also how other names become file names, e.g. operator ids
/// in local state directories).
pub fn job_dir_name(job_name: &str) -> String {
    job_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
