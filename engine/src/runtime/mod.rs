//! Running a job graph: tasks, chains, input gates, the job driver
//! (supervision, checkpoint coordination, restarts).

mod build;
mod chain;
mod driver;
mod events;
mod input_gate;
mod job;
pub mod restart;
mod task;

pub use build::CHANNEL_CAPACITY;
pub use driver::failpoints;
pub use job::{JobHandle, JobStatus, start_job, start_job_with};
