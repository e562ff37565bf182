//! From TOML text to a typed [`Config`]: substitution, parsing, then every check
//! of the spec, collecting all refusals (each naming its key) instead of
//! stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

use super::env::{substitute, Env};
use super::raw::*;
use super::*;
use crate::check::{serde_refusal, Check};
use crate::client::HttpClient;
use crate::kind::{Build, Kinds, ProviderEntry};

pub(super) fn load(text: &str, base: &Path, env: Env<'_>, kinds: &Kinds) -> Result<Loaded, ConfigErrors> {
    let one = |key: String, message: String| ConfigErrors(vec![ConfigError { key, message }]);
    // toml's Display quotes the offending line, which may hold a secret: the
    // message and the line number only.
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map(|n| format!(" (line {n})")).unwrap_or_default();
        one(String::new(), format!("invalid TOML{at}: {}", e.message().trim_end()))
    })?;
    // Sites are named by their `name` as well as their index in every message.
    let names: Vec<Option<String>> = match table.get("sites") {
        Some(toml::Value::Array(sites)) => {
            sites.iter().map(|s| s.get("name").and_then(toml::Value::as_str).map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    };
    let named = |mut errors: Vec<ConfigError>| {
        for e in &mut errors {
            e.key = name_site(&e.key, &names);
        }
        errors
    };
    let mut check = Check::new(base);
    for (key, value) in table.iter_mut() {
        substitute(value, key.clone(), env, &mut check);
    }
    if !check.errors.is_empty() {
        return Err(ConfigErrors(named(check.errors)));
    }
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let (key, message) = serde_refusal(&e);
        ConfigErrors(named(vec![ConfigError { key, message }]))
    })?;
    let config = check.config(raw, kinds);
    match config {
        Some(config) if check.errors.is_empty() => Ok(Loaded { config, warnings: named(check.warnings) }),
        _ => Err(ConfigErrors(named(check.errors))),
    }
}

/// `sites[0].upsteam` as `sites[0] (acme).upsteam`.
fn name_site(key: &str, names: &[Option<String>]) -> String {
    let Some(rest) = key.strip_prefix("sites[") else { return key.to_owned() };
    let Some((index, after)) = rest.split_once(']') else { return key.to_owned() };
    match index.parse::<usize>().ok().and_then(|i| names.get(i)).and_then(Option::as_deref) {
        Some(name) => format!("sites[{index}] ({name}){after}"),
        None => key.to_owned(),
    }
}

