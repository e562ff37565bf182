//! Values serde reads typed, so validation is left with the rules between
//! keys: durations (`"500ms"`, `"5s"`, `"8h"`, by humantime; `"0"` is zero),
//! rates (`"N/sec"`, `"N/min"`, `"N/hour"`) and the store kind. A provider
//! kind's own table uses [`duration`] the same way.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::Rate;

/// `#[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]`
/// for an `Option<Duration>` key. The error names the format, never the value.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
    let text = text.trim();
    if text == "0" {
        return Ok(Some(Duration::ZERO));
    }
    humantime::parse_duration(text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration ({e}); write e.g. \"500ms\", \"5s\", \"8h\"")))
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let parsed = value.split_once('/').and_then(|(n, per)| {
            let count: u32 = n.trim().parse().ok().filter(|&n| n > 0)?;
            let per = match per.trim() {
                "sec" | "s" | "second" => Duration::from_secs(1),
                "min" | "m" | "minute" => Duration::from_secs(60),
                "hour" | "h" => Duration::from_secs(3600),
                _ => return None,
            };
            Some(Rate { count, per })
        });
        parsed.ok_or_else(|| format!("invalid rate {value:?}; write \"N/sec\", \"N/min\" or \"N/hour\" with N > 0"))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_read_as_the_spec_writes_them() {
        assert_eq!("20/min".parse::<Rate>(), Ok(Rate { count: 20, per: Duration::from_secs(60) }));
        assert_eq!("5 / hour".parse::<Rate>(), Ok(Rate { count: 5, per: Duration::from_secs(3600) }));
        assert!("0/min".parse::<Rate>().is_err());
        assert!("20/fortnight".parse::<Rate>().is_err());
        let d = |s: &str| duration(toml::Value::String(s.to_owned()));
        assert_eq!(d("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(d("8h").unwrap(), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(d("0").unwrap(), Some(Duration::ZERO));
        let err = d("s3cret").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
