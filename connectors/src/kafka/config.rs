//! The options every Kafka table shares: the brokers, librdkafka's
//! `properties.*`, and the topic(s).

use std::time::Duration;

use datafusion::common::{Result, plan_err};
use rdkafka::ClientConfig;
use weir_engine::connector::ConnectorOptions;

/// The prefix of options passed to librdkafka as they are (Flink's rule).
pub const PROPERTIES_PREFIX: &str = "properties.";

/// How long a metadata request or a broker connection may take before the
/// connector reports the brokers unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// `properties.*` as a librdkafka configuration: `properties.bootstrap.servers`
/// is required; every other `properties.x` becomes librdkafka's `x` (TLS and
/// SASL settings included, e.g. `properties.security.protocol`).
pub fn client_config(options: &ConnectorOptions) -> Result<ClientConfig> {
    bootstrap_servers(options)?;
    let mut config = ClientConfig::new();
    for (key, value) in options.iter() {
        if let Some(name) = key.strip_prefix(PROPERTIES_PREFIX) {
            config.set(name, value);
        }
    }
    Ok(config)
}

/// `properties.bootstrap.servers`, required.
pub fn bootstrap_servers(options: &ConnectorOptions) -> Result<&str> {
    match options.get("properties.bootstrap.servers") {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => plan_err!("missing required option 'properties.bootstrap.servers' (e.g. '127.0.0.1:9092')"),
    }
}

/// A librdkafka property set through `properties.*`, if any.
pub fn property<'a>(options: &'a ConnectorOptions, name: &str) -> Option<&'a str> {
    options.get(&format!("{PROPERTIES_PREFIX}{name}"))
}

/// `topic`: one name, or several separated by `;` (Flink's syntax).
pub fn topics(options: &ConnectorOptions) -> Vec<String> {
    options
        .get("topic")
        .map(|t| {
            t.split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::options as opts;

    #[test]
    fn properties_pass_through() {
        let o = opts(&[
            ("properties.bootstrap.servers", "127.0.0.1:9092"),
            ("properties.security.protocol", "SASL_SSL"),
            ("topic", "a; b"),
        ]);
        let c = client_config(&o).unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("topic"), None);
        assert_eq!(topics(&o), vec!["a", "b"]);
        let err = client_config(&opts(&[("topic", "a")])).unwrap_err().to_string();
        assert!(err.contains("properties.bootstrap.servers"), "{err}");
    }
}
