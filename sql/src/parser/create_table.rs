//! `CREATE TABLE` with Flink's extras: `WATERMARK FOR`, computed columns, `METADATA`
//! columns, `PRIMARY KEY (...) NOT ENFORCED`, `PARTITIONED BY` and `WITH ('k' = 'v', ...)`.
//!
//! sqlparser does not know the Flink-only parts, so the statement is walked here with a
//! sqlparser [`Parser`]: every column definition (name, data type, `NOT NULL`, `COMMENT`),
//! constraint and expression is parsed by sqlparser itself; only the Flink elements are
//! recognised here, taken out of the column list and reported separately. Errors carry the
//! location of the offending token.
//!
//! ```sql
//! CREATE TABLE orders (
//!     id BIGINT,
//!     price DECIMAL(10, 2),
//!     quantity INT,
//!     cost AS price * quantity,                                  -- computed column
//!     ts TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL,         -- metadata column
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,
//!     PRIMARY KEY (id) NOT ENFORCED
//! ) WITH ('connector' = 'kafka', 'topic' = 'orders')
//! ```

use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, ColumnOptionDef, ConstraintCharacteristics, Expr, Ident, IndexColumn,
    ObjectName, TableConstraint,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{IsOptional, Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::error::{SqlError, describe};
use super::lexer::{is_keyword, is_word, parser, start_location};

/// A `CREATE TABLE` statement with Flink's extras pulled out of the column list.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTableStatement {
    pub name: ObjectName,
    pub if_not_exists: bool,
    pub or_replace: bool,
    pub temporary: bool,
    /// Physical and metadata columns, in declaration order, as sqlparser parsed them (data
    /// types are left to the planner). Column-level `PRIMARY KEY` options are removed (they are
    /// in [`primary_key`](Self::primary_key)); the remaining options are only `NULL`,
    /// `NOT NULL` and `COMMENT`.
    pub columns: Vec<ColumnDef>,
    /// Computed columns `name AS expr`; not in `columns` (they have no declared type).
    pub computed_columns: Vec<ComputedColumn>,
    /// `WATERMARK FOR column AS expr`; the column is a declared (physical, metadata or
    /// computed) column.
    pub watermark: Option<WatermarkClause>,
    /// `PRIMARY KEY (a, b) [NOT ENFORCED]` (table or column constraint); the columns are
    /// physical columns. Empty when there is none.
    pub primary_key: Vec<Ident>,
    /// The columns of `columns` declared with `METADATA`.
    pub metadata_columns: Vec<MetadataColumn>,
    /// `PARTITIONED BY (a, b)`; empty when absent.
    pub partitioned_by: Vec<Ident>,
    /// `COMMENT 'text'` after the column list.
    pub comment: Option<String>,
    /// `WITH ('key' = 'value', ...)` in order, quotes removed. Keys are unique.
    pub options: Vec<(String, String)>,
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkClause {
    pub column: Ident,
    pub expr: Expr,
}

/// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`: the column is also in
/// [`CreateTableStatement::columns`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataColumn {
    pub name: Ident,
    /// The metadata key after `FROM`; `None` means the column name is the key.
    pub key: Option<String>,
    /// `VIRTUAL`: read-only, not written by sinks.
    pub is_virtual: bool,
}

/// A computed column `name AS expr [COMMENT '...']`.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedColumn {
    pub name: Ident,
    pub expr: Expr,
    /// Position among all declared columns (physical, metadata and computed, counting from 0),
    /// to rebuild Flink's schema order.
    pub position: usize,
}

