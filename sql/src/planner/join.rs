//! Lowering joins, as Flink plans them:
//!
//! - two windowed inputs joined on their `window_start` and `window_end`: a
//!   **window join**;
//! - two append-only inputs whose condition bounds the difference of their
//!   rowtime attributes from below and from above (`p.t BETWEEN o.t AND o.t +
//!   INTERVAL '15' MINUTE`): an **interval join**, append-only, keeping both
//!   inputs' rowtime attributes;
//! - anything else: a **regular join**, whose output is a changelog for
//!   outer joins or updating inputs, and which has no rowtime attributes
//!   (they become plain timestamps). Its state is unbounded, except where
//!   the condition of an inner join of append-only inputs bounds one
//!   input's rowtime by a timestamp of the other (`b.date_time BETWEEN
//!   a.date_time AND a.expires`): those rows expire by watermark
//!   ([`expiry_bounds`]).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, NullEquality, Result, ScalarValue, plan_err};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Between, BinaryExpr, Cast, Expr, Join, JoinType as DfJoinType, Operator as BinaryOp, TryCast,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use weir_engine::graph::{NodeKind, Partitioning};
use weir_engine::operator::Operator;
use weir_engine::operators::factory::FnOperatorFactory;
use weir_engine::operators::interval_join::{IntervalJoin, IntervalJoinConfig};
use weir_engine::operators::join::{JoinSpec, JoinType};
use weir_engine::operators::stream_join::{ExpiryBound, StreamJoin, StreamJoinConfig};
use weir_engine::operators::window_join::{WindowJoin, WindowJoinConfig, WindowJoinType};

use super::lower::{Lowering, Stream, TimeAttributes, WindowColumns};

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

