//! The checks every part of the configuration shares (the core's and each
//! provider kind's): each refusal names its dotted key, a value is never
//! quoted where it may be a secret, and relative paths are relative to the
//! configuration file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use std::fmt;

/// One refusal, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every refusal found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects refusals and warnings while a configuration is validated.
pub(crate) struct Check<'a> {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigError>,
    pub(crate) base: &'a Path,
    /// Providers refused while being built (their errors already reported).
    pub(crate) unbuilt: Vec<String>,
}

impl<'a> Check<'a> {
    pub(crate) fn new(base: &'a Path) -> Self {
        Self { errors: Vec::new(), warnings: Vec::new(), base, unbuilt: Vec::new() }
    }

    pub(crate) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError { key: key.to_owned(), message: message.into() });
    }

    pub(crate) fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigError { key: key.to_owned(), message: message.into() });
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A duration that must be longer than zero, or `default` when unset.
    pub(crate) fn positive(&mut self, key: &str, value: Option<Duration>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(d) if d.is_zero() => {
                self.err(key, "must be longer than zero");
                default
            }
            Some(d) => d,
        }
    }

    pub(crate) fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(key, format!("invalid listen address {value:?}; write e.g. \"0.0.0.0:8080\""));
                None
            }
        }
    }

    /// A secret given inline or as `<key>_file`.
    pub(crate) fn secret(&mut self, key: &str, inline: Option<String>, file: Option<String>) -> Option<SecretString> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(key, format!("set either {key} or {key}_file, not both"));
                None
            }
            (Some(v), None) => Some(SecretString::from(v)),
            (None, Some(f)) => match std::fs::read_to_string(self.path(&f)) {
                Ok(v) => Some(SecretString::from(v.trim_end_matches(['\r', '\n']).to_owned())),
                Err(e) => {
                    self.err(&format!("{key}_file"), format!("cannot read {f}: {e}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    pub(crate) fn route_path(&mut self, key: &str, path: &str) -> String {
        if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.err(key, format!("must be a path starting with \"/\", got {path:?}"));
        }
        path.to_owned()
    }

    /// A redirect target (absolute URL or path) that fits a `Location` header;
    /// `gets_query` targets have parameters appended, so no fragment.
    pub(crate) fn redirect_target(&mut self, key: &str, value: &str, gets_query: bool) {
        if value.is_empty() || http::HeaderValue::from_str(value).is_err() {
            self.err(key, "is not a usable redirect target (empty, or a character a Location header cannot hold)");
        } else if gets_query && value.contains('#') {
            self.err(key, "must not have a #fragment: parameters are appended to it");
        } else if !value.starts_with('/') && !value.starts_with("http://") && !value.starts_with("https://") {
            self.err(key, "must be a path (\"/…\") or an http(s):// URL");
        } else if value.starts_with("//") {
            self.err(key, "a scheme-relative target (\"//…\") is ambiguous; write the scheme");
        }
    }

    pub(crate) fn http_url(&mut self, key: &str, value: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            // The value is not quoted: after `${ENV}` substitution a URL may hold
            // a password (`user:pw@`) or an API key in its query.
            Ok(_) => {
                self.err(key, "must be an http:// or https:// URL with a host");
                None
            }
            Err(e) => {
                self.err(key, format!("must be an http:// or https:// URL with a host ({e})"));
                None
            }
        }
    }

    pub(crate) fn server_url(&mut self, key: &str, value: &str) -> String {
        if let Some(u) = self.http_url(key, value) {
            if u.query().is_some() || u.fragment().is_some() {
                self.err(key, "must not have a query or fragment");
            }
        }
        value.trim_end_matches('/').to_owned()
    }
}

/// The key and message of a serde refusal: the path to the key (an unknown
/// key named itself, not only its table) and serde's message without the value
/// it may quote.
pub(crate) fn serde_refusal<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> (String, String) {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    // The first line: toml adds "in `key`" on the next, the key we name anyway.
    let inner = e.inner().to_string();
    let message = without_values(inner.lines().next().unwrap_or("").trim());
    let unknown = message.strip_prefix("unknown field `").and_then(|m| m.split_once('`')).map(|(k, _)| k);
    let key = match unknown {
        Some(k) if path.is_empty() => k.to_owned(),
        Some(k) if !path.ends_with(k) => format!("{path}.{k}"),
        _ => path,
    };
    (key, message)
}

/// serde's message without the value it quotes: `invalid type: integer
/// `123456789`, expected a string` names a key whose value may be a secret
/// (`client_secret = 123456789`). Keys and expected variants stay.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let kind: Vec<&str> = found.split(' ').take_while(|w| !w.starts_with(['`', '"', '\''])).collect();
            let kind = if kind.is_empty() { "value".to_owned() } else { kind.join(" ") };
            let expected = if expected.is_empty() { String::new() } else { format!(", expected{expected}") };
            return format!("{prefix}{kind}{expected}");
        }
    }
    message.to_owned()
}
