//! Configuration: the TOML of the spec, `${ENV}` substitution, `*_file` secrets,
//! and validation into typed, checked values.
//!
//! Loading happens once per (re)load; the request path only ever sees the typed
//! [`Config`], never a string to parse. Every refusal names its key, in the
//! dotted form a user can find in the file (`sites[0].portal.default_destination`).

pub mod de;
mod env;
mod raw;
mod site;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

pub use crate::check::{ConfigError, ConfigErrors};
use crate::kind::{Kinds, ProviderEntry};
pub use crate::site::{
    AuthorizeRule, Callback, ForgotPassword, LoginRoute, OwnedRoute, Portal, RedirectRoute, Rewrite, Site, Upstream,
    Wizard,
};

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: Server,
    pub admin: Option<Admin>,
    pub upstream_tls: UpstreamTls,
    pub sessions: Sessions,
    pub limits: Limits,
    /// Each `[providers.X]`, built by its kind.
    pub providers: BTreeMap<String, ProviderEntry>,
    pub sites: Vec<Arc<Site>>,
    /// Lower-cased host (no port, no trailing dot) to index in `sites`.
    host_index: HashMap<String, usize>,
    default_site: Option<usize>,
    /// Every site's `forward_auth.path` (canonical): a check on one of them
    /// may name its site in `X-Forwarded-Host` (Traefik and Caddy send
    /// Ferrygate's own address as `Host`).
    forward_auth_paths: Vec<String>,
}

#[derive(Debug)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub require_https: bool,
    pub shutdown_grace: Duration,
    /// Time allowed for the site to start answering a proxied request (headers).
    pub upstream_timeout: Duration,
    /// `Strict-Transport-Security: max-age` on HTTPS answers of Ferrygate's own
    /// routes; zero sends none.
    pub hsts_max_age: Duration,
    pub tls: Option<Tls>,
    /// `%2F`, `%5C` and `\` in a path: passed on encoded and matched as
    /// ordinary characters instead of refused with 400 (SPEC 2).
    pub allow_encoded_slashes: bool,
}

pub struct Tls {
    pub listen: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The chain and its key, loaded and checked against each other at load.
    pub certified: Arc<rustls::sign::CertifiedKey>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("listen", &self.listen)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Debug, Default)]
pub struct UpstreamTls {
    /// Extra PEM roots trusted for providers and upstreams, besides webpki's.
    pub ca_file: Option<PathBuf>,
}

/// `sessions.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug)]
pub struct Sessions {
    pub store: StoreKind,
    pub redis_url: Option<SecretString>,
    /// `redis_cluster`: seed nodes of a Redis Cluster (URLs may hold passwords).
    pub redis_cluster: Vec<SecretString>,
    /// `redis_sentinel`: the primary found through Sentinel.
    pub redis_sentinel: Option<RedisSentinel>,
    /// `redis_password`: for cluster nodes, or the primary Sentinel names.
    pub redis_password: Option<SecretString>,
    pub secret: SecretString,
    pub cookie_name: String,
    pub cookie_secure: bool,
    pub max_entries: u64,
    pub max_ttl: Duration,
}

/// `sessions.redis_sentinel`.
#[derive(Debug, Clone)]
pub struct RedisSentinel {
    /// The monitored primary's name (`sentinel monitor <master> …`).
    pub master: String,
    /// Sentinel nodes, `redis://host:26379`.
    pub nodes: Vec<SecretString>,
}

impl Sessions {
    /// What the session and state cookies are made with.
    pub fn cookie_settings(&self) -> crate::session::CookieSettings<'_> {
        crate::session::CookieSettings {
            secret: &self.secret,
            name: &self.cookie_name,
            secure: self.cookie_secure,
            max_ttl: self.max_ttl,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub login_body_bytes: usize,
    pub login_per_ip: Option<Rate>,
    pub login_per_account: Option<Rate>,
}

/// `"N/sec"`, `"N/min"`, `"N/hour"`: N events per period, burst N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// A valid configuration and what `check` should warn about.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Reads, substitutes, parses and validates the file at `path`, building
    /// each provider with the kind its `kind` key names among `kinds`.
    /// Relative paths inside it are relative to its folder.
    pub fn load(path: &Path, kinds: &Kinds) -> Result<Loaded, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &base, kinds)
    }

    /// Parses and validates TOML text; relative paths are relative to `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path, kinds: &Kinds) -> Result<Loaded, ConfigErrors> {
        Self::from_toml_with_vars(text, base_dir, kinds, &|name| std::env::var(name).ok())
    }

    /// As [`from_toml`](Self::from_toml), with `${NAME}` taken from `vars`
    /// instead of the process environment (a secrets manager, a test, an
    /// example that starts its own provider).
    pub fn from_toml_with_vars(
        text: &str,
        base_dir: &Path,
        kinds: &Kinds,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigErrors> {
        validate::load(text, base_dir, vars, kinds)
    }

    /// The site for a request's host (an [`Authority`](crate::authority::Authority)'s
    /// `host()`: lower-cased, no port, no trailing dot), or the default site.
    pub fn site_for_host(&self, host: Option<&str>) -> Option<&Arc<Site>> {
        host.and_then(|h| self.host_index.get(h).copied()).or(self.default_site).map(|i| &self.sites[i])
    }

    /// Whether `path` (canonical) is, or lies under, some site's forward-auth path.
    pub fn is_forward_auth_path(&self, path: &str) -> bool {
        self.forward_auth_paths.iter().any(|p| crate::path::under(path, p))
    }

    /// Refuses a configuration the server cannot serve: a site without
    /// `upstream` (allowed for a Tower layer, where the app is the site).
    /// `check`, `serve` and the server ask this; a layer does not.
    pub fn servable(&self) -> Result<(), ConfigErrors> {
        let missing: Vec<ConfigError> = self
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.upstream.origin.is_none())
            .map(|(i, s)| ConfigError {
                key: format!("sites[{i}] ({}).upstream", s.name),
                message: "required to serve: the address of the site to proxy to \
                          (only a Tower layer, where your service is the site, goes without)"
                    .to_owned(),
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(missing))
        }
    }
}