impl Lowering<'_> {
    /// Lowers a join: a window join, an interval join or a regular join.
    pub(super) fn lower_join(&mut self, join: &Join) -> Result<Stream> {
        let join_type = match join.join_type {
            DfJoinType::Inner => JoinType::Inner,
            DfJoinType::Left => JoinType::Left,
            DfJoinType::Right => JoinType::Right,
            DfJoinType::Full => JoinType::Full,
            other => {
                return plan_err!(
                    "{other} joins (semi, anti and mark joins, from LEFT SEMI / ANTI JOIN or IN / EXISTS \
                     subqueries) are not supported on streams; use an INNER or OUTER join"
                );
            }
        };
        if join.null_equality == NullEquality::NullEqualsNull {
            return plan_err!(
                "join keys that match NULL with NULL (IS NOT DISTINCT FROM) are not supported on streams"
            );
        }
        let left = self.lower(&join.left)?;
        let left = self.materialize(left)?;
        let right = self.lower(&join.right)?;
        let right = self.materialize(right)?;
        if let Some(pairs) = window_pairs(join, &left, &right)? {
            return self.lower_window_join(join, join_type, left, right, pairs);
        }
        if !left.updating
            && !right.updating
            && let Some(filter) = &join.filter
            && let Some(bounds) = time_bounds(
                filter,
                &join.schema,
                left.schema.fields().len(),
                &left.times,
                &right.times,
            )?
        {
            return self.lower_interval_join(join, join_type, left, right, bounds);
        }
        self.lower_regular_join(join, join_type, left, right)
    }

    /// The parts of a join every kind shares: its spec (with `left_keys`
    /// and `right_keys` as the equality keys), and the parallelism and input
    /// partitionings of the join node (hash-partitioned on `keys`, the
    /// equality keys proper).
    fn join_spec(
        &self,
        join: &Join,
        join_type: JoinType,
        left: &Stream,
        right: &Stream,
        keys: &[(Expr, Expr)],
    ) -> Result<(JoinSpec, usize, Partitioning, Partitioning)> {
        let left_keys = keys
            .iter()
            .map(|(l, _)| self.physical(l, &left.schema))
            .collect::<Result<Vec<_>>>()?;
        let right_keys = keys
            .iter()
            .map(|(_, r)| self.physical(r, &right.schema))
            .collect::<Result<Vec<_>>>()?;
        let (parallelism, left_part, right_part) = if keys.is_empty() || self.parallelism == 1 {
            (1, Partitioning::Single, Partitioning::Single)
        } else {
            (
                self.parallelism,
                Partitioning::Hash(left_keys.clone()),
                Partitioning::Hash(right_keys.clone()),
            )
        };
        let spec = JoinSpec {
            join_type,
            left_keys,
            right_keys,
            filter: join
                .filter
                .as_ref()
                .map(|f| self.physical(f, &join.schema))
                .transpose()?,
            left_schema: Arc::new(left.schema.as_arrow().clone()),
            right_schema: Arc::new(right.schema.as_arrow().clone()),
            output_schema: Arc::new(join.schema.as_arrow().clone()),
        };
        Ok((spec, parallelism, left_part, right_part))
    }

    /// Adds a two-input join node fed by `left` and `right`.
    #[allow(clippy::too_many_arguments)]
    fn add_join_node(
        &mut self,
        slug: &str,
        name: String,
        factory: Arc<dyn weir_engine::graph::OperatorFactory>,
        schema: arrow::datatypes::SchemaRef,
        parallelism: usize,
        (left, left_part): (&Stream, Partitioning),
        (right, right_part): (&Stream, Partitioning),
    ) -> usize {
        let node = self.add_node(slug, name, NodeKind::Operator(factory), schema, parallelism, 2);
        self.connect(left.node, node, 0, left_part);
        self.connect(right.node, node, 1, right_part);
        node
    }

    /// A join of two streams with time bounds between their rowtime
    /// attributes: an interval join.
    fn lower_interval_join(
        &mut self,
        join: &Join,
        join_type: JoinType,
        left: Stream,
        right: Stream,
        bounds: TimeBounds,
    ) -> Result<Stream> {
        let (spec, parallelism, left_part, right_part) =
            self.join_spec(join, join_type, &left, &right, &join.on)?;
        let time = |s: &Stream, i: usize| -> Result<Arc<dyn PhysicalExpr>> {
            self.physical(
                &Expr::Column(Column::from(s.schema.qualified_field(i))),
                &s.schema,
            )
        };
        let config = Arc::new(IntervalJoinConfig {
            spec,
            left_time: time(&left, bounds.left_time)?,
            right_time: time(&right, bounds.right_time)?,
            lower: bounds.lower,
            upper: bounds.upper,
        });
        config.validate()?;
        // Flink's notation: bounds of `l.t - r.t`, in ms.
        let ms = |ns: i64| (ns as f64) / NS_PER_MS as f64;
        let name = format!(
            "IntervalJoin(joinType=[{join_type}], windowBounds=[leftLowerBound={}, leftUpperBound={}, \
             leftTimeIndex={}, rightTimeIndex={}], where=[{}])",
            ms(bounds.upper.saturating_neg()),
            ms(bounds.lower.saturating_neg()),
            bounds.left_time,
            bounds.right_time,
            condition(join)
        );
        let output_schema = config.spec.output_schema.clone();
        let partitioned_by = join_output_partitioning(&config.spec, &left_part, &right_part);
        let factory = FnOperatorFactory::new("interval-join", move |_, _| {
            Ok(Box::new(IntervalJoin::new(config.clone())?) as Box<dyn Operator>)
        });
        let node = self.add_join_node(
            "interval-join",
            name,
            factory,
            output_schema,
            parallelism,
            (&left, left_part),
            (&right, right_part),
        );
        Ok(Stream {
            node,
            schema: join.schema.clone(),
            updating: false,
            parallelism,
            pending: None,
            partitioned_by,
            window: WindowColumns::default(),
            times: TimeAttributes::joined(&left.times, &right.times, left.schema.fields().len(), true),
        })
    }

    /// Any other join: a regular join, whose output is a changelog unless it
    /// is an inner join of append-only inputs.
    fn lower_regular_join(
        &mut self,
        join: &Join,
        join_type: JoinType,
        left: Stream,
        right: Stream,
    ) -> Result<Stream> {
        let (spec, parallelism, left_part, right_part) =
            self.join_spec(join, join_type, &left, &right, &join.on)?;
        // Rows expire by watermark in inner joins of append-only inputs.
        let expiry = match (&join.filter, join_type, left.updating || right.updating) {
            (Some(filter), JoinType::Inner, false) => expiry_bounds(
                filter,
                &join.schema,
                left.schema.fields().len(),
                [&left.times, &right.times],
            ),
            _ => Default::default(),
        };
        let kind = |updating: bool| if updating { "changelog" } else { "append-only" };
        let mut name = format!(
            "Join(joinType=[{join_type}], where=[{}], leftInput=[{}], rightInput=[{}]",
            condition(join),
            kind(left.updating),
            kind(right.updating)
        );
        for (side, input, bounds) in [("left", &left, &expiry[0]), ("right", &right, &expiry[1])] {
            if !bounds.is_empty() {
                name.push_str(&format!(
                    ", {side}RowsExpireAt=[{}]",
                    expiry_sql(&input.schema, bounds)
                ));
            }
        }
        name.push(')');
        let config = Arc::new(StreamJoinConfig {
            spec,
            left_updating: left.updating,
            right_updating: right.updating,
            expiry,
        });
        let out = Stream {
            node: 0,
            schema: join.schema.clone(),
            updating: config.output_updating(),
            parallelism,
            pending: None,
            partitioned_by: join_output_partitioning(&config.spec, &left_part, &right_part),
            window: WindowColumns::default(),
            times: TimeAttributes::joined(&left.times, &right.times, left.schema.fields().len(), false),
        };
        let factory = FnOperatorFactory::new("join", move |_, _| {
            Ok(Box::new(StreamJoin::new(config.clone())?) as Box<dyn Operator>)
        });
        let node = self.add_join_node(
            "join",
            name,
            factory,
            out.physical_schema(),
            parallelism,
            (&left, left_part),
            (&right, right_part),
        );
        Ok(Stream { node, ..out })
    }

    /// A join of two windowed streams on their window bounds: a window join.
    fn lower_window_join(
        &mut self,
        join: &Join,
        join_type: JoinType,
        left: Stream,
        right: Stream,
        pairs: WindowPairs,
    ) -> Result<Stream> {
        if left.updating || right.updating {
            return plan_err!(
                "a window join cannot consume an updating input (the result of a non-windowed GROUP BY)"
            );
        }
        let WindowPairs { start, end, keys } = pairs;
        let left_keys = std::iter::once(&start.0)
            .chain(keys.iter().map(|k| &k.0))
            .map(|e| self.physical(e, &left.schema))
            .collect::<Result<Vec<_>>>()?;
        let right_keys = std::iter::once(&start.1)
            .chain(keys.iter().map(|k| &k.1))
            .map(|e| self.physical(e, &right.schema))
            .collect::<Result<Vec<_>>>()?;
        let filter = match &join.filter {
            Some(f) => Some(self.physical(f, &join.schema)?),
            None => None,
        };
        let output_schema = Arc::new(join.schema.as_arrow().clone());
        let config = Arc::new(WindowJoinConfig {
            join_type: match join_type {
                JoinType::Inner => WindowJoinType::Inner,
                JoinType::Left => WindowJoinType::Left,
                JoinType::Right => WindowJoinType::Right,
                JoinType::Full => WindowJoinType::Full,
            },
            left_window_end: self.physical(&end.0, &left.schema)?,
            right_window_end: self.physical(&end.1, &right.schema)?,
            left_keys,
            right_keys,
            filter,
            left_schema: left.physical_schema(),
            right_schema: right.physical_schema(),
            output_schema: output_schema.clone(),
        });
        let (parallelism, left_part, right_part) = if keys.is_empty() || self.parallelism == 1 {
            (1, Partitioning::Single, Partitioning::Single)
        } else {
            let lk = keys
                .iter()
                .map(|(l, _)| self.physical(l, &left.schema))
                .collect::<Result<Vec<_>>>()?;
            let rk = keys
                .iter()
                .map(|(_, r)| self.physical(r, &right.schema))
                .collect::<Result<Vec<_>>>()?;
            (self.parallelism, Partitioning::Hash(lk), Partitioning::Hash(rk))
        };
        let name = format!(
            "WindowJoin(joinType=[{}], where=[{}])",
            join.join_type,
            condition(join)
        );
        let factory = FnOperatorFactory::new("window-join", move |_, _| {
            Ok(Box::new(WindowJoin::new(config.clone())) as Box<dyn Operator>)
        });
        let node = self.add_join_node(
            "window-join",
            name,
            factory,
            output_schema,
            parallelism,
            (&left, left_part),
            (&right, right_part),
        );
        Ok(Stream {
            node,
            schema: join.schema.clone(),
            updating: false,
            parallelism,
            pending: None,
            partitioned_by: None,
            window: WindowColumns {
                start: left.window.start,
                end: left.window.end,
                time: left.window.time,
            },
            // The left input's time attributes (Flink keeps the left's window_time).
            times: TimeAttributes::joined(
                &left.times,
                &TimeAttributes::default(),
                left.schema.fields().len(),
                true,
            ),
        })
    }
}

