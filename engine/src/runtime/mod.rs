//! Running a job graph: tasks, chains, input gates, the job supervisor.

mod chain;
mod input_gate;
mod job;
mod task;

pub use job::{CHANNEL_CAPACITY, JobHandle, JobStatus, start_job};
