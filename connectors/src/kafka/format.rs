//! How a Kafka record's key and value map to a table's columns (Flink's
//! `format` / `key.format` / `key.fields` / `value.fields-include`).

use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::{Result, plan_err};
use weir_engine::connector::{ConnectorOptions, TableRequest};

use crate::filesystem::JsonOptions;

/// The encoding of a record's key or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// A JSON object whose fields are the columns.
    Json(JsonOptions),
    /// The bytes as they are, in a single `STRING` or `BYTES` column.
    Raw,
}

/// Which columns come from (go to) the key and which from the value.
#[derive(Debug, Clone)]
pub struct RecordLayout {
    /// The value's format.
    pub value_format: RecordFormat,
    /// The columns in the value, in table order: indexes into the table's schema.
    pub value_columns: Vec<usize>,
    /// The key's format and columns, when the key carries columns
    /// (`key.format` + `key.fields`, or an upsert table's primary key).
    pub key: Option<(RecordFormat, Vec<usize>)>,
}

impl RecordLayout {
    /// Reads `format` (or `value.format`), `key.format`, `key.fields` and
    /// `value.fields-include` from a table's options. `primary_key` gives the
    /// key fields when `key.fields` is absent (upsert tables). Metadata
    /// columns are in neither key nor value.
    pub fn try_new(request: &TableRequest<'_>, key_from_primary_key: bool) -> Result<Self> {
        let options = request.options;
        let value_format = match (options.get("format"), options.get("value.format")) {
            (Some(_), Some(_)) => return plan_err!("set either 'format' or 'value.format', not both"),
            (Some(f), None) | (None, Some(f)) => parse_format(f, options, "format")?,
            (None, None) => return plan_err!("missing required option 'format' ('json' or 'raw')"),
        };
        let schema = request.schema;
        let physical: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| request.metadata_of(schema.field(i).name()).is_none())
            .collect();
        let key_fields: Vec<String> = match options.get("key.fields") {
            Some(list) => list
                .split(';')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect(),
            None if key_from_primary_key => request.primary_key.to_vec(),
            None => Vec::new(),
        };
        let key = match (options.get("key.format"), key_fields.is_empty()) {
            (None, true) => None,
            (None, false) => return plan_err!("'key.fields' needs 'key.format' ('json' or 'raw')"),
            (Some(_), true) => {
                return plan_err!("'key.format' needs the key's columns: 'key.fields' (e.g. 'id;region')");
            }
            (Some(f), false) => {
                let format = parse_format(f, options, "key.format")?;
                let mut columns = Vec::with_capacity(key_fields.len());
                for name in &key_fields {
                    match physical.iter().find(|&&i| schema.field(i).name() == name) {
                        Some(&i) => columns.push(i),
                        None => {
                            return plan_err!(
                                "key field '{name}' is not a physical column; columns are: {}",
                                physical
                                    .iter()
                                    .map(|&i| schema.field(i).name().as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            );
                        }
                    }
                }
                Some((format, columns))
            }
        };
        let include = options
            .get_enum("value.fields-include", &["all", "except_key"])?
            .unwrap_or_else(|| "all".into());
        let value_columns: Vec<usize> = match (&key, include.as_str()) {
            (Some((_, key_cols)), "except_key") => physical
                .iter()
                .copied()
                .filter(|i| !key_cols.contains(i))
                .collect(),
            _ => physical,
        };
        let layout = RecordLayout {
            value_format,
            value_columns,
            key,
        };
        layout.check_raw(schema)?;
        Ok(layout)
    }

    /// The schema of the value's columns.
    pub fn value_schema(&self, table: &SchemaRef) -> SchemaRef {
        std::sync::Arc::new(
            table
                .project(&self.value_columns)
                .expect("indexes from the schema"),
        )
    }

    /// The schema of the key's columns, if the key carries any.
    pub fn key_schema(&self, table: &SchemaRef) -> Option<SchemaRef> {
        self.key
            .as_ref()
            .map(|(_, cols)| std::sync::Arc::new(table.project(cols).expect("indexes from the schema")))
    }

    fn check_raw(&self, schema: &Schema) -> Result<()> {
        let parts = std::iter::once((&self.value_format, &self.value_columns, "value"))
            .chain(self.key.as_ref().map(|(f, c)| (f, c, "key")));
        for (format, columns, what) in parts {
            if *format != RecordFormat::Raw {
                continue;
            }
            let ok = columns.len() == 1
                && matches!(
                    schema.field(columns[0]).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
                );
            if !ok {
                return plan_err!(
                    "the 'raw' format needs exactly one STRING or BYTES column in the {what}, found {}",
                    columns
                        .iter()
                        .map(|&i| format!("{} {}", schema.field(i).name(), schema.field(i).data_type()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(())
    }
}

fn parse_format(name: &str, options: &ConnectorOptions, key: &str) -> Result<RecordFormat> {
    match name.to_ascii_lowercase().as_str() {
        "json" => Ok(RecordFormat::Json(JsonOptions::from_options(options)?)),
        "raw" => Ok(RecordFormat::Raw),
        other => plan_err!("invalid value '{other}' for option '{key}': expected one of json, raw"),
    }
}
