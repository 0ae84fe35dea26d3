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
    NonNegativeInt,
    PositiveFloat,
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
    ConfigKey {
        name: "execution.checkpointing.interval",
        default: "0 ms",
        description: "time between periodic checkpoints (0 = checkpoints off)",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "execution.checkpointing.mode",
        default: "EXACTLY_ONCE",
        description: "EXACTLY_ONCE (aligned barriers) or AT_LEAST_ONCE (no alignment)",
        kind: ValueKind::OneOf(&["EXACTLY_ONCE", "AT_LEAST_ONCE"]),
    },
    ConfigKey {
        name: "execution.checkpointing.timeout",
        default: "10 min",
        description: "a checkpoint not complete after this is aborted",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "execution.checkpointing.min-pause",
        default: "0 ms",
        description: "least time between the end of one checkpoint and the start of the next",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "execution.checkpointing.max-concurrent-checkpoints",
        default: "1",
        description: "checkpoints that may be in progress at once",
        kind: ValueKind::PositiveInt,
    },
    ConfigKey {
        name: "execution.checkpointing.tolerable-failed-checkpoints",
        default: "0",
        description: "consecutive failed checkpoints tolerated before the job fails over",
        kind: ValueKind::NonNegativeInt,
    },
    ConfigKey {
        name: "execution.checkpointing.externalized-checkpoint-retention",
        default: "DELETE_ON_CANCELLATION",
        description: "whether retained checkpoints survive CANCEL JOB",
        kind: ValueKind::OneOf(&["DELETE_ON_CANCELLATION", "RETAIN_ON_CANCELLATION"]),
    },
    ConfigKey {
        name: "execution.checkpointing.num-retained",
        default: "1",
        description: "completed checkpoints kept",
        kind: ValueKind::PositiveInt,
    },
    ConfigKey {
        name: "execution.checkpointing.dir",
        default: "",
        description: "checkpoint directory (path or file:// URL); a job's go to <dir>/<pipeline.name>/chk-<n>",
        kind: ValueKind::Text,
    },
    ConfigKey {
        name: "execution.checkpointing.savepoint-dir",
        default: "",
        description: "default directory of savepoints",
        kind: ValueKind::Text,
    },
    ConfigKey {
        name: "execution.checkpointing.incremental",
        default: "false",
        description: "checkpoints write only what changed since the last one and share the rest (rocksdb: SST files; hashmap: leaves of its maps)",
        kind: ValueKind::Bool,
    },
    ConfigKey {
        name: "state.backend.type",
        default: "hashmap",
        description: "where keyed state lives: hashmap (heap) or rocksdb (local disk)",
        kind: ValueKind::OneOf(&["hashmap", "rocksdb"]),
    },
    ConfigKey {
        name: "state.backend.rocksdb.localdir",
        default: "",
        description: "local working directory of RocksDB state (default: the system temp directory)",
        kind: ValueKind::Text,
    },
    ConfigKey {
        name: "table.optimizer.reuse-join-partitioning",
        default: "true",
        description: "a GROUP BY whose keys include the key of the join below it keeps the join's \
                      partitioning instead of an exchange of its own (false: plan it as before, e.g. \
                      to restore state of a job planned so)",
        kind: ValueKind::Bool,
    },
    ConfigKey {
        name: "table.exec.state.ttl",
        default: "0 ms",
        description: "non-windowed state idle for longer is dropped (0 = kept forever)",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "execution.savepoint.path",
        default: "",
        description: "savepoint or checkpoint directory the next job starts from",
        kind: ValueKind::Text,
    },
    ConfigKey {
        name: "execution.savepoint.ignore-unclaimed-state",
        default: "false",
        description: "restore even if some operator state of the savepoint has no operator in the job",
        kind: ValueKind::Bool,
    },
    ConfigKey {
        name: "execution.state-recovery.from-latest",
        default: "true",
        description: "with a checkpoint directory, resume the job from its latest checkpoint (false = start fresh)",
        kind: ValueKind::Bool,
    },
    ConfigKey {
        name: "restart-strategy.type",
        default: "",
        description: "none, fixed-delay, failure-rate or exponential-delay (default: exponential-delay with \
                      checkpoints on, none otherwise)",
        kind: ValueKind::OneOf(&[
            "",
            "none",
            "disable",
            "off",
            "fixed-delay",
            "failure-rate",
            "exponential-delay",
        ]),
    },
    ConfigKey {
        name: "restart-strategy.fixed-delay.attempts",
        default: "1",
        description: "fixed-delay: restarts before the job fails",
        kind: ValueKind::NonNegativeInt,
    },
    ConfigKey {
        name: "restart-strategy.fixed-delay.delay",
        default: "1 s",
        description: "fixed-delay: time before each restart",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "restart-strategy.failure-rate.max-failures-per-interval",
        default: "1",
        description: "failure-rate: failures tolerated within the interval",
        kind: ValueKind::NonNegativeInt,
    },
    ConfigKey {
        name: "restart-strategy.failure-rate.failure-rate-interval",
        default: "1 min",
        description: "failure-rate: the interval failures are counted in",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "restart-strategy.failure-rate.delay",
        default: "1 s",
        description: "failure-rate: time before each restart",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "restart-strategy.exponential-delay.initial-backoff",
        default: "1 s",
        description: "exponential-delay: the first delay",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "restart-strategy.exponential-delay.max-backoff",
        default: "1 min",
        description: "exponential-delay: the largest delay",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "restart-strategy.exponential-delay.backoff-multiplier",
        default: "1.5",
        description: "exponential-delay: growth of the delay per restart",
        kind: ValueKind::PositiveFloat,
    },
    ConfigKey {
        name: "restart-strategy.exponential-delay.reset-backoff-threshold",
        default: "1 h",
        description: "exponential-delay: time without failure after which the delay resets",
        kind: ValueKind::Duration,
    },
    ConfigKey {
        name: "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        default: "2147483647",
        description: "exponential-delay: restarts before the job fails",
        kind: ValueKind::NonNegativeInt,
    },
];

