//! Join input pruning: before a plan is lowered, each input of a join is
//! narrowed, by a projection just below the join, to the columns the query
//! reads from it: the join keys, the join condition, and what the operators
//! above the join use.
//!
//! A join stores the rows of its inputs (a regular join, all of them, for
//! as long as the job runs), so a column no one reads would be shipped to the
//! join and kept in its state for nothing. Flink pushes such projections down
//! too. Dropping columns keeps the result: a join stores its rows as a
//! multiset, and rows that differ only in dropped columns join alike.
//!
//! The rewrite keeps the output schema of every node that is not a join, a
//! filter or an alias (those three pass a narrower input through): a
//! projection or aggregate above a pruned join computes what it computed
//! before, so the plan's result is unchanged.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef, Result};
use datafusion::logical_expr::{
    Aggregate, Expr, Filter, Join, JoinType, LogicalPlan, Projection, SubqueryAlias,
};

/// `plan` with every input of an inner or outer join narrowed to the columns
/// read from it.
pub(super) fn prune_join_inputs(plan: &LogicalPlan) -> Result<LogicalPlan> {
    prune(plan.clone(), None)
}

/// The output columns of a node that its consumer reads, by index; `None`:
/// all of them.
type Required = Option<BTreeSet<usize>>;

/// Prunes the joins below `plan`, whose consumer reads the `required`
/// columns of it. The result has every required column (by qualified name),
/// and with `required == None` exactly `plan`'s schema.
fn prune(plan: LogicalPlan, required: Required) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(p) => {
            let needed = columns_of(&p.expr, p.input.schema());
            let input = prune(Arc::unwrap_or_clone(p.input), needed)?;
            Ok(LogicalPlan::Projection(Projection::try_new_with_schema(
                p.expr,
                Arc::new(input),
                p.schema,
            )?))
        }
        LogicalPlan::Aggregate(a) => {
            let exprs: Vec<Expr> = a.group_expr.iter().chain(&a.aggr_expr).cloned().collect();
            let needed = columns_of(&exprs, a.input.schema());
            // A join's output narrowed too: the columns it reads only for
            // its condition are dropped (by a projection chained to it)
            // before its rows are shipped to the aggregate.
            let input = match Arc::unwrap_or_clone(a.input) {
                join @ LogicalPlan::Join(_) => narrow(join, needed)?,
                input => prune(input, needed)?,
            };
            Ok(LogicalPlan::Aggregate(Aggregate::try_new_with_schema(
                Arc::new(input),
                a.group_expr,
                a.aggr_expr,
                a.schema,
            )?))
        }
        LogicalPlan::Filter(f) => {
            let needed = union(
                required,
                columns_of(std::slice::from_ref(&f.predicate), f.input.schema()),
            );
            let input = prune(Arc::unwrap_or_clone(f.input), needed)?;
            Ok(LogicalPlan::Filter(Filter::try_new(
                f.predicate,
                Arc::new(input),
            )?))
        }
        LogicalPlan::SubqueryAlias(a) => {
            // Columns keep their positions through an alias.
            let input = prune(Arc::unwrap_or_clone(a.input), required)?;
            Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                Arc::new(input),
                a.alias,
            )?))
        }
        LogicalPlan::Join(j)
            if matches!(
                j.join_type,
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
            ) =>
        {
            prune_join(j, required)
        }
        // Anything else reads all of its inputs' columns (a union, by position).
        other => Ok(other.map_children(|c| prune(c, None).map(Transformed::yes))?.data),
    }
}