/// The output columns of a regular or interval join that place its rows (see
/// [`Stream::partitioned_by`]): the key columns of the input whose rows
/// every output row carries (unmatched rows of the other input are placed
/// by that input's keys, so a full join has none), when the keys are plain
/// columns and the inputs are hash-partitioned on them.
fn join_output_partitioning(
    spec: &JoinSpec,
    left: &Partitioning,
    right: &Partitioning,
) -> Option<Vec<usize>> {
    if !matches!((left, right), (Partitioning::Hash(_), Partitioning::Hash(_))) {
        return None;
    }
    let (keys, offset) = match spec.join_type {
        JoinType::Inner | JoinType::Left => (&spec.left_keys, 0),
        JoinType::Right => (&spec.right_keys, spec.left_schema.fields().len()),
        JoinType::Full => return None,
    };
    keys.iter()
        .map(|k| k.downcast_ref::<PhysicalColumn>().map(|c| offset + c.index()))
        .collect()
}

/// The whole join condition, for node names: the equality pairs, then the
/// rest (with interval literals as SQL).
fn condition(join: &Join) -> String {
    let readable = |e: &Expr| -> String {
        e.clone()
            .transform(|e| match &e {
                Expr::Literal(v, _) => Ok(match interval_sql(v) {
                    // Shown as is: a column's name is displayed verbatim.
                    Some(sql) => Transformed::yes(Expr::Column(Column::new_unqualified(sql))),
                    None => Transformed::no(e),
                }),
                _ => Ok(Transformed::no(e)),
            })
            .map_or_else(|_| e.to_string(), |t| t.data.to_string())
    };
    join.on
        .iter()
        .map(|(l, r)| format!("{} = {}", readable(l), readable(r)))
        .chain(join.filter.iter().map(readable))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// An interval literal as SQL (`INTERVAL '15' MINUTE`), if it has no months
/// or only months.
fn interval_sql(v: &ScalarValue) -> Option<String> {
    let (ns, months) = match v {
        ScalarValue::IntervalYearMonth(Some(m)) => (0, *m),
        ScalarValue::IntervalMonthDayNano(Some(i)) => (interval_ns(v)?.0, i.months),
        _ => (interval_ns(v)?.0, 0),
    };
    if months != 0 {
        return (ns == 0).then(|| format!("INTERVAL '{months}' MONTH"));
    }
    const S: i64 = 1_000_000_000;
    for (unit, name) in [
        (NS_PER_DAY, "DAY"),
        (3600 * S, "HOUR"),
        (60 * S, "MINUTE"),
        (S, "SECOND"),
    ] {
        if ns % unit == 0 {
            return Some(format!("INTERVAL '{}' {name}", ns / unit));
        }
    }
    let fraction = format!("{:09}", (ns % S).abs());
    let sign = if ns < 0 { "-" } else { "" };
    Some(format!(
        "INTERVAL '{sign}{}.{}' SECOND",
        (ns / S).abs(),
        fraction.trim_end_matches('0')
    ))
}

/// The equality pairs of a window join: `window_start`s, `window_end`s, and
/// the keys proper.
struct WindowPairs {
    start: (Expr, Expr),
    end: (Expr, Expr),
    keys: Vec<(Expr, Expr)>,
}

/// The equality pairs of `join` if it is a window join: both inputs windowed
/// and joined on both their `window_start`s and their `window_end`s.
fn window_pairs(join: &Join, left: &Stream, right: &Stream) -> Result<Option<WindowPairs>> {
    let index = |s: &Stream, e: &Expr| -> Result<Option<usize>> {
        match e.clone().unalias() {
            Expr::Column(c) => Ok(Some(s.schema.index_of_column(&c)?)),
            _ => Ok(None),
        }
    };
    let (mut start, mut end) = (None, None);
    let mut keys = Vec::new();
    for (l, r) in &join.on {
        let (li, ri) = (index(left, l)?, index(right, r)?);
        if li.is_some() && li == left.window.start && ri.is_some() && ri == right.window.start {
            start = Some((l.clone(), r.clone()));
        } else if li.is_some() && li == left.window.end && ri.is_some() && ri == right.window.end {
            end = Some((l.clone(), r.clone()));
        } else {
            keys.push((l.clone(), r.clone()));
        }
    }
    Ok(match (start, end) {
        (Some(start), Some(end)) => Some(WindowPairs { start, end, keys }),
        _ => None,
    })
}

/// The time bounds of an interval join: `lower <= r.t - l.t <= upper` (ns),
/// with `l.t` column `left_time` of the left input and `r.t` column
/// `right_time` of the right input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimeBounds {
    pub(super) left_time: usize,
    pub(super) right_time: usize,
    pub(super) lower: i64,
    pub(super) upper: i64,
}

