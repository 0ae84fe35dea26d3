//! Malformed statements: each test checks the message and the line and column.

use super::{assert_error, error};

// ---- queries ---------------------------------------------------------------------------

#[test]
fn missing_from_target() {
    // points just after FROM
    assert_error(
        "SELECT * FROM",
        1,
        14,
        "Expected: identifier, found: end of statement",
    );
}

#[test]
fn unclosed_paren() {
    assert_error("SELECT (1 + 2 FROM t", 1, 15, "Expected: ), found: FROM");
}

#[test]
fn unterminated_string() {
    assert_error("SELECT 'abc FROM t", 1, 8, "Unterminated string literal");
}

#[test]
fn unterminated_string_on_a_later_line() {
    assert_error(
        "SELECT 1;\nSELECT a,\n       'oops\n FROM t;",
        3,
        8,
        "Unterminated string literal",
    );
}

#[test]
fn unterminated_backtick_identifier() {
    // columns count characters, not bytes
    assert_error(
        "SELECT 'héllo', `x FROM t",
        1,
        17,
        "Unterminated quoted identifier: missing closing `",
    );
}

#[test]
fn unterminated_block_comment() {
    assert_error("SELECT 1 /* no end", 1, 19, "Unterminated /* comment");
}

#[test]
fn trailing_garbage() {
    assert_error(
        "SELECT a FROM t garbage more",
        1,
        25,
        "Expected: end of statement, found: more",
    );
}

#[test]
fn missing_semicolon_between_statements() {
    assert_error(
        "SELECT 1\nSELECT 2",
        2,
        1,
        "Expected: end of statement, found: SELECT (missing ';' before it?)",
    );
}

#[test]
fn error_on_line_3_of_a_script() {
    let script = "CREATE TABLE t (a INT) WITH ('connector' = 'datagen');\n\
                  -- a comment; with a semicolon\n\
                  SELECT a FROM t WHERE;\n\
                  SELECT 1;";
    assert_error(script, 3, 22, "Expected: an expression, found: end of statement");
}

#[test]
fn error_in_a_statement_that_starts_mid_line() {
    assert_error(
        "SELECT 1; SELECT * FROM t WHERE a =",
        1,
        36,
        "Expected: an expression, found: end of statement",
    );
}

#[test]
fn unknown_statement() {
    assert_error("\n  SELEC 1", 2, 3, "Expected: a statement (SELECT, INSERT INTO");
    assert_error("\n  SELEC 1", 2, 3, "found: SELEC");
}

#[test]
fn too_deeply_nested_expression_is_an_error_not_a_crash() {
    // sqlparser's own recursion limit (no position: the statement start is reported)
    let sql = format!("SELECT 1;\nSELECT {}1{}", "(".repeat(60), ")".repeat(60));
    assert_error(&sql, 2, 1, "nested too deeply (recursion limit exceeded)");
    // weir's bracket limit, checked before sqlparser sees the statement
    let sql = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
    assert_error(&sql, 1, 72, "nested too deeply (more than 64 levels of brackets)");
}

#[test]
fn too_deeply_nested_type_is_an_error_not_a_stack_overflow() {
    let sql = format!(
        "CREATE TABLE t (a {}INT{})",
        "ARRAY<".repeat(1000),
        ">".repeat(1000)
    );
    assert_error(&sql, 1, 402, "nested too deeply");
}

// ---- CREATE TABLE ----------------------------------------------------------------------

#[test]
fn watermark_missing_as() {
    assert_error(
        "CREATE TABLE t (\n  ts TIMESTAMP(3),\n  WATERMARK FOR ts ts - INTERVAL '1' SECOND\n)",
        3,
        20,
        "Expected: AS after WATERMARK FOR ts (WATERMARK FOR <column> AS <expression>), found: ts",
    );
}

#[test]
fn watermark_missing_for_column() {
    assert_error(
        "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR AS ts)",
        1,
        48,
        "Expected: a column name after WATERMARK FOR",
    );
}

#[test]
fn watermark_without_for() {
    assert_error(
        "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK ts AS ts)",
        1,
        44,
        "Expected: FOR after WATERMARK (WATERMARK FOR <column> AS <expression>), found: ts",
    );
}

