//! Token-level rewrites of Flink spellings that sqlparser does not accept (or accepts in a
//! different form), applied before sqlparser sees a statement.
//!
//! Every rewrite keeps the tokens' locations (a replaced token takes the span of the original,
//! a split token is given the spans of its halves), so errors still point at the user's text.
//!
//! | Flink                                   | given to sqlparser as                  |
//! |-----------------------------------------|----------------------------------------|
//! | `INTERVAL '10' MINUTES` (plural units)  | `INTERVAL '10' MINUTE`                 |
//! | `ROW<a INT, b STRING>`                  | `STRUCT<a INT, b STRING>`              |
//! | `ROW(a INT, b STRING)` (column types)   | `STRUCT<a INT, b STRING>`              |
//! | `MAP<STRING, INT>`                      | `MAP(STRING, INT)`                     |
//! | `TIMESTAMP(3) WITH LOCAL TIME ZONE`     | `TIMESTAMP(3) WITH TIME ZONE`          |
//! | `TIMESTAMP_LTZ(3)`                      | `TIMESTAMP(3) WITH TIME ZONE`          |
//!
//! So the planner sees Flink's `TIMESTAMP_LTZ(p)` as sqlparser's
//! `DataType::Timestamp(Some(p), TimezoneInfo::WithTimeZone)` (Flink itself has no
//! `TIMESTAMP WITH TIME ZONE` type, so the mapping is unambiguous), `ROW` as
//! `DataType::Struct(.., AngleBrackets)` and `MAP` as `DataType::Map(k, v)`.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Whitespace};

use super::error::SqlError;
use super::lexer::{is_keyword, is_trivia, is_word, next_significant, word};

/// Applies all rewrites. `in_create_table` enables the `ROW(name type, ...)` type form, which
/// is ambiguous with the `ROW(a, b)` constructor in queries.
pub(crate) fn flink_to_sqlparser(
    tokens: &mut Vec<TokenWithSpan>,
    in_create_table: bool,
) -> Result<(), SqlError> {
    singular_interval_units(tokens);
    angle_bracket_types(tokens)?;
    if in_create_table {
        row_paren_types(tokens);
    }
    local_time_zone(tokens);
    Ok(())
}

/// `INTERVAL '10' MINUTES` -> `INTERVAL '10' MINUTE` (also for the other plural units).
fn singular_interval_units(tokens: &mut [TokenWithSpan]) {
    for i in 0..tokens.len() {
        if !is_keyword(&tokens[i].token, Keyword::INTERVAL) {
            continue;
        }
        let Some(value) = next_significant(tokens, i + 1) else {
            continue;
        };
        if !matches!(
            tokens[value].token,
            Token::SingleQuotedString(_) | Token::Number(..)
        ) {
            continue;
        }
        let Some(unit) = next_significant(tokens, value + 1) else {
            continue;
        };
        if let Some(singular) = singular_unit(&tokens[unit].token) {
            tokens[unit] = word(singular, tokens[unit].span);
        }
    }
}

fn singular_unit(token: &Token) -> Option<&'static str> {
    const UNITS: [(&str, &str); 10] = [
        ("YEARS", "YEAR"),
        ("MONTHS", "MONTH"),
        ("WEEKS", "WEEK"),
        ("DAYS", "DAY"),
        ("HOURS", "HOUR"),
        ("MINUTES", "MINUTE"),
        ("SECONDS", "SECOND"),
        ("MILLISECONDS", "MILLISECOND"),
        ("MICROSECONDS", "MICROSECOND"),
        ("NANOSECONDS", "NANOSECOND"),
    ];
    UNITS
        .iter()
        .find(|(plural, _)| is_word(token, plural))
        .map(|(_, singular)| *singular)
}

