//! Connectors: named factories of sources and sinks, looked up by the
//! `'connector'` option of a table, and the validation of their options.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DataFusionError, Result, plan_err};

use crate::operator::Operator;
use crate::source::SourceSpec;

/// An option a connector accepts. `name` may contain `#` for a column name,
/// e.g. `fields.#.kind`, or end with `*` for any suffix, e.g. `properties.*`
/// (options passed through to a client library).
#[derive(Debug, Clone)]
pub struct OptionSpec {
    pub name: &'static str,
    pub description: &'static str,
}

impl OptionSpec {
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        OptionSpec { name, description }
    }

    fn matches(&self, key: &str, columns: &[String]) -> bool {
        if let Some(prefix) = self.name.strip_suffix('*') {
            return key.len() > prefix.len() && key.starts_with(prefix);
        }
        match self.name.split_once('#') {
            None => self.name == key,
            Some((prefix, suffix)) => key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(|col| columns.iter().any(|c| c == col)),
        }
    }
}

/// The `WITH (...)` options of a table, with typed accessors whose errors
/// name the option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorOptions {
    map: BTreeMap<String, String>,
}

impl ConnectorOptions {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        ConnectorOptions { map }
    }

    /// All options, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.map.iter()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value of a required option.
    pub fn required(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| DataFusionError::Plan(format!("missing required option '{key}'")))
    }

    /// An integer option.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.parse(key, "a non-negative integer", |v| v.parse::<u64>().ok())
    }

    /// A signed integer option.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.parse(key, "an integer", |v| v.parse::<i64>().ok())
    }

    /// A floating-point option.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        self.parse(key, "a number", |v| v.parse::<f64>().ok())
    }

    /// A boolean option (`true` / `false`).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.parse(key, "true or false", |v| {
            v.to_ascii_lowercase().parse::<bool>().ok()
        })
    }

    /// A duration option, in Flink's syntax (`5 s`, `100ms`, `1 min`, `2h`, a
    /// bare number of milliseconds).
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>> {
        self.parse(key, "a duration such as '5 s' or '100 ms'", parse_duration)
    }

    /// One of `allowed` values (case-insensitive); returns it lowercased.
    pub fn get_enum(&self, key: &str, allowed: &[&str]) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let lower = v.to_ascii_lowercase();
                if allowed.iter().any(|a| a.eq_ignore_ascii_case(&lower)) {
                    Ok(Some(lower))
                } else {
                    plan_err!(
                        "invalid value '{v}' for option '{key}': expected one of {}",
                        allowed.join(", ")
                    )
                }
            }
        }
    }

    fn parse<T>(&self, key: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match f(v.trim()) {
                Some(t) => Ok(Some(t)),
                None => plan_err!("invalid value '{v}' for option '{key}': expected {what}"),
            },
        }
    }

    /// Checks that every option is one of `specs` (plus `connector`), listing
    /// the valid ones otherwise.
    pub fn check_known(&self, connector: &str, specs: &[OptionSpec], columns: &[String]) -> Result<()> {
        let unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| k.as_str() != "connector" && !specs.iter().any(|s| s.matches(k, columns)))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let valid: BTreeSet<&str> = specs.iter().map(|s| s.name).collect();
        plan_err!(
            "unknown option{} {} for connector '{connector}'; valid options are: {} ('#' stands for a column name, '*' for any suffix)",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", "),
            valid.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Parses a duration in Flink's syntax: `<number> [unit]`, where unit is
/// `ms`, `s`, `min`, `h`, `d` (and their long forms); no unit means milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: f64 = num.parse().ok()?;
    let unit_ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "min" | "mins" | "minute" | "minutes" | "m" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * unit_ms / 1000.0).ok()
}

/// What a sink needs to know to be created.
#[derive(Debug, Clone)]
pub struct SinkRequest {
    /// The sink table's schema (the rows it receives, without a row-kind column).
    pub schema: SchemaRef,
    /// Whether the stream written into it is updating (carries row kinds).
    pub updating: bool,
}

/// A validated sink table: creates the per-subtask sink operators of a job.
pub trait SinkSpec: Send + Sync + fmt::Debug {
    /// Whether the sink accepts an updating stream (`-U`/`-D` rows). Append-only
    /// sinks return false, and the planner rejects updating queries into them.
    fn accepts_changelog(&self) -> bool;

    /// The most subtasks this sink can use, if limited (e.g. 1 for a single file).
    fn max_parallelism(&self) -> Option<usize> {
        None
    }

    /// Creates sink subtask `subtask` of `parallelism`: an [`Operator`] with no output.
    fn create(&self, request: &SinkRequest, subtask: usize, parallelism: usize) -> Result<Box<dyn Operator>>;
}

