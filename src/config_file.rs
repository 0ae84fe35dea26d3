//! The configuration file: TOML with Flink's key names.
//!
//! ```toml
//! "parallelism.default" = 2
//! [execution.checkpointing]
//! interval = "10 s"
//! dir = "/var/lib/weir/checkpoints"
//! [state.backend]
//! type = "rocksdb"
//! ```
//!
//! Tables nest into dotted keys (`[execution.checkpointing] interval` is
//! `execution.checkpointing.interval`); values may be strings, numbers or
//! booleans. Keys are validated like `SET`.

use std::path::Path;

use crate::error::{Error, Result};

/// The `(key, value)` pairs of configuration file `path`, in file order.
pub fn read_config_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::plan(format!("cannot read configuration file {}: {e}", path.display())))?;
    parse_config(&text).map_err(|e| Error::plan(format!("configuration file {}: {e}", path.display())))
}

/// Parses configuration text (see the module docs).
pub fn parse_config(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    flatten("", &toml::Value::Table(table), &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut Vec<(String, String)>,
) -> std::result::Result<(), String> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Integer(i) => out.push((prefix.to_string(), i.to_string())),
        toml::Value::Float(f) => out.push((prefix.to_string(), f.to_string())),
        toml::Value::Boolean(b) => out.push((prefix.to_string(), b.to_string())),
        other => return Err(format!("'{prefix}': unsupported value {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_and_dotted_keys_flatten() {
        let pairs = parse_config(
            r#"
            "parallelism.default" = 2
            [execution.checkpointing]
            interval = "10 s"
            incremental = true
            "#,
        )
        .unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "execution.checkpointing.incremental".to_string(),
                    "true".to_string()
                ),
                ("execution.checkpointing.interval".to_string(), "10 s".to_string()),
                ("parallelism.default".to_string(), "2".to_string()),
            ]
        );
        assert!(parse_config("a = [1]").is_err());
        assert!(parse_config("a = ").is_err());
    }
}
