//! Provider kinds as plug-ins (spec section 8).
//!
//! The core names no provider kind. A kind — a built-in one, or one
//! of a library user's own — lives in its own crate: it parses and validates
//! its `[providers.X]` table (refusals name the dotted key), says which site
//! sections it answers, and builds the [`Provider`]. The facade registers the
//! built-in kinds in a [`Kinds`] registry by their `kind` name; a library user
//! adds theirs with [`Kinds::with`], and [`Config::from_toml`](crate::Config::from_toml)
//! builds every configured provider through it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;

use crate::check::Check;
use crate::client::HttpClient;
use crate::provider::Provider;

/// A provider kind: what `kind = "<name>"` in a `[providers.X]` table means.
pub trait ProviderKind: Send + Sync + 'static {
    /// The `kind` value that selects this kind.
    fn name(&self) -> &'static str;

    /// How sites using this kind are configured and which routes they own.
    fn site_rules(&self) -> SiteRules {
        SiteRules::default()
    }

    /// Validates the provider's table (its `kind` key removed) and builds the
    /// provider. Every refusal is reported through `build` (which names the
    /// dotted key); `None` when there was one.
    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>>;
}

/// What a kind needs of the sites that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteRules {
    /// `sites.wizard` applies (the booking-wizard entry).
    pub wizard: bool,
    /// `sites.callback` applies (an OAuth2 `state` to check on the way back).
    pub callback: bool,
    /// `sites.forgot_password` applies.
    pub forgot_password: bool,
    /// `portal.url` is required: the kind signs users into a portal.
    pub portal_url: bool,
    /// `portal.default_destination` when the site sets none.
    pub default_destination: &'static str,
}

impl Default for SiteRules {
    fn default() -> Self {
        Self { wizard: false, callback: false, forgot_password: false, portal_url: false, default_destination: "/" }
    }
}

/// The provider kinds a configuration may use, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    kinds: BTreeMap<&'static str, Arc<dyn ProviderKind>>,
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds.keys()).finish()
    }
}

impl Kinds {
    /// No kinds at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// These kinds and `kind` (replacing a kind of the same name).
    #[must_use]
    pub fn with(mut self, kind: impl ProviderKind) -> Self {
        self.kinds.insert(kind.name(), Arc::new(kind));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ProviderKind>> {
        self.kinds.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

/// A configured provider and the kind it was built by.
#[derive(Clone)]
pub struct ProviderEntry {
    pub kind: &'static str,
    pub rules: SiteRules,
    pub provider: Arc<dyn Provider>,
}

impl std::fmt::Debug for ProviderEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEntry").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// What a kind builds its provider with: the provider's name, the shared HTTP
/// client, and the configuration checks, each naming keys relative to the
/// provider's table (`server` is reported as `providers.<name>.server`).
pub struct Build<'c, 'b> {
    name: &'c str,
    prefix: String,
    check: &'c mut Check<'b>,
    client: &'c HttpClient,
    ca_file: Option<&'c std::path::Path>,
}

impl std::fmt::Debug for Build<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Build").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<'c, 'b> Build<'c, 'b> {
    pub(crate) fn new(
        name: &'c str,
        check: &'c mut Check<'b>,
        client: &'c HttpClient,
        ca_file: Option<&'c std::path::Path>,
    ) -> Self {
        Self { name, prefix: format!("providers.{name}"), check, client, ca_file }
    }

    /// `upstream_tls.ca_file`: extra roots for a kind that makes its own TLS
    /// connections (see [`tls::client_config`](crate::tls::client_config)).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file
    }

    /// The provider's name in `[providers]`.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The full dotted key of `field`.
    pub fn key(&self, field: &str) -> String {
        if field.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{field}", self.prefix)
        }
    }

    /// The HTTP client every provider shares (with `upstream_tls.ca_file`).
    pub fn client(&self) -> HttpClient {
        self.client.clone()
    }

    /// Refuses the configuration, naming `field`.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        let key = self.key(field);
        self.check.err(&key, message);
    }

    /// Warns about `field` (`check` exits 0).
    pub fn warn(&mut self, field: &str, message: impl Into<String>) {
        let key = self.key(field);
        self.check.warn(&key, message);
    }

    /// The table as the kind's own serde type: unknown keys, missing keys and
    /// wrong types are refused naming the key, never quoting its value.
    pub fn parse<T: DeserializeOwned>(&mut self, table: toml::Table) -> Option<T> {
        match serde_path_to_error::deserialize(toml::Value::Table(table)) {
            Ok(v) => Some(v),
            Err(e) => {
                let (key, message) = crate::check::serde_refusal(&e);
                self.error(&key, message);
                None
            }
        }
    }

    /// `field`'s duration, which must be longer than zero, or `default` when
    /// unset. Read it with [`de::duration`](crate::config::de::duration).
    pub fn duration(&mut self, field: &str, value: Option<Duration>, default: Duration) -> Duration {
        let key = self.key(field);
        self.check.positive(&key, value, default)
    }

    /// A secret given inline as `field` or read from `<field>_file`.
    pub fn secret(&mut self, field: &str, inline: Option<String>, file: Option<String>) -> Option<SecretString> {
        let key = self.key(field);
        self.check.secret(&key, inline, file)
    }

    /// A path in the configuration, relative to the configuration file's folder.
    pub fn path(&self, value: &str) -> PathBuf {
        self.check.path(value)
    }

    /// An `http://` or `https://` URL.
    pub fn http_url(&mut self, field: &str, value: &str) -> Option<url::Url> {
        let key = self.key(field);
        self.check.http_url(&key, value)
    }

    /// An `http(s)://` URL a credential crosses: `https://`, or plain `http://`
    /// only to a loopback host ([`secure_or_loopback`](crate::client::secure_or_loopback)).
    pub fn secure_url(&mut self, field: &str, value: &str) -> Option<url::Url> {
        let url = self.http_url(field, value)?;
        if !crate::client::secure_or_loopback(&url) {
            self.error(field, "must be https:// (plain http:// only on a loopback host)");
        }
        Some(url)
    }

    /// A server's base URL (no query, no fragment), without its trailing slash.
    pub fn server_url(&mut self, field: &str, value: &str) -> String {
        let key = self.key(field);
        self.check.server_url(&key, value)
    }
}
