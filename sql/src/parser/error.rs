//! [`SqlError`]: a parse error with the line and column where it was found.
//!
//! Every error that leaves the parser goes through this type. Positions are 1-based and
//! relative to the *whole* text given to [`parse_statements`](super::parse_statements), so a
//! mistake in the third statement of a script reports the script's line number.

use std::fmt;

use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, TokenizerError};

/// A SQL error with the position the parser knows, rendered like
/// `SQL error at line 2, column 14: Expected: ..., found: ...`.
///
/// `line` and `column` are 1-based and count from the start of the whole input (not of the
/// statement). They are `None` only when no position is known at all.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    /// What went wrong, without the position (e.g. `Expected: ), found: end of statement`).
    pub message: String,
    /// 1-based line of the offending token, from the start of the input.
    pub line: Option<u64>,
    /// 1-based column (in characters) of the offending token.
    pub column: Option<u64>,
}

impl SqlError {
    /// An error at a token location (a `line` of 0 means "unknown").
    pub(crate) fn at(location: Location, message: impl Into<String>) -> Self {
        let known = location.line != 0;
        SqlError {
            message: message.into(),
            line: known.then_some(location.line),
            column: known.then_some(location.column),
        }
    }

    /// An error pointing at `token`: `{expected}, found: {token}`, sqlparser style.
    pub(crate) fn expected(expected: &str, token: &TokenWithSpan) -> Self {
        Self::at(
            token.span.start,
            format!("Expected: {expected}, found: {}", describe(&token.token)),
        )
    }

    /// Converts sqlparser's error, moving "at Line: x, Column: y" out of the text into the
    /// position fields. `fallback` is used when sqlparser did not say where (e.g. the recursion
    /// limit), normally the start of the statement.
    pub(crate) fn from_parser(error: ParserError, fallback: Location) -> Self {
        let text = match error {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
            ParserError::RecursionLimitExceeded => {
                "statement is nested too deeply (recursion limit exceeded)".to_string()
            }
        };
        let (message, location) = split_location(&text);
        Self::at(location.unwrap_or(fallback), clean(&message))
    }

    pub(crate) fn from_tokenizer(error: TokenizerError) -> Self {
        // Some tokenizer messages carry their own location too; strip it.
        let (message, _) = split_location(&error.message);
        Self::at(error.location, clean(&message))
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "SQL error at line {line}, column {column}: {}", self.message)
            }
            (Some(line), None) => write!(f, "SQL error at line {line}: {}", self.message),
            _ => write!(f, "SQL error: {}", self.message),
        }
    }
}

impl std::error::Error for SqlError {}

/// How a token is named in messages: its SQL text, or `end of statement` for EOF.
pub(crate) fn describe(token: &Token) -> String {
    match token {
        Token::EOF => "end of statement".to_string(),
        other => other.to_string(),
    }
}

/// Splits `"... at Line: 3, Column: 7..."` into the text without the position and the position.
fn split_location(text: &str) -> (String, Option<Location>) {
    const MARKER: &str = " at Line: ";
    let Some(start) = text.rfind(MARKER) else {
        return (text.to_string(), None);
    };
    let rest = &text[start + MARKER.len()..];
    let line_digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Some(after_line) = rest[line_digits.len()..].strip_prefix(", Column: ") else {
        return (text.to_string(), None);
    };
    let column_digits: String = after_line.chars().take_while(char::is_ascii_digit).collect();
    let (Ok(line), Ok(column)) = (line_digits.parse::<u64>(), column_digits.parse::<u64>()) else {
        return (text.to_string(), None);
    };
    let tail = &after_line[column_digits.len()..];
    let message = format!("{}{}", &text[..start], tail);
    (message, Some(Location::new(line, column)))
}

/// Rephrases sqlparser's wording where it is unhelpful to a SQL user.
fn clean(message: &str) -> String {
    let mut message = message.trim().to_string();
    if let Some(stripped) = message.strip_prefix("sql parser error: ") {
        message = stripped.to_string();
    }
    if let Some(rest) = message.strip_prefix("Expected close delimiter '") {
        // the tokenizer's wording for an unterminated quoted identifier
        let quote = rest.chars().next().unwrap_or('"');
        return format!("Unterminated quoted identifier: missing closing {quote}");
    }
    if message == "Unexpected EOF while in a multi-line comment" {
        return "Unterminated /* comment: missing */".to_string();
    }
    if message.ends_with("found: EOF") {
        let cut = message.len() - "EOF".len();
        message.truncate(cut);
        message.push_str("end of statement");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_is_moved_out_of_the_message() {
        let e = SqlError::from_parser(
            ParserError::ParserError("Expected: ), found: EOF at Line: 2, Column: 14".into()),
            Location::new(1, 1),
        );
        assert_eq!(e.message, "Expected: ), found: end of statement");
        assert_eq!((e.line, e.column), (Some(2), Some(14)));
        assert_eq!(
            e.to_string(),
            "SQL error at line 2, column 14: Expected: ), found: end of statement"
        );
    }

    #[test]
    fn missing_location_uses_fallback() {
        let e = SqlError::from_parser(ParserError::RecursionLimitExceeded, Location::new(3, 5));
        assert!(e.message.contains("nested too deeply"));
        assert_eq!((e.line, e.column), (Some(3), Some(5)));
        let unknown = SqlError::at(Location::empty(), "x");
        assert_eq!(unknown.to_string(), "SQL error: x");
    }
}
