//! Tests of the public parser API: malformed input (message and position), every statement
//! kind, and a no-panic fuzz over mangled statements.

mod errors;
mod fuzz;
mod statements;

use super::{SqlError, WeirStatement, parse_statements};

/// Parses `sql`, which must fail, and returns the error.
#[track_caller]
fn error(sql: &str) -> SqlError {
    match parse_statements(sql) {
        Ok(statements) => panic!("expected an error for {sql:?}, parsed {statements:#?}"),
        Err(e) => e,
    }
}

/// Asserts that `sql` fails at `line`:`column` with a message containing `message`.
#[track_caller]
fn assert_error(sql: &str, line: u64, column: u64, message: &str) {
    let e = error(sql);
    assert!(
        e.message.contains(message),
        "for {sql:?}: message {:?} does not contain {message:?}",
        e.message
    );
    assert_eq!(
        (e.line, e.column),
        (Some(line), Some(column)),
        "wrong position for {sql:?}: {e}"
    );
}

/// Parses `sql`, which must be exactly one valid statement.
#[track_caller]
fn one(sql: &str) -> WeirStatement {
    let mut statements = parse_statements(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    assert_eq!(statements.len(), 1, "{sql:?}");
    statements.remove(0)
}
