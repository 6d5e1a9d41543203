//! The `[http]` table of `ringops.toml` and `agent.toml`: how long a client may take and
//! how many may be connected, with the defaults. Bad values are refused by the TOML
//! parser itself, so every error carries its file, line and column.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Default cap on connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default time a client has to send a request's head (and the TLS handshake), counted
/// from when the connection starts waiting for it; also the keep-alive idle timeout.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request body may take before its minimum rate counts.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default minimum rate of a request body, in KiB/s, past [`DEFAULT_BODY_TIMEOUT`].
pub const DEFAULT_BODY_MIN_RATE_KIB: u64 = 64;
/// Default time a graceful stop waits for the connections still open.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(30);

/// The `[http]` table as written; every key optional. Unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections open at once; more are closed as soon as they are accepted.
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_connections: Option<usize>,
    /// Time to send a request's head, e.g. `"10s"`.
    #[serde(default, deserialize_with = "duration")]
    pub header_timeout: Option<Duration>,
    /// Time a request body may take before the minimum rate counts, e.g. `"10s"`.
    #[serde(default, deserialize_with = "duration")]
    pub body_timeout: Option<Duration>,
    /// Minimum rate of a request body past `body_timeout`, in KiB/s.
    #[serde(default, deserialize_with = "at_least_one")]
    pub body_min_rate_kib: Option<u64>,
}

/// Checked limits of one HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`DEFAULT_BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// Minimum body rate in bytes a second, past `body_timeout`.
    pub body_min_rate: u64,
    /// How long a graceful stop waits for open connections before closing them.
    pub stop_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        HttpConfig::default().limits(DEFAULT_STOP_GRACE)
    }
}

impl HttpConfig {
    /// The limits this table asks for, the defaults for what it leaves out, stopping
    /// within `stop_grace`.
    pub fn limits(&self, stop_grace: Duration) -> Limits {
        Limits {
            max_connections: self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            header_timeout: self.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
            body_timeout: self.body_timeout.unwrap_or(DEFAULT_BODY_TIMEOUT),
            body_min_rate: self
                .body_min_rate_kib
                .unwrap_or(DEFAULT_BODY_MIN_RATE_KIB)
                .saturating_mul(1024),
            stop_grace,
        }
    }
}

/// A duration written as text (`"10s"`, `"1m 30s"`), more than zero: for
/// `#[serde(default, deserialize_with = ...)]` on an `Option<Duration>`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let parsed = humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))?;
    if parsed.is_zero() {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is no time at all: give more than zero"
        )));
    }
    Ok(Some(parsed))
}

/// A whole number of at least 1.
fn at_least_one<'de, D, N>(deserializer: D) -> Result<Option<N>, D::Error>
where
    D: Deserializer<'de>,
    N: TryFrom<i64>,
{
    let number = i64::deserialize(deserializer)?;
    let counted = (number >= 1).then(|| N::try_from(number).ok()).flatten();
    counted.map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("`{number}` is out of range: give at least 1"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        http: Option<HttpConfig>,
    }

    fn limits(text: &str) -> Result<Limits, String> {
        let file: File = crate::adapters::config_file::parse(Path::new("ringops.toml"), text)
            .map_err(|e| e.to_string())?;
        Ok(file.http.unwrap_or_default().limits(Duration::from_secs(5)))
    }

    #[test]
    fn defaults_fill_what_the_table_leaves_out() {
        let all = limits("").expect("no table");
        assert_eq!(
            all,
            Limits {
                stop_grace: Duration::from_secs(5),
                ..Limits::default()
            }
        );
        assert_eq!(all.max_connections, 256);
        assert_eq!(all.body_min_rate, 64 * 1024);
        let some =
            limits("[http]\nmax_connections = 16\nheader_timeout = \"1500ms\"\n").expect("valid");
        assert_eq!(some.max_connections, 16);
        assert_eq!(some.header_timeout, Duration::from_millis(1500));
        assert_eq!(some.body_timeout, DEFAULT_BODY_TIMEOUT);
    }

    #[test]
    fn bad_values_are_located() {
        let cases = [
            "[http]\nmax_connections = 0\n",
            "[http]\nheader_timeout = \"soon\"\n",
            "[http]\nbody_timeout = \"0s\"\n",
            "[http]\nbody_min_rate_kib = -1\n",
            "[http]\nidle_timeout = \"5s\"\n",
        ];
        let errors: Vec<String> = cases
            .iter()
            .map(|text| limits(text).expect_err(text))
            .collect();
        insta::assert_snapshot!("http-config-errors", errors.join("\n"));
    }
}
