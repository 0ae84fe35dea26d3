//! Evaluating the duration arguments of a window TVF.

use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::execution::context::SessionState;
use datafusion::sql::sqlparser::ast::Expr as SqlExpr;
use weir_engine::operators::window::WindowKind;

use crate::parser::{WindowKind as TvfKind, WindowTvf};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Evaluates a constant interval expression to nanoseconds.
fn duration_ns(state: &SessionState, tvf: &WindowTvf, what: &str, expr: &SqlExpr) -> Result<i64> {
    let schema = DFSchema::empty();
    let logical = state.create_logical_expr(&expr.to_string(), &schema)?;
    let physical = state.create_physical_expr(logical, &schema)?;
    let batch = arrow::record_batch::RecordBatch::try_new_with_options(
        std::sync::Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = physical.evaluate(&batch)?.into_array(1)?;
    let scalar = ScalarValue::try_from_array(&value, 0)?;
    let ns = match scalar {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * NANOS_PER_DAY + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * NANOS_PER_DAY + v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v * 1_000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v),
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return plan_err!(
                "{} {what}: month and year intervals have no fixed length; use days or smaller units ({expr})",
                tvf.kind.name()
            );
        }
        _ => None,
    };
    match ns {
        Some(ns) => Ok(ns),
        None => plan_err!(
            "{} {what} must be a constant INTERVAL such as INTERVAL '1' MINUTE, found {expr}",
            tvf.kind.name()
        ),
    }
}

/// The window a TVF describes, with its arguments evaluated and validated.
pub fn window_kind(state: &SessionState, tvf: &WindowTvf) -> Result<WindowKind> {
    let offset = match &tvf.offset {
        Some(e) => duration_ns(state, tvf, "offset", e)?,
        None => 0,
    };
    let kind = match tvf.kind {
        TvfKind::Tumble => WindowKind::Tumble {
            size: duration_ns(state, tvf, "size", &tvf.size)?,
            offset,
        },
        TvfKind::Hop => {
            let Some(slide) = &tvf.slide else {
                return plan_err!("HOP needs a slide");
            };
            WindowKind::Hop {
                slide: duration_ns(state, tvf, "slide", slide)?,
                size: duration_ns(state, tvf, "size", &tvf.size)?,
                offset,
            }
        }
        TvfKind::Cumulate => {
            let Some(step) = &tvf.step else {
                return plan_err!("CUMULATE needs a step");
            };
            WindowKind::Cumulate {
                step: duration_ns(state, tvf, "step", step)?,
                max: duration_ns(state, tvf, "max size", &tvf.size)?,
                offset,
            }
        }
        TvfKind::Session => WindowKind::Session {
            gap: duration_ns(state, tvf, "gap", &tvf.size)?,
        },
    };
    kind.validate()?;
    Ok(kind)
}
