//! Column plumbing shared by the generators: binding a table's declared
//! columns to the columns a fixed-schema generator offers, and building
//! string and timestamp arrays of whatever Arrow type was declared.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, LargeStringBuilder, RecordBatch, RecordBatchOptions, StringBuilder, StringViewBuilder,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion::common::{Result, plan_err};

/// The logical type of a column that a fixed-schema generator offers, and the
/// Arrow types a table may declare it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `BIGINT`: `Int64`.
    BigInt,
    /// `VARCHAR`: `Utf8`, `LargeUtf8` or `Utf8View`.
    Varchar,
    /// `TIMESTAMP(p)`: `Timestamp` of any unit, with or without a time zone.
    Timestamp,
    /// An amount of money: `DOUBLE` (`Float64`) or `DECIMAL(p, s)` (`Decimal128`).
    Money,
}

impl ColumnKind {
    fn accepts(self, dt: &DataType) -> bool {
        match self {
            ColumnKind::BigInt => dt == &DataType::Int64,
            ColumnKind::Varchar => matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
            ColumnKind::Timestamp => matches!(dt, DataType::Timestamp(_, _)),
            ColumnKind::Money => matches!(dt, DataType::Float64 | DataType::Decimal128(_, _)),
        }
    }

    /// The Arrow type of the column in Flink's DDL.
    pub fn default_type(self) -> DataType {
        match self {
            ColumnKind::BigInt => DataType::Int64,
            ColumnKind::Varchar => DataType::Utf8,
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            ColumnKind::Money => DataType::Float64,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            ColumnKind::BigInt => "BIGINT",
            ColumnKind::Varchar => "VARCHAR",
            ColumnKind::Timestamp => "TIMESTAMP(3)",
            ColumnKind::Money => "DOUBLE or DECIMAL(p, s)",
        }
    }
}

/// A column a fixed-schema generator offers.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    /// The column's name, as Flink spells it.
    pub name: &'static str,
    /// Its logical type.
    pub kind: ColumnKind,
}

impl ColumnDef {
    /// A column `name` of `kind`.
    pub const fn new(name: &'static str, kind: ColumnKind) -> Self {
        ColumnDef { name, kind }
    }
}

/// Whether a declared column name `declared` names the generator column
/// `name`: compared ignoring case (SQL folds unquoted identifiers) and
/// underscores (so `dateTime`, as Flink's nexmark DDL spells it in places,
/// names `date_time`).
pub fn names_match(name: &str, declared: &str) -> bool {
    fn strip(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes().filter(|b| *b != b'_').map(|b| b.to_ascii_lowercase())
    }
    strip(name).eq(strip(declared))
}

/// Binds each column of `schema` (a table's declared columns, in order) to the
/// generator column of the same name (see [`names_match`]), checking its type.
///
/// Returns, for each declared column, the index of its generator column in
/// `defs`. A table may declare any subset of the columns, in any order.
pub fn bind_columns(what: &str, schema: &Schema, defs: &[ColumnDef]) -> Result<Vec<usize>> {
    let mut bound = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let Some(i) = defs.iter().position(|d| names_match(d.name, field.name())) else {
            return plan_err!(
                "{what} has no column '{}'; available columns are: {}",
                field.name(),
                defs.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
            );
        };
        let def = defs[i];
        if !def.kind.accepts(field.data_type()) {
            return plan_err!(
                "column '{}' of {what} is declared as {} but must be {}",
                field.name(),
                field.data_type(),
                def.kind.sql()
            );
        }
        bound.push(i);
    }
    Ok(bound)
}

/// A batch of `schema` with `columns`, also when the schema has no columns.
pub fn make_batch(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// A builder of any of Arrow's string types.
#[derive(Debug)]
pub enum StrBuilder {
    /// `Utf8`.
    Utf8(StringBuilder),
    /// `LargeUtf8`.
    Large(LargeStringBuilder),
    /// `Utf8View`.
    View(StringViewBuilder),
}

impl StrBuilder {
    /// A builder for `data_type` (which must be a string type) with room for
    /// `rows` values of `bytes` bytes in total.
    pub fn new(data_type: &DataType, rows: usize, bytes: usize) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => StrBuilder::Utf8(StringBuilder::with_capacity(rows, bytes)),
            DataType::LargeUtf8 => StrBuilder::Large(LargeStringBuilder::with_capacity(rows, bytes)),
            DataType::Utf8View => StrBuilder::View(StringViewBuilder::with_capacity(rows)),
            _ => return None,
        })
    }

    /// Appends a value.
    #[inline]
    pub fn append_value(&mut self, v: &str) {
        match self {
            StrBuilder::Utf8(b) => b.append_value(v),
            StrBuilder::Large(b) => b.append_value(v),
            StrBuilder::View(b) => b.append_value(v),
        }
    }

    /// Appends a null.
    #[inline]
    pub fn append_null(&mut self) {
        match self {
            StrBuilder::Utf8(b) => b.append_null(),
            StrBuilder::Large(b) => b.append_null(),
            StrBuilder::View(b) => b.append_null(),
        }
    }

    /// The array built so far (the builder is reset).
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            StrBuilder::Utf8(b) => Arc::new(b.finish()),
            StrBuilder::Large(b) => Arc::new(b.finish()),
            StrBuilder::View(b) => Arc::new(b.finish()),
        }
    }
}

/// A timestamp array of `data_type` (a `Timestamp`) from raw values in its unit.
pub fn timestamp_array(data_type: &DataType, values: Vec<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
    let (unit, tz) = match data_type {
        DataType::Timestamp(unit, tz) => (*unit, tz.clone()),
        _ => (TimeUnit::Millisecond, None),
    };
    let values = ScalarBuffer::from(values);
    match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::new(values, nulls).with_timezone_opt(tz)),
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::new(values, nulls).with_timezone_opt(tz))
        }
        TimeUnit::Microsecond => {
            Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone_opt(tz))
        }
        TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::new(values, nulls).with_timezone_opt(tz)),
    }
}

/// The unit of a `Timestamp` type (milliseconds for anything else).
pub fn timestamp_unit(data_type: &DataType) -> TimeUnit {
    match data_type {
        DataType::Timestamp(unit, _) => *unit,
        _ => TimeUnit::Millisecond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    const DEFS: &[ColumnDef] = &[
        ColumnDef::new("id", ColumnKind::BigInt),
        ColumnDef::new("itemName", ColumnKind::Varchar),
        ColumnDef::new("date_time", ColumnKind::Timestamp),
    ];

    #[test]
    fn binds_subsets_in_any_order_case_insensitively() {
        let schema = Schema::new(vec![
            Field::new(
                "date_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("itemname", DataType::Utf8View, true),
        ]);
        assert_eq!(bind_columns("t", &schema, DEFS).unwrap(), vec![2, 1]);
    }

    #[test]
    fn unknown_columns_and_wrong_types_are_explained() {
        let schema = Schema::new(vec![Field::new("price", DataType::Int64, false)]);
        let err = bind_columns("nexmark table 'x'", &schema, DEFS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'price'") && err.contains("id, itemName, date_time"),
            "{err}"
        );
        let schema = Schema::new(vec![Field::new("id", DataType::Int32, false)]);
        let err = bind_columns("t", &schema, DEFS).unwrap_err().to_string();
        assert!(err.contains("'id'") && err.contains("BIGINT"), "{err}");
    }
}