/// The interval join bounds in a join's non-equi condition `filter` (over the
/// joined row `schema`, whose first `left_width` columns are the left
/// input's), if its conjuncts bound `r.t - l.t` from below and from above for
/// rowtime attributes `l.t` of the left input and `r.t` of the right input.
/// Comparisons (`<`, `<=`, `>`, `>=`, `BETWEEN`; strict ones taken as
/// non-strict, the exact condition staying in the join's filter) may have
/// the columns on either side, plus or minus interval literals, inside
/// casts to timestamps. If several pairs of columns are bounded, the
/// narrowest bounds are taken. Months have no fixed length: an interval
/// with months in such a bound is an error.
pub(super) fn time_bounds(
    filter: &Expr,
    schema: &DFSchema,
    left_width: usize,
    left: &TimeAttributes,
    right: &TimeAttributes,
) -> Result<Option<TimeBounds>> {
    // The bounds found so far, per pair of time columns.
    let mut found: Vec<PartialBounds> = Vec::new();
    let mut add = |left_time: usize, right_time: usize, lower: Option<i64>, upper: Option<i64>| {
        let i = match found
            .iter()
            .position(|b| (b.left_time, b.right_time) == (left_time, right_time))
        {
            Some(i) => i,
            None => {
                found.push(PartialBounds {
                    left_time,
                    right_time,
                    lower: None,
                    upper: None,
                });
                found.len() - 1
            }
        };
        let b = &mut found[i];
        if let Some(l) = lower {
            b.lower = Some(b.lower.map_or(l, |x| x.max(l)));
        }
        if let Some(u) = upper {
            b.upper = Some(b.upper.map_or(u, |x| x.min(u)));
        }
    };
    for (conjunct, a, op, b) in comparisons(filter) {
        let greater = match op {
            BinaryOp::Gt | BinaryOp::GtEq => true,
            BinaryOp::Lt | BinaryOp::LtEq => false,
            _ => continue,
        };
        let (Some(a), Some(b)) = (Linear::of(a, schema), Linear::of(b, schema)) else {
            continue;
        };
        // d = a - b, compared with 0.
        let d = a.plus(&b, -1);
        let [(i, ci), (j, cj)] = d.terms[..] else { continue };
        let ((l, cl), (r, cr)) = if i < left_width && j >= left_width {
            ((i, ci), (j - left_width, cj))
        } else if j < left_width && i >= left_width {
            ((j, cj), (i - left_width, ci))
        } else {
            continue;
        };
        if !(cr.abs() == 1 && cl == -cr && left.is_rowtime(l) && right.is_rowtime(r)) {
            continue;
        }
        if d.months {
            return plan_err!(
                "an interval join's time bounds must be fixed durations (days, hours, minutes, \
                     seconds): an INTERVAL of months or years has no fixed length, in {conjunct}"
            );
        }
        // d = cr * (r.t - l.t) + offset, and d >= 0 (greater) or d <= 0.
        let c = d.offset;
        let (lower, upper) = match (greater, cr == 1) {
            (true, true) => (Some(c.saturating_neg()), None),
            (true, false) => (None, Some(c)),
            (false, true) => (None, Some(c.saturating_neg())),
            (false, false) => (Some(c), None),
        };
        add(l, r, lower, upper);
    }
    Ok(found
        .into_iter()
        .filter_map(|b| {
            Some(TimeBounds {
                left_time: b.left_time,
                right_time: b.right_time,
                lower: b.lower?,
                upper: b.upper?,
            })
        })
        .min_by_key(|b| b.upper.saturating_sub(b.lower)))
}

