//! [`WeirStatement`] and the dispatch of one statement's tokens to the right parser.
//!
//! Queries, `INSERT` and `CREATE VIEW` are parsed by sqlparser (after the Flink rewrites and
//! the window-TVF extraction); `CREATE TABLE` by [`create_table`](super::create_table); the
//! weir/Flink client commands (`SET`, `SHOW JOBS`, `STOP JOB`, ...) by
//! [`commands`](super::commands).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::Visit;
use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, Ident, ObjectName, ObjectNamePart, Query, Statement, TableObject, visit_relations,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::commands;
use super::create_table::{CreateTableStatement, parse_create_table};
use super::error::SqlError;
use super::lexer::{LineIndex, is_keyword, is_word, next_significant, parser, start_location};
use super::rewrite::flink_to_sqlparser;
use super::window::{ExtractedTvf, WINDOW_TVF_PLACEHOLDER_PREFIX, WindowTvf, extract_window_tvfs};

/// One parsed statement.
// `CreateTable` is large; statements are parsed once per submission, so the size does not
// matter and the variant stays unboxed as agreed with the planner.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum WeirStatement {
    /// CREATE TABLE with Flink's extras pulled out (see [`CreateTableStatement`]).
    CreateTable(CreateTableStatement),
    /// `CREATE [OR REPLACE] [TEMPORARY] VIEW [IF NOT EXISTS] name [(cols)] AS query`.
    CreateView {
        name: ObjectName,
        columns: Vec<Ident>,
        query: Box<Query>,
        or_replace: bool,
        if_not_exists: bool,
        temporary: bool,
        /// Window TVFs of `query`, replaced there by their placeholders.
        window_tvfs: Vec<WindowTvf>,
    },
    /// `DROP [TEMPORARY] TABLE|VIEW [IF EXISTS] name [, name ...]`.
    Drop {
        kind: DropKind,
        names: Vec<ObjectName>,
        if_exists: bool,
    },
    /// `SET 'key' = 'value'` (also unquoted dotted keys and values); `SET` alone lists the
    /// configuration (both `None`).
    Set {
        key: Option<String>,
        value: Option<String>,
    },
    /// `RESET` (all) or `RESET 'key'`.
    Reset {
        key: Option<String>,
    },
    ShowTables,
    ShowViews,
    ShowJobs,
    ShowFunctions,
    /// `SHOW CHECKPOINTS [FOR JOB 'id']`: checkpoint and savepoint history.
    ShowCheckpoints {
        job_id: Option<String>,
    },
    /// `TRIGGER SAVEPOINT 'id' [TO 'dir']` (`savepoint = true`) or
    /// `TRIGGER CHECKPOINT 'id'`: waits until it completes.
    Trigger {
        job_id: String,
        savepoint: bool,
        directory: Option<String>,
    },
    /// `DESCRIBE t` / `DESC t`.
    Describe {
        name: ObjectName,
    },
    /// `EXPLAIN [PLAN FOR] <query or INSERT>`; `query` is a [`WeirStatement::Query`] or a
    /// [`WeirStatement::Insert`] (with its own window TVFs).
    Explain {
        query: Box<WeirStatement>,
    },
    /// `STOP JOB 'id' [WITH SAVEPOINT [TO 'dir']]` (Flink), or `CANCEL JOB 'id'` (`cancel = true`).
    StopJob {
        job_id: String,
        with_savepoint: bool,
        /// `TO 'dir'`: where the savepoint goes (else `execution.checkpointing.savepoint-dir`).
        savepoint_dir: Option<String>,
        cancel: bool,
    },
    /// `INSERT INTO sink [(cols)] <query>`.
    Insert {
        table: ObjectName,
        columns: Vec<Ident>,
        query: Box<Query>,
        /// Window TVFs of `query`, replaced there by their placeholders.
        window_tvfs: Vec<WindowTvf>,
    },
    /// A SELECT / WITH / VALUES query.
    Query {
        query: Box<Query>,
        /// Window TVFs of `query`, replaced there by their placeholders.
        window_tvfs: Vec<WindowTvf>,
    },
    /// `HELP`.
    Help,
}

