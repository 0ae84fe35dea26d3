//! An [`OperatorFactory`] from a closure.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;

use crate::graph::OperatorFactory;
use crate::operator::Operator;

type MakeOperator = dyn Fn(usize, usize) -> Result<Box<dyn Operator>> + Send + Sync;

/// Creates each subtask's operator by calling a closure with `(subtask, parallelism)`.
#[derive(Clone)]
pub struct FnOperatorFactory {
    name: String,
    make: Arc<MakeOperator>,
}

impl FnOperatorFactory {
    pub fn new(
        name: impl Into<String>,
        make: impl Fn(usize, usize) -> Result<Box<dyn Operator>> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FnOperatorFactory {
            name: name.into(),
            make: Arc::new(make),
        })
    }
}

impl fmt::Debug for FnOperatorFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl OperatorFactory for FnOperatorFactory {
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Operator>> {
        (self.make)(subtask, parallelism)
    }
}
