//! From TOML text to a typed [`Config`]: substitution, parsing, then every check
//! of the spec, collecting all refusals (each naming its key) instead of
//! stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

use super::raw::*;
use super::*;
use crate::destination;
use crate::template::{Placeholder, Template};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn load(text: &str, base: &Path, env: Env<'_>) -> Result<Loaded, ConfigErrors> {
    let one = |key: String, message: String| ConfigErrors(vec![ConfigError { key, message }]);
    // toml's Display quotes the offending line, which may hold a secret: the
    // message and the line number only.
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map(|n| format!(" (line {n})")).unwrap_or_default();
        one(String::new(), format!("invalid TOML{at}: {}", e.message().trim_end()))
    })?;
    let mut check = Check { errors: Vec::new(), warnings: Vec::new(), base };
    for (key, value) in table.iter_mut() {
        substitute(value, key.clone(), env, &mut check);
    }
    if !check.errors.is_empty() {
        return Err(ConfigErrors(check.errors));
    }
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = without_values(e.inner().message().trim());
        // Name the unknown key itself, not only the table it is in.
        let unknown = message.strip_prefix("unknown field `").and_then(|m| m.split_once('`')).map(|(k, _)| k);
        let key = match unknown {
            Some(k) if path.is_empty() => k.to_owned(),
            Some(k) if !path.ends_with(k) => format!("{path}.{k}"),
            _ => path,
        };
        one(key, message)
    })?;
    let config = check.config(raw);
    match config {
        Some(config) if check.errors.is_empty() => Ok(Loaded { config, warnings: check.warnings }),
        _ => Err(ConfigErrors(check.errors)),
    }
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

/// Replaces `${NAME}` in every string value by the environment variable NAME.
fn substitute(value: &mut toml::Value, key: String, env: Env<'_>, check: &mut Check<'_>) {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    check.err(&key, "unclosed \"${\"");
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        check.err(&key, format!("environment variable {name} is not set"));
                        return;
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{key}[{i}]"), env, check);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                substitute(v, format!("{key}.{k}"), env, check);
            }
        }
        _ => {}
    }
}

struct Check<'a> {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    base: &'a Path,
}