/// `ROW<...>` -> `STRUCT<...>` and `MAP<k, v>` -> `MAP(k, v)`, splitting a closing `>>` into
/// two `>` where needed.
fn angle_bracket_types(tokens: &mut Vec<TokenWithSpan>) -> Result<(), SqlError> {
    let mut i = 0;
    while i < tokens.len() {
        let is_row = is_word(&tokens[i].token, "ROW");
        let is_map = is_word(&tokens[i].token, "MAP");
        if (is_row || is_map)
            && let Some(open) = next_significant(tokens, i + 1)
            && tokens[open].token == Token::Lt
            && let Some(close) = closing_angle(tokens, open)
        {
            if is_row {
                tokens[i] = word("STRUCT", tokens[i].span);
            } else {
                let types = top_level_commas(&tokens[open + 1..close]) + 1;
                if types != 2 {
                    return Err(SqlError::at(
                        tokens[i].span.start,
                        format!(
                            "MAP takes a key type and a value type, as in MAP<STRING, INT>, \
                             found {types} type(s)"
                        ),
                    ));
                }
                tokens[open].token = Token::LParen;
                tokens[close].token = Token::RParen;
            }
        }
        i += 1;
    }
    Ok(())
}

/// Commas not nested in brackets.
fn top_level_commas(tokens: &[TokenWithSpan]) -> usize {
    let mut depth = 0i64;
    let mut commas = 0;
    for token in tokens {
        match token.token {
            Token::Lt | Token::LParen | Token::LBracket => depth += 1,
            Token::Gt | Token::RParen | Token::RBracket => depth -= 1,
            Token::Comma if depth == 0 => commas += 1,
            _ => {}
        }
    }
    commas
}

/// Index of the `>` closing the `<` at `open`; a `>>` met on the way is split in two `>`.
fn closing_angle(tokens: &mut Vec<TokenWithSpan>, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = open;
    while j < tokens.len() {
        match tokens[j].token {
            Token::Lt => depth += 1,
            Token::Gt => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(j);
                }
            }
            Token::ShiftRight => {
                let Span { start, end } = tokens[j].span;
                let middle = if start.line == 0 {
                    start
                } else {
                    Location::new(start.line, start.column + 1)
                };
                tokens[j] = TokenWithSpan::new(Token::Gt, Span::new(start, middle));
                tokens.insert(j + 1, TokenWithSpan::new(Token::Gt, Span::new(middle, end)));
                continue; // look at the first `>` again
            }
            Token::EOF | Token::SemiColon | Token::Eq | Token::GtEq | Token::LtEq => return None,
            _ => {}
        }
        j += 1;
    }
    None
}

/// `ROW(a INT, b STRING)` -> `STRUCT<a INT, b STRING>` when it looks like a type (a field name
/// followed by a type name), not like the constructor `ROW(a, b)`.
fn row_paren_types(tokens: &mut [TokenWithSpan]) {
    for i in 0..tokens.len() {
        if !is_word(&tokens[i].token, "ROW") {
            continue;
        }
        let Some(open) = next_significant(tokens, i + 1) else {
            continue;
        };
        if tokens[open].token != Token::LParen {
            continue;
        }
        let Some(field) = next_significant(tokens, open + 1) else {
            continue;
        };
        let Some(ty) = next_significant(tokens, field + 1) else {
            continue;
        };
        let looks_like_type = matches!(tokens[field].token, Token::Word(_))
            && matches!(&tokens[ty].token, Token::Word(w) if !is_operator_word(w.keyword));
        if !looks_like_type {
            continue;
        }
        if let Some(close) = closing_paren(tokens, open) {
            tokens[i] = word("STRUCT", tokens[i].span);
            tokens[open].token = Token::Lt;
            tokens[close].token = Token::Gt;
        }
    }
}

fn is_operator_word(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::IS
            | Keyword::AND
            | Keyword::OR
            | Keyword::NOT
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::IN
            | Keyword::BETWEEN
            | Keyword::AS
            | Keyword::SIMILAR
            | Keyword::RLIKE
            | Keyword::REGEXP
            | Keyword::DIV
            | Keyword::COLLATE
            | Keyword::FROM
    )
}

