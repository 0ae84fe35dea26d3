//! Which columns of each source table a query reads, so that a source able
//! to skip columns ([`SourceSpec::reading_only`]) produces only those.
//!
//! A source's schema stays the table's (every operator downstream indexes
//! columns by their position in it, and one source node feeds every scan of
//! its table); only the work of producing unread columns is saved: a
//! generator does not generate them, a decoder does not decode them.
//!
//! The analysis is DataFusion's own projection push-down
//! ([`OptimizeProjections`]), run on a copy of the plan that is then thrown
//! away (weir lowers unprojected scans): it leaves, on every table scan, the
//! columns its consumers need. A window TVF's input is a plan of its own
//! inside the TVF's table provider, so it is analysed the same way, asked
//! for the columns the TVF's consumers need plus the time column. A table
//! scanned several times reads the union. When the analysis fails, every
//! column of every table is read, as without it.
//!
//! [`SourceSpec::reading_only`]: weir_engine::source::SourceSpec::reading_only

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::DefaultTableSource;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::{Optimizer, OptimizerContext};

use super::providers::{StreamTable, WindowTvfTable};

/// The columns read of each table, by table name; a table that is not in
/// the map (or the whole map, if the analysis failed) is read entirely.
pub(super) type ReadColumns = HashMap<String, BTreeSet<usize>>;

/// The columns `plan` reads of each table it scans.
pub(super) fn read_columns(plan: &LogicalPlan) -> ReadColumns {
    let mut read = HashMap::new();
    match collect(plan, &mut read) {
        Ok(()) => read
            .into_iter()
            .filter_map(|(table, columns)| columns.map(|c| (table, c)))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// Per table: `Some(columns)`, or `None` once some scan reads all of them.
type Collected = HashMap<String, Option<BTreeSet<usize>>>;

fn collect(plan: &LogicalPlan, read: &mut Collected) -> Result<()> {
    let optimizer = Optimizer::with_rules(vec![Arc::new(OptimizeProjections::new())]);
    let projected = optimizer.optimize(plan.clone(), &OptimizerContext::new(), |_, _| {})?;
    let mut result = Ok(());
    projected.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(source) = scan.source.downcast_ref::<DefaultTableSource>()
        {
            let provider = &source.table_provider;
            if let Some(table) = provider.downcast_ref::<StreamTable>() {
                let entry = read
                    .entry(table.name.clone())
                    .or_insert_with(|| Some(BTreeSet::new()));
                match (&scan.projection, entry.as_mut()) {
                    (Some(projection), Some(columns)) => columns.extend(projection.iter().copied()),
                    (None, _) => *entry = None,
                    (Some(_), None) => {}
                }
            } else if let Some(tvf) = provider.downcast_ref::<WindowTvfTable>() {
                // The TVF's columns are its input's, then the window columns.
                let inputs = tvf.input.schema().fields().len();
                let mut needed: BTreeSet<usize> = match &scan.projection {
                    Some(projection) => projection.iter().copied().filter(|&i| i < inputs).collect(),
                    None => (0..inputs).collect(),
                };
                needed.insert(tvf.time_column);
                let exprs: Vec<Expr> = needed
                    .iter()
                    .map(|&i| {
                        Expr::Column(datafusion::common::Column::from(
                            tvf.input.schema().qualified_field(i),
                        ))
                    })
                    .collect();
                let narrowed = LogicalPlanBuilder::from(tvf.input.clone())
                    .project(exprs)
                    .and_then(|b| b.build());
                if let Err(e) = narrowed.and_then(|p| collect(&p, read)) {
                    result = Err(e);
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    result
}