/// Parses a whole `CREATE [OR REPLACE] [TEMPORARY] TABLE` statement (tokens end with EOF).
pub(crate) fn parse_create_table(tokens: Vec<TokenWithSpan>) -> Result<CreateTableStatement, SqlError> {
    let start = start_location(&tokens);
    let mut p = parser(tokens);
    let err = |e: ParserError| SqlError::from_parser(e, start);

    p.expect_keyword(Keyword::CREATE).map_err(err)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let temporary = p
        .parse_one_of_keywords(&[Keyword::TEMPORARY, Keyword::TEMP])
        .is_some();
    p.expect_keyword(Keyword::TABLE).map_err(err)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(err)?;

    let next = p.peek_token();
    if is_keyword(&next.token, Keyword::AS) || is_keyword(&next.token, Keyword::LIKE) {
        return Err(SqlError::at(
            next.span.start,
            format!(
                "CREATE TABLE ... {} is not supported; declare the columns and the WITH options",
                next.token
            ),
        ));
    }
    if !p.consume_token(&Token::LParen) {
        return Err(SqlError::expected(
            "'(' and the column list after the table name",
            &next,
        ));
    }

    let mut table = Builder::default();
    if !p.consume_token(&Token::RParen) {
        loop {
            table.element(&mut p)?;
            if p.consume_token(&Token::Comma) {
                continue;
            }
            if p.consume_token(&Token::RParen) {
                break;
            }
            return Err(SqlError::expected(
                "',' or ')' after column definition",
                p.peek_token_ref(),
            ));
        }
    }

    let comment = if p.parse_keyword(Keyword::COMMENT) {
        Some(p.parse_literal_string().map_err(err)?)
    } else {
        None
    };
    let partitioned_by = if is_word(&p.peek_token_ref().token, "PARTITIONED") {
        p.next_token();
        p.expect_keyword(Keyword::BY).map_err(err)?;
        p.parse_parenthesized_column_list(IsOptional::Mandatory, false)
            .map_err(err)?
    } else {
        Vec::new()
    };
    let options = if p.parse_keyword(Keyword::WITH) {
        parse_options(&mut p)?
    } else {
        Vec::new()
    };
    let end = p.peek_token();
    if end.token != Token::EOF {
        return Err(SqlError::expected(
            "WITH ('key' = 'value', ...) or end of statement",
            &end,
        ));
    }

    table.check()?;
    Ok(CreateTableStatement {
        name,
        if_not_exists,
        or_replace,
        temporary,
        columns: table.columns,
        computed_columns: table.computed,
        watermark: table.watermark,
        primary_key: table.primary_key,
        metadata_columns: table.metadata,
        partitioned_by,
        comment,
        options,
    })
}

#[derive(Default)]
struct Builder {
    columns: Vec<ColumnDef>,
    computed: Vec<ComputedColumn>,
    metadata: Vec<MetadataColumn>,
    watermark: Option<WatermarkClause>,
    primary_key: Vec<Ident>,
    /// Where the primary key was declared (for a second one).
    primary_key_location: Option<Location>,
    /// Number of declared columns so far.
    declared: usize,
}

impl Builder {
    /// One element of the column list.
    fn element(&mut self, p: &mut Parser<'static>) -> Result<(), SqlError> {
        let first = p.peek_token();
        let location = first.span.start;
        let err = |e: ParserError| SqlError::from_parser(e, location);
        let starts_constraint = [
            Keyword::CONSTRAINT,
            Keyword::PRIMARY,
            Keyword::UNIQUE,
            Keyword::FOREIGN,
            Keyword::CHECK,
        ]
        .into_iter()
        .any(|k| is_keyword(&first.token, k));

        if is_word(&first.token, "WATERMARK") {
            self.watermark(p)
        } else if starts_constraint {
            match p.parse_optional_table_constraint().map_err(err)? {
                Some(TableConstraint::PrimaryKey(pk)) => {
                    let columns = pk
                        .columns
                        .iter()
                        .map(|c| key_column(c, location))
                        .collect::<Result<Vec<_>, _>>()?;
                    self.set_primary_key(columns, pk.characteristics, location)
                }
                Some(other) => Err(SqlError::at(
                    location,
                    format!(
                        "{} constraints are not supported; only PRIMARY KEY (...) NOT ENFORCED",
                        constraint_kind(&other)
                    ),
                )),
                None => Err(SqlError::expected(
                    "a constraint after CONSTRAINT <name>",
                    p.peek_token_ref(),
                )),
            }
        } else if matches!(first.token, Token::Word(_))
            && is_keyword(&p.peek_nth_token_ref(1).token, Keyword::AS)
        {
            let name = p.parse_identifier().map_err(err)?;
            p.expect_keyword(Keyword::AS).map_err(err)?;
            let expr = p.parse_expr().map_err(err)?;
            if p.parse_keyword(Keyword::COMMENT) {
                p.parse_literal_string().map_err(err)?;
            }
            self.declare(&name)?;
            self.computed.push(ComputedColumn {
                name,
                expr,
                position: self.declared - 1,
            });
            Ok(())
        } else if matches!(first.token, Token::Word(_)) {
            self.column(p)
        } else {
            Err(SqlError::expected(
                "a column definition, WATERMARK or PRIMARY KEY",
                &first,
            ))
        }
    }