/// What `DROP` drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropKind {
    Table,
    View,
}

/// How deeply `EXPLAIN EXPLAIN ...` may nest (only one level is meaningful).
const MAX_EXPLAIN_DEPTH: usize = 1;

const STATEMENTS: &str = "SELECT, INSERT INTO, CREATE TABLE, CREATE VIEW, DROP, SET, RESET, \
                          SHOW, DESCRIBE, EXPLAIN, STOP JOB, CANCEL JOB, TRIGGER SAVEPOINT, TRIGGER CHECKPOINT or HELP";

/// Parses one statement: `tokens` has no `;` and ends with a located EOF token.
pub(crate) fn parse_one(
    tokens: Vec<TokenWithSpan>,
    source: &LineIndex<'_>,
    depth: usize,
) -> Result<WeirStatement, SqlError> {
    let Some(first) = next_significant(&tokens, 0).map(|i| tokens[i].clone()) else {
        return Err(SqlError::at(start_location(&tokens), "empty statement"));
    };
    match leading_word(&first.token).as_str() {
        "SELECT" | "WITH" | "VALUES" | "(" => parse_query(tokens),
        "INSERT" => parse_insert(tokens),
        "CREATE" => parse_create(tokens),
        "EXPLAIN" => parse_explain(tokens, source, depth),
        "DROP" => commands::parse_drop(tokens),
        "SET" => commands::parse_set(tokens, source),
        "RESET" => commands::parse_reset(tokens, source),
        "SHOW" => commands::parse_show(tokens),
        "DESCRIBE" | "DESC" => commands::parse_describe(tokens),
        "STOP" | "CANCEL" => commands::parse_stop_job(tokens),
        "TRIGGER" => commands::parse_trigger(tokens),
        "HELP" => commands::parse_help(tokens),
        _ => Err(SqlError::expected(&format!("a statement ({STATEMENTS})"), &first)),
    }
}

/// The upper-cased unquoted word (or `(`) a statement starts with.
fn leading_word(token: &Token) -> String {
    match token {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        Token::LParen => "(".to_string(),
        _ => String::new(),
    }
}

/// Fails unless the parser is at the end of the statement.
pub(crate) fn expect_end(p: &Parser<'_>) -> Result<(), SqlError> {
    let next = p.peek_token_ref();
    if next.token == Token::EOF {
        return Ok(());
    }
    let mut error = SqlError::expected("end of statement", next);
    let starts_statement = matches!(
        leading_word(&next.token).as_str(),
        "SELECT"
            | "INSERT"
            | "CREATE"
            | "DROP"
            | "SET"
            | "RESET"
            | "SHOW"
            | "DESCRIBE"
            | "EXPLAIN"
            | "STOP"
            | "CANCEL"
            | "TRIGGER"
            | "HELP"
    );
    if starts_statement {
        error.message.push_str(" (missing ';' before it?)");
    }
    Err(error)
}

/// Tokens ready for sqlparser: Flink spellings rewritten, window TVFs replaced by placeholders.
fn prepare(mut tokens: Vec<TokenWithSpan>) -> Result<(Parser<'static>, Vec<ExtractedTvf>), SqlError> {
    flink_to_sqlparser(&mut tokens, false)?;
    let tvfs = extract_window_tvfs(&mut tokens)?;
    Ok((parser(tokens), tvfs))
}

fn parse_query(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let start = start_location(&tokens);
    let (mut p, tvfs) = prepare(tokens)?;
    let query = p.parse_query().map_err(|e| SqlError::from_parser(e, start))?;
    expect_end(&p)?;
    let window_tvfs = check_tvfs_used_as_tables(&*query, tvfs)?;
    Ok(WeirStatement::Query { query, window_tvfs })
}