/// Narrows both inputs of `join` (whose output is its left input's columns
/// then its right input's) to what `required`, the keys and the condition
/// read.
fn prune_join(join: Join, required: Required) -> Result<LogicalPlan> {
    let left_width = join.left.schema().fields().len();
    let split = |columns: Required| -> (Required, Required) {
        match columns {
            None => (None, None),
            Some(c) => {
                let (l, r): (BTreeSet<usize>, BTreeSet<usize>) = c.into_iter().partition(|&i| i < left_width);
                (Some(l), Some(r.into_iter().map(|i| i - left_width).collect()))
            }
        }
    };
    let (mut left_needed, mut right_needed) = split(required);
    for (l, r) in &join.on {
        left_needed = union(
            left_needed,
            columns_of(std::slice::from_ref(l), join.left.schema()),
        );
        right_needed = union(
            right_needed,
            columns_of(std::slice::from_ref(r), join.right.schema()),
        );
    }
    if let Some(filter) = &join.filter {
        let (l, r) = split(columns_of(std::slice::from_ref(filter), &join.schema));
        left_needed = union(left_needed, l);
        right_needed = union(right_needed, r);
    }
    let (left_schema, right_schema) = (join.left.schema().clone(), join.right.schema().clone());
    let left = narrow(Arc::unwrap_or_clone(join.left), left_needed)?;
    let right = narrow(Arc::unwrap_or_clone(join.right), right_needed)?;
    let narrowed = left.schema() != &left_schema || right.schema() != &right_schema;
    let join = LogicalPlan::Join(Join {
        left: Arc::new(left),
        right: Arc::new(right),
        ..join
    });
    if narrowed {
        join.recompute_schema()
    } else {
        Ok(join)
    }
}

/// `plan` with only the `required` columns (at least one: a batch needs a
/// column to hold its rows), by a narrower projection if `plan` is one, or
/// by a projection on top.
fn narrow(plan: LogicalPlan, required: Required) -> Result<LogicalPlan> {
    let schema = plan.schema().clone();
    let mut keep = match required {
        Some(keep) if keep.len() < schema.fields().len() => keep,
        _ => return prune(plan, None),
    };
    if keep.is_empty() {
        keep.insert(0);
    }
    let narrowed = subset(&schema, &keep)?;
    if let LogicalPlan::Projection(p) = plan {
        let expr: Vec<Expr> = keep.iter().map(|&i| p.expr[i].clone()).collect();
        let needed = columns_of(&expr, p.input.schema());
        let input = prune(Arc::unwrap_or_clone(p.input), needed)?;
        return Ok(LogicalPlan::Projection(Projection::try_new_with_schema(
            expr,
            Arc::new(input),
            narrowed,
        )?));
    }
    // Pruning below may narrow `plan` itself: name the kept columns.
    let columns: Vec<Column> = keep
        .iter()
        .map(|&i| Column::from(schema.qualified_field(i)))
        .collect();
    let plan = prune(plan, Some(keep))?;
    if plan.schema().columns() == columns {
        return Ok(plan);
    }
    let expr = columns.into_iter().map(Expr::Column).collect();
    Ok(LogicalPlan::Projection(Projection::try_new_with_schema(
        expr,
        Arc::new(plan),
        narrowed,
    )?))
}

/// The columns of `schema` at `keep`, in order.
fn subset(schema: &DFSchema, keep: &BTreeSet<usize>) -> Result<DFSchemaRef> {
    let fields = keep
        .iter()
        .map(|&i| {
            let (qualifier, field) = schema.qualified_field(i);
            (qualifier.cloned(), Arc::clone(field))
        })
        .collect();
    Ok(Arc::new(DFSchema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )?))
}

/// The columns of `schema` that `exprs` read; `None` (all) if one cannot be
/// resolved in it.
fn columns_of(exprs: &[Expr], schema: &DFSchema) -> Required {
    let mut out = BTreeSet::new();
    for e in exprs {
        for c in e.column_refs() {
            out.insert(schema.index_of_column(c).ok()?);
        }
    }
    Some(out)
}

