//! weir's error type: what went wrong, and where in the SQL when known.

use std::fmt;

use datafusion::common::DataFusionError;
use weir_sql::parser::SqlError;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The SQL text does not parse.
    Syntax,
    /// The statement parses but is invalid (unknown table, column, option, type...).
    Plan,
    /// A job failed while running.
    Execution,
}

/// An error from the engine, with the SQL position when the parser or the
/// planner knows it. Its `Display` is what the REPL prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// 1-based line in the submitted text.
    pub line: Option<u64>,
    /// 1-based column in the submitted text.
    pub column: Option<u64>,
}

/// Results of the engine API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn plan(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Plan,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Execution,
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Syntax => "SQL error",
            ErrorKind::Plan => "Invalid statement",
            ErrorKind::Execution => "Job failed",
        };
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{what} at line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "{what} at line {l}: {}", self.message),
            _ => write!(f, "{what}: {}", self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        Error {
            kind: ErrorKind::Syntax,
            message: e.message,
            line: e.line,
            column: e.column,
        }
    }
}

/// Strips DataFusion's "Error during planning: " style prefixes, keeping the cause.
fn clean(e: &DataFusionError) -> String {
    let text = match e {
        // DataFusion's optimizer names its rule; the user wants the cause.
        DataFusionError::Context(ctx, inner) if ctx.starts_with("Optimizer rule") => return clean(inner),
        DataFusionError::Context(ctx, inner) => return format!("{ctx}: {}", clean(inner)),
        DataFusionError::Plan(m) | DataFusionError::Execution(m) | DataFusionError::Internal(m) => m.clone(),
        DataFusionError::SchemaError(..) | DataFusionError::ArrowError(..) | DataFusionError::SQL(..) => {
            e.to_string()
        }
        DataFusionError::Diagnostic(_, inner) => return clean(inner),
        DataFusionError::Collection(errs) => {
            return errs.first().map(clean).unwrap_or_else(|| e.to_string());
        }
        other => other.to_string(),
    };
    let text = tidy(&text);
    tidy(&text)
}

/// Removes DataFusion's prefixes and its "file a bug report" boilerplate,
/// which is noise for a user whose statement is at fault.
fn tidy(text: &str) -> String {
    let mut t = text;
    for prefix in [
        "Error during planning: ",
        "Internal error: ",
        "This feature is not implemented: ",
    ] {
        t = t.trim_start_matches(prefix);
    }
    let t = t
        .split(" This issue was likely caused by a bug")
        .next()
        .unwrap_or(t);
    let t = t.split(".\nThis issue was likely caused").next().unwrap_or(t);
    t.trim_end().to_string()
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        let (line, column) = match e.diagnostic().and_then(|d| d.span) {
            Some(span) if span.start.line > 0 => (Some(span.start.line), Some(span.start.column)),
            _ => (None, None),
        };
        // Running jobs report failures as `Execution` errors (see `JobHandle::wait`);
        // anything else comes from planning a statement.
        let kind = match e.find_root() {
            DataFusionError::Execution(_) => ErrorKind::Execution,
            _ => ErrorKind::Plan,
        };
        Error {
            kind,
            message: clean(&e),
            line,
            column,
        }
    }
}
