//! RabbitMQ connection settings.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::Topology;

/// How to reach RabbitMQ. `Debug` and `Display` redact the password of the URL.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitConfig {
    /// AMQP URL, `amqp://user:pass@host:5672/%2f` (default: guest on 127.0.0.1). A secret: never
    /// logged unredacted.
    pub url: String,
    /// Queue names and delivery limit.
    pub topology: Topology,
    /// Backoff for (re)connecting, publishing and resuming consumers.
    pub reconnect: ReconnectPolicy,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            topology: Topology::default(),
            reconnect: ReconnectPolicy::default(),
        }
    }
}

impl RabbitConfig {
    /// The URL with its password replaced by `***`, safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &self.redacted_url())
            .field("topology", &self.topology)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl fmt::Display for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (prefix {:?})", self.redacted_url(), self.topology.prefix)
    }
}

/// Exponential backoff with jitter for reconnects and retried operations.
///
/// Durations deserialize from a number of seconds (`2`, `0.25`) or a string with a unit
/// (`"250ms"`, `"2s"`, `"5m"`, `"1h"`); `max_elapsed` also accepts `"forever"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectPolicy {
    /// First delay (default 100 ms).
    #[serde(deserialize_with = "de::duration")]
    pub initial: Duration,
    /// Largest delay between two attempts (default 10 s).
    #[serde(deserialize_with = "de::duration")]
    pub max_delay: Duration,
    /// Give up after this long without success and return a retryable
    /// [`QueueError::Connection`](crate::QueueError::Connection); `None` (default) = retry
    /// forever.
    #[serde(deserialize_with = "de::opt_duration")]
    pub max_elapsed: Option<Duration>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max_delay: Duration::from_secs(10), max_elapsed: None }
    }
}

/// `url` with the password of its user-info replaced by `***`
/// (`amqp://user:***@host:5672/%2f`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return if url.contains('@') { "***".to_owned() } else { url.to_owned() };
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!("{}{}:***{}", &url[..rest_start], &userinfo[..colon], &url[rest_start + at..])
}

mod de {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor { allow_forever: false })?
            .ok_or_else(|| de::Error::custom("a duration is required here"))
    }

    pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(DurationVisitor { allow_forever: true })
    }

    struct DurationVisitor {
        allow_forever: bool,
    }

    impl<'de> Visitor<'de> for DurationVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds as a number, or a string like \"250ms\", \"2s\", \"5m\"")?;
            if self.allow_forever {
                f.write_str(" or \"forever\"")?;
            }
            Ok(())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Duration::from_secs(v)))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(|s| Some(Duration::from_secs(s)))
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Duration::try_from_secs_f64(v).map(Some).map_err(E::custom)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let v = v.trim();
            if self.allow_forever && (v == "forever" || v == "none") {
                return Ok(None);
            }
            let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
            let (number, unit) = v.split_at(split);
            let number: f64 = number.parse().map_err(|_| E::custom(format!("invalid duration {v:?}")))?;
            let scale = match unit.trim() {
                "ms" => 0.001,
                "" | "s" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                other => return Err(E::custom(format!("unknown duration unit {other:?}"))),
            };
            Duration::try_from_secs_f64(number * scale).map(Some).map_err(E::custom)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            self.visit_unit()
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            if self.allow_forever { Ok(None) } else { Err(E::custom("a duration is required here")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(redact_url("amqp://user:s3cret@host:5672/%2f"), "amqp://user:***@host:5672/%2f");
        assert_eq!(redact_url("amqps://u:p%40ss@h/vh?heartbeat=10"), "amqps://u:***@h/vh?heartbeat=10");
        assert_eq!(redact_url("amqp://host:5672/%2f"), "amqp://host:5672/%2f");
        assert_eq!(redact_url("amqp://user@host/%2f"), "amqp://user@host/%2f");
        assert_eq!(redact_url("user:pw@host"), "***");
    }

    #[test]
    fn durations_deserialize() {
        let p: ReconnectPolicy =
            serde_json::from_str(r#"{"initial": "250ms", "max_delay": 2, "max_elapsed": "forever"}"#).unwrap();
        assert_eq!(p.initial, Duration::from_millis(250));
        assert_eq!(p.max_delay, Duration::from_secs(2));
        assert_eq!(p.max_elapsed, None);
        let p: ReconnectPolicy = serde_json::from_str(r#"{"max_elapsed": "1.5m", "initial": 0.5}"#).unwrap();
        assert_eq!(p.max_elapsed, Some(Duration::from_secs(90)));
        assert_eq!(p.initial, Duration::from_millis(500));
        assert_eq!(p.max_delay, ReconnectPolicy::default().max_delay);
        assert!(serde_json::from_str::<ReconnectPolicy>(r#"{"initial": "forever"}"#).is_err());
        assert!(serde_json::from_str::<ReconnectPolicy>(r#"{"initial": "3 parsecs"}"#).is_err());
    }
}
