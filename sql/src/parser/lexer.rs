//! Tokens: the dialect, tokenizing a script, cutting it into statements, and small helpers to
//! look at token vectors that still contain whitespace and comments.
//!
//! The whole input is tokenized once, so every token's `Location` is relative to the start of
//! the script; statements are then cut at top-level `;` tokens (a `;` inside a string, quoted
//! identifier or comment is part of that token and never splits).

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

use super::error::SqlError;

/// The sqlparser dialect weir parses with.
///
/// `GenericDialect` is the closest fit for Flink SQL and we use it as is, not wrapped in a
/// custom `Dialect`:
/// - identifiers may be quoted with backticks (Flink) or double quotes (ANSI);
/// - string literals use `''` escaping and no backslash escapes, as in Flink;
/// - it accepts named function arguments with `=>` and plural interval units (`MINUTES`);
/// - sqlparser enables several constructs only `if dialect_of!(self is GenericDialect)`
///   (e.g. `PARTITION BY` in DDL, BigQuery-style `STRUCT<...>` types); a custom wrapper type
///   would silently lose those.
///
/// Flink syntax that sqlparser does not accept is handled at the token level instead (see
/// `rewrite`, `window` and `create_table`).
pub(crate) static DIALECT: GenericDialect = GenericDialect {};

/// A sqlparser [`Parser`] over `tokens` (which must end with an EOF token that has a location,
/// see [`split`]).
pub(crate) fn parser(tokens: Vec<TokenWithSpan>) -> Parser<'static> {
    Parser::new(&DIALECT).with_tokens_with_locations(tokens)
}

/// Tokenizes the whole input, keeping whitespace and comments (sqlparser's parser skips them).
pub(crate) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(SqlError::from_tokenizer)
}

/// Whitespace and comments.
pub(crate) fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// An unquoted word equal to `upper` (case-insensitive), whether or not sqlparser knows it as a
/// keyword.
pub(crate) fn is_word(token: &Token, upper: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(upper))
}

/// An unquoted word that sqlparser tokenized as `keyword`.
pub(crate) fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.keyword == keyword)
}

/// Index of the first non-trivia token at or after `from`.
pub(crate) fn next_significant(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| !is_trivia(&tokens[i].token))
}

/// A word token with the given text and location (used for placeholders and renamed keywords).
pub(crate) fn word(value: &str, span: Span) -> TokenWithSpan {
    TokenWithSpan::new(Token::make_word(value, None), span)
}

/// One statement's tokens: trivia included, the `;` excluded, terminated by an EOF token whose
/// location is just after the statement's last significant token (so "found: end of
/// statement" errors point at the end of the user's text).
pub(crate) fn split(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for token in tokens {
        if token.token == Token::SemiColon {
            finish(&mut statements, std::mem::take(&mut current));
        } else {
            current.push(token);
        }
    }
    finish(&mut statements, current);
    statements
}

fn finish(statements: &mut Vec<Vec<TokenWithSpan>>, mut tokens: Vec<TokenWithSpan>) {
    let Some(last) = tokens.iter().rev().find(|t| !is_trivia(&t.token)) else {
        return; // only whitespace / comments (or nothing) between two `;`
    };
    let end = last.span.end;
    tokens.push(TokenWithSpan::new(Token::EOF, Span::new(end, end)));
    statements.push(tokens);
}

/// Deepest bracket nesting accepted in a statement.
pub(crate) const MAX_NESTING: usize = 64;

/// Measures how deeply sqlparser will recurse on a statement: the deepest bracket nesting
/// (`(`, `[` and the `<` of `ARRAY<`, `ROW<`, `MAP<`, `STRUCT<`, `MULTISET<`), or the number of
/// prefix operators (`NOT`, unary `-`/`+`) if larger. Fails when brackets nest deeper than
/// [`MAX_NESTING`].
///
/// sqlparser bounds the recursion of expressions and queries itself (at 50 levels), but not of
/// data types (`ARRAY<ARRAY<...>>`), which would overflow the stack (an abort, not even a
/// panic). See also `parse_statements`, which gives deeply nested statements a larger stack.
pub(crate) fn check_nesting(tokens: &[TokenWithSpan]) -> Result<usize, SqlError> {
    #[derive(PartialEq)]
    enum Open {
        Paren,
        Angle,
    }
    let mut stack = Vec::new();
    let mut deepest = 0;
    let mut prefix_operators = 0;
    let mut previous: Option<&Token> = None;
    for token in tokens.iter().filter(|t| !is_trivia(&t.token)) {
        let opens = match &token.token {
            Token::LParen | Token::LBracket => Some(Open::Paren),
            Token::Lt => previous
                .filter(|p| {
                    ["ARRAY", "ROW", "MAP", "STRUCT", "MULTISET"]
                        .iter()
                        .any(|w| is_word(p, w))
                })
                .map(|_| Open::Angle),
            _ => None,
        };
        if let Some(open) = opens {
            stack.push(open);
            deepest = deepest.max(stack.len());
            if stack.len() > MAX_NESTING {
                return Err(SqlError::at(
                    token.span.start,
                    format!(
                        "statement is nested too deeply (more than {MAX_NESTING} levels of \
                         brackets)"
                    ),
                ));
            }
        }
        match token.token {
            Token::RParen | Token::RBracket => {
                stack.pop();
            }
            Token::Gt if stack.last() == Some(&Open::Angle) => {
                stack.pop();
            }
            Token::ShiftRight => {
                for _ in 0..2 {
                    if stack.last() == Some(&Open::Angle) {
                        stack.pop();
                    }
                }
            }
            Token::Minus | Token::Plus => {
                let after_value = matches!(
                    previous,
                    Some(
                        Token::Word(_)
                            | Token::Number(..)
                            | Token::SingleQuotedString(_)
                            | Token::RParen
                            | Token::RBracket
                    )
                );
                if !after_value {
                    prefix_operators += 1;
                }
            }
            _ if is_keyword(&token.token, Keyword::NOT) => prefix_operators += 1,
            _ => {}
        }
        previous = Some(&token.token);
    }
    Ok(deepest.max(prefix_operators))
}

