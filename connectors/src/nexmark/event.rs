//! The `event` table: Flink nexmark's combined form, one row per event of any
//! kind, with a nullable `ROW` column per kind.
//!
//! ```sql
//! CREATE TABLE datagen (
//!     event_type INT,
//!     person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
//!                city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR>,
//!     auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
//!                 reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
//!                 category BIGINT, extra VARCHAR>,
//!     bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
//!             dateTime TIMESTAMP(3), extra VARCHAR>,
//!     date_time TIMESTAMP(3)
//! ) WITH ('connector' = 'nexmark', 'table' = 'event');
//! ```
//!
//! `event_type` is 0 for a person, 1 for an auction, 2 for a bid; exactly the
//! row of that kind is set. Weir also offers the event's time as a plain
//! column, `date_time` (or `dateTime`), where Flink's DDL computes it, so that
//! it can carry the watermark directly. Every column and row field is
//! optional; fields are matched by name ignoring case and underscores.

use arrow::array::{ArrayRef, Int64Array, StructArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::common::{Result, plan_err};

use super::config::EventKind;
use super::generator::{Col, Generator, table_columns};
use crate::columns::{bind_columns, names_match};

/// One declared column of an `event` table.
#[derive(Debug, Clone)]
enum EventColumn {
    EventType,
    DateTime,
    Row {
        kind: EventKind,
        fields: Fields,
        columns: Vec<Col>,
    },
}

/// The declared columns of an `event` table, bound to the generator.
#[derive(Debug, Clone)]
pub struct EventLayout {
    columns: Vec<EventColumn>,
}

const KINDS: [EventKind; 3] = [EventKind::Person, EventKind::Auction, EventKind::Bid];

impl EventLayout {
    /// Binds the columns of `schema`.
    pub fn bind(schema: &Schema) -> Result<Self> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let name = field.name();
            let dt = field.data_type();
            let column = if names_match("event_type", name) {
                if !dt.is_integer() {
                    return plan_err!(
                        "column '{name}' of nexmark table 'event' is declared as {dt} but must be INT"
                    );
                }
                EventColumn::EventType
            } else if names_match("date_time", name) {
                if !matches!(dt, DataType::Timestamp(_, _)) {
                    return plan_err!(
                        "column '{name}' of nexmark table 'event' is declared as {dt} but must be TIMESTAMP(3)"
                    );
                }
                EventColumn::DateTime
            } else if let Some(kind) = KINDS.iter().copied().find(|k| names_match(k.table_name(), name)) {
                let DataType::Struct(fields) = dt else {
                    return plan_err!(
                        "column '{name}' of nexmark table 'event' is declared as {dt} but must be a ROW of the {} columns",
                        kind.table_name()
                    );
                };
                if !field.is_nullable() {
                    return plan_err!(
                        "column '{name}' of nexmark table 'event' must be nullable: it is null for the other kinds of events"
                    );
                }
                let defs: Vec<_> = table_columns(kind).iter().map(|(d, _)| *d).collect();
                let what = format!("the row '{name}' of nexmark table 'event'");
                let bound = bind_columns(&what, &Schema::new(fields.clone()), &defs)?;
                EventColumn::Row {
                    kind,
                    fields: fields.clone(),
                    columns: bound.into_iter().map(|i| table_columns(kind)[i].1).collect(),
                }
            } else {
                return plan_err!(
                    "nexmark table 'event' has no column '{name}'; available columns are: event_type, person, auction, bid, date_time"
                );
            };
            columns.push(column);
        }
        Ok(EventLayout { columns })
    }

    /// The columns of `schema` (the schema bound) for the events `ns`.
    pub fn generate(&self, generator: &Generator, schema: &Schema, ns: &[u64]) -> Result<Vec<ArrayRef>> {
        let config = generator.config();
        let mut out = Vec::with_capacity(self.columns.len());
        for (field, column) in schema.fields().iter().zip(&self.columns) {
            let array: ArrayRef = match column {
                EventColumn::EventType => {
                    let types = Int64Array::from_iter_values(ns.iter().map(|n| match config.kind(*n) {
                        EventKind::Person => 0,
                        EventKind::Auction => 1,
                        EventKind::Bid => 2,
                    }));
                    cast(&types, field.data_type())?
                }
                // The event time does not depend on the kind.
                EventColumn::DateTime => generator.column(EventKind::Bid, Col::DateTime, field, ns),
                EventColumn::Row {
                    kind,
                    fields,
                    columns,
                } => {
                    // Generate the events of this kind, then spread them over
                    // the batch, null elsewhere.
                    let mut mine = Vec::new();
                    let mut positions = Vec::with_capacity(ns.len());
                    for n in ns {
                        if config.kind(*n) == *kind {
                            positions.push(Some(mine.len() as u32));
                            mine.push(*n);
                        } else {
                            positions.push(None);
                        }
                    }
                    let children: Vec<ArrayRef> = fields
                        .iter()
                        .zip(columns)
                        .map(|(f, c)| generator.column(*kind, *c, f, &mine))
                        .collect();
                    let rows = StructArray::try_new(fields.clone(), children, None)?;
                    take(&rows, &UInt32Array::from(positions), None)?
                }
            };
            out.push(array);
        }
        Ok(out)
    }
}