fn parse_insert(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let start = start_location(&tokens);
    let (mut p, tvfs) = prepare(tokens)?;
    let into = p.peek_nth_token_ref(1).clone();
    if !is_keyword(&into.token, Keyword::INTO) {
        return Err(if is_keyword(&into.token, Keyword::OVERWRITE) {
            SqlError::at(
                into.span.start,
                "INSERT OVERWRITE is not supported; use INSERT INTO",
            )
        } else {
            SqlError::expected("INTO after INSERT", &into)
        });
    }
    let statement = p.parse_statement().map_err(|e| SqlError::from_parser(e, start))?;
    expect_end(&p)?;
    let window_tvfs = check_tvfs_used_as_tables(&statement, tvfs)?;
    let Statement::Insert(insert) = statement else {
        return Err(SqlError::at(start, "expected an INSERT INTO statement"));
    };
    let unsupported = insert.or.is_some()
        || insert.ignore
        || insert.overwrite
        || insert.table_alias.is_some()
        || !insert.assignments.is_empty()
        || insert.partitioned.is_some()
        || !insert.after_columns.is_empty()
        || insert.has_table_keyword
        || insert.on.is_some()
        || insert.returning.is_some()
        || insert.output.is_some()
        || insert.replace_into
        || insert.priority.is_some()
        || insert.insert_alias.is_some()
        || insert.settings.is_some()
        || insert.format_clause.is_some()
        || insert.multi_table_insert_type.is_some()
        || !insert.multi_table_into_clauses.is_empty()
        || !insert.multi_table_when_clauses.is_empty();
    if unsupported {
        return Err(SqlError::at(
            start,
            "unsupported INSERT syntax; weir supports INSERT INTO <table> [(<columns>)] <query>",
        ));
    }
    let TableObject::TableName(table) = insert.table else {
        return Err(SqlError::at(start, "INSERT INTO needs a table name"));
    };
    let Some(query) = insert.source else {
        return Err(SqlError::at(start, "INSERT INTO needs a query"));
    };
    let columns = insert
        .columns
        .into_iter()
        .map(|name| single_ident(name, start))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WeirStatement::Insert {
        table,
        columns,
        query,
        window_tvfs,
    })
}

fn single_ident(
    name: ObjectName,
    fallback: datafusion::sql::sqlparser::tokenizer::Location,
) -> Result<Ident, SqlError> {
    let text = name.to_string();
    match <[ObjectNamePart; 1]>::try_from(name.0) {
        Ok([ObjectNamePart::Identifier(ident)]) => Ok(ident),
        _ => Err(SqlError::at(
            fallback,
            format!("INSERT column list entries must be plain column names, found: {text}"),
        )),
    }
}

fn parse_create(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    // CREATE [OR REPLACE] [TEMPORARY | TEMP] TABLE | VIEW
    let mut i = next_significant(&tokens, 0).map_or(tokens.len(), |i| i + 1);
    let mut what = next_significant(&tokens, i);
    while let Some(j) = what {
        let token = &tokens[j].token;
        let modifier = is_keyword(token, Keyword::OR)
            || is_keyword(token, Keyword::REPLACE)
            || is_keyword(token, Keyword::TEMPORARY)
            || is_keyword(token, Keyword::TEMP);
        if !modifier {
            break;
        }
        i = j + 1;
        what = next_significant(&tokens, i);
    }
    let Some(what) = what else {
        return Err(SqlError::at(start_location(&tokens), "empty CREATE statement"));
    };
    let what = tokens[what].clone();
    if is_keyword(&what.token, Keyword::TABLE) {
        let mut tokens = tokens;
        flink_to_sqlparser(&mut tokens, true)?;
        return parse_create_table(tokens).map(WeirStatement::CreateTable);
    }
    if !is_keyword(&what.token, Keyword::VIEW) {
        return Err(match &what.token {
            Token::Word(w) if w.quote_style.is_none() => SqlError::at(
                what.span.start,
                format!(
                    "CREATE {} is not supported; weir supports CREATE TABLE and CREATE VIEW",
                    w.value.to_ascii_uppercase()
                ),
            ),
            _ => SqlError::expected("TABLE or VIEW after CREATE", &what),
        });
    }
    let start = start_location(&tokens);
    let (mut p, tvfs) = prepare(tokens)?;
    let statement = p.parse_statement().map_err(|e| SqlError::from_parser(e, start))?;
    expect_end(&p)?;
    let window_tvfs = check_tvfs_used_as_tables(&statement, tvfs)?;
    let Statement::CreateView(view) = statement else {
        return Err(SqlError::at(start, "expected a CREATE VIEW statement"));
    };
    let unsupported = view.or_alter
        || view.materialized
        || view.secure
        || view.options != CreateTableOptions::None
        || !view.cluster_by.is_empty()
        || view.comment.is_some()
        || view.with_no_schema_binding
        || view.copy_grants
        || view.to.is_some()
        || view.params.is_some()
        || view
            .columns
            .iter()
            .any(|c| c.data_type.is_some() || c.options.is_some());
    if unsupported {
        return Err(SqlError::at(
            start,
            "unsupported CREATE VIEW syntax; weir supports CREATE [TEMPORARY] VIEW [IF NOT \
             EXISTS] <name> [(<column names>)] AS <query>",
        ));
    }
    Ok(WeirStatement::CreateView {
        name: view.name,
        columns: view.columns.into_iter().map(|c| c.name).collect(),
        query: view.query,
        or_replace: view.or_replace,
        if_not_exists: view.if_not_exists,
        temporary: view.temporary,
        window_tvfs,
    })
}

