//! The Nexmark queries of the benchmark (`benches/nexmark/queries.rs`, the
//! same definitions) on weir, cross-checked against their batch SQL on
//! DataFusion over the same events: the sorted rows must be equal.
//!
//! weir reads the `nexmark` connector at parallelism 2, so each query only
//! generates the columns it reads (the others are NULL, see
//! `SourceSpec::reading_only`); DataFusion reads every column of the same
//! events, generated beforehand. An updating query's changelog is applied
//! (`+I`/`+U` add a row, `-U`/`-D` remove one) before comparing. Each
//! streaming column is cast to the batch result's type (the bench's sinks
//! cast the same way, e.g. q1's price to `DECIMAL(23, 3)`).
//!
//! The generator's `max-out-of-order` is 0 and every watermark is 4 s
//! behind, so no row is late and the streaming result is the batch result.

#[path = "../benches/nexmark/queries.rs"]
#[allow(dead_code)]
mod queries;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use queries::{QUERIES, Query, Table};
use weir::arrow::compute::cast;
use weir::arrow::record_batch::RecordBatch;
use weir::datafusion::datasource::MemTable;
use weir::datafusion::prelude::SessionContext;
use weir::{Engine, RowKind};

/// Events of all kinds: enough for every query to produce rows (q3, q8).
const EVENTS: u64 = 100_000;

fn nexmark_options(table: Table) -> String {
    format!(
        "'connector' = 'nexmark', 'table' = '{}', 'events.num' = '{EVENTS}', 'rate' = '0'",
        table.name()
    )
}

/// Every table, generated at parallelism 1 (in event-time order).
async fn materialize() -> HashMap<&'static str, Vec<RecordBatch>> {
    let engine = Engine::new();
    engine.execute("SET 'parallelism.default' = '1'").await.unwrap();
    let mut out = HashMap::new();
    for table in [Table::Person, Table::Auction, Table::Bid] {
        engine.execute(&table.ddl(&nexmark_options(table))).await.unwrap();
        let batches = engine
            .query(&format!("SELECT * FROM {}", table.name()))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        out.insert(table.name(), batches);
    }
    out
}

async fn batch_rows(
    query: &Query,
    tables: &HashMap<&'static str, Vec<RecordBatch>>,
) -> (Vec<String>, RecordBatch) {
    let ctx = SessionContext::new();
    for (name, batches) in tables {
        let table = MemTable::try_new(batches[0].schema(), vec![batches.clone()]).unwrap();
        ctx.register_table(*name, Arc::new(table)).unwrap();
    }
    let batches = ctx.sql(query.batch_sql()).await.unwrap().collect().await.unwrap();
    let schema = ctx
        .sql(query.batch_sql())
        .await
        .unwrap()
        .schema()
        .as_arrow()
        .clone();
    let empty = RecordBatch::new_empty(Arc::new(schema));
    (sorted(&batches), empty)
}

/// `query`'s rows on weir, its changelog applied, cast to `like`'s types.
async fn streaming_rows(query: &Query, like: &RecordBatch) -> Vec<String> {
    let engine = Engine::new();
    engine.execute("SET 'parallelism.default' = '2'").await.unwrap();
    for table in query.tables {
        engine
            .execute(&table.ddl(&nexmark_options(*table)))
            .await
            .unwrap();
    }
    let mut result = engine.query(query.select).await.unwrap();
    let mut live: HashMap<String, i64> = HashMap::new();
    while let Some(changes) = result.next_changes().await {
        let changes = changes.unwrap();
        let columns = changes
            .rows
            .columns()
            .iter()
            .zip(like.schema().fields())
            .map(|(c, f)| cast(c, f.data_type()).unwrap())
            .collect();
        let rows = RecordBatch::try_new(like.schema(), columns).unwrap();
        let lines = lines(&rows);
        for (line, kind) in lines.into_iter().zip(changes.kinds()) {
            let delta = match kind {
                RowKind::Insert | RowKind::UpdateAfter => 1,
                RowKind::UpdateBefore | RowKind::Delete => -1,
            };
            *live.entry(line).or_default() += delta;
        }
    }
    let mut rows = Vec::new();
    for (line, count) in live {
        assert!(
            count >= 0,
            "{}: {line} retracted more often than added",
            query.name
        );
        rows.extend(std::iter::repeat_n(line, count as usize));
    }
    rows.sort();
    rows
}

fn lines(batch: &RecordBatch) -> Vec<String> {
    weir::format::rows(batch)
        .unwrap()
        .into_iter()
        .map(|row| row.join("|"))
        .collect()
}

fn sorted(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = batches.iter().flat_map(lines).collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_query_matches_datafusion_batch() {
    let tables = materialize().await;
    let mut failures = Vec::new();
    for query in QUERIES {
        let (expected, like) = batch_rows(query, &tables).await;
        let got = streaming_rows(query, &like).await;
        assert!(
            !expected.is_empty(),
            "{}: the batch query returns no rows",
            query.name
        );
        if got != expected {
            let (ours, theirs): (HashSet<_>, HashSet<_>) = (got.iter().collect(), expected.iter().collect());
            let missing: Vec<_> = theirs.difference(&ours).take(3).collect();
            let extra: Vec<_> = ours.difference(&theirs).take(3).collect();
            failures.push(format!(
                "{}: {} rows on weir, {} in batch; missing e.g. {missing:?}; extra e.g. {extra:?}",
                query.name,
                got.len(),
                expected.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