    /// `name TYPE [options] [METADATA [FROM 'key'] [VIRTUAL]] [options]`
    fn column(&mut self, p: &mut Parser<'static>) -> Result<(), SqlError> {
        let location = p.peek_token_ref().span.start;
        let err = |e: ParserError| SqlError::from_parser(e, location);
        let mut column = p.parse_column_def().map_err(err)?;
        if is_word(&p.peek_token_ref().token, "METADATA") {
            p.next_token();
            let key = if p.parse_keyword(Keyword::FROM) {
                let key = p.next_token();
                match key.token {
                    Token::SingleQuotedString(s) => Some(s),
                    _ => {
                        return Err(SqlError::expected(
                            "a metadata key string after METADATA FROM, e.g. 'timestamp'",
                            &key,
                        ));
                    }
                }
            } else {
                None
            };
            let is_virtual = is_word(&p.peek_token_ref().token, "VIRTUAL");
            if is_virtual {
                p.next_token();
            }
            while let Some(option) = p.parse_optional_column_option().map_err(err)? {
                column.options.push(ColumnOptionDef { name: None, option });
            }
            self.metadata.push(MetadataColumn {
                name: column.name.clone(),
                key,
                is_virtual,
            });
        }

        let mut options = Vec::with_capacity(column.options.len());
        for option in std::mem::take(&mut column.options) {
            match option.option {
                ColumnOption::PrimaryKey(pk) => {
                    self.set_primary_key(
                        vec![column.name.clone()],
                        pk.characteristics,
                        column.name.span.start,
                    )?;
                }
                ColumnOption::Null | ColumnOption::NotNull | ColumnOption::Comment(_) => options.push(option),
                other => {
                    return Err(SqlError::at(
                        column.name.span.start,
                        format!("column option {other} of column {} is not supported", column.name),
                    ));
                }
            }
        }
        column.options = options;
        self.declare(&column.name)?;
        self.columns.push(column);
        Ok(())
    }

    /// `WATERMARK FOR column AS expr`
    fn watermark(&mut self, p: &mut Parser<'static>) -> Result<(), SqlError> {
        const SYNTAX: &str = "WATERMARK FOR <column> AS <expression>";
        let watermark = p.next_token();
        let location = watermark.span.start;
        if self.watermark.is_some() {
            return Err(SqlError::at(
                location,
                "only one WATERMARK clause is allowed per table",
            ));
        }
        if !p.parse_keyword(Keyword::FOR) {
            return Err(SqlError::expected(
                &format!("FOR after WATERMARK ({SYNTAX})"),
                p.peek_token_ref(),
            ));
        }
        let column_token = p.peek_token();
        let is_column =
            matches!(&column_token.token, Token::Word(_)) && !is_keyword(&column_token.token, Keyword::AS);
        if !is_column {
            return Err(SqlError::expected(
                &format!("a column name after WATERMARK FOR ({SYNTAX})"),
                &column_token,
            ));
        }
        let column = p
            .parse_identifier()
            .map_err(|e| SqlError::from_parser(e, location))?;
        if !p.parse_keyword(Keyword::AS) {
            return Err(SqlError::expected(
                &format!("AS after WATERMARK FOR {column} ({SYNTAX})"),
                p.peek_token_ref(),
            ));
        }
        let expr = p.parse_expr().map_err(|e| SqlError::from_parser(e, location))?;
        self.watermark = Some(WatermarkClause { column, expr });
        Ok(())
    }

    fn set_primary_key(
        &mut self,
        columns: Vec<Ident>,
        characteristics: Option<ConstraintCharacteristics>,
        location: Location,
    ) -> Result<(), SqlError> {
        if let Some(first) = self.primary_key_location {
            return Err(SqlError::at(
                location,
                format!(
                    "a table can have only one PRIMARY KEY (the first is at line {}, column {})",
                    first.line, first.column
                ),
            ));
        }
        if characteristics.and_then(|c| c.enforced) == Some(true) {
            return Err(SqlError::at(
                location,
                "PRIMARY KEY ... ENFORCED is not supported: weir does not own the data, so (as \
                 in Flink) only PRIMARY KEY (...) NOT ENFORCED is allowed",
            ));
        }
        self.primary_key = columns;
        self.primary_key_location = Some(location);
        Ok(())
    }

