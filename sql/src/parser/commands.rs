//! Client commands in Flink's spelling: `SET`, `RESET`, `SHOW ...`, `DESCRIBE`, `DROP`,
//! `STOP JOB`, `CANCEL JOB`, `HELP`.
//!
//! These are read with sqlparser's parser primitives (keywords, identifiers, object names,
//! string literals) over the statement's tokens; only `SET`/`RESET` also look at the raw source
//! text, so that unquoted keys and values (`SET execution.checkpointing.interval = 10s`) are
//! taken exactly as written.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::error::SqlError;
use super::lexer::{LineIndex, is_word, parser, start_location};
use super::statement::{DropKind, WeirStatement, expect_end};

fn parser_error(start: Location) -> impl Fn(ParserError) -> SqlError {
    move |e| SqlError::from_parser(e, start)
}

/// `DROP [TEMPORARY] TABLE|VIEW [IF EXISTS] name [, name ...]`
pub(crate) fn parse_drop(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let start = start_location(&tokens);
    let mut p = parser(tokens);
    p.next_token(); // DROP
    let _temporary = p.parse_one_of_keywords(&[Keyword::TEMPORARY, Keyword::TEMP]);
    let kind = match p.parse_one_of_keywords(&[Keyword::TABLE, Keyword::VIEW]) {
        Some(Keyword::TABLE) => DropKind::Table,
        Some(_) => DropKind::View,
        None => {
            return Err(SqlError::expected("TABLE or VIEW after DROP", p.peek_token_ref()));
        }
    };
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let names = p
        .parse_comma_separated(|p| p.parse_object_name(false))
        .map_err(parser_error(start))?;
    expect_end(&p)?;
    Ok(WeirStatement::Drop {
        kind,
        names,
        if_exists,
    })
}

/// `SET`, `SET 'key' = 'value'`, `SET key.name = value`
pub(crate) fn parse_set(
    tokens: Vec<TokenWithSpan>,
    source: &LineIndex<'_>,
) -> Result<WeirStatement, SqlError> {
    let mut p = parser(tokens);
    p.next_token(); // SET
    if p.peek_token_ref().token == Token::EOF {
        return Ok(WeirStatement::Set {
            key: None,
            value: None,
        });
    }
    let key = parse_key(&mut p, source, "SET")?;
    let eq = p.peek_token();
    if eq.token == Token::EOF {
        return Err(SqlError::expected(
            &format!("= and a value after SET '{key}'"),
            &eq,
        ));
    }
    if !p.consume_token(&Token::Eq) {
        return Err(SqlError::expected(&format!("= after SET '{key}'"), &eq));
    }
    let value_start = p.peek_token();
    let value = match &value_start.token {
        Token::EOF => {
            return Err(SqlError::expected(
                &format!("a value after SET '{key}' ="),
                &value_start,
            ));
        }
        Token::SingleQuotedString(s) => {
            let s = s.clone();
            p.next_token();
            expect_end(&p)?;
            s
        }
        _ => {
            // unquoted: everything up to the end of the statement, as written
            let mut end = value_start.span.end;
            while p.peek_token_ref().token != Token::EOF {
                end = p.next_token().span.end;
            }
            source.slice(value_start.span.start, end).trim().to_string()
        }
    };
    Ok(WeirStatement::Set {
        key: Some(key),
        value: Some(value),
    })
}

/// `RESET` or `RESET 'key'`
pub(crate) fn parse_reset(
    tokens: Vec<TokenWithSpan>,
    source: &LineIndex<'_>,
) -> Result<WeirStatement, SqlError> {
    let mut p = parser(tokens);
    p.next_token(); // RESET
    if p.peek_token_ref().token == Token::EOF {
        return Ok(WeirStatement::Reset { key: None });
    }
    let key = parse_key(&mut p, source, "RESET")?;
    expect_end(&p)?;
    Ok(WeirStatement::Reset { key: Some(key) })
}

/// A configuration key: a string literal (`'a.b'`), a quoted identifier, or an unquoted run of
/// words, dots, dashes and numbers written without spaces (`a.b-c`).
fn parse_key(p: &mut Parser<'static>, source: &LineIndex<'_>, command: &str) -> Result<String, SqlError> {
    let first = p.peek_token();
    match &first.token {
        Token::SingleQuotedString(s) => {
            p.next_token();
            return Ok(s.clone());
        }
        Token::Word(w) if w.quote_style.is_some() => {
            p.next_token();
            return Ok(w.value.clone());
        }
        Token::Word(_) => {}
        _ => {
            return Err(SqlError::expected(
                &format!("a configuration key after {command}, e.g. {command} 'parallelism.default'"),
                &first,
            ));
        }
    }
    let mut end = first.span.end;
    while matches!(
        p.peek_token_ref().token,
        Token::Word(_) | Token::Period | Token::Minus | Token::Number(..) | Token::Colon
    ) {
        end = p.next_token().span.end;
    }
    let key = source.slice(first.span.start, end);
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(SqlError::at(
            first.span.start,
            format!(
                "an unquoted {command} key must not contain spaces; quote it, as in {command} \
                 'key' = 'value'"
            ),
        ));
    }
    Ok(key.to_string())
}