#[test]
fn watermark_missing_expression() {
    assert_error(
        "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS)",
        1,
        53,
        "Expected: an expression, found: )",
    );
}

#[test]
fn watermark_on_unknown_column() {
    assert_error(
        "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR x AS x)",
        1,
        48,
        "WATERMARK FOR unknown column x",
    );
}

#[test]
fn two_watermarks() {
    assert_error(
        "CREATE TABLE t (a TIMESTAMP, WATERMARK FOR a AS a, WATERMARK FOR a AS a)",
        1,
        52,
        "only one WATERMARK clause is allowed per table",
    );
}

#[test]
fn with_option_without_value() {
    assert_error(
        "CREATE TABLE t (a INT) WITH ('connector' = , 'topic' = 'x')",
        1,
        44,
        "Expected: a string value for option 'connector', found: ,",
    );
    assert_error(
        "CREATE TABLE t (a INT) WITH ('connector')",
        1,
        41,
        "Expected: = after option key 'connector', found: )",
    );
}

#[test]
fn non_string_option_key() {
    assert_error(
        "CREATE TABLE t (a INT)\nWITH (connector = 'kafka')",
        2,
        7,
        "Expected: option key as a string literal (e.g. 'connector'), found: connector",
    );
}

#[test]
fn duplicate_option() {
    assert_error(
        "CREATE TABLE t (a INT) WITH (\n  'topic' = 'a',\n  'topic' = 'b'\n)",
        3,
        3,
        "duplicate option 'topic' (first given at line 2, column 3)",
    );
}

#[test]
fn missing_comma_between_options() {
    assert_error(
        "CREATE TABLE t (a INT) WITH ('a' = 'x' 'b' = 'y')",
        1,
        40,
        "Expected: ',' or ')' after a WITH option, found: 'b'",
    );
}

#[test]
fn unclosed_column_list() {
    assert_error(
        "CREATE TABLE t (a INT, b STRING",
        1,
        32,
        "Expected: ',' or ')' after column definition, found: end of statement",
    );
}

#[test]
fn trailing_comma_in_column_list() {
    assert_error(
        "CREATE TABLE t (a INT,)",
        1,
        23,
        "Expected: a column definition, WATERMARK or PRIMARY KEY, found: )",
    );
}

#[test]
fn garbage_after_column_list() {
    assert_error(
        "CREATE TABLE t (a INT) garbage",
        1,
        24,
        "Expected: WITH ('key' = 'value', ...) or end of statement, found: garbage",
    );
}

#[test]
fn primary_key_on_unknown_column() {
    assert_error(
        "CREATE TABLE t (a INT, PRIMARY KEY (b) NOT ENFORCED)",
        1,
        37,
        "PRIMARY KEY column b is not a physical column",
    );
}

#[test]
fn enforced_primary_key() {
    assert_error(
        "CREATE TABLE t (a INT, PRIMARY KEY (a) ENFORCED)",
        1,
        24,
        "only PRIMARY KEY (...) NOT ENFORCED is allowed",
    );
}

#[test]
fn two_primary_keys() {
    assert_error(
        "CREATE TABLE t (a INT PRIMARY KEY, PRIMARY KEY (a))",
        1,
        36,
        "a table can have only one PRIMARY KEY (the first is at line 1, column 17)",
    );
}

#[test]
fn unsupported_constraint() {
    assert_error(
        "CREATE TABLE t (a INT, UNIQUE (a))",
        1,
        24,
        "UNIQUE constraints are not supported",
    );
}

#[test]
fn duplicate_column() {
    assert_error(
        "CREATE TABLE t (a INT, b AS a + 1, a STRING)",
        1,
        36,
        "duplicate column name a",
    );
}

#[test]
fn unsupported_column_option() {
    assert_error(
        "CREATE TABLE t (a INT DEFAULT 5)",
        1,
        17,
        "column option DEFAULT 5 of column a is not supported",
    );
}

#[test]
fn metadata_key_must_be_a_string() {
    assert_error(
        "CREATE TABLE t (a INT METADATA FROM 5)",
        1,
        37,
        "Expected: a metadata key string after METADATA FROM",
    );
}

