//! Checkpointing: the coordinator's decision logic (pure), with the runtime
//! wiring, state backends and storage to follow.

pub mod coordinator;
