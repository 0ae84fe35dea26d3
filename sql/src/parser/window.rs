//! Window table-valued functions: `TABLE(TUMBLE(...))`, `HOP`, `SESSION`, `CUMULATE`.
//!
//! sqlparser cannot parse Flink's window TVFs (`TABLE t` and `DESCRIPTOR(ts)` as function
//! arguments), so before a query is handed to sqlparser each `TABLE(<fn>(...))` in its token
//! stream is parsed here and replaced by a single identifier token, the *placeholder*
//! `__weir_tvf_<n>` (n counts from 0 in each statement, in textual order), carrying the span
//! of the whole `TABLE(...)`. sqlparser then sees an ordinary table reference, wherever the TVF
//! was (FROM, JOIN, subquery, CTE), and the user's alias stays attached to it:
//!
//! ```text
//! SELECT * FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) AS w
//! SELECT * FROM __weir_tvf_0 AS w          -- what sqlparser parses
//! ```
//!
//! The planner finds `TableFactor::Table { name: __weir_tvf_0, .. }` in the AST and looks the
//! name up in the statement's [`WindowTvf`] list.
//!
//! Arguments may be positional (Flink's order) or named (`DATA =>`, `TIMECOL =>`, `SIZE =>`,
//! `SLIDE =>`, `STEP =>`, `GAP =>`, `OFFSET =>`, case-insensitive, in any order, after the
//! positional ones); both forms produce the same [`WindowTvf`].

use std::fmt;

use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan};

use super::error::SqlError;
use super::lexer::{is_keyword, is_word, next_significant, parser, word};

/// Prefix of the table names that stand for window TVFs in the AST.
pub const WINDOW_TVF_PLACEHOLDER_PREFIX: &str = "__weir_tvf_";

/// The kind of a window table-valued function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// `TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])`
    Tumble,
    /// `HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])`
    Hop,
    /// `SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), gap)`
    Session,
    /// `CUMULATE(TABLE t, DESCRIPTOR(ts), step, size [, offset])`
    Cumulate,
}

