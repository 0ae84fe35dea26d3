//! Checkpointing: the coordinator's decision logic (pure), checkpoint storage,
//! the `_metadata` format, and where snapshots go.

pub mod coordinator;
pub mod storage;
pub mod targets;
