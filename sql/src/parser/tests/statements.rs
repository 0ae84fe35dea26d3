//! Valid statements of every kind.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ColumnOption, DataType, DateTimeField, Expr, ObjectName, Query, SetExpr, TableFactor, TimezoneInfo,
    visit_relations,
};

use super::one;
use crate::parser::{
    DropKind, WeirStatement, WindowKind, WindowTvf, is_complete, parse_statement, parse_statements,
    split_statements,
};

fn query_of(statement: WeirStatement) -> (Box<Query>, Vec<WindowTvf>) {
    match statement {
        WeirStatement::Query { query, window_tvfs } => (query, window_tvfs),
        other => panic!("not a query: {other:?}"),
    }
}

/// Every relation (table name) the query reads, in visiting order.
fn relations(query: &Query) -> Vec<String> {
    let mut names = Vec::new();
    let _ = visit_relations(query, |name: &ObjectName| {
        names.push(name.to_string());
        ControlFlow::<()>::Continue(())
    });
    names
}

fn strings(idents: &[impl ToString]) -> Vec<String> {
    idents.iter().map(ToString::to_string).collect()
}

// ---- CREATE TABLE ----------------------------------------------------------------------

#[test]
fn create_table_with_all_flink_extras() {
    let sql = "CREATE TABLE orders (
        id BIGINT NOT NULL COMMENT 'the id',
        price DECIMAL(10, 2),
        quantity INT,
        cost AS price * quantity,
        ts TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL,
        `partition` INT METADATA,
        WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,
        PRIMARY KEY (id) NOT ENFORCED
    ) COMMENT 'all orders'
    PARTITIONED BY (quantity)
    WITH (
        'connector' = 'kafka',
        'topic' = 'orders',
        'properties.bootstrap.servers' = 'localhost:9092',
        'scan.startup.mode' = 'earliest-offset',
        'format' = 'json'
    )";
    let WeirStatement::CreateTable(t) = one(sql) else {
        panic!("not a CREATE TABLE")
    };
    assert_eq!(t.name.to_string(), "orders");
    assert!(!t.if_not_exists && !t.or_replace && !t.temporary);
    assert_eq!(
        strings(&t.columns.iter().map(|c| &c.name).collect::<Vec<_>>()),
        ["id", "price", "quantity", "ts", "`partition`"]
    );
    assert_eq!(t.columns[0].data_type, DataType::BigInt(None));
    assert_eq!(
        t.columns[0]
            .options
            .iter()
            .map(|o| o.option.clone())
            .collect::<Vec<_>>(),
        [ColumnOption::NotNull, ColumnOption::Comment("the id".into())]
    );
    assert_eq!(t.columns[1].data_type.to_string(), "DECIMAL(10,2)");
    assert_eq!(
        t.columns[3].data_type,
        DataType::Timestamp(Some(3), TimezoneInfo::None)
    );

    assert_eq!(t.computed_columns.len(), 1);
    assert_eq!(t.computed_columns[0].name.value, "cost");
    assert_eq!(t.computed_columns[0].expr.to_string(), "price * quantity");
    assert_eq!(t.computed_columns[0].position, 3);

    assert_eq!(t.metadata_columns.len(), 2);
    assert_eq!(t.metadata_columns[0].name.value, "ts");
    assert_eq!(t.metadata_columns[0].key.as_deref(), Some("timestamp"));
    assert!(t.metadata_columns[0].is_virtual);
    assert_eq!(t.metadata_columns[1].name.value, "partition");
    assert_eq!(t.metadata_columns[1].key, None);
    assert!(!t.metadata_columns[1].is_virtual);

    let watermark = t.watermark.expect("watermark");
    assert_eq!(watermark.column.value, "ts");
    assert_eq!(watermark.expr.to_string(), "ts - INTERVAL '5' SECOND");
    // the watermark column keeps its position in the script
    assert_eq!(watermark.column.span.start.line, 8);

    assert_eq!(strings(&t.primary_key), ["id"]);
    assert_eq!(strings(&t.partitioned_by), ["quantity"]);
    assert_eq!(t.comment.as_deref(), Some("all orders"));
    assert_eq!(
        t.options,
        [
            ("connector", "kafka"),
            ("topic", "orders"),
            ("properties.bootstrap.servers", "localhost:9092"),
            ("scan.startup.mode", "earliest-offset"),
            ("format", "json"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[test]
fn create_table_modifiers_and_column_primary_key() {
    let WeirStatement::CreateTable(t) = one(
        "create temporary table if not exists db.t (id INT PRIMARY KEY NOT ENFORCED, \
         p AS PROCTIME()) with ('connector' = 'datagen', 'rows-per-second' = 10, 'x' = TRUE)",
    ) else {
        panic!()
    };
    assert_eq!(t.name.to_string(), "db.t");
    assert!(t.temporary && t.if_not_exists && !t.or_replace);
    assert_eq!(strings(&t.primary_key), ["id"]);
    assert!(t.columns[0].options.is_empty(), "PRIMARY KEY moved out");
    assert_eq!(t.computed_columns[0].expr.to_string(), "PROCTIME()");
    assert_eq!(
        t.options[1..],
        [
            ("rows-per-second".to_string(), "10".to_string()),
            ("x".to_string(), "true".to_string())
        ]
    );
    let WeirStatement::CreateTable(t) = one("CREATE OR REPLACE TABLE t (a INT)") else {
        panic!()
    };
    assert!(t.or_replace);
    assert!(t.options.is_empty() && t.watermark.is_none());
}

#[test]
fn create_table_flink_types() {
    let WeirStatement::CreateTable(t) = one("CREATE TABLE t (
        a STRING, b MAP<STRING, ARRAY<ROW<x INT>>>, c ROW<x INT, y STRING>,
        d ROW(x INT, y ROW(z DOUBLE)), e TIMESTAMP_LTZ(3), f TIMESTAMP(3) WITH LOCAL TIME ZONE,
        g BYTES, h BOOLEAN, i TIMESTAMP(3), j VARCHAR(10), k ARRAY<BIGINT>, l DATE)")
    else {
        panic!()
    };
    let types: Vec<String> = t.columns.iter().map(|c| c.data_type.to_string()).collect();
    assert_eq!(
        types,
        [
            "STRING",
            "Map(STRING, ARRAY<STRUCT<x INT>>)",
            "STRUCT<x INT, y STRING>",
            "STRUCT<x INT, y STRUCT<z DOUBLE>>",
            "TIMESTAMP(3) WITH TIME ZONE",
            "TIMESTAMP(3) WITH TIME ZONE",
            "BYTES",
            "BOOLEAN",
            "TIMESTAMP(3)",
            "VARCHAR(10)",
            "ARRAY<BIGINT>",
            "DATE",
        ]
    );
    assert_eq!(
        t.columns[4].data_type,
        DataType::Timestamp(Some(3), TimezoneInfo::WithTimeZone)
    );
}

#[test]
fn quoted_identifiers() {
    let WeirStatement::CreateTable(t) =
        one("CREATE TABLE `my table` (`select` INT, \"Mixed\" STRING, WATERMARK FOR `select` AS `select`)")
    else {
        panic!()
    };
    assert_eq!(t.name.0[0].as_ident().unwrap().value, "my table");
    assert_eq!(t.columns[0].name.value, "select");
    assert_eq!(t.columns[0].name.quote_style, Some('`'));
    assert_eq!(t.columns[1].name.value, "Mixed");
    assert_eq!(t.columns[1].name.quote_style, Some('"'));
    assert_eq!(t.watermark.unwrap().column.value, "select");
}

// ---- queries and window TVFs ------------------------------------------------------------

#[test]
fn plain_queries() {
    for sql in [
        "SELECT a, b FROM t WHERE a > 1",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "VALUES (1, 'a'), (2, 'b')",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "select count(*) from T group by a having count(*) > 1 order by 1 limit 5",
    ] {
        let (query, tvfs) = query_of(one(sql));
        assert!(tvfs.is_empty());
        assert!(!query.to_string().is_empty());
    }
}

#[test]
fn tumble_positional_with_alias() {
    let (query, tvfs) = query_of(one("SELECT window_start, window_end, COUNT(*) FROM TABLE(\n\
         TUMBLE(TABLE bids, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES)) AS w\n\
         GROUP BY window_start, window_end"));
    assert_eq!(tvfs.len(), 1);
    let tvf = &tvfs[0];
    assert_eq!(tvf.placeholder, "__weir_tvf_0");
    assert_eq!(tvf.kind, WindowKind::Tumble);
    assert_eq!(tvf.input.to_string(), "bids");
    assert_eq!(tvf.time_column.value, "bidtime");
    assert!(tvf.partition_by.is_empty());
    // plural unit normalized to the singular
    assert_eq!(tvf.size.to_string(), "INTERVAL '10' MINUTE");
    let Expr::Interval(interval) = &tvf.size else {
        panic!("size is not an interval")
    };
    assert_eq!(interval.leading_field, Some(DateTimeField::Minute));
    assert_eq!((&tvf.slide, &tvf.step, &tvf.offset), (&None, &None, &None));

    // the TVF became a plain table reference with the user's alias
    let SetExpr::Select(select) = query.body.as_ref() else {
        panic!()
    };
    let TableFactor::Table {
        name, alias, args, ..
    } = &select.from[0].relation
    else {
        panic!("not a table")
    };
    assert_eq!(name.to_string(), "__weir_tvf_0");
    assert_eq!(alias.as_ref().unwrap().name.value, "w");
    assert!(args.is_none());
    // the placeholder carries the location of `TABLE(...)`
    let span = name.0[0].as_ident().unwrap().span;
    assert_eq!((span.start.line, span.start.column), (1, 48));
    assert_eq!((span.end.line, span.end.column), (2, 64));
}

#[test]
fn tumble_with_offset_hop_session_cumulate() {
    let (_, tvfs) = query_of(one(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' HOUR, INTERVAL '5' MINUTE)) a
         JOIN TABLE(HOP(TABLE cat.db.t2, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '1' MINUTE)) b ON a.k = b.k
         JOIN TABLE(SESSION(TABLE t3 PARTITION BY k, DESCRIPTOR(ts), INTERVAL '30' SECONDS)) c ON a.k = c.k
         JOIN TABLE(SESSION(TABLE t4 PARTITION BY (k1, k2), DESCRIPTOR(ts), INTERVAL '1' MINUTE)) d ON TRUE
         JOIN TABLE(CUMULATE(TABLE t5, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' DAY)) e ON TRUE",
    ));
    let kinds: Vec<_> = tvfs.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            WindowKind::Tumble,
            WindowKind::Hop,
            WindowKind::Session,
            WindowKind::Session,
            WindowKind::Cumulate
        ]
    );
    let placeholders: Vec<_> = tvfs.iter().map(|t| t.placeholder.as_str()).collect();
    assert_eq!(
        placeholders,
        [
            "__weir_tvf_0",
            "__weir_tvf_1",
            "__weir_tvf_2",
            "__weir_tvf_3",
            "__weir_tvf_4"
        ]
    );
    assert_eq!(tvfs[0].size.to_string(), "INTERVAL '1' HOUR");
    assert_eq!(
        tvfs[0].offset.as_ref().unwrap().to_string(),
        "INTERVAL '5' MINUTE"
    );
    assert_eq!(tvfs[1].input.to_string(), "cat.db.t2");
    assert_eq!(tvfs[1].slide.as_ref().unwrap().to_string(), "INTERVAL '5' SECOND");
    assert_eq!(tvfs[1].size.to_string(), "INTERVAL '1' MINUTE");
    assert_eq!(strings(&tvfs[2].partition_by), ["k"]);
    assert_eq!(tvfs[2].size.to_string(), "INTERVAL '30' SECOND");
    assert_eq!(strings(&tvfs[3].partition_by), ["k1", "k2"]);
    assert_eq!(tvfs[4].step.as_ref().unwrap().to_string(), "INTERVAL '1' MINUTE");
    assert_eq!(tvfs[4].size.to_string(), "INTERVAL '1' DAY");
}

#[test]
fn named_arguments_in_any_order() {
    let (_, named) = query_of(one(
        "select * from table(tumble(size => interval '10' minutes, timecol => descriptor(ts), \
         data => table bids, offset => interval '1' minute))",
    ));
    let (_, positional) = query_of(one(
        "SELECT * FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' MINUTE, \
         INTERVAL '1' MINUTE))",
    ));
    assert_eq!(named, positional);

    let (_, session) = query_of(one(
        "SELECT * FROM TABLE(SESSION(DATA => TABLE bids PARTITION BY item, \
         TIMECOL => DESCRIPTOR(ts), GAP => INTERVAL '5' MINUTES))",
    ));
    assert_eq!(session[0].kind, WindowKind::Session);
    assert_eq!(strings(&session[0].partition_by), ["item"]);
    assert_eq!(session[0].size.to_string(), "INTERVAL '5' MINUTE");

    // positional first, then named
    let (_, mixed) = query_of(one(
        "SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), SIZE => INTERVAL '1' MINUTE, \
         SLIDE => INTERVAL '10' SECOND))",
    ));
    assert_eq!(mixed[0].size.to_string(), "INTERVAL '1' MINUTE");
    assert_eq!(
        mixed[0].slide.as_ref().unwrap().to_string(),
        "INTERVAL '10' SECOND"
    );
}

#[test]
fn tvfs_in_subqueries_and_ctes() {
    let (query, tvfs) = query_of(one(
        "WITH w AS (SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)))
         SELECT * FROM w WHERE k IN (
           SELECT k FROM (SELECT * FROM TABLE(HOP(TABLE w, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))))",
    ));
    assert_eq!(tvfs.len(), 2);
    assert_eq!(tvfs[1].input.to_string(), "w");
    let names = relations(&query);
    assert!(names.contains(&"__weir_tvf_0".to_string()), "{names:?}");
    assert!(names.contains(&"__weir_tvf_1".to_string()), "{names:?}");
    assert!(!query.to_string().contains("TUMBLE"));
}

#[test]
fn intervals() {
    let (query, _) = query_of(one(
        "SELECT INTERVAL '1' MINUTE, INTERVAL '10' MINUTES, INTERVAL '5' SECOND, \
         INTERVAL '2' HOURS, INTERVAL '3' DAYS, INTERVAL '1' YEARS",
    ));
    assert_eq!(
        query.to_string(),
        "SELECT INTERVAL '1' MINUTE, INTERVAL '10' MINUTE, INTERVAL '5' SECOND, \
         INTERVAL '2' HOUR, INTERVAL '3' DAY, INTERVAL '1' YEAR"
    );
}

// ---- INSERT, views, EXPLAIN ---------------------------------------------------------------

#[test]
fn insert_into() {
    let WeirStatement::Insert {
        table,
        columns,
        query,
        window_tvfs,
    } = one("INSERT INTO db.sink (a, b) SELECT window_start, COUNT(*) FROM \
         TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end")
    else {
        panic!()
    };
    assert_eq!(table.to_string(), "db.sink");
    assert_eq!(strings(&columns), ["a", "b"]);
    assert_eq!(window_tvfs.len(), 1);
    assert_eq!(relations(&query), ["__weir_tvf_0"]);

    let WeirStatement::Insert { columns, query, .. } = one("insert into s values (1, 'x')") else {
        panic!()
    };
    assert!(columns.is_empty());
    assert_eq!(query.to_string(), "VALUES (1, 'x')");
}

#[test]
fn create_view() {
    let WeirStatement::CreateView {
        name,
        columns,
        query,
        or_replace,
        if_not_exists,
        temporary,
        window_tvfs,
    } = one("CREATE TEMPORARY VIEW IF NOT EXISTS v (a, b) AS \
         SELECT window_start, window_end FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))")
    else {
        panic!()
    };
    assert_eq!(name.to_string(), "v");
    assert_eq!(strings(&columns), ["a", "b"]);
    assert!(temporary && if_not_exists && !or_replace);
    assert_eq!(window_tvfs[0].kind, WindowKind::Tumble);
    assert_eq!(relations(&query), ["__weir_tvf_0"]);

    let WeirStatement::CreateView {
        or_replace, columns, ..
    } = one("CREATE OR REPLACE VIEW v AS SELECT 1")
    else {
        panic!()
    };
    assert!(or_replace && columns.is_empty());
}

#[test]
fn explain() {
    let WeirStatement::Explain { query } = one("EXPLAIN SELECT 1") else {
        panic!()
    };
    assert!(matches!(*query, WeirStatement::Query { .. }));

    let WeirStatement::Explain { query } = one(
        "explain plan for INSERT INTO s SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), \
         INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))",
    ) else {
        panic!()
    };
    let WeirStatement::Insert { window_tvfs, .. } = *query else {
        panic!()
    };
    assert_eq!(window_tvfs[0].kind, WindowKind::Hop);
}

// ---- commands ----------------------------------------------------------------------------

#[test]
fn drop() {
    assert_eq!(
        one("DROP TABLE t"),
        WeirStatement::Drop {
            kind: DropKind::Table,
            names: vec![ObjectName::from(vec!["t".into()])],
            if_exists: false
        }
    );
    let WeirStatement::Drop {
        kind,
        names,
        if_exists,
    } = one("drop temporary view if exists a.v, w")
    else {
        panic!()
    };
    assert_eq!(kind, DropKind::View);
    assert!(if_exists);
    assert_eq!(strings(&names), ["a.v", "w"]);
}

#[test]
fn set_and_reset() {
    let set = |k: &str, v: &str| WeirStatement::Set {
        key: Some(k.into()),
        value: Some(v.into()),
    };
    assert_eq!(
        one("SET"),
        WeirStatement::Set {
            key: None,
            value: None
        }
    );
    assert_eq!(
        one("SET 'execution.checkpointing.interval' = '10s'"),
        set("execution.checkpointing.interval", "10s")
    );
    assert_eq!(
        one("set restart-strategy.type = fixed-delay"),
        set("restart-strategy.type", "fixed-delay")
    );
    assert_eq!(
        one("SET execution.checkpointing.interval = 10 s"),
        set("execution.checkpointing.interval", "10 s")
    );
    assert_eq!(one("SET `pipeline.name` = 'it''s'"), set("pipeline.name", "it's"));
    assert_eq!(one("RESET"), WeirStatement::Reset { key: None });
    assert_eq!(
        one("reset 'parallelism.default'"),
        WeirStatement::Reset {
            key: Some("parallelism.default".into())
        }
    );
    assert_eq!(
        one("RESET state.backend.type"),
        WeirStatement::Reset {
            key: Some("state.backend.type".into())
        }
    );
}

#[test]
fn show_describe_help() {
    assert_eq!(one("SHOW TABLES"), WeirStatement::ShowTables);
    assert_eq!(one("show views"), WeirStatement::ShowViews);
    assert_eq!(one("Show Jobs"), WeirStatement::ShowJobs);
    assert_eq!(one("SHOW FUNCTIONS"), WeirStatement::ShowFunctions);
    assert_eq!(one("HELP"), WeirStatement::Help);
    for sql in ["DESCRIBE db.t", "desc db.t"] {
        let WeirStatement::Describe { name } = one(sql) else {
            panic!()
        };
        assert_eq!(name.to_string(), "db.t");
    }
}

#[test]
fn stop_and_cancel_job() {
    assert_eq!(
        one("STOP JOB '228d70913eab60dda85c5e7f78b5782c'"),
        WeirStatement::StopJob {
            job_id: "228d70913eab60dda85c5e7f78b5782c".into(),
            with_savepoint: false,
            savepoint_dir: None,
            cancel: false
        }
    );
    assert_eq!(
        one("stop job 'j1' with savepoint"),
        WeirStatement::StopJob {
            job_id: "j1".into(),
            with_savepoint: true,
            savepoint_dir: None,
            cancel: false
        }
    );
    assert_eq!(
        one("CANCEL JOB 'j2'"),
        WeirStatement::StopJob {
            job_id: "j2".into(),
            with_savepoint: false,
            savepoint_dir: None,
            cancel: true
        }
    );
    assert_eq!(
        one("STOP JOB 'j1' WITH SAVEPOINT TO '/tmp/sp'"),
        WeirStatement::StopJob {
            job_id: "j1".into(),
            with_savepoint: true,
            savepoint_dir: Some("/tmp/sp".into()),
            cancel: false
        }
    );
}

#[test]
fn checkpoint_commands() {
    assert_eq!(
        one("SHOW CHECKPOINTS"),
        WeirStatement::ShowCheckpoints { job_id: None }
    );
    assert_eq!(
        one("show checkpoints for job 'j1'"),
        WeirStatement::ShowCheckpoints {
            job_id: Some("j1".into())
        }
    );
    assert_eq!(
        one("TRIGGER SAVEPOINT 'j1' TO '/tmp/sp'"),
        WeirStatement::Trigger {
            job_id: "j1".into(),
            savepoint: true,
            directory: Some("/tmp/sp".into())
        }
    );
    assert_eq!(
        one("TRIGGER CHECKPOINT 'j1'"),
        WeirStatement::Trigger {
            job_id: "j1".into(),
            savepoint: false,
            directory: None
        }
    );
    let e = parse_statements("TRIGGER SAVEPOINT j1").unwrap_err().to_string();
    assert!(e.contains("line 1, column 19") && e.contains("job id"), "{e}");
}

// ---- scripts -------------------------------------------------------------------------------

#[test]
fn scripts_comments_and_empty_input() {
    assert_eq!(parse_statements("").unwrap(), []);
    assert_eq!(
        parse_statements("  \n -- nothing\n /* at all */ ; ;").unwrap(),
        []
    );
    let statements = parse_statements(
        "-- the setup\n\
         SET 'a' = 'x;y'; /* a ; in a comment */\n\
         SELECT ';' AS `semi;colon` FROM t -- trailing ; comment\n\
         ;SHOW JOBS",
    )
    .unwrap();
    assert_eq!(statements.len(), 3);
    assert_eq!(
        statements[0],
        WeirStatement::Set {
            key: Some("a".into()),
            value: Some("x;y".into())
        }
    );
    assert!(matches!(statements[1], WeirStatement::Query { .. }));
    assert_eq!(statements[2], WeirStatement::ShowJobs);
}

#[test]
fn single_statement_helper() {
    assert_eq!(
        parse_statement("SHOW TABLES;").unwrap(),
        WeirStatement::ShowTables
    );
    let e = parse_statement("SHOW TABLES;\n SHOW JOBS").unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(2)));
    assert!(parse_statement(" -- empty").is_err());
}

#[test]
fn repl_helpers() {
    assert!(is_complete("SELECT 1;"));
    assert!(!is_complete("SELECT ';'"));
    assert_eq!(
        split_statements("SELECT 1;\nSHOW JOBS;"),
        [("SELECT 1".to_string(), 0), ("SHOW JOBS".to_string(), 1)]
    );
}