/// The [`ExpiryBound`]s of the rows of each input (left, right) of a
/// regular join in its non-equi condition `filter` (over the joined row
/// `schema`, whose first `left_width` columns are the left input's): a
/// conjunct that bounds a rowtime attribute `y.t` of one input from above by
/// a timestamp column `x.a` of the other, `y.t <= x.a + offset` (`<`, `<=`,
/// `>`, `>=`, `BETWEEN`, either way round, with interval literals, inside
/// casts to timestamps), bounds the rows of `x`'s input: such a row can only
/// match rows of the other input up to `x.a + offset`. Months have no
/// fixed length: such conjuncts bound nothing.
pub(super) fn expiry_bounds(
    filter: &Expr,
    schema: &DFSchema,
    left_width: usize,
    times: [&TimeAttributes; 2],
) -> [Vec<ExpiryBound>; 2] {
    let mut bounds: [Vec<ExpiryBound>; 2] = Default::default();
    let is_timestamp = |i: usize| matches!(schema.field(i).data_type(), DataType::Timestamp(..));
    for (_, a, op, b) in comparisons(filter) {
        let (Some(a), Some(b)) = (Linear::of(a, schema), Linear::of(b, schema)) else {
            continue;
        };
        // `d >= 0`, strict comparisons taken as non-strict.
        let d = match op {
            BinaryOp::Gt | BinaryOp::GtEq => a.plus(&b, -1),
            BinaryOp::Lt | BinaryOp::LtEq => b.plus(&a, -1),
            _ => continue,
        };
        if d.months {
            continue;
        }
        // d = x.a - y.t + offset >= 0, i.e. y.t <= x.a + offset.
        let [(i, ci), (j, cj)] = d.terms[..] else { continue };
        let (((x, 1), (y, -1)) | ((y, -1), (x, 1))) = ((i, ci), (j, cj)) else {
            continue;
        };
        let side_of = |c: usize| {
            if c < left_width {
                (0, c)
            } else {
                (1, c - left_width)
            }
        };
        let ((xs, xc), (ys, yc)) = (side_of(x), side_of(y));
        if xs != ys && times[ys].is_rowtime(yc) && is_timestamp(x) {
            let bound = ExpiryBound {
                column: xc,
                offset: d.offset,
            };
            if !bounds[xs].contains(&bound) {
                bounds[xs].push(bound);
            }
        }
    }
    bounds
}