fn union(a: Required, b: Required) -> Required {
    let (mut a, b) = (a?, b?);
    a.extend(b);
    Some(a)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::functions_aggregate::expr_fn::max;
    use datafusion::logical_expr::logical_plan::builder::table_scan;
    use datafusion::logical_expr::{JoinType, LogicalPlanBuilder, col};

    use super::*;

    fn table(name: &str, columns: &[&str]) -> LogicalPlan {
        let schema = Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Int64, true))
                .collect::<Vec<_>>(),
        );
        table_scan(Some(name), &schema, None).unwrap().build().unwrap()
    }

    /// The columns of the inputs of the first join in `plan`.
    fn join_inputs(plan: &LogicalPlan) -> (Vec<String>, Vec<String>) {
        let names = |p: &LogicalPlan| p.schema().columns().iter().map(|c| c.flat_name()).collect();
        let mut found = None;
        plan.apply(|node| {
            if let LogicalPlan::Join(j) = node {
                found = Some((names(&j.left), names(&j.right)));
                return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        found.expect("a join")
    }

    #[test]
    fn join_inputs_keep_the_keys_the_condition_and_what_is_read_above() {
        // SELECT max(b.price), a.category FROM a, b
        // WHERE a.id = b.auction AND b.t >= a.t GROUP BY a.id, a.category
        let plan = LogicalPlanBuilder::from(table("a", &["id", "name", "t", "category", "extra"]))
            .join(
                table("b", &["auction", "bidder", "price", "t", "url"]),
                JoinType::Inner,
                (vec!["a.id"], vec!["b.auction"]),
                Some(col("b.t").gt_eq(col("a.t"))),
            )
            .unwrap()
            .aggregate(vec![col("a.id"), col("a.category")], vec![max(col("b.price"))])
            .unwrap()
            .build()
            .unwrap();
        let pruned = prune_join_inputs(&plan).unwrap();
        assert_eq!(pruned.schema(), plan.schema(), "the result is unchanged");
        assert_eq!(
            join_inputs(&pruned),
            (
                vec!["a.id".into(), "a.t".into(), "a.category".into()],
                vec!["b.auction".into(), "b.price".into(), "b.t".into()]
            )
        );
        // The join's output is narrowed too: a.t and b.t are read by its
        // condition only, b.auction by its key only.
        let LogicalPlan::Aggregate(aggregate) = &pruned else {
            panic!("{pruned}")
        };
        let LogicalPlan::Projection(narrowed) = aggregate.input.as_ref() else {
            panic!("{pruned}")
        };
        let names: Vec<String> = narrowed.schema.columns().iter().map(|c| c.flat_name()).collect();
        assert_eq!(names, ["a.id", "a.category", "b.price"]);
        assert!(matches!(narrowed.input.as_ref(), LogicalPlan::Join(_)));
    }

    #[test]
    fn nothing_is_pruned_where_everything_is_read() {
        // SELECT * FROM a LEFT JOIN b ON a.x = b.x: the result is every column.
        let plan = LogicalPlanBuilder::from(table("a", &["x", "y"]))
            .join(
                table("b", &["x", "z"]),
                JoinType::Left,
                (vec!["a.x"], vec!["b.x"]),
                None,
            )
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(prune_join_inputs(&plan).unwrap(), plan);
    }

    #[test]
    fn nested_joins_and_aliases_are_narrowed_by_name() {
        // SELECT j.v FROM (a JOIN b ON a.k = b.bk WHERE a.u > b.w) j JOIN c ON j.k = c.k:
        // the inner join aliased and read through a filter.
        let inner = LogicalPlanBuilder::from(table("a", &["k", "u"]))
            .join(
                table("b", &["bk", "v", "w"]),
                JoinType::Inner,
                (vec!["a.k"], vec!["b.bk"]),
                None,
            )
            .unwrap()
            .filter(col("a.u").gt(col("b.w")))
            .unwrap()
            .alias("j")
            .unwrap()
            .build()
            .unwrap();
        let plan = LogicalPlanBuilder::from(inner)
            .join(
                table("c", &["k", "q"]),
                JoinType::Inner,
                (vec!["j.k"], vec!["c.k"]),
                None,
            )
            .unwrap()
            .project(vec![col("j.v")])
            .unwrap()
            .build()
            .unwrap();
        let pruned = prune_join_inputs(&plan).unwrap();
        assert_eq!(pruned.schema(), plan.schema());
        // The outer join reads j.k and j.v; c.k only.
        assert_eq!(
            join_inputs(&pruned),
            (vec!["j.k".into(), "j.v".into()], vec!["c.k".into()])
        );
        // The inner join keeps what the filter and the outer join read.
        let LogicalPlan::Projection(top) = &pruned else {
            panic!()
        };
        let LogicalPlan::Join(outer) = top.input.as_ref() else {
            panic!()
        };
        assert_eq!(
            join_inputs(&outer.left),
            (
                vec!["a.k".into(), "a.u".into()],
                vec!["b.bk".into(), "b.v".into(), "b.w".into()]
            )
        );
    }
}