/// Index of the `)` matching the `(` at `open`.
pub(crate) fn closing_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, token) in tokens.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// `TIMESTAMP(p) WITH LOCAL TIME ZONE` and `TIMESTAMP_LTZ(p)` -> `TIMESTAMP(p) WITH TIME ZONE`.
fn local_time_zone(tokens: &mut Vec<TokenWithSpan>) {
    let mut i = 0;
    while i < tokens.len() {
        let ltz = is_word(&tokens[i].token, "TIMESTAMP_LTZ");
        if ltz || is_word(&tokens[i].token, "TIMESTAMP") {
            let span = tokens[i].span;
            // after the optional precision
            let mut after = i + 1;
            if let Some(open) = next_significant(tokens, i + 1)
                && tokens[open].token == Token::LParen
                && let Some(close) = closing_paren(tokens, open)
            {
                after = close + 1;
            }
            if ltz {
                tokens[i] = word("TIMESTAMP", span);
                let with_time_zone = [
                    TokenWithSpan::new(Token::Whitespace(Whitespace::Space), span),
                    word("WITH", span),
                    TokenWithSpan::new(Token::Whitespace(Whitespace::Space), span),
                    word("TIME", span),
                    TokenWithSpan::new(Token::Whitespace(Whitespace::Space), span),
                    word("ZONE", span),
                ];
                let count = with_time_zone.len();
                tokens.splice(after..after, with_time_zone);
                i = after + count;
                continue;
            }
            if let Some(local) = with_local_time_zone(tokens, after) {
                // drop LOCAL and the trivia after it
                let mut end = local + 1;
                while end < tokens.len() && is_trivia(&tokens[end].token) {
                    end += 1;
                }
                tokens.drain(local..end);
            }
        }
        i += 1;
    }
}

/// If `WITH LOCAL TIME ZONE` starts at the next significant token from `from`, the index of
/// `LOCAL`.
fn with_local_time_zone(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    let with = next_significant(tokens, from)?;
    let local = next_significant(tokens, with + 1)?;
    let time = next_significant(tokens, local + 1)?;
    let zone = next_significant(tokens, time + 1)?;
    (is_word(&tokens[with].token, "WITH")
        && is_word(&tokens[local].token, "LOCAL")
        && is_word(&tokens[time].token, "TIME")
        && is_word(&tokens[zone].token, "ZONE"))
    .then_some(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::lexer::tokenize;

    fn rewritten(sql: &str, in_create_table: bool) -> String {
        let mut tokens = tokenize(sql).unwrap();
        flink_to_sqlparser(&mut tokens, in_create_table).unwrap();
        tokens.iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn interval_units_become_singular() {
        assert_eq!(
            rewritten("INTERVAL '10' MINUTES, interval '2' Hours, minutes", false),
            "INTERVAL '10' MINUTE, interval '2' HOUR, minutes"
        );
    }

    #[test]
    fn flink_types_become_sqlparser_types() {
        assert_eq!(
            rewritten("MAP<STRING, ARRAY<ROW<a INT>>>", false),
            "MAP(STRING, ARRAY<STRUCT<a INT>>)"
        );
        assert_eq!(
            rewritten("c ROW(a INT, b ROW(x STRING))", true),
            "c STRUCT<a INT, b STRUCT<x STRING>>"
        );
        assert_eq!(rewritten("SELECT ROW(a, b)", true), "SELECT ROW(a, b)");
        assert_eq!(
            rewritten(
                "a TIMESTAMP(3) WITH LOCAL TIME ZONE, b TIMESTAMP_LTZ(3), c TIMESTAMP_LTZ",
                false
            ),
            "a TIMESTAMP(3) WITH TIME ZONE, b TIMESTAMP(3) WITH TIME ZONE, c TIMESTAMP WITH TIME ZONE"
        );
        assert_eq!(rewritten("a >> 2 AND map < 3", false), "a >> 2 AND map < 3");
    }

    #[test]
    fn split_shift_right_keeps_locations() {
        let mut tokens = tokenize("MAP<A, B<C>>").unwrap();
        flink_to_sqlparser(&mut tokens, false).unwrap();
        let closing: Vec<_> = tokens
            .iter()
            .filter(|t| matches!(t.token, Token::Gt | Token::RParen))
            .map(|t| t.span.start.column)
            .collect();
        assert_eq!(closing, vec![11, 12]);
    }
}