    fn declare(&mut self, name: &Ident) -> Result<(), SqlError> {
        let taken = self.columns.iter().any(|c| c.name.value == name.value)
            || self.computed.iter().any(|c| c.name.value == name.value);
        if taken {
            return Err(SqlError::at(
                name.span.start,
                format!("duplicate column name {name}"),
            ));
        }
        self.declared += 1;
        Ok(())
    }

    /// Checks that need the whole column list.
    fn check(&self) -> Result<(), SqlError> {
        if let Some(watermark) = &self.watermark {
            let column = &watermark.column.value;
            let known = self.columns.iter().any(|c| &c.name.value == column)
                || self.computed.iter().any(|c| &c.name.value == column);
            if !known {
                return Err(SqlError::at(
                    watermark.column.span.start,
                    format!(
                        "WATERMARK FOR unknown column {}: the watermark column must be declared \
                         in the table",
                        watermark.column
                    ),
                ));
            }
        }
        for key in &self.primary_key {
            let physical = self.columns.iter().any(|c| c.name.value == key.value)
                && !self.metadata.iter().any(|m| m.name.value == key.value);
            if !physical {
                return Err(SqlError::at(
                    key.span.start,
                    format!(
                        "PRIMARY KEY column {key} is not a physical column of the table \
                         (metadata and computed columns cannot be keys)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A primary-key column must be a plain column name.
fn key_column(column: &IndexColumn, location: Location) -> Result<Ident, SqlError> {
    match &column.column.expr {
        Expr::Identifier(ident) => Ok(ident.clone()),
        other => Err(SqlError::at(
            location,
            format!("PRIMARY KEY columns must be column names, found: {other}"),
        )),
    }
}

fn constraint_kind(constraint: &TableConstraint) -> &'static str {
    match constraint {
        TableConstraint::Unique(_) | TableConstraint::UniqueUsingIndex(_) => "UNIQUE",
        TableConstraint::ForeignKey(_) => "FOREIGN KEY",
        TableConstraint::Check(_) => "CHECK",
        TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_) => "INDEX",
        TableConstraint::PrimaryKey(_) | TableConstraint::PrimaryKeyUsingIndex(_) => {
            "PRIMARY KEY USING INDEX"
        }
    }
}

/// `( 'key' = 'value' [, ...] )`, after `WITH`.
fn parse_options(p: &mut Parser<'static>) -> Result<Vec<(String, String)>, SqlError> {
    if !p.consume_token(&Token::LParen) {
        return Err(SqlError::expected(
            "'(' after WITH, as in WITH ('connector' = '...')",
            p.peek_token_ref(),
        ));
    }
    let mut options: Vec<(String, String)> = Vec::new();
    let mut locations: Vec<Location> = Vec::new();
    if p.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key_token = p.next_token();
        let Token::SingleQuotedString(key) = key_token.token else {
            return Err(SqlError::expected(
                "option key as a string literal (e.g. 'connector')",
                &key_token,
            ));
        };
        if let Some(first) = options.iter().position(|(k, _)| *k == key) {
            let first = locations[first];
            return Err(SqlError::at(
                key_token.span.start,
                format!(
                    "duplicate option '{key}' (first given at line {}, column {})",
                    first.line, first.column
                ),
            ));
        }
        if !p.consume_token(&Token::Eq) {
            return Err(SqlError::expected(
                &format!("= after option key '{key}'"),
                p.peek_token_ref(),
            ));
        }
        let value_token = p.next_token();
        let value = match &value_token.token {
            Token::SingleQuotedString(s) => s.clone(),
            Token::Number(n, _) => n.clone(),
            Token::Word(w)
                if w.quote_style.is_none() && (w.keyword == Keyword::TRUE || w.keyword == Keyword::FALSE) =>
            {
                w.value.to_ascii_lowercase()
            }
            _ => {
                return Err(SqlError::at(
                    value_token.span.start,
                    format!(
                        "Expected: a string value for option '{key}', found: {}",
                        describe(&value_token.token)
                    ),
                ));
            }
        };
        options.push((key, value));
        locations.push(key_token.span.start);
        if p.consume_token(&Token::Comma) {
            continue;
        }
        if p.consume_token(&Token::RParen) {
            return Ok(options);
        }
        return Err(SqlError::expected(
            "',' or ')' after a WITH option",
            p.peek_token_ref(),
        ));
    }
}