/// Location of the first significant token (the statement start), for errors without one.
pub(crate) fn start_location(tokens: &[TokenWithSpan]) -> Location {
    next_significant(tokens, 0)
        .map(|i| tokens[i].span.start)
        .unwrap_or_else(Location::empty)
}

/// True when `input` ends with a `;` that is outside strings, quoted identifiers and comments,
/// i.e. a REPL may submit it. Text after the last `;` that is only whitespace or comments is
/// allowed. Unterminated strings and comments are incomplete.
pub fn is_complete(input: &str) -> bool {
    match Tokenizer::new(&DIALECT, input).tokenize_with_location() {
        Ok(tokens) => tokens
            .iter()
            .rev()
            .find(|t| !is_trivia(&t.token))
            .is_some_and(|t| t.token == Token::SemiColon),
        Err(e) => {
            let unterminated = e.message.contains("Unterminated") || e.message.contains("EOF");
            !unterminated && input.trim_end().ends_with(';')
        }
    }
}

/// Splits a script into statement texts, each with the number of lines that precede it in the
/// script (add it to a line number reported for the text alone).
///
/// The texts exclude the separating `;` and surrounding whitespace and comments; empty
/// statements are dropped. Input that cannot be tokenized (e.g. an unterminated string) is
/// returned as a single piece, so that parsing it reports the error.
///
/// Prefer [`parse_statements`](super::parse_statements) on the whole script when possible: its
/// error positions are already relative to the script.
pub fn split_statements(sql: &str) -> Vec<(String, usize)> {
    let Ok(tokens) = tokenize(sql) else {
        let trimmed = sql.trim();
        if trimmed.is_empty() {
            return Vec::new();
        }
        let leading_lines = sql[..sql.len() - sql.trim_start().len()].matches('\n').count();
        return vec![(trimmed.to_string(), leading_lines)];
    };
    let index = LineIndex::new(sql);
    split(tokens)
        .into_iter()
        .filter_map(|statement| {
            let first = statement.iter().find(|t| !is_trivia(&t.token))?;
            let last = statement
                .iter()
                .rev()
                .find(|t| !is_trivia(&t.token) && t.token != Token::EOF)?;
            let start = index.offset(first.span.start);
            let end = index.offset(last.span.end);
            let text = sql.get(start..end.max(start))?.to_string();
            let line_offset = usize::try_from(first.span.start.line.saturating_sub(1)).ok()?;
            Some((text, line_offset))
        })
        .collect()
}

/// Maps sqlparser locations (1-based line, 1-based column counted in characters) to byte
/// offsets in the source text.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// Byte offset of `location`, clamped to the text.
    pub(crate) fn offset(&self, location: Location) -> usize {
        let Some(line_index) = usize::try_from(location.line).ok().and_then(|l| l.checked_sub(1)) else {
            return 0;
        };
        let Some(&line_start) = self.line_starts.get(line_index) else {
            return self.text.len();
        };
        let skip = usize::try_from(location.column.saturating_sub(1)).unwrap_or(usize::MAX);
        self.text[line_start..]
            .char_indices()
            .nth(skip)
            .map(|(i, _)| line_start + i)
            .unwrap_or(self.text.len())
    }

    /// The source text between two locations (empty if they are out of order).
    pub(crate) fn slice(&self, start: Location, end: Location) -> &'a str {
        let (start, end) = (self.offset(start), self.offset(end));
        self.text.get(start..end).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ignores_semicolons_in_strings_and_comments() {
        let sql = "SELECT ';' -- ; here\n; /* ; */ SELECT `a;b` ;;  ; -- only a comment";
        let statements = split(tokenize(sql).unwrap());
        assert_eq!(statements.len(), 2);
    }

    #[test]
    fn complete_input() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- trailing comment\n"));
        assert!(is_complete("SELECT 1;\n/* c */  "));
        assert!(!is_complete(""));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';'"));
        assert!(!is_complete("SELECT 'abc;"));
        assert!(!is_complete("SELECT 1 -- ;"));
        assert!(!is_complete("SELECT 1 /* ; "));
        assert!(!is_complete("SELECT `a;"));
        assert!(!is_complete("SELECT 1; SELECT 2"));
        assert!(is_complete("SELECT 1; SELECT 2;"));
    }

    #[test]
    fn split_statements_reports_texts_and_line_offsets() {
        let sql = "SELECT 1;\n\n  -- a comment\n  SELECT 'x;y'\n  FROM t ; ;\nSHOW TABLES";
        assert_eq!(
            split_statements(sql),
            vec![
                ("SELECT 1".to_string(), 0),
                ("SELECT 'x;y'\n  FROM t".to_string(), 3),
                ("SHOW TABLES".to_string(), 5),
            ]
        );
        assert_eq!(
            split_statements("\n SELECT 'oops"),
            vec![("SELECT 'oops".to_string(), 1)]
        );
        assert!(split_statements("  -- nothing\n").is_empty());
    }

    #[test]
    fn line_index_handles_multibyte_text() {
        let text = "ab\nçé d";
        let index = LineIndex::new(text);
        assert_eq!(index.offset(Location::new(2, 3)), 3 + "çé".len());
        assert_eq!(index.slice(Location::new(2, 1), Location::new(2, 3)), "çé");
        assert_eq!(index.offset(Location::new(9, 1)), text.len());
    }
}