impl WindowKind {
    /// The SQL function name (`TUMBLE`, ...).
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Session => "SESSION",
            WindowKind::Cumulate => "CUMULATE",
        }
    }

    fn from_name(token: &Token) -> Option<Self> {
        [
            WindowKind::Tumble,
            WindowKind::Hop,
            WindowKind::Session,
            WindowKind::Cumulate,
        ]
        .into_iter()
        .find(|kind| is_word(token, kind.name()))
    }

    /// Flink's signature, for error messages.
    fn signature(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE(TABLE <table>, DESCRIPTOR(<time column>), <size> [, <offset>])",
            WindowKind::Hop => "HOP(TABLE <table>, DESCRIPTOR(<time column>), <slide>, <size> [, <offset>])",
            WindowKind::Session => {
                "SESSION(TABLE <table> [PARTITION BY <columns>], DESCRIPTOR(<time column>), <gap>)"
            }
            WindowKind::Cumulate => {
                "CUMULATE(TABLE <table>, DESCRIPTOR(<time column>), <step>, <max size> [, <offset>])"
            }
        }
    }

    /// Parameter names in positional order; all but `OFFSET` are required.
    fn params(self) -> &'static [&'static str] {
        match self {
            WindowKind::Tumble => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
            WindowKind::Hop => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
            WindowKind::Session => &["DATA", "TIMECOL", "GAP"],
            WindowKind::Cumulate => &["DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"],
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A window TVF taken out of a statement and replaced by `placeholder` in its AST.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTvf {
    /// The table name put in the TVF's place in the AST (`__weir_tvf_0`, `__weir_tvf_1`, ...).
    pub placeholder: String,
    /// TUMBLE, HOP, SESSION or CUMULATE.
    pub kind: WindowKind,
    /// The table or view after `TABLE` (may also name a CTE of the query).
    pub input: ObjectName,
    /// The column in `DESCRIPTOR(col)`.
    pub time_column: Ident,
    /// SESSION's `PARTITION BY` columns; empty otherwise.
    pub partition_by: Vec<Ident>,
    /// TUMBLE/HOP size, CUMULATE max size, SESSION gap (unevaluated, e.g. `INTERVAL '1' MINUTE`).
    pub size: Expr,
    /// HOP's slide.
    pub slide: Option<Expr>,
    /// CUMULATE's step.
    pub step: Option<Expr>,
    /// The optional offset of TUMBLE, HOP and CUMULATE.
    pub offset: Option<Expr>,
}

/// A TVF that was extracted, with where it was (to report misplaced TVFs).
pub(crate) struct ExtractedTvf {
    pub tvf: WindowTvf,
    pub location: Location,
}

/// Replaces every `TABLE(<fn>(...))` in `tokens` by its placeholder and returns the TVFs in
/// textual order.
pub(crate) fn extract_window_tvfs(tokens: &mut Vec<TokenWithSpan>) -> Result<Vec<ExtractedTvf>, SqlError> {
    let mut extracted = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_tvf = is_keyword(&tokens[i].token, Keyword::TABLE)
            && next_significant(tokens, i + 1).is_some_and(|j| tokens[j].token == Token::LParen);
        if starts_tvf {
            let placeholder = format!("{WINDOW_TVF_PLACEHOLDER_PREFIX}{}", extracted.len());
            let mut p = parser(tokens[i..].to_vec());
            let tvf = parse_tvf(&mut p, placeholder)?;
            let end = i + p.get_current_index();
            let location = tokens[i].span.start;
            let span = Span::new(location, tokens[end].span.end);
            tokens.splice(i..=end, [word(&tvf.placeholder, span)]);
            extracted.push(ExtractedTvf { tvf, location });
        }
        i += 1;
    }
    Ok(extracted)
}

/// One argument as written.
struct Arg {
    /// `NAME =>` (upper-cased) and where the name is.
    name: Option<(String, Location)>,
    value: ArgValue,
    /// Where the value starts.
    location: Location,
}

enum ArgValue {
    Table {
        name: ObjectName,
        partition_by: Vec<Ident>,
        partition_location: Location,
    },
    Descriptor(Vec<Ident>),
    Expr(Box<Expr>),
}

impl ArgValue {
    fn describe(&self) -> String {
        match self {
            ArgValue::Table { name, .. } => format!("TABLE {name}"),
            ArgValue::Descriptor(columns) => format!(
                "DESCRIPTOR({})",
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ArgValue::Expr(expr) => expr.to_string(),
        }
    }
}

fn parse_tvf(p: &mut Parser<'static>, placeholder: String) -> Result<WindowTvf, SqlError> {
    p.expect_keyword(Keyword::TABLE).map_err(parser_error(p))?;
    p.expect_token(&Token::LParen).map_err(parser_error(p))?;
    let function = p.next_token();
    let Some(kind) = WindowKind::from_name(&function.token) else {
        return Err(match &function.token {
            Token::Word(_) => SqlError::at(
                function.span.start,
                format!(
                    "TABLE(...) supports only the window functions TUMBLE, HOP, SESSION and \
                     CUMULATE, found: {}",
                    function.token
                ),
            ),
            _ => SqlError::expected(
                "a window function (TUMBLE, HOP, SESSION or CUMULATE) after TABLE(",
                &function,
            ),
        });
    };
    let name = kind.name();
    if !p.consume_token(&Token::LParen) {
        return Err(SqlError::expected(&format!("( after {name}"), p.peek_token_ref()));
    }
    let mut args = Vec::new();
    if !p.consume_token(&Token::RParen) {
        loop {
            args.push(parse_arg(p, kind)?);
            if p.consume_token(&Token::Comma) {
                continue;
            }
            if p.consume_token(&Token::RParen) {
                break;
            }
            return Err(SqlError::expected(
                &format!("',' or ')' after an argument of {name}"),
                p.peek_token_ref(),
            ));
        }
    }
    if !p.consume_token(&Token::RParen) {
        return Err(SqlError::expected(
            &format!(") closing TABLE({name}(...))"),
            p.peek_token_ref(),
        ));
    }
    bind(kind, function.span.start, args, placeholder)
}

fn parser_error(p: &Parser<'static>) -> impl Fn(datafusion::sql::sqlparser::parser::ParserError) -> SqlError {
    let fallback = p.peek_token_ref().span.start;
    move |e| SqlError::from_parser(e, fallback)
}

fn parse_arg(p: &mut Parser<'static>, kind: WindowKind) -> Result<Arg, SqlError> {
    let name = match (&p.peek_token_ref().token, &p.peek_nth_token_ref(1).token) {
        (Token::Word(w), Token::RArrow) => {
            let name = (w.value.to_ascii_uppercase(), p.peek_token_ref().span.start);
            p.next_token();
            p.next_token();
            Some(name)
        }
        _ => None,
    };
    let first = p.peek_token();
    let location = first.span.start;
    let value = if is_keyword(&first.token, Keyword::TABLE) {
        p.next_token();
        if !matches!(p.peek_token_ref().token, Token::Word(_)) {
            return Err(SqlError::expected(
                &format!("a table name after TABLE in {}", kind.name()),
                p.peek_token_ref(),
            ));
        }
        let name = p.parse_object_name(false).map_err(parser_error(p))?;
        let partition_location = p.peek_token_ref().span.start;
        let partition_by = if p.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
            if p.consume_token(&Token::LParen) {
                let columns = p
                    .parse_comma_separated(Parser::parse_identifier)
                    .map_err(parser_error(p))?;
                p.expect_token(&Token::RParen).map_err(parser_error(p))?;
                columns
            } else {
                vec![p.parse_identifier().map_err(parser_error(p))?]
            }
        } else {
            Vec::new()
        };
        ArgValue::Table {
            name,
            partition_by,
            partition_location,
        }
    } else if is_word(&first.token, "DESCRIPTOR") && p.peek_nth_token_ref(1).token == Token::LParen {
        p.next_token();
        p.next_token();
        let columns = if p.peek_token_ref().token == Token::RParen {
            Vec::new()
        } else {
            p.parse_comma_separated(Parser::parse_identifier)
                .map_err(parser_error(p))?
        };
        p.expect_token(&Token::RParen).map_err(parser_error(p))?;
        ArgValue::Descriptor(columns)
    } else {
        ArgValue::Expr(Box::new(p.parse_expr().map_err(parser_error(p))?))
    };
    Ok(Arg {
        name,
        value,
        location,
    })
}

/// Assigns positional and named arguments to the function's parameters and checks their kinds.
fn bind(
    kind: WindowKind,
    function_location: Location,
    args: Vec<Arg>,
    placeholder: String,
) -> Result<WindowTvf, SqlError> {
    let name = kind.name();
    let params = kind.params();
    let optional = usize::from(params.last() == Some(&"OFFSET"));
    let required = params.len() - optional;
    let arity_error = |found: usize| {
        let expected = if optional == 0 {
            format!("{required} arguments")
        } else {
            format!("{required} or {} arguments", params.len())
        };
        SqlError::at(
            function_location,
            format!("{name} expects {expected}, found {found}: {}", kind.signature()),
        )
    };

    let total = args.len();
    let mut slots: Vec<Option<Arg>> = params.iter().map(|_| None).collect();
    let mut any_named = false;
    for (position, arg) in args.into_iter().enumerate() {
        match &arg.name {
            None => {
                if any_named {
                    return Err(SqlError::at(
                        arg.location,
                        format!("{name}: a positional argument cannot follow named arguments"),
                    ));
                }
                if position >= params.len() {
                    return Err(arity_error(total));
                }
                slots[position] = Some(arg);
            }
            Some((arg_name, location)) => {
                any_named = true;
                let Some(index) = params.iter().position(|p| p == arg_name) else {
                    return Err(SqlError::at(
                        *location,
                        format!(
                            "{name} has no argument named {arg_name}; its arguments are {}",
                            params.join(", ")
                        ),
                    ));
                };
                if slots[index].is_some() {
                    return Err(SqlError::at(
                        *location,
                        format!("{name}: argument {arg_name} is given more than once"),
                    ));
                }
                slots[index] = Some(arg);
            }
        }
    }
    if !any_named && total < required {
        return Err(arity_error(total));
    }
    if let Some(missing) = (0..required).find(|&i| slots[i].is_none()) {
        return Err(SqlError::at(
            function_location,
            format!(
                "{name} is missing its {} argument: {}",
                params[missing],
                kind.signature()
            ),
        ));
    }

    let mut input = None;
    let mut time_column = None;
    let mut partition_by = Vec::new();
    let (mut size, mut slide, mut step, mut offset) = (None, None, None, None);
    for (index, slot) in slots.into_iter().enumerate() {
        let Some(arg) = slot else { continue };
        let param = params[index];
        let ordinal = index + 1;
        match (param, arg.value) {
            (
                "DATA",
                ArgValue::Table {
                    name: table,
                    partition_by: keys,
                    partition_location,
                },
            ) => {
                if !keys.is_empty() && kind != WindowKind::Session {
                    return Err(SqlError::at(
                        partition_location,
                        format!("PARTITION BY is only supported by SESSION windows, not {name}"),
                    ));
                }
                input = Some(table);
                partition_by = keys;
            }
            ("DATA", other) => {
                return Err(SqlError::at(
                    arg.location,
                    format!(
                        "{name}: argument {ordinal} (DATA) must be TABLE <table name>, found: {}",
                        other.describe()
                    ),
                ));
            }
            ("TIMECOL", ArgValue::Descriptor(mut columns)) => {
                if columns.len() != 1 {
                    return Err(SqlError::at(
                        arg.location,
                        format!(
                            "{name}: DESCRIPTOR must name exactly one time column, found {}",
                            columns.len()
                        ),
                    ));
                }
                time_column = columns.pop();
            }
            ("TIMECOL", other) => {
                return Err(SqlError::at(
                    arg.location,
                    format!(
                        "{name}: argument {ordinal} (TIMECOL) must be DESCRIPTOR(<time column>), \
                         found: {}",
                        other.describe()
                    ),
                ));
            }
            (param, ArgValue::Expr(expr)) => match param {
                "SLIDE" => slide = Some(*expr),
                "STEP" => step = Some(*expr),
                "OFFSET" => offset = Some(*expr),
                _ => size = Some(*expr), // SIZE, GAP
            },
            (param, other) => {
                return Err(SqlError::at(
                    arg.location,
                    format!(
                        "{name}: argument {ordinal} ({param}) must be an interval such as \
                         INTERVAL '1' MINUTE, found: {}",
                        other.describe()
                    ),
                ));
            }
        }
    }
    match (input, time_column, size) {
        (Some(input), Some(time_column), Some(size)) => Ok(WindowTvf {
            placeholder,
            kind,
            input,
            time_column,
            partition_by,
            size,
            slide,
            step,
            offset,
        }),
        // unreachable: every required slot was filled and checked above
        _ => Err(SqlError::at(
            function_location,
            format!("invalid arguments for {name}: {}", kind.signature()),
        )),
    }
}