/// `bounds` of rows of an input with `schema`, as SQL (`p.pay_time +
/// INTERVAL '1' MINUTE`), for node names.
fn expiry_sql(schema: &DFSchema, bounds: &[ExpiryBound]) -> String {
    let interval = |ns: i64| interval_sql(&ScalarValue::DurationNanosecond(Some(ns))).unwrap_or_default();
    bounds
        .iter()
        .map(|b| {
            let column = Column::from(schema.qualified_field(b.column));
            match b.offset.signum() {
                0 => column.to_string(),
                1 => format!("{column} + {}", interval(b.offset)),
                _ => format!("{column} - {}", interval(b.offset.saturating_neg())),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The comparisons `a op b` among the conjuncts of `filter`, each with its
/// conjunct (a `BETWEEN` is two).
fn comparisons(filter: &Expr) -> Vec<(&Expr, &Expr, BinaryOp, &Expr)> {
    let mut found = Vec::new();
    for conjunct in split_conjunction(filter) {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                found.push((conjunct, left.as_ref(), *op, right.as_ref()))
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                found.push((conjunct, expr.as_ref(), BinaryOp::GtEq, low.as_ref()));
                found.push((conjunct, expr.as_ref(), BinaryOp::LtEq, high.as_ref()));
            }
            _ => {}
        }
    }
    found
}

/// Bounds of `r.t - l.t` found so far for a pair of time columns.
struct PartialBounds {
    left_time: usize,
    right_time: usize,
    lower: Option<i64>,
    upper: Option<i64>,
}

/// `sum(coefficient * column) + offset` (ns): a timestamp expression made of
/// columns of the joined row and interval literals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Linear {
    /// (column index, coefficient), by column, without zero coefficients.
    terms: Vec<(usize, i64)>,
    offset: i64,
    /// Whether an interval literal had months (no fixed length).
    months: bool,
}

impl Linear {
    fn of(e: &Expr, schema: &DFSchema) -> Option<Linear> {
        match e {
            Expr::Column(c) => Some(Linear {
                terms: vec![(schema.index_of_column(c).ok()?, 1)],
                ..Linear::default()
            }),
            Expr::Literal(v, _) => {
                let (offset, months) = interval_ns(v)?;
                Some(Linear {
                    terms: Vec::new(),
                    offset,
                    months,
                })
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let sign = match op {
                    BinaryOp::Plus => 1,
                    BinaryOp::Minus => -1,
                    _ => return None,
                };
                Some(Linear::of(left, schema)?.plus(&Linear::of(right, schema)?, sign))
            }
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
                if matches!(field.data_type(), DataType::Timestamp(..)) =>
            {
                Linear::of(expr, schema)
            }
            Expr::Negative(e) => Some(Linear::default().plus(&Linear::of(e, schema)?, -1)),
            Expr::Alias(a) => Linear::of(&a.expr, schema),
            _ => None,
        }
    }

    /// `self + sign * other`.
    fn plus(&self, other: &Linear, sign: i64) -> Linear {
        let mut terms = self.terms.clone();
        for &(i, c) in &other.terms {
            match terms.iter_mut().find(|(j, _)| *j == i) {
                Some(t) => t.1 += sign * c,
                None => terms.push((i, sign * c)),
            }
        }
        terms.retain(|(_, c)| *c != 0);
        terms.sort_unstable();
        Linear {
            terms,
            offset: self.offset.saturating_add(other.offset.saturating_mul(sign)),
            months: self.months || other.months,
        }
    }
}

/// An interval or duration literal in ns, and whether it has months.
fn interval_ns(v: &ScalarValue) -> Option<(i64, bool)> {
    Some(match v {
        ScalarValue::IntervalDayTime(Some(i)) => (
            (i.days as i64)
                .saturating_mul(NS_PER_DAY)
                .saturating_add(i.milliseconds as i64 * NS_PER_MS),
            false,
        ),
        ScalarValue::IntervalMonthDayNano(Some(i)) => (
            (i.days as i64)
                .saturating_mul(NS_PER_DAY)
                .saturating_add(i.nanoseconds),
            i.months != 0,
        ),
        ScalarValue::IntervalYearMonth(Some(m)) => (0, *m != 0),
        ScalarValue::DurationSecond(Some(s)) => (s.saturating_mul(1_000_000_000), false),
        ScalarValue::DurationMillisecond(Some(ms)) => (ms.saturating_mul(NS_PER_MS), false),
        ScalarValue::DurationMicrosecond(Some(us)) => (us.saturating_mul(1_000), false),
        ScalarValue::DurationNanosecond(Some(ns)) => (*ns, false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::{Expr, col, lit};
    use datafusion::prelude::SessionContext;

    use super::*;

    const MIN: i64 = 60 * 1_000_000_000;

    /// The joined row `o.id, o.t, o.x, p.id, p.t, p.x`, `o.t` and `p.t` rowtime.
    fn schema() -> DFSchema {
        let fields = |q: &str| {
            let s = Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
                Field::new("x", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            ]);
            DFSchema::try_from_qualified_schema(q, &s).unwrap()
        };
        fields("o").join(&fields("p")).unwrap()
    }

    fn rowtime() -> TimeAttributes {
        TimeAttributes::rowtime(1)
    }

    /// Plans `sql` (a condition over `o` and `p`) as DataFusion does, simplified.
    fn expr(sql: &str) -> Expr {
        let ctx = SessionContext::new();
        let schema = schema();
        let e = ctx.parse_sql_expr(sql, &schema).unwrap();
        let info = datafusion::optimizer::simplify_expressions::SimplifyContext::builder()
            .with_schema(Arc::new(schema.clone()))
            .build();
        datafusion::optimizer::simplify_expressions::ExprSimplifier::new(info)
            .simplify(e)
            .unwrap()
    }

    fn bounds(sql: &str) -> Result<Option<(i64, i64)>> {
        let b = time_bounds(&expr(sql), &schema(), 3, &rowtime(), &rowtime())?;
        Ok(b.map(|b| {
            assert_eq!((b.left_time, b.right_time), (1, 1));
            (b.lower, b.upper)
        }))
    }

    #[test]
    fn forms_of_bounds() {
        let cases = [
            (
                "p.t BETWEEN o.t AND o.t + INTERVAL '15' MINUTE",
                Some((0, 15 * MIN)),
            ),
            (
                "p.t >= o.t - INTERVAL '1' HOUR AND p.t < o.t + INTERVAL '1' HOUR",
                Some((-60 * MIN, 60 * MIN)),
            ),
            (
                "o.t <= p.t AND o.t > p.t - INTERVAL '2' MINUTE",
                Some((0, 2 * MIN)),
            ),
            (
                "o.t - INTERVAL '1' MINUTE < p.t AND p.t + INTERVAL '1' MINUTE <= o.t + INTERVAL '3' MINUTE",
                Some((-MIN, 2 * MIN)),
            ),
            ("p.t = o.t", None),
            (
                "p.t BETWEEN o.t - INTERVAL '10' MINUTE AND o.t AND o.t BETWEEN p.t AND p.t + INTERVAL '5' MINUTE",
                Some((-5 * MIN, 0)),
            ),
            ("p.t >= o.t", None),
            ("p.t >= o.t AND p.id > o.id", None),
            // Not rowtime attributes: a regular join.
            ("p.x BETWEEN o.x AND o.x + INTERVAL '1' MINUTE", None),
            ("p.x BETWEEN o.t AND o.t + INTERVAL '1' MINUTE", None),
            (
                "p.t BETWEEN o.t AND o.t + INTERVAL '1' DAY",
                Some((0, 24 * 60 * MIN)),
            ),
            ("p.t > o.t OR p.t < o.t + INTERVAL '1' MINUTE", None),
        ];
        for (sql, want) in cases {
            assert_eq!(bounds(sql).unwrap(), want, "{sql}");
        }
    }

    #[test]
    fn the_tightest_pair_wins() {
        let attrs = TimeAttributes {
            rowtime: vec![1, 2],
            materialized: vec![],
        };
        let e = expr(
            "p.t BETWEEN o.t AND o.t + INTERVAL '10' MINUTE AND p.x BETWEEN o.x - INTERVAL '1' MINUTE AND o.x",
        );
        let b = time_bounds(&e, &schema(), 3, &attrs, &attrs).unwrap().unwrap();
        assert_eq!((b.left_time, b.right_time, b.lower, b.upper), (2, 2, -MIN, 0));
    }

    #[test]
    fn months_are_an_error() {
        let err = bounds("p.t BETWEEN o.t AND o.t + INTERVAL '1' MONTH").unwrap_err();
        assert!(err.to_string().contains("months"), "{err}");
        // Not a bound between rowtime attributes: no error.
        assert_eq!(bounds("p.x < o.x + INTERVAL '1' MONTH").unwrap(), None);
    }

    #[test]
    fn intervals_as_sql() {
        let sql = |days, ms| interval_sql(&ScalarValue::new_interval_dt(days, ms)).unwrap();
        assert_eq!(sql(0, 900_000), "INTERVAL '15' MINUTE");
        assert_eq!(sql(1, 0), "INTERVAL '1' DAY");
        assert_eq!(sql(0, -7_200_000), "INTERVAL '-2' HOUR");
        assert_eq!(sql(0, 1_500), "INTERVAL '1.5' SECOND");
        assert_eq!(sql(0, -250), "INTERVAL '-0.25' SECOND");
        assert_eq!(
            interval_sql(&ScalarValue::new_interval_mdn(2, 0, 0)).unwrap(),
            "INTERVAL '2' MONTH"
        );
        assert_eq!(interval_sql(&ScalarValue::new_interval_mdn(2, 1, 0)), None);
        assert_eq!(interval_sql(&ScalarValue::Int64(Some(1))), None);
    }

    #[test]
    fn casts_and_columns() {
        let e = col("p.t")
            .gt_eq(Expr::Cast(Cast::new(
                Box::new(col("o.t")),
                DataType::Timestamp(TimeUnit::Nanosecond, None),
            )))
            .and(col("p.t").lt(col("o.t") + lit(ScalarValue::new_interval_dt(0, 1000))));
        let b = time_bounds(&e, &schema(), 3, &rowtime(), &rowtime())
            .unwrap()
            .unwrap();
        assert_eq!((b.lower, b.upper), (0, 1_000_000_000));
    }

    /// Expiry bounds per side for `sql`, as (column, offset in minutes).
    fn expiries(sql: &str) -> [Vec<(usize, i64)>; 2] {
        expiry_bounds(&expr(sql), &schema(), 3, [&rowtime(), &rowtime()])
            .map(|side| side.iter().map(|b| (b.column, b.offset / MIN)).collect())
    }

    /// A conjunct bounding one input's rowtime (`t`) from above by a
    /// timestamp column of the other bounds the other's rows: `p.x >= o.t`
    /// lets a payment match orders up to its `x`, `p.t <= o.x + 1 minute`
    /// an order payments up to its `x` + 1 minute.
    #[test]
    fn rows_expire_where_the_condition_bounds_the_other_rowtime() {
        assert_eq!(expiries("p.x >= o.t"), [vec![], vec![(2, 0)]]);
        assert_eq!(
            expiries("o.t < p.x - INTERVAL '2' MINUTE"),
            [vec![], vec![(2, -2)]]
        );
        assert_eq!(
            expiries("p.t BETWEEN o.t AND o.x + INTERVAL '1' MINUTE"),
            [vec![(2, 1)], vec![(1, 0)]]
        );
        assert_eq!(
            expiries("p.x >= o.t AND p.t >= o.t"),
            [vec![], vec![(2, 0), (1, 0)]],
            "several bounds: a row expires at the least"
        );
        // No rowtime bounded from above by the other input.
        assert_eq!(expiries("p.x <= o.t"), [vec![], vec![]]);
        assert_eq!(expiries("p.x >= o.x"), [vec![], vec![]], "o.x is no rowtime");
        assert_eq!(expiries("p.id >= o.id"), [vec![], vec![]]);
        assert_eq!(expiries("o.x >= o.t"), [vec![], vec![]], "one input");
        assert_eq!(expiries("p.x >= o.t + INTERVAL '1' MONTH"), [vec![], vec![]]);
    }

    #[test]
    fn expiry_bounds_as_sql() {
        let schema = schema();
        let bound = |column, offset| ExpiryBound { column, offset };
        assert_eq!(
            expiry_sql(&schema, &[bound(1, 0), bound(2, MIN), bound(2, -2 * MIN)]),
            "o.t, o.x + INTERVAL '1' MINUTE, o.x - INTERVAL '2' MINUTE"
        );
    }
}
