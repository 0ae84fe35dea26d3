//! Session configuration: the keys `SET 'key' = 'value'` accepts, with
//! Flink's names, defaults and validation.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::common::{Result, plan_err};
use weir_engine::connector::parse_duration;
use weir_engine::key_group::DEFAULT_MAX_PARALLELISM;

/// A configuration key weir understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    pub description: &'static str,
    kind: ValueKind,
}

#[derive(Debug, Clone, Copy)]
enum ValueKind {
    PositiveInt,
    Duration,
    Bool,
    Text,
    OneOf(&'static [&'static str]),
}

/// Every key `SET` accepts.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "parallelism.default",
        default: "1",
        description: "parallelism of sources, aggregates and sinks",
        kind: ValueKind::PositiveInt,
    },
    ConfigKey {
        name: "pipeline.max-parallelism",
        default: "128",
        description: "number of key groups: the most subtasks keyed state can be spread over",
        kind: ValueKind::PositiveInt,
    },
    ConfigKey {
        name: "pipeline.name",
        default: "",
        description: "name of the next submitted job (default: derived from the statement)",
        kind: ValueKind::Text,
    },
    ConfigKey {
        name: "table.exec.source.idle-timeout",
        default: "0 ms",
        description: "a source with no data for this long stops holding back watermarks (0 = never)",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "table.dml-sync",
        default: "false",
        description: "whether INSERT INTO waits for its job to finish",
        kind: ValueKind::Bool,
    },
    ConfigKey {
        name: "execution.runtime-mode",
        default: "streaming",
        description: "only 'streaming' (bounded sources end their jobs by themselves)",
        kind: ValueKind::OneOf(&["streaming"]),
    },
    ConfigKey {
        name: "sql-client.execution.max-table-result.rows",
        default: "1000000",
        description: "rows the REPL shows of a SELECT before it stops the query",
        kind: ValueKind::PositiveInt,
    },
];

/// The session's configuration: defaults overridden by `SET`.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    values: BTreeMap<String, String>,
}

fn key_of(name: &str) -> Result<&'static ConfigKey> {
    CONFIG_KEYS.iter().find(|k| k.name == name).map_or_else(
        || {
            plan_err!(
                "unknown configuration key '{name}'; valid keys are: {}",
                CONFIG_KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            )
        },
        Ok,
    )
}

impl SessionConfig {
    /// Sets `key` after validating its value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key_of(key)?;
        let ok = match k.kind {
            ValueKind::PositiveInt => value.trim().parse::<usize>().is_ok_and(|v| v > 0),
            ValueKind::Duration => parse_duration(value).is_some(),
            ValueKind::Bool => {
                value.trim().eq_ignore_ascii_case("true") || value.trim().eq_ignore_ascii_case("false")
            }
            ValueKind::Text => true,
            ValueKind::OneOf(allowed) => allowed.iter().any(|a| a.eq_ignore_ascii_case(value.trim())),
        };
        if !ok {
            let expected = match k.kind {
                ValueKind::PositiveInt => "a positive integer".to_string(),
                ValueKind::Duration => "a duration such as '10 s'".to_string(),
                ValueKind::Bool => "true or false".to_string(),
                ValueKind::Text => "text".to_string(),
                ValueKind::OneOf(allowed) => format!("one of {}", allowed.join(", ")),
            };
            return plan_err!("invalid value '{value}' for '{key}': expected {expected}");
        }
        if k.name == "parallelism.default" || k.name == "pipeline.max-parallelism" {
            let (p, m) = if k.name == "parallelism.default" {
                (value.trim().parse::<usize>().unwrap_or(1), self.max_parallelism())
            } else {
                (self.parallelism(), value.trim().parse::<usize>().unwrap_or(1))
            };
            if p > m {
                return plan_err!("parallelism.default ({p}) cannot exceed pipeline.max-parallelism ({m})");
            }
        }
        self.values.insert(k.name.to_string(), value.trim().to_string());
        Ok(())
    }

    /// Resets `key` (or every key) to its default.
    pub fn reset(&mut self, key: Option<&str>) -> Result<()> {
        match key {
            Some(k) => {
                key_of(k)?;
                self.values.remove(k);
            }
            None => self.values.clear(),
        }
        Ok(())
    }

    /// The value of `key` (its default if not set).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .or_else(|| CONFIG_KEYS.iter().find(|k| k.name == key).map(|k| k.default))
    }

    /// Every key with its current value and whether it was set.
    pub fn entries(&self) -> Vec<(&'static str, String, bool)> {
        CONFIG_KEYS
            .iter()
            .map(|k| {
                let set = self.values.get(k.name);
                (
                    k.name,
                    set.cloned().unwrap_or_else(|| k.default.to_string()),
                    set.is_some(),
                )
            })
            .collect()
    }

    /// `parallelism.default`.
    pub fn parallelism(&self) -> usize {
        self.get("parallelism.default")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// `pipeline.max-parallelism`.
    pub fn max_parallelism(&self) -> usize {
        self.get("pipeline.max-parallelism")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_PARALLELISM)
    }

    /// `pipeline.name`, if set.
    pub fn pipeline_name(&self) -> Option<&str> {
        self.get("pipeline.name").filter(|n| !n.is_empty())
    }

    /// `table.exec.source.idle-timeout`, if not zero.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.get("table.exec.source.idle-timeout")
            .and_then(parse_duration)
            .filter(|d| !d.is_zero())
    }

    /// `table.dml-sync`.
    pub fn dml_sync(&self) -> bool {
        self.get("table.dml-sync")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// `sql-client.execution.max-table-result.rows`.
    pub fn max_result_rows(&self) -> usize {
        self.get("sql-client.execution.max-table-result.rows")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates_keys_and_values() {
        let mut c = SessionConfig::default();
        c.set("parallelism.default", "4").unwrap();
        assert_eq!(c.parallelism(), 4);
        let e = c.set("parallelism.defualt", "4").unwrap_err().to_string();
        assert!(
            e.contains("valid keys are") && e.contains("parallelism.default"),
            "{e}"
        );
        assert!(c.set("parallelism.default", "zero").is_err());
        assert!(c.set("pipeline.max-parallelism", "2").is_err());
        c.set("table.exec.source.idle-timeout", "5 s").unwrap();
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(5)));
        c.reset(None).unwrap();
        assert_eq!(c.parallelism(), 1);
    }
}