/// `SHOW TABLES | VIEWS | JOBS | FUNCTIONS`
pub(crate) fn parse_show(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let mut p = parser(tokens);
    p.next_token(); // SHOW
    let what = p.next_token();
    let statement = if is_word(&what.token, "TABLES") {
        WeirStatement::ShowTables
    } else if is_word(&what.token, "VIEWS") {
        WeirStatement::ShowViews
    } else if is_word(&what.token, "JOBS") {
        WeirStatement::ShowJobs
    } else if is_word(&what.token, "FUNCTIONS") {
        WeirStatement::ShowFunctions
    } else if is_word(&what.token, "CHECKPOINTS") {
        let mut job_id = None;
        if p.parse_keyword(Keyword::FOR) {
            let job = p.next_token();
            if !is_word(&job.token, "JOB") {
                return Err(SqlError::expected("JOB after SHOW CHECKPOINTS FOR", &job));
            }
            job_id = Some(quoted(
                &mut p,
                "a job id string, e.g. SHOW CHECKPOINTS FOR JOB '<job id>'",
            )?);
        }
        WeirStatement::ShowCheckpoints { job_id }
    } else {
        return Err(SqlError::expected(
            "TABLES, VIEWS, JOBS, FUNCTIONS or CHECKPOINTS after SHOW",
            &what,
        ));
    };
    expect_end(&p)?;
    Ok(statement)
}

/// `DESCRIBE name` / `DESC name`
pub(crate) fn parse_describe(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let start = start_location(&tokens);
    let mut p = parser(tokens);
    p.next_token(); // DESCRIBE | DESC
    let name_start = p.peek_token();
    if !matches!(name_start.token, Token::Word(_)) {
        return Err(SqlError::expected(
            "a table or view name after DESCRIBE",
            &name_start,
        ));
    }
    let name = p.parse_object_name(false).map_err(parser_error(start))?;
    expect_end(&p)?;
    Ok(WeirStatement::Describe { name })
}

/// `STOP JOB 'id' [WITH SAVEPOINT]` / `CANCEL JOB 'id'`
pub(crate) fn parse_stop_job(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let mut p = parser(tokens);
    let command = p.next_token(); // STOP | CANCEL
    let cancel = is_word(&command.token, "CANCEL");
    let verb = if cancel { "CANCEL" } else { "STOP" };
    let job = p.next_token();
    if !is_word(&job.token, "JOB") {
        return Err(SqlError::expected(&format!("JOB after {verb}"), &job));
    }
    let id = p.next_token();
    let Token::SingleQuotedString(job_id) = id.token else {
        return Err(SqlError::expected(
            &format!("a job id string after {verb} JOB, e.g. {verb} JOB '<job id>'"),
            &id,
        ));
    };
    let mut with_savepoint = false;
    let mut savepoint_dir = None;
    if !cancel {
        while p.parse_keyword(Keyword::WITH) {
            let option = p.next_token();
            if is_word(&option.token, "SAVEPOINT") {
                with_savepoint = true;
                if p.parse_keyword(Keyword::TO) {
                    savepoint_dir = Some(quoted(&mut p, "a directory string after TO")?);
                }
            } else if is_word(&option.token, "DRAIN") {
                return Err(SqlError::at(
                    option.span.start,
                    "STOP JOB ... WITH DRAIN is not supported",
                ));
            } else {
                return Err(SqlError::expected("SAVEPOINT after WITH", &option));
            }
        }
    }
    expect_end(&p)?;
    Ok(WeirStatement::StopJob {
        job_id,
        with_savepoint,
        savepoint_dir,
        cancel,
    })
}

/// A single-quoted string, or an error saying `what` was expected.
fn quoted(p: &mut Parser<'_>, what: &str) -> Result<String, SqlError> {
    let t = p.next_token();
    match t.token {
        Token::SingleQuotedString(s) => Ok(s),
        _ => Err(SqlError::expected(what, &t)),
    }
}

/// `TRIGGER SAVEPOINT 'id' [TO 'dir']` / `TRIGGER CHECKPOINT 'id'`
pub(crate) fn parse_trigger(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let mut p = parser(tokens);
    p.next_token(); // TRIGGER
    let what = p.next_token();
    let savepoint = if is_word(&what.token, "SAVEPOINT") {
        true
    } else if is_word(&what.token, "CHECKPOINT") {
        false
    } else {
        return Err(SqlError::expected("SAVEPOINT or CHECKPOINT after TRIGGER", &what));
    };
    let kind = if savepoint { "SAVEPOINT" } else { "CHECKPOINT" };
    let job_id = quoted(
        &mut p,
        &format!("a job id string, e.g. TRIGGER {kind} '<job id>'"),
    )?;
    let mut directory = None;
    if savepoint && p.parse_keyword(Keyword::TO) {
        directory = Some(quoted(&mut p, "a directory string after TO")?);
    }
    expect_end(&p)?;
    Ok(WeirStatement::Trigger {
        job_id,
        savepoint,
        directory,
    })
}

/// `HELP`
pub(crate) fn parse_help(tokens: Vec<TokenWithSpan>) -> Result<WeirStatement, SqlError> {
    let mut p = parser(tokens);
    p.next_token(); // HELP
    expect_end(&p)?;
    Ok(WeirStatement::Help)
}