impl Check<'_> {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError { key: key.to_owned(), message: message.into() });
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigError { key: key.to_owned(), message: message.into() });
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => match humantime::parse_duration(v.trim()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.err(key, "must be longer than zero");
                    default
                }
                Err(e) => {
                    self.err(key, format!("invalid duration {v:?} ({e}); write e.g. \"500ms\", \"5s\", \"8h\""));
                    default
                }
            },
        }
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(key, format!("invalid listen address {value:?}; write e.g. \"0.0.0.0:8080\""));
                None
            }
        }
    }

    /// A secret given inline or as `<key>_file`.
    fn secret(&mut self, key: &str, inline: Option<String>, file: Option<String>) -> Option<SecretString> {
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

    fn route_path(&mut self, key: &str, path: &str) -> String {
        if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.err(key, format!("must be a path starting with \"/\", got {path:?}"));
        }
        path.to_owned()
    }

    /// A redirect target (absolute URL or path) that fits a `Location` header;
    /// `gets_query` targets have parameters appended, so no fragment.
    fn redirect_target(&mut self, key: &str, value: &str, gets_query: bool) {
        if value.is_empty() || http::HeaderValue::from_str(value).is_err() {
            self.err(key, format!("{value:?} is not a usable redirect target"));
        } else if gets_query && value.contains('#') {
            self.err(key, "must not have a #fragment: parameters are appended to it");
        } else if !value.starts_with('/') && !value.starts_with("http://") && !value.starts_with("https://") {
            self.err(key, format!("{value:?} must be a path (\"/…\") or an http(s):// URL"));
        } else if value.starts_with("//") {
            self.err(key, "a scheme-relative target (\"//…\") is ambiguous; write the scheme");
        }
    }

    fn http_url(&mut self, key: &str, value: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.err(key, format!("must be an http:// or https:// URL, got {value:?}"));
                None
            }
            Err(e) => {
                self.err(key, format!("invalid URL {value:?}: {e}"));
                None
            }
        }
    }

    fn template(&mut self, key: &str, value: &str) -> Template {
        Template::parse(value).unwrap_or_else(|e| {
            self.err(key, e.to_string());
            Template::parse("").unwrap_or_else(|_| unreachable!("the empty template parses"))
        })
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(raw.server);
        let admin = raw.admin.and_then(|a| Some(Admin { listen: self.socket_addr("admin.listen", &a.listen)? }));
        let upstream_tls = self.upstream_tls(raw.upstream_tls);
        let sessions = self.sessions(raw.sessions);
        let limits = self.limits(raw.limits);
        let providers: BTreeMap<String, ProviderConfig> = raw
            .providers
            .into_iter()
            .filter_map(|(name, p)| Some((name.clone(), self.provider(&format!("providers.{name}"), p)?)))
            .collect();
        if raw.sites.is_empty() {
            self.err("sites", "at least one [[sites]] entry is required");
        }
        let mut sites = Vec::new();
        let mut host_index = HashMap::new();
        let mut default_site = None;
        for (i, raw_site) in raw.sites.into_iter().enumerate() {
            let key = format!("sites[{i}]");
            let Some(site) = self.site(&key, raw_site, &providers) else { continue };
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
        Some(Config {
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
            shutdown_grace: self.duration(
                "server.shutdown_grace",
                raw.shutdown_grace.as_deref(),
                Duration::from_secs(30),
            ),
            upstream_timeout: self.duration(
                "server.upstream_timeout",
                raw.upstream_timeout.as_deref(),
                Duration::from_secs(60),
            ),
            hsts_max_age: match raw.hsts_max_age.as_deref().map(str::trim) {
                Some("0" | "0s") => Duration::ZERO,
                other => self.duration("server.hsts_max_age", other, Duration::from_secs(365 * 24 * 3600)),
            },
            tls,
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
                self.err("upstream_tls.ca_file", e);
            }
        }
        UpstreamTls { ca_file }
    }

    fn sessions(&mut self, raw: RawSessions) -> Option<Sessions> {
        let store = match raw.store.as_deref() {
            None | Some("memory") => StoreKind::Memory,
            Some("redis") => StoreKind::Redis,
            Some(other) => {
                self.err("sessions.store", format!("unknown store {other:?}; use \"memory\" or \"redis\""));
                StoreKind::Memory
            }
        };
        let redis_url = self.secret("sessions.redis_url", raw.redis_url, raw.redis_url_file);
        if store == StoreKind::Redis && redis_url.is_none() {
            self.err("sessions.redis_url", "required when sessions.store = \"redis\"");
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
            secret: secret?,
            cookie_name,
            cookie_secure: raw.cookie_secure.unwrap_or(true),
            max_entries,
            max_ttl: self.duration("sessions.max_ttl", raw.max_ttl.as_deref(), Duration::from_secs(12 * 3600)),
        })
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let login_body_bytes = raw.login_body_bytes.unwrap_or(16 * 1024);
        if login_body_bytes == 0 || login_body_bytes > 1024 * 1024 {
            self.err("limits.login_body_bytes", "must be between 1 and 1048576");
        }
        Limits {
            login_body_bytes: login_body_bytes as usize,
            login_per_ip: self.rate("limits.login_per_ip", raw.login_per_ip.as_deref().unwrap_or("20/min")),
            login_per_account: self
                .rate("limits.login_per_account", raw.login_per_account.as_deref().unwrap_or("5/min")),
        }
    }

    fn rate(&mut self, key: &str, value: &str) -> Option<Rate> {
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
        if parsed.is_none() {
            self.err(key, format!("invalid rate {value:?}; write \"N/sec\", \"N/min\" or \"N/hour\" with N > 0"));
        }
        parsed
    }

    fn server_url(&mut self, key: &str, value: &str) -> String {
        if let Some(u) = self.http_url(key, value) {
            if u.query().is_some() || u.fragment().is_some() {
                self.err(key, "must not have a query or fragment");
            }
        }
        value.trim_end_matches('/').to_owned()
    }

    fn provider(&mut self, key: &str, raw: RawProvider) -> Option<ProviderConfig> {
        if key.len() <= "providers.".len() {
            self.err(key, "provider names must not be empty");
        }
        let timeout = |c: &mut Self, t: Option<String>| {
            c.duration(&format!("{key}.timeout"), t.as_deref(), Duration::from_secs(5))
        };
        Some(match raw {
            RawProvider::Qwyk(q) => ProviderConfig::Qwyk(QwykConfig {
                server: self.server_url(&format!("{key}.server"), &q.server),
                organization_id: q.organization_id,
                site_id: q.site_id,
                timeout: timeout(self, q.timeout),
            }),
            RawProvider::Payway(p) => {
                let server = self.server_url(&format!("{key}.server"), &p.server);
                let token_url = p.token_url.unwrap_or_else(|| format!("{server}/oauth2/token"));
                self.http_url(&format!("{key}.token_url"), &token_url);
                self.http_url(&format!("{key}.redirect_uri"), &p.redirect_uri);
                let client_secret = self.secret(&format!("{key}.client_secret"), p.client_secret, p.client_secret_file);
                if client_secret.is_none() {
                    self.err(&format!("{key}.client_secret"), "required");
                }
                ProviderConfig::Payway(PaywayConfig {
                    server,
                    token_url,
                    token_scope: p.token_scope.unwrap_or_else(|| "/oauth2/login/x".to_owned()),
                    client_id: p.client_id,
                    client_secret: client_secret?,
                    oid: p.oid,
                    redirect_uri: p.redirect_uri,
                    scope: p.scope.unwrap_or_default(),
                    timeout: timeout(self, p.timeout),
                })
            }
            RawProvider::Rest(r) => {
                let default_timeout = timeout(self, None);
                self.rest(key, r, default_timeout)?
            }
        })
    }

    fn rest(&mut self, key: &str, r: RawRest, default_timeout: Duration) -> Option<ProviderConfig> {
        let url = self.template(&format!("{key}.url"), &r.url);
        if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
            self.err(&format!("{key}.url"), "must start with http:// or https://");
        }
        let method = match r.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some("GET") => Method::GET,
            Some(other) => {
                self.err(&format!("{key}.method"), format!("{other:?} is not POST, PUT or GET"));
                Method::POST
            }
        };
        let body_format = match r.body_format.as_deref() {
            None | Some("json") => BodyFormat::Json,
            Some("form") => BodyFormat::Form,
            Some("xml") => BodyFormat::Xml,
            Some(other) => {
                self.err(&format!("{key}.body_format"), format!("{other:?} is not json, form or xml"));
                BodyFormat::Json
            }
        };
        let xml_root = r.xml_root.unwrap_or_else(|| "login".to_owned());
        if !is_xml_name(&xml_root) {
            self.err(&format!("{key}.xml_root"), format!("{xml_root:?} is not a valid XML element name"));
        }
        let mut body = Vec::new();
        for (k, v) in r.body.unwrap_or_default() {
            let field_key = format!("{key}.body.{k}");
            match v.as_str() {
                Some(s) => body.push((k.clone(), self.template(&field_key, s))),
                None => self.err(&field_key, "must be a string"),
            }
            if body_format == BodyFormat::Xml && !is_xml_name(&k) {
                self.err(&field_key, format!("{k:?} is not a valid XML element name"));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in r.headers.unwrap_or_default() {
            let header_key = format!("{key}.headers.{k}");
            match HeaderName::from_bytes(k.as_bytes()) {
                Ok(name) => headers.push((name, self.template(&header_key, &v))),
                Err(_) => self.err(&header_key, format!("{k:?} is not a valid header name")),
            }
        }
        let auth = match r.auth.as_deref() {
            None | Some("none") => RestAuth::None,
            Some("basic") => RestAuth::Basic,
            Some(other) => {
                self.err(&format!("{key}.auth"), format!("{other:?} is not none or basic"));
                RestAuth::None
            }
        };
        let users = match r.users {
            Some(u) => {
                let p = self.path(&u);
                if !p.is_file() {
                    self.err(&format!("{key}.users"), format!("cannot read the user directory {}", p.display()));
                }
                p
            }
            None => {
                self.err(
                    &format!("{key}.users"),
                    "required: the CSV user directory (email,user_id,external_id,org_id)",
                );
                PathBuf::new()
            }
        };
        let forgot_password_url =
            r.forgot_password_url.map(|u| self.template(&format!("{key}.forgot_password_url"), &u));
        if let Some(t) = &forgot_password_url {
            if t.uses(Placeholder::UserPassword) {
                self.err(&format!("{key}.forgot_password_url"), "{{USERPASSWORD}} is not available here");
            }
        }
        Some(ProviderConfig::Rest(RestConfig {
            url,
            method,
            body_format,
            xml_root,
            body,
            headers,
            auth,
            users,
            forgot_password_url,
            session_ttl: self.duration(
                &format!("{key}.session_ttl"),
                r.session_ttl.as_deref(),
                Duration::from_secs(8 * 3600),
            ),
            timeout: self.duration(&format!("{key}.timeout"), r.timeout.as_deref(), default_timeout),
        }))
    }

    fn site(&mut self, key: &str, raw: RawSite, providers: &BTreeMap<String, ProviderConfig>) -> Option<Site> {
        let provider_kind = match providers.get(&raw.provider) {
            Some(p) => p.kind(),
            None => {
                self.err(&format!("{key}.provider"), format!("no provider named {:?} in [providers]", raw.provider));
                return None;
            }
        };
        let hosts = raw
            .hosts
            .iter()
            .enumerate()
            .map(|(j, h)| {
                // The parser requests are routed by: a host that parses to
                // something else would never be matched.
                match crate::authority::parse(h.trim()) {
                    Ok(a) if a.host() == a.full => a.host().to_owned(),
                    Ok(_) => {
                        self.err(
                            &format!("{key}.hosts[{j}]"),
                            "a host name without a port: sites are matched by host alone",
                        );
                        String::new()
                    }
                    Err(e) => {
                        self.err(&format!("{key}.hosts[{j}]"), format!("{h:?} is not a host name ({})", e.0));
                        String::new()
                    }
                }
            })
            .collect();
        let upstream_uri = self.http_url(&format!("{key}.upstream"), &raw.upstream).and_then(|u| {
            let origin: Uri =
                format!("{}://{}", u.scheme(), &u[url::Position::BeforeHost..url::Position::AfterPort]).parse().ok()?;
            Some((origin, u.path().trim_end_matches('/').to_owned()))
        });
        let rewrite_location = raw
            .rewrite_location
            .into_iter()
            .enumerate()
            .filter_map(|(j, r)| {
                if r.from.is_empty() {
                    self.err(&format!("{key}.rewrite_location[{j}].from"), "must not be empty");
                    return None;
                }
                Some(Rewrite { from: r.from, to: r.to })
            })
            .collect();
        let allowed_origins = raw
            .allowed_origins
            .iter()
            .enumerate()
            .filter_map(|(j, o)| {
                let k = format!("{key}.allowed_origins[{j}]");
                let u = self.http_url(&k, o)?;
                if u.path() != "/" || u.query().is_some() {
                    self.err(&k, format!("{o:?} is not an origin; write \"https://host[:port]\""));
                }
                Some(u.origin().ascii_serialization())
            })
            .collect();
        let protected_paths = raw
            .protected_paths
            .iter()
            .enumerate()
            .map(|(j, p)| {
                self.route_path(&format!("{key}.protected_paths[{j}]"), p);
                crate::path::canonical(p).into_owned()
            })
            .collect();

        let l = raw.login;
        let login_path = self.route_path(&format!("{key}.login.path"), &l.path);
        let failure_redirect = l.failure_redirect.unwrap_or_else(|| login_path.clone());
        self.redirect_target(&format!("{key}.login.failure_redirect"), &failure_redirect, true);
        let login = LoginRoute {
            failure_redirect,
            path: login_path,
            username_field: l.username_field.unwrap_or_else(|| "email".to_owned()),
            password_field: l.password_field.unwrap_or_else(|| "password".to_owned()),
            remember_field: l.remember_field.unwrap_or_else(|| "remember".to_owned()),
            destination_field: l.destination_field.unwrap_or_else(|| "destination".to_owned()),
        };

        let portal = self.portal(key, raw.portal.unwrap_or_default(), provider_kind);
        let redirect_route = |c: &mut Self, name: &str, r: Option<RawRedirectRoute>| {
            r.map(|r| {
                c.redirect_target(&format!("{key}.{name}.redirect"), &r.redirect, false);
                RedirectRoute {
                    paths: r
                        .paths
                        .iter()
                        .enumerate()
                        .map(|(j, p)| c.route_path(&format!("{key}.{name}.paths[{j}]"), p))
                        .collect(),
                    redirect: r.redirect,
                }
            })
        };
        let home = redirect_route(self, "home", raw.home);
        let logout = redirect_route(self, "logout", raw.logout);
        let wizard = raw.wizard.map(|w| {
            let path = self.route_path(&format!("{key}.wizard.path"), &w.path);
            let destination = match destination::validate(&w.destination, &portal.allowed_destinations) {
                Ok(d) => d,
                Err(why) => {
                    self.err(
                        &format!("{key}.wizard.destination"),
                        format!("{:?} is refused: {why} (see portal.allowed_destinations)", w.destination),
                    );
                    w.destination
                }
            };
            Wizard { path, destination, params: w.params }
        });
        let forgot_password = raw.forgot_password.map(|f| {
            self.redirect_target(&format!("{key}.forgot_password.redirect"), &f.redirect, false);
            ForgotPassword {
                path: self.route_path(&format!("{key}.forgot_password.path"), &f.path),
                redirect: f.redirect,
            }
        });
        let callback =
            raw.callback.map(|c| Callback { path: self.route_path(&format!("{key}.callback.path"), &c.path) });

        let applies = [
            ("wizard", wizard.is_some(), ProviderKind::Qwyk),
            ("callback", callback.is_some(), ProviderKind::Payway),
            ("forgot_password", forgot_password.is_some(), ProviderKind::Rest),
        ];
        for (section, present, kind) in applies {
            if present && provider_kind != kind {
                self.warn(
                    &format!("{key}.{section}"),
                    format!(
                        "applies to {} providers only; provider {:?} is {}, so it is ignored",
                        kind.as_str(),
                        raw.provider,
                        provider_kind.as_str()
                    ),
                );
            }
        }

        // Every owned path once: two routes on one path would silently shadow each other.
        // A section that does not apply to the provider owns no route.
        let mut owned: Vec<(String, &str, OwnedRoute)> = vec![(login.path.clone(), "login.path", OwnedRoute::Login)];
        if provider_kind == ProviderKind::Qwyk {
            owned.extend(wizard.iter().map(|w| (w.path.clone(), "wizard.path", OwnedRoute::Wizard)));
        }
        owned.extend(home.iter().flat_map(|h| h.paths.iter().map(|p| (p.clone(), "home.paths", OwnedRoute::Home))));
        owned.extend(
            logout.iter().flat_map(|h| h.paths.iter().map(|p| (p.clone(), "logout.paths", OwnedRoute::Logout))),
        );
        if provider_kind == ProviderKind::Rest {
            owned.extend(
                forgot_password.iter().map(|f| (f.path.clone(), "forgot_password.path", OwnedRoute::ForgotPassword)),
            );
        }
        if provider_kind == ProviderKind::Payway {
            owned.extend(callback.iter().map(|c| (c.path.clone(), "callback.path", OwnedRoute::Callback)));
        }
        // Keyed by the canonical path, as requests are matched.
        let mut routes = HashMap::new();
        for (path, name, route) in owned {
            if routes.insert(crate::path::canonical(&path).into_owned(), route).is_some() {
                self.err(&format!("{key}.{name}"), format!("path {path:?} is owned by two routes"));
            }
        }

        let (origin, base_path) = upstream_uri?;
        Some(Site {
            name: raw.name.clone(),
            hosts,
            upstream: Arc::new(Upstream { site: raw.name, origin, base_path, rewrite_location }),
            provider: raw.provider,
            provider_kind,
            allowed_origins,
            protected_paths,
            login,
            portal,
            home,
            logout,
            wizard,
            forgot_password,
            callback,
            routes,
        })
    }

    fn portal(&mut self, key: &str, raw: RawPortal, kind: ProviderKind) -> Portal {
        if let Some(u) = &raw.url {
            if self.http_url(&format!("{key}.portal.url"), u).is_some() {
                self.redirect_target(&format!("{key}.portal.url"), u, true);
            }
        } else if kind == ProviderKind::Qwyk {
            self.err(
                &format!("{key}.portal.url"),
                "required for a qwyk site: the portal's external-authentication address",
            );
        }
        let default_destination = raw.default_destination.unwrap_or_else(|| match kind {
            ProviderKind::Rest => "/".to_owned(),
            _ => "/my-portal".to_owned(),
        });
        let allowed_destinations: Vec<String> = match raw.allowed_destinations {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(j, p)| self.route_path(&format!("{key}.portal.allowed_destinations[{j}]"), p))
                .collect(),
            None => vec![default_destination.split('?').next().unwrap_or("/").to_owned()],
        };
        let default_destination = match destination::validate(&default_destination, &allowed_destinations) {
            Ok(d) => d,
            Err(why) => {
                self.err(
                    &format!("{key}.portal.default_destination"),
                    format!("{default_destination:?} is refused: {why} (see portal.allowed_destinations)"),
                );
                default_destination
            }
        };
        Portal { url: raw.url, default_destination, allowed_destinations }
    }
}

fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.to_ascii_lowercase().starts_with("xml")
}