/// A metadata key a connector offers as a `METADATA` column (Flink's
/// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`), e.g. Kafka's `offset`.
#[derive(Debug, Clone)]
pub struct MetadataSpec {
    /// The key, as written after `FROM` (or as the column name).
    pub key: &'static str,
    /// The type the connector produces; a column must declare this type.
    pub data_type: DataType,
    /// Whether a sink writes it (otherwise the column must be `VIRTUAL` to be
    /// written to, and its value is ignored).
    pub writable: bool,
    pub description: &'static str,
}

/// A `METADATA` column declared by a table, validated against the
/// connector's [`MetadataSpec`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataColumn {
    /// The column's name in the table's schema.
    pub column: String,
    /// The connector's metadata key it reads.
    pub key: String,
    /// `VIRTUAL`: read-only, never written by a sink.
    pub is_virtual: bool,
}

/// Everything a connector is given to create a table's source or sink.
#[derive(Debug, Clone, Copy)]
pub struct TableRequest<'a> {
    /// All declared columns, physical and metadata, in declaration order.
    pub schema: &'a SchemaRef,
    pub options: &'a ConnectorOptions,
    /// The columns of `schema` that are metadata columns.
    pub metadata: &'a [MetadataColumn],
    /// `PRIMARY KEY (...) NOT ENFORCED` columns, normalised names.
    pub primary_key: &'a [String],
}

impl TableRequest<'_> {
    /// Whether column `name` is a metadata column.
    pub fn metadata_of(&self, name: &str) -> Option<&MetadataColumn> {
        self.metadata.iter().find(|m| m.column == name)
    }
}

/// A named kind of table: `'connector' = '<name>'`.
///
/// Implementations validate options eagerly (at `CREATE TABLE`), reporting
/// unknown options with the list of valid ones ([`ConnectorOptions::check_known`]).
pub trait Connector: Send + Sync {
    /// The value of `'connector'` that selects it.
    fn name(&self) -> &'static str;

    /// The options it accepts.
    fn options(&self) -> Vec<OptionSpec>;

    /// A source over a table of `schema` with `options`; an error if the
    /// connector is not a source or the options are invalid.
    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        let _ = (schema, options);
        plan_err!(
            "connector '{}' cannot be read from (it is a sink only)",
            self.name()
        )
    }

    /// A sink into a table of `schema` with `options`; an error if the
    /// connector is not a sink or the options are invalid.
    fn sink(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SinkSpec>> {
        let _ = (schema, options);
        plan_err!(
            "connector '{}' cannot be written to (it is a source only)",
            self.name()
        )
    }

    /// The metadata keys this connector offers as `METADATA` columns. The
    /// planner checks declared metadata columns against them before calling
    /// [`create_source`](Self::create_source) / [`create_sink`](Self::create_sink).
    fn metadata(&self) -> Vec<MetadataSpec> {
        Vec::new()
    }

    /// The source of a table; the default serves connectors that need only
    /// the schema and options ([`source`](Self::source)).
    fn create_source(&self, request: &TableRequest<'_>) -> Result<Arc<dyn SourceSpec>> {
        self.source(request.schema.clone(), request.options)
    }

    /// The sink of a table; the default serves connectors that need only the
    /// schema and options ([`sink`](Self::sink)).
    fn create_sink(&self, request: &TableRequest<'_>) -> Result<Arc<dyn SinkSpec>> {
        self.sink(request.schema.clone(), request.options)
    }
}

/// The connectors an engine knows, by name.
#[derive(Clone, Default)]
pub struct ConnectorRegistry {
    connectors: BTreeMap<&'static str, Arc<dyn Connector>>,
}

impl fmt::Debug for ConnectorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.connectors.keys()).finish()
    }
}

impl ConnectorRegistry {
    /// Adds (or replaces) a connector.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.insert(connector.name(), connector);
    }

    /// The names of all connectors, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.connectors.keys().copied().collect()
    }

    /// The connector named `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Connector>> {
        self.connectors.get(name).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "unknown connector '{name}'; available connectors are: {}",
                self.names().join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_flink_syntax() {
        assert_eq!(parse_duration("5 s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1 min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(
            parse_duration("1000000000000000000000000 d"),
            None,
            "overflow is an error, not a panic"
        );
    }

    #[test]
    fn unknown_options_list_valid_ones() {
        let opts = ConnectorOptions::new(
            [
                ("connector".into(), "x".into()),
                ("fields.a.kind".into(), "random".into()),
                ("rows-per-sec".into(), "1".into()),
            ]
            .into_iter()
            .collect(),
        );
        let specs = [
            OptionSpec::new("rows-per-second", ""),
            OptionSpec::new("fields.#.kind", ""),
        ];
        let err = opts
            .check_known("datagen", &specs, &["a".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'rows-per-sec'") && err.contains("rows-per-second"),
            "{err}"
        );
        assert!(opts.check_known("datagen", &specs[..1], &["a".into()]).is_err());
    }
}