impl Check<'_> {
    fn config(&mut self, raw: RawConfig, kinds: &Kinds) -> Option<Config> {
        let server = self.server(raw.server);
        let admin = raw.admin.and_then(|a| Some(Admin { listen: self.socket_addr("admin.listen", &a.listen)? }));
        let upstream_tls = self.upstream_tls(raw.upstream_tls);
        let sessions = self.sessions(raw.sessions);
        let limits = self.limits(raw.limits);
        let providers = self.providers(raw.providers, kinds, &upstream_tls);
        if raw.sites.is_empty() {
            self.err("sites", "at least one [[sites]] entry is required");
        }
        let mut sites = Vec::new();
        let mut host_index = HashMap::new();
        let mut default_site = None;
        for (i, raw_site) in raw.sites.into_iter().enumerate() {
            let key = format!("sites[{i}]");
            let Some(site) = self.site(&key, raw_site, &providers, kinds) else { continue };
            if sites.iter().any(|s: &Arc<Site>| s.name == site.name) {
                self.err(&format!("{key}.name"), format!("site name {:?} is used twice", site.name));
            }
            if site.hosts.is_empty() {
                if let Some(d) = default_site {
                    let other: &Arc<Site> = &sites[d];
                    self.err(
                        &format!("{key}.hosts"),
                        format!("a second site without hosts; {:?} is already the default site", other.name),
                    );
                }
                default_site = Some(sites.len());
            }
            for (j, host) in site.hosts.iter().enumerate() {
                if let Some(&other) = host_index.get(host) {
                    let other: &Arc<Site> = &sites[other];
                    self.err(
                        &format!("{key}.hosts[{j}]"),
                        format!("host {host:?} is already used by site {:?}", other.name),
                    );
                } else {
                    host_index.insert(host.clone(), sites.len());
                }
            }
            sites.push(Arc::new(site));
        }
        let mut forward_auth_paths: Vec<String> =
            sites.iter().filter_map(|s| s.forward_auth.as_ref().map(|f| f.path.clone())).collect();
        forward_auth_paths.sort();
        forward_auth_paths.dedup();
        Some(Config {
            forward_auth_paths,
            server: server?,
            admin,
            upstream_tls,
            sessions: sessions?,
            limits,
            providers,
            sites,
            host_index,
            default_site,
        })
    }

    fn server(&mut self, raw: RawServer) -> Option<Server> {
        let listen = raw.listen.unwrap_or_else(|| vec!["0.0.0.0:8080".to_owned()]);
        let listen: Vec<SocketAddr> = listen
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.socket_addr(&format!("server.listen[{i}]"), a))
            .collect();
        let trusted_proxies = raw
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let parsed = p.parse::<IpNet>().ok().or_else(|| p.parse::<IpAddr>().ok().map(IpNet::from));
                if parsed.is_none() {
                    self.err(&format!("server.trusted_proxies[{i}]"), format!("invalid address or CIDR {p:?}"));
                }
                parsed
            })
            .collect();
        let tls = raw.tls.and_then(|t| self.tls(t));
        if listen.is_empty() && tls.is_none() {
            self.err("server.listen", "no listener: give at least one address here or in server.tls.listen");
        }
        Some(Server {
            listen,
            trusted_proxies,
            require_https: raw.require_https.unwrap_or(false),
            shutdown_grace: self.positive("server.shutdown_grace", raw.shutdown_grace, Duration::from_secs(30)),
            upstream_timeout: self.positive("server.upstream_timeout", raw.upstream_timeout, Duration::from_secs(60)),
            // Zero is allowed here: no HSTS.
            hsts_max_age: raw.hsts_max_age.unwrap_or(Duration::from_secs(365 * 24 * 3600)),
            tls,
            allow_encoded_slashes: raw.allow_encoded_slashes,
        })
    }

    fn tls(&mut self, raw: RawTls) -> Option<Tls> {
        let listen = raw
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.socket_addr(&format!("server.tls.listen[{i}]"), a))
            .collect();
        let cert = self.path(&raw.cert);
        let key = self.path(&raw.key);
        let chain: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(&cert) {
            Ok(it) => match it.collect::<Result<Vec<_>, _>>() {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    self.err("server.tls.cert", format!("{} holds no PEM certificate", cert.display()));
                    return None;
                }
                Err(e) => {
                    self.err("server.tls.cert", format!("cannot load {}: {e}", cert.display()));
                    return None;
                }
            },
            Err(e) => {
                self.err("server.tls.cert", format!("cannot load {}: {e}", cert.display()));
                return None;
            }
        };
        let private_key = match PrivateKeyDer::from_pem_file(&key) {
            Ok(k) => k,
            Err(e) => {
                self.err("server.tls.key", format!("cannot load a PEM private key from {}: {e}", key.display()));
                return None;
            }
        };
        crate::tls::install_crypto_provider();
        let provider = rustls::crypto::ring::default_provider();
        let certified = match rustls::sign::CertifiedKey::from_der(chain, private_key, &provider) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.err("server.tls.key", format!("does not fit server.tls.cert: {e}"));
                return None;
            }
        };
        Some(Tls { listen, cert, key, certified })
    }

    fn upstream_tls(&mut self, raw: RawUpstreamTls) -> UpstreamTls {
        let ca_file = raw.ca_file.map(|f| self.path(&f));
        if let Some(path) = &ca_file {
            if let Err(e) = crate::tls::load_roots(path) {
                self.err("upstream_tls.ca_file", e.to_string());
            }
        }
        UpstreamTls { ca_file }
    }

    fn sessions(&mut self, raw: RawSessions) -> Option<Sessions> {
        let store = raw.store;
        let redis_url = self.secret("sessions.redis_url", raw.redis_url, raw.redis_url_file);
        if let Some(url) = &redis_url {
            let u = url.expose_secret();
            let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| u.starts_with(s));
            if !scheme_ok || url::Url::parse(u).is_err() {
                // Not quoted: the URL may hold a password.
                self.err(
                    "sessions.redis_url",
                    "must be a redis://, rediss:// (TLS) or redis+unix:// (socket) URL, e.g. redis://127.0.0.1:6379",
                );
            }
        }
        let redis_password = self.secret("sessions.redis_password", raw.redis_password, raw.redis_password_file);
        // A URL may hold a password: refusals name the key, never the URL.
        let redis_urls = |c: &mut Self, key: &str, urls: Vec<String>| -> Vec<SecretString> {
            if urls.is_empty() {
                c.err(key, "at least one node");
            }
            for (i, u) in urls.iter().enumerate() {
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) || url::Url::parse(u).is_err() {
                    c.err(&format!("{key}[{i}]"), "must be a redis:// or rediss:// URL");
                }
            }
            urls.into_iter().map(SecretString::from).collect()
        };
        let redis_cluster = match raw.redis_cluster {
            Some(urls) => redis_urls(self, "sessions.redis_cluster", urls),
            None => Vec::new(),
        };
        let redis_sentinel = raw.redis_sentinel.map(|s| {
            if s.master.trim().is_empty() {
                self.err("sessions.redis_sentinel.master", "the monitored primary's name is required");
            }
            RedisSentinel { master: s.master, nodes: redis_urls(self, "sessions.redis_sentinel.nodes", s.nodes) }
        });
        let targets = [redis_url.is_some(), !redis_cluster.is_empty(), redis_sentinel.is_some()];
        if targets.iter().filter(|&&t| t).count() > 1 {
            let key = if redis_sentinel.is_some() { "sessions.redis_sentinel" } else { "sessions.redis_cluster" };
            self.err(key, "set only one of redis_url, redis_cluster and redis_sentinel");
        }
        if store == StoreKind::Redis && !targets.contains(&true) {
            self.err(
                "sessions.redis_url",
                "required when sessions.store = \"redis\" (or redis_cluster, or redis_sentinel)",
            );
        }
        let secret = self.secret("sessions.secret", raw.secret, raw.secret_file);
        match &secret {
            None => self.err("sessions.secret", "required: at least 32 random bytes (e.g. `openssl rand -base64 48`)"),
            Some(s) if s.expose_secret().len() < 32 => self.err(
                "sessions.secret",
                format!("too short: {} bytes, at least 32 are required", s.expose_secret().len()),
            ),
            Some(_) => {}
        }
        let cookie_name = raw.cookie_name.unwrap_or_else(|| "ferrygate_session".to_owned());
        if cookie_name.is_empty()
            || !cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.err("sessions.cookie_name", format!("{cookie_name:?} is not a valid cookie name"));
        }
        let max_entries = raw.max_entries.unwrap_or(1_000_000);
        if max_entries == 0 {
            self.err("sessions.max_entries", "must be at least 1");
        }
        Some(Sessions {
            store,
            redis_url,
            redis_cluster,
            redis_sentinel,
            redis_password,
            secret: secret?,
            cookie_name,
            cookie_secure: raw.cookie_secure.unwrap_or(true),
            max_entries,
            max_ttl: self.positive("sessions.max_ttl", raw.max_ttl, Duration::from_secs(12 * 3600)),
        })
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let login_body_bytes = raw.login_body_bytes.unwrap_or(16 * 1024);
        if login_body_bytes == 0 || login_body_bytes > 1024 * 1024 {
            self.err("limits.login_body_bytes", "must be between 1 and 1048576");
        }
        Limits {
            login_body_bytes: login_body_bytes as usize,
            login_per_ip: Some(raw.login_per_ip.unwrap_or(Rate { count: 20, per: Duration::from_secs(60) })),
            login_per_account: Some(raw.login_per_account.unwrap_or(Rate { count: 5, per: Duration::from_secs(60) })),
        }
    }

    /// Each `[providers.X]` table, built by the kind its `kind` key names.
    fn providers(
        &mut self,
        raw: BTreeMap<String, toml::Table>,
        kinds: &Kinds,
        tls: &UpstreamTls,
    ) -> BTreeMap<String, ProviderEntry> {
        let mut built = BTreeMap::new();
        if raw.is_empty() {
            return built;
        }
        let client = match HttpClient::new(tls.ca_file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                self.err("upstream_tls.ca_file", e.to_string());
                return built;
            }
        };
        for (name, mut table) in raw {
            let key = format!("providers.{name}");
            if name.is_empty() {
                self.err(&key, "provider names must not be empty");
                continue;
            }
            let known = || kinds.names().collect::<Vec<_>>().join(", ");
            let kind = match table.remove("kind") {
                Some(toml::Value::String(k)) => k,
                Some(_) => {
                    self.err(&format!("{key}.kind"), format!("must be a string, one of: {}", known()));
                    self.unbuilt.push(name);
                    continue;
                }
                None => {
                    self.err(&format!("{key}.kind"), format!("required, one of: {}", known()));
                    self.unbuilt.push(name);
                    continue;
                }
            };
            let Some(kind) = kinds.get(&kind) else {
                self.err(
                    &format!("{key}.kind"),
                    format!("unknown provider kind {kind:?}; this build knows: {}", known()),
                );
                self.unbuilt.push(name);
                continue;
            };
            let mut build = Build::new(&name, self, &client, tls.ca_file.as_deref());
            match kind.build(table, &mut build) {
                Some(provider) => {
                    built.insert(name, ProviderEntry { kind: kind.name(), rules: kind.site_rules(), provider });
                }
                // Refused with its reasons; sites naming it are not refused again for it.
                None => self.unbuilt.push(name),
            }
        }
        built
    }
}