/// The schema of Flink's nexmark `datagen` table, with `date_time`.
pub fn flink_event_schema() -> Schema {
    let row = |kind: EventKind| {
        let fields: Vec<Field> = table_columns(kind)
            .iter()
            .map(|(d, _)| Field::new(d.name, d.kind.default_type(), true))
            .collect();
        Field::new(kind.table_name(), DataType::Struct(fields.into()), true)
    };
    Schema::new(vec![
        Field::new("event_type", DataType::Int32, false),
        row(EventKind::Person),
        row(EventKind::Auction),
        row(EventKind::Bid),
        Field::new(
            "date_time",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::config::GeneratorConfig;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn rows_are_set_by_kind() {
        let schema = flink_event_schema();
        let layout = EventLayout::bind(&schema).unwrap();
        let generator = Generator::new(GeneratorConfig::new((1, 3, 46), 0, 1000.0, 0), 0);
        let ns: Vec<u64> = (0..100).collect();
        let columns = layout.generate(&generator, &schema, &ns).unwrap();
        let types = columns[0].as_primitive::<Int32Type>();
        for (i, n) in ns.iter().enumerate() {
            let t = types.value(i) as usize;
            assert_eq!(t, [0, 1, 1, 1].get(*n as usize % 50).copied().unwrap_or(2));
            for (k, c) in columns[1..4].iter().enumerate() {
                assert_eq!(c.is_valid(i), k == t, "event {n}");
            }
        }
        let persons = columns[1].as_struct();
        let ids = persons.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.value(50), 1001);
        assert_eq!(columns[4].len(), 100);
        assert_eq!(columns[3].as_struct().column(0).len(), 100);
    }

    #[test]
    fn bad_columns_are_explained() {
        let err = |fields: Vec<Field>| EventLayout::bind(&Schema::new(fields)).unwrap_err().to_string();
        let e = err(vec![Field::new("kind", DataType::Int32, false)]);
        assert!(e.contains("'kind'") && e.contains("event_type, person"), "{e}");
        let e = err(vec![Field::new("bid", DataType::Int64, true)]);
        assert!(e.contains("ROW"), "{e}");
        let e = err(vec![Field::new(
            "bid",
            DataType::Struct(
                vec![
                    Field::new("price", DataType::Int64, true),
                    Field::new("nope", DataType::Int64, true),
                ]
                .into(),
            ),
            true,
        )]);
        assert!(e.contains("'nope'") && e.contains("bidder"), "{e}");
    }
}
