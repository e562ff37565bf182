//! Configuration: the TOML of the spec, `${ENV}` substitution, `*_file` secrets,
//! and validation into typed, checked values.
//!
//! Loading happens once per (re)load; the request path only ever sees the typed
//! [`Config`], never a string to parse. Every refusal names its key, in the
//! dotted form a user can find in the file (`sites[0].portal.default_destination`).

pub(crate) mod check;
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

use http::Uri;
use ipnet::IpNet;
use secrecy::SecretString;

use crate::kind::{Kinds, ProviderEntry};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis,
}

#[derive(Debug)]
pub struct Sessions {
    pub store: StoreKind,
    pub redis_url: Option<SecretString>,
    pub secret: SecretString,
    pub cookie_name: String,
    pub cookie_secure: bool,
    pub max_entries: u64,
    pub max_ttl: Duration,
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

/// Where a site's proxied traffic goes.
#[derive(Debug)]
pub struct Upstream {
    /// The site's name (for metrics and logs).
    pub site: String,
    /// Scheme and authority of the site.
    pub origin: Uri,
    /// Path prefix of `upstream` ("" when none), prepended to every request path.
    pub base_path: String,
    pub rewrite_location: Vec<Rewrite>,
}

/// nginx `proxy_redirect`: a Location starting with `from` gets `to` instead.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// Lower-cased; empty for the default site.
    pub hosts: Vec<String>,
    pub upstream: Arc<Upstream>,
    pub provider: String,
    /// The `kind` of that provider.
    pub provider_kind: &'static str,
    /// Normalised origins (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    pub protected_paths: Vec<String>,
    pub login: LoginRoute,
    pub portal: Portal,
    pub home: Option<RedirectRoute>,
    pub logout: Option<RedirectRoute>,
    pub wizard: Option<Wizard>,
    pub forgot_password: Option<ForgotPassword>,
    pub callback: Option<Callback>,
    /// Every path Ferrygate answers itself, computed at load.
    pub(crate) routes: HashMap<String, OwnedRoute>,
}

/// The routes a site owns (spec section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedRoute {
    Login,
    Wizard,
    Home,
    Logout,
    ForgotPassword,
    Callback,
}

impl Site {
    /// The owned route at `path`, a [canonical](crate::path::canonical) path: one hash lookup.
    #[inline]
    pub fn route(&self, path: &str) -> Option<OwnedRoute> {
        if self.routes.is_empty() {
            return None;
        }
        self.routes.get(path).copied()
    }

    /// Whether `path`, a [canonical](crate::path::canonical) path, lies in one
    /// of `protected_paths` (whole segments).
    pub fn is_protected(&self, path: &str) -> bool {
        self.protected_paths.iter().any(|p| crate::destination::within(path, p))
    }
}

#[derive(Debug)]
pub struct LoginRoute {
    pub path: String,
    pub username_field: String,
    pub password_field: String,
    pub remember_field: String,
    pub destination_field: String,
    pub failure_redirect: String,
}

#[derive(Debug)]
pub struct Portal {
    /// The portal's external-authentication address (token providers).
    pub url: Option<String>,
    pub default_destination: String,
    pub allowed_destinations: Vec<String>,
}

#[derive(Debug)]
pub struct RedirectRoute {
    pub paths: Vec<String>,
    pub redirect: String,
}

#[derive(Debug)]
pub struct Wizard {
    pub path: String,
    pub destination: String,
    pub params: Vec<String>,
}

#[derive(Debug)]
pub struct ForgotPassword {
    pub path: String,
    pub redirect: String,
}

#[derive(Debug)]
pub struct Callback {
    pub path: String,
}

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
        validate::load(text, base_dir, &|name| std::env::var(name).ok(), kinds)
    }

    /// The site for a request's host (an [`Authority`](crate::authority::Authority)'s
    /// `host()`: lower-cased, no port, no trailing dot), or the default site.
    pub fn site_for_host(&self, host: Option<&str>) -> Option<&Arc<Site>> {
        host.and_then(|h| self.host_index.get(h).copied()).or(self.default_site).map(|i| &self.sites[i])
    }
}