/// Other names of keys, as older Flink versions spell them.
pub const CONFIG_ALIASES: &[(&str, &str)] = &[
    ("state.checkpoints.dir", "execution.checkpointing.dir"),
    ("state.savepoints.dir", "execution.checkpointing.savepoint-dir"),
    ("state.backend.incremental", "execution.checkpointing.incremental"),
    (
        "state.checkpoints.num-retained",
        "execution.checkpointing.num-retained",
    ),
    ("state.backend", "state.backend.type"),
    ("execution.state-recovery.path", "execution.savepoint.path"),
    (
        "execution.state-recovery.ignore-unclaimed-state",
        "execution.savepoint.ignore-unclaimed-state",
    ),
    ("restart-strategy", "restart-strategy.type"),
];

/// The session's configuration: defaults overridden by `SET`.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    values: BTreeMap<String, String>,
}

fn key_of(name: &str) -> Result<&'static ConfigKey> {
    let name = CONFIG_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical);
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
            ValueKind::NonNegativeInt => value.trim().parse::<u64>().is_ok(),
            ValueKind::PositiveFloat => value.trim().parse::<f64>().is_ok_and(|v| v > 0.0),
            ValueKind::Duration => parse_duration(value).is_some(),
            ValueKind::Bool => {
                value.trim().eq_ignore_ascii_case("true") || value.trim().eq_ignore_ascii_case("false")
            }
            ValueKind::Text => true,
            ValueKind::OneOf(allowed) => allowed.iter().any(|a| a.eq_ignore_ascii_case(value.trim())),
        };
        let value = match k.kind {
            // Canonical spelling, so later comparisons are exact.
            ValueKind::OneOf(allowed) => allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(value.trim()))
                .map_or(value, |a| *a),
            _ => value,
        };
        if !ok {
            let expected = match k.kind {
                ValueKind::PositiveInt => "a positive integer".to_string(),
                ValueKind::NonNegativeInt => "a non-negative integer".to_string(),
                ValueKind::PositiveFloat => "a positive number".to_string(),
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
                let k = key_of(k)?;
                self.values.remove(k.name);
            }
            None => self.values.clear(),
        }
        Ok(())
    }

    /// The value of `key` (its default if not set).
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = CONFIG_ALIASES
            .iter()
            .find(|(alias, _)| *alias == key)
            .map_or(key, |(_, canonical)| canonical);
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

    /// `table.optimizer.reuse-join-partitioning`.
    pub fn reuse_join_partitioning(&self) -> bool {
        self.get("table.optimizer.reuse-join-partitioning")
            .is_none_or(|v| v.eq_ignore_ascii_case("true"))
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

impl SessionConfig {
    fn duration(&self, key: &str) -> Duration {
        self.get(key).and_then(parse_duration).unwrap_or_default()
    }

    fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key)
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_string())
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// `state.backend.type`.
    pub fn state_backend(&self) -> &str {
        self.get("state.backend.type").unwrap_or("hashmap")
    }

    /// `execution.savepoint.path`, if set.
    pub fn savepoint_path(&self) -> Option<String> {
        self.text("execution.savepoint.path")
    }

    /// `execution.state-recovery.from-latest`.
    pub fn resume_from_latest(&self) -> bool {
        self.flag("execution.state-recovery.from-latest")
    }

    /// The job settings of checkpoints, state and restarts (the state backend
    /// is left as `hashmap`: the engine resolves [`Self::state_backend`]; the
    /// restore source is the engine's to find).
    pub fn fault_tolerance(&self) -> weir_engine::checkpoint::config::FaultToleranceConfig {
        use weir_engine::checkpoint::config::{CheckpointRetention, CheckpointingMode, FaultToleranceConfig};
        use weir_engine::checkpoint::coordinator::CheckpointSettings;
        use weir_engine::runtime::restart::RestartStrategy;
        let ms = |d: Duration| d.as_millis() as u64;
        let interval = self.duration("execution.checkpointing.interval");
        let checkpointing = !interval.is_zero();
        let restart = match self.get("restart-strategy.type").unwrap_or("") {
            "fixed-delay" => RestartStrategy::FixedDelay {
                attempts: self.number("restart-strategy.fixed-delay.attempts", 1),
                delay: self.duration("restart-strategy.fixed-delay.delay"),
            },
            "failure-rate" => RestartStrategy::FailureRate {
                max_failures: self.number("restart-strategy.failure-rate.max-failures-per-interval", 1),
                interval: self.duration("restart-strategy.failure-rate.failure-rate-interval"),
                delay: self.duration("restart-strategy.failure-rate.delay"),
            },
            "exponential-delay" => self.exponential_delay(),
            "" if checkpointing => self.exponential_delay(),
            _ => RestartStrategy::None,
        };
        let mut config = FaultToleranceConfig {
            interval_ms: checkpointing.then(|| ms(interval)),
            settings: CheckpointSettings {
                interval_ms: ms(interval),
                timeout_ms: ms(self.duration("execution.checkpointing.timeout")).max(1),
                min_pause_ms: ms(self.duration("execution.checkpointing.min-pause")),
                max_concurrent: self.number("execution.checkpointing.max-concurrent-checkpoints", 1),
                tolerable_failures: self.number("execution.checkpointing.tolerable-failed-checkpoints", 0),
                num_retained: self.number("execution.checkpointing.num-retained", 1),
            },
            mode: if self.get("execution.checkpointing.mode") == Some("AT_LEAST_ONCE") {
                CheckpointingMode::AtLeastOnce
            } else {
                CheckpointingMode::ExactlyOnce
            },
            retention: if self.get("execution.checkpointing.externalized-checkpoint-retention")
                == Some("RETAIN_ON_CANCELLATION")
            {
                CheckpointRetention::RetainOnCancellation
            } else {
                CheckpointRetention::DeleteOnCancellation
            },
            checkpoint_dir: self.text("execution.checkpointing.dir"),
            savepoint_dir: self.text("execution.checkpointing.savepoint-dir"),
            incremental: self.flag("execution.checkpointing.incremental"),
            restart,
            ignore_unclaimed_state: self.flag("execution.savepoint.ignore-unclaimed-state"),
            state_ttl_ms: ms(self.duration("table.exec.state.ttl")),
            ..FaultToleranceConfig::default()
        };
        if let Some(dir) = self.text("state.backend.rocksdb.localdir") {
            config.local_dir = dir.into();
        }
        config
    }

    fn exponential_delay(&self) -> weir_engine::runtime::restart::RestartStrategy {
        weir_engine::runtime::restart::RestartStrategy::ExponentialDelay {
            initial: self.duration("restart-strategy.exponential-delay.initial-backoff"),
            max: self.duration("restart-strategy.exponential-delay.max-backoff"),
            multiplier: self.number("restart-strategy.exponential-delay.backoff-multiplier", 1.5),
            reset_threshold: self.duration("restart-strategy.exponential-delay.reset-backoff-threshold"),
            attempts: self.number(
                "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                u32::MAX,
            ),
        }
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

    #[test]
    fn checkpoint_settings_with_flink_names_and_aliases() {
        use weir_engine::checkpoint::config::CheckpointingMode;
        use weir_engine::runtime::restart::RestartStrategy;
        let mut c = SessionConfig::default();
        assert!(!c.fault_tolerance().checkpointing());
        assert_eq!(c.fault_tolerance().restart, RestartStrategy::None);
        c.set("execution.checkpointing.interval", "2 s").unwrap();
        c.set("state.checkpoints.dir", "/tmp/x").unwrap();
        c.set("execution.checkpointing.mode", "at_least_once").unwrap();
        c.set("restart-strategy.type", "fixed-delay").unwrap();
        c.set("restart-strategy.fixed-delay.attempts", "3").unwrap();
        let f = c.fault_tolerance();
        assert_eq!(f.interval_ms, Some(2000));
        assert_eq!(f.checkpoint_dir.as_deref(), Some("/tmp/x"));
        assert_eq!(c.get("execution.checkpointing.dir"), Some("/tmp/x"));
        assert_eq!(f.mode, CheckpointingMode::AtLeastOnce);
        assert_eq!(
            f.restart,
            RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_secs(1)
            }
        );
        assert!(
            c.set("state.backend.type", "filesystem")
                .unwrap_err()
                .to_string()
                .contains("hashmap")
        );
        c.set("state.backend", "RocksDB").unwrap();
        assert_eq!(c.state_backend(), "rocksdb");
    }
}
