//! weir's SQL front end: Flink-style SQL text -> [`WeirStatement`]s.
//!
//! ```
//! use weir_sql::parser::{parse_statements, WeirStatement};
//!
//! let statements = parse_statements(
//!     "CREATE TABLE bids (item STRING, price BIGINT, ts TIMESTAMP(3),
//!                         WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
//!        WITH ('connector' = 'datagen');
//!      SELECT window_start, COUNT(*)
//!      FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
//!      GROUP BY window_start, window_end;",
//! )
//! .unwrap();
//! assert!(matches!(statements[0], WeirStatement::CreateTable(_)));
//! let WeirStatement::Query { query, window_tvfs } = &statements[1] else { panic!() };
//! assert_eq!(window_tvfs[0].placeholder, "__weir_tvf_0");
//! assert!(query.to_string().contains("FROM __weir_tvf_0"));
//! ```
//!
//! # How it works
//!
//! 1. The whole input is tokenized once by sqlparser's tokenizer ([`GenericDialect`], see
//!    `lexer::DIALECT` for why), so every token knows its line and column in the *script*.
//! 2. The tokens are cut into statements at top-level `;` (strings, quoted identifiers and
//!    comments are single tokens, so a `;` inside them never splits).
//! 3. Each statement is dispatched on its first word. Flink syntax that sqlparser does not
//!    accept is handled on the tokens, keeping their locations: plural interval units and
//!    Flink type spellings are rewritten (`rewrite`), window TVFs are parsed and replaced by
//!    placeholder table names (`window`), `CREATE TABLE`'s Flink elements are taken out of
//!    the column list (`create_table`), client commands are read with sqlparser's parser
//!    primitives (`commands`). Everything else (queries, expressions, data types, INSERT,
//!    CREATE VIEW) is sqlparser's own parser.
//! 4. Every error becomes a [`SqlError`] with the line and column of the offending token.
//!
//! Nothing here panics on any input; a fuzz-style test feeds thousands of mangled
//! statements to [`parse_statements`].
//!
//! [`GenericDialect`]: datafusion::sql::sqlparser::dialect::GenericDialect

mod commands;
mod create_table;
mod error;
mod lexer;
mod rewrite;
mod statement;
mod window;

#[cfg(test)]
mod tests;

pub use create_table::{ComputedColumn, CreateTableStatement, MetadataColumn, WatermarkClause};
pub use error::SqlError;
pub use lexer::{is_complete, split_statements};
pub use statement::{DropKind, WeirStatement};
pub use window::{WINDOW_TVF_PLACEHOLDER_PREFIX, WindowKind, WindowTvf};

use datafusion::sql::sqlparser::tokenizer::TokenWithSpan;

/// Parses a script of `;`-separated statements. Empty statements (only whitespace or
/// comments) are skipped, so empty input gives an empty vector. The first malformed statement
/// stops parsing with a [`SqlError`] whose position is relative to the start of `sql`.
pub fn parse_statements(sql: &str) -> Result<Vec<WeirStatement>, SqlError> {
    let statements = lexer::split(lexer::tokenize(sql)?);
    parse_all(sql, statements)
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_statement(sql: &str) -> Result<WeirStatement, SqlError> {
    let mut statements = lexer::split(lexer::tokenize(sql)?);
    if statements.len() > 1 {
        return Err(SqlError::at(
            lexer::start_location(&statements[1]),
            "expected a single statement, found more than one",
        ));
    }
    let Some(statement) = statements.pop() else {
        return Err(SqlError {
            message: "no SQL statement given".to_string(),
            line: None,
            column: None,
        });
    };
    parse_all(sql, vec![statement]).map(|mut parsed| parsed.remove(0))
}

/// Statements nested deeper than this many brackets are parsed on a thread with
/// [`DEEP_STACK_SIZE`] bytes of stack.
const SHALLOW_NESTING: usize = 8;

/// Stack for parsing deeply nested statements. sqlparser recurses once per nesting level with
/// large frames (tens of KiB in debug builds), so a few dozen levels can exhaust the 2 MiB
/// stack of a test or tokio worker thread; only touched pages of this stack are allocated.
const DEEP_STACK_SIZE: usize = 64 * 1024 * 1024;

fn parse_all(sql: &str, statements: Vec<Vec<TokenWithSpan>>) -> Result<Vec<WeirStatement>, SqlError> {
    let mut deepest = 0;
    for statement in &statements {
        deepest = deepest.max(lexer::check_nesting(statement)?);
    }
    let parse = || {
        let source = lexer::LineIndex::new(sql);
        statements
            .into_iter()
            .map(|statement| statement::parse_one(statement, &source, 0))
            .collect()
    };
    if deepest <= SHALLOW_NESTING {
        return parse();
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("weir-sql-parser".to_string())
            .stack_size(DEEP_STACK_SIZE)
            .spawn_scoped(scope, parse)
            .map_err(|e| SqlError {
                message: format!("cannot parse a deeply nested statement: {e}"),
                line: None,
                column: None,
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(SqlError {
                    message: "internal error: the SQL parser panicked".to_string(),
                    line: None,
                    column: None,
                })
            })
    })
}