#[test]
fn create_table_as_select() {
    assert_error(
        "CREATE TABLE t AS SELECT 1",
        1,
        16,
        "CREATE TABLE ... AS is not supported",
    );
}

#[test]
fn create_table_without_name() {
    assert_error("CREATE TABLE (a INT)", 1, 14, "Expected: identifier, found: (");
}

#[test]
fn create_something_else() {
    assert_error(
        "CREATE FUNCTION f AS 'com.example.F'",
        1,
        8,
        "CREATE FUNCTION is not supported; weir supports CREATE TABLE and CREATE VIEW",
    );
    assert_error(
        "CREATE",
        1,
        7,
        "Expected: TABLE or VIEW after CREATE, found: end of statement",
    );
}

#[test]
fn bad_data_type() {
    assert_error(
        "CREATE TABLE t (a INT, b MULTISET<INT>)",
        1,
        34,
        "Expected: ',' or ')' after column definition, found: <",
    );
}

#[test]
fn map_with_one_type() {
    assert_error(
        "CREATE TABLE t (a INT,\n  m MAP<STRING>)",
        2,
        5,
        "MAP takes a key type and a value type, as in MAP<STRING, INT>, found 1 type(s)",
    );
}

// ---- window TVFs ------------------------------------------------------------------------

#[test]
fn tumble_with_two_args() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))",
        1,
        21,
        "TUMBLE expects 3 or 4 arguments, found 2: TUMBLE(TABLE <table>, DESCRIPTOR(<time column>), <size> [, <offset>])",
    );
}

#[test]
fn hop_with_three_args() {
    assert_error(
        "SELECT *\nFROM TABLE(\n  HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        3,
        3,
        "HOP expects 4 or 5 arguments, found 3",
    );
}

#[test]
fn session_with_four_args() {
    assert_error(
        "SELECT * FROM TABLE(SESSION(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' MINUTE))",
        1,
        21,
        "SESSION expects 3 arguments, found 4",
    );
}

#[test]
fn tumble_without_descriptor() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, ts, INTERVAL '1' MINUTE))",
        1,
        37,
        "TUMBLE: argument 2 (TIMECOL) must be DESCRIPTOR(<time column>), found: ts",
    );
}

#[test]
fn tumble_without_table_keyword() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        1,
        28,
        "TUMBLE: argument 1 (DATA) must be TABLE <table name>, found: t",
    );
}

#[test]
fn descriptor_with_two_columns() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(a, b), INTERVAL '1' MINUTE))",
        1,
        37,
        "TUMBLE: DESCRIPTOR must name exactly one time column, found 2",
    );
}

#[test]
fn size_that_is_not_an_expression() {
    assert_error(
        "SELECT * FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), DESCRIPTOR(x), INTERVAL '1' HOUR))",
        1,
        55,
        "CUMULATE: argument 3 (STEP) must be an interval such as INTERVAL '1' MINUTE, found: DESCRIPTOR(x)",
    );
}

#[test]
fn table_of_a_non_window_function() {
    assert_error(
        "SELECT * FROM TABLE(generate_series(1, 10))",
        1,
        21,
        "TABLE(...) supports only the window functions TUMBLE, HOP, SESSION and CUMULATE, found: generate_series",
    );
}

#[test]
fn tvf_not_closed() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE) GROUP BY 1",
        1,
        74,
        "Expected: ) closing TABLE(TUMBLE(...)), found: GROUP",
    );
}

#[test]
fn tvf_table_without_name() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE , DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        1,
        34,
        "Expected: a table name after TABLE in TUMBLE, found: ,",
    );
}

#[test]
fn partition_by_outside_session() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        1,
        36,
        "PARTITION BY is only supported by SESSION windows, not TUMBLE",
    );
}

#[test]
fn named_argument_errors() {
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(DATA => TABLE t, WIDTH => INTERVAL '1' MINUTE))",
        1,
        45,
        "TUMBLE has no argument named WIDTH; its arguments are DATA, TIMECOL, SIZE, OFFSET",
    );
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(DATA => TABLE t, SIZE => INTERVAL '1' MINUTE))",
        1,
        21,
        "TUMBLE is missing its TIMECOL argument",
    );
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(DATA => TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        1,
        45,
        "TUMBLE: a positional argument cannot follow named arguments",
    );
    assert_error(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, SIZE => INTERVAL '2' MINUTE))",
        1,
        74,
        "TUMBLE: argument SIZE is given more than once",
    );
}