fn parse_explain(
    tokens: Vec<TokenWithSpan>,
    source: &LineIndex<'_>,
    depth: usize,
) -> Result<WeirStatement, SqlError> {
    // EXPLAIN [PLAN FOR] <statement>
    let explain = next_significant(&tokens, 0).unwrap_or(0);
    let mut rest = explain + 1;
    if let Some(plan) = next_significant(&tokens, rest)
        && is_word(&tokens[plan].token, "PLAN")
    {
        match next_significant(&tokens, plan + 1) {
            Some(f) if is_keyword(&tokens[f].token, Keyword::FOR) => rest = f + 1,
            Some(f) => return Err(SqlError::expected("FOR after EXPLAIN PLAN", &tokens[f])),
            None => {}
        }
    }
    let Some(inner) = next_significant(&tokens, rest) else {
        return Err(SqlError::at(start_location(&tokens), "empty EXPLAIN statement"));
    };
    let inner_token = tokens[inner].clone();
    let explainable = matches!(
        leading_word(&inner_token.token).as_str(),
        "SELECT" | "WITH" | "VALUES" | "(" | "INSERT"
    );
    if !explainable || depth >= MAX_EXPLAIN_DEPTH {
        return Err(SqlError::expected(
            "a query or an INSERT statement after EXPLAIN",
            &inner_token,
        ));
    }
    let statement = parse_one(tokens[rest..].to_vec(), source, depth + 1)?;
    Ok(WeirStatement::Explain {
        query: Box::new(statement),
    })
}

/// Checks that each extracted TVF ended up as a table in a FROM clause or JOIN (not, say, as
/// an expression in the SELECT list) and returns the TVFs.
fn check_tvfs_used_as_tables(node: &impl Visit, tvfs: Vec<ExtractedTvf>) -> Result<Vec<WindowTvf>, SqlError> {
    if tvfs.is_empty() {
        return Ok(Vec::new());
    }
    let mut used = vec![false; tvfs.len()];
    let _ = visit_relations(node, |name: &ObjectName| {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
            let index = ident
                .value
                .strip_prefix(WINDOW_TVF_PLACEHOLDER_PREFIX)
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(slot) = index.and_then(|n| used.get_mut(n)) {
                *slot = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if let Some(unused) = used.iter().position(|u| !u) {
        let tvf = &tvfs[unused];
        return Err(SqlError::at(
            tvf.location,
            format!(
                "TABLE({}(...)) can only be used as a table, in a FROM clause or a JOIN",
                tvf.tvf.kind
            ),
        ));
    }
    Ok(tvfs.into_iter().map(|t| t.tvf).collect())
}