#[test]
fn tvf_outside_from_clause() {
    assert_error(
        "SELECT 1,\n  TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) FROM x",
        2,
        3,
        "TABLE(TUMBLE(...)) can only be used as a table, in a FROM clause or a JOIN",
    );
}

// ---- other statements -------------------------------------------------------------------

#[test]
fn stop_job_without_id() {
    assert_error(
        "STOP JOB",
        1,
        9,
        "Expected: a job id string after STOP JOB, e.g. STOP JOB '<job id>', found: end of statement",
    );
    assert_error("STOP JOB abc", 1, 10, "found: abc");
    assert_error("STOP 'abc'", 1, 6, "Expected: JOB after STOP, found: 'abc'");
}

#[test]
fn stop_job_with_drain() {
    assert_error(
        "STOP JOB 'a1' WITH DRAIN",
        1,
        20,
        "STOP JOB ... WITH DRAIN is not supported",
    );
}

#[test]
fn set_with_missing_value() {
    assert_error(
        "SET 'parallelism.default'",
        1,
        26,
        "Expected: = and a value after SET 'parallelism.default', found: end of statement",
    );
    assert_error(
        "SET 'parallelism.default' =",
        1,
        28,
        "Expected: a value after SET 'parallelism.default' =, found: end of statement",
    );
}

#[test]
fn set_with_spaces_in_unquoted_key() {
    assert_error(
        "SET pipeline name = 'x'",
        1,
        5,
        "an unquoted SET key must not contain spaces",
    );
}

#[test]
fn set_with_trailing_garbage_after_quoted_value() {
    assert_error("SET 'a' = 'b' c", 1, 15, "Expected: end of statement, found: c");
}

#[test]
fn insert_without_query() {
    assert_error(
        "INSERT INTO sink",
        1,
        17,
        "Expected: SELECT, VALUES, or a subquery in the query body, found: end of statement",
    );
}

#[test]
fn insert_overwrite_and_missing_into() {
    assert_error(
        "INSERT OVERWRITE t SELECT 1",
        1,
        8,
        "INSERT OVERWRITE is not supported",
    );
    assert_error("INSERT t SELECT 1", 1, 8, "Expected: INTO after INSERT, found: t");
}

#[test]
fn show_something_unknown() {
    assert_error(
        "SHOW CATALOGS",
        1,
        6,
        "Expected: TABLES, VIEWS, JOBS, FUNCTIONS or CHECKPOINTS after SHOW, found: CATALOGS",
    );
}

#[test]
fn drop_without_kind_or_name() {
    assert_error("DROP t", 1, 6, "Expected: TABLE or VIEW after DROP, found: t");
    assert_error(
        "DROP TABLE",
        1,
        11,
        "Expected: identifier, found: end of statement",
    );
}

#[test]
fn describe_without_name() {
    assert_error(
        "DESCRIBE",
        1,
        9,
        "Expected: a table or view name after DESCRIBE, found: end of statement",
    );
}

#[test]
fn explain_of_ddl() {
    assert_error(
        "EXPLAIN CREATE TABLE t (a INT)",
        1,
        9,
        "Expected: a query or an INSERT statement after EXPLAIN, found: CREATE",
    );
    assert_error("EXPLAIN PLAN SELECT 1", 1, 14, "Expected: FOR after EXPLAIN PLAN");
}

#[test]
fn error_inside_explained_query_keeps_its_position() {
    assert_error(
        "EXPLAIN\nSELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))",
        2,
        21,
        "TUMBLE expects 3 or 4 arguments, found 2",
    );
}

#[test]
fn create_view_without_query() {
    assert_error("CREATE VIEW v", 1, 14, "Expected: AS, found: end of statement");
}

#[test]
fn rendering() {
    let e = error("SELECT 1;\nSELECT (1");
    assert_eq!(
        e.to_string(),
        "SQL error at line 2, column 10: Expected: ), found: end of statement"
    );
}
