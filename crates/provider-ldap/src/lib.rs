//! The `ldap` provider kind (spec 1.5): search, then bind, against OpenLDAP,
//! Active Directory or 389 DS.
//!
//! 1. On the service account's connection (bound as `bind_dn`, reused by
//!    every login, re-opened after a failure), search `base_dn` for
//!    `user_filter` with the typed username escaped per RFC 4515 ([`escape`]),
//!    so no input can change the filter.
//! 2. Exactly one entry: bind as its DN with the typed password on a
//!    connection of its own, closed right after — a pooled connection is never
//!    left bound as a user. Zero or several entries do the same work against a
//!    DN that does not exist, so an unknown user and a wrong password take the
//!    same time and give the same answer (`invalid_credentials`).
//! 3. The user's groups: `group_filter` under `groups_base_dn` (`{dn}`
//!    escaped the same way), or the first RDN value of each `memberOf`.
//!
//! An empty password is refused before any bind (an LDAP server takes it for
//! an anonymous bind that "succeeds"). A password never goes over plain
//! `ldap://` unless `allow_insecure = true` (`check` refuses it otherwise).

mod config;

use std::time::Duration;

use ferrygate_core::provider::{BoxFuture, Grant, LoginAttempt, Provider, UserInfo};
use ferrygate_core::{ExposeSecret, LoginError, SecretString};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tokio::sync::Mutex;

pub use config::{LdapConfig, LdapKind};

/// LDAP result code 49: invalidCredentials.
const INVALID_CREDENTIALS: u32 = 49;

/// A configured ldap provider.
pub struct LdapProvider {
    name: String,
    config: LdapConfig,
    /// The service account's connection, opened on first use and after a failure.
    service: Mutex<Option<Ldap>>,
}

impl std::fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapProvider").field("name", &self.name).field("url", &self.config.url).finish_non_exhaustive()
    }
}

/// Escapes `value` for an RFC 4515 filter: `*`, `(`, `)`, `\`, NUL and every
/// non-ASCII byte become `\XX`, so the result can only ever be a literal.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if matches!(b, b'*' | b'(' | b')' | b'\\' | 0) || b >= 0x80 {
            out.push_str(&format!("\\{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Why an LDAP exchange did not give an answer.
enum Failure {
    /// The server refused the credentials (result 49).
    Refused,
    /// No connection, TLS failure, protocol error.
    Unavailable(String),
}

impl From<ldap3::LdapError> for Failure {
    fn from(e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::LdapResult { result } if result.rc == INVALID_CREDENTIALS => Failure::Refused,
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

impl LdapProvider {
    /// The provider `name` (its name in `[providers]`) with `config`.
    pub fn new(name: &str, config: LdapConfig) -> Self {
        Self { name: name.to_owned(), config, service: Mutex::new(None) }
    }

    async fn connect(&self) -> Result<Ldap, Failure> {
        let c = &self.config;
        let mut settings = LdapConnSettings::new().set_conn_timeout(c.timeout).set_starttls(c.start_tls);
        if let Some(tls) = &c.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &c.url).await?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// The service account's connection: the open one, or a new one bound as `bind_dn`.
    async fn service(&self) -> Result<Ldap, Failure> {
        let mut slot = self.service.lock().await;
        if let Some(ldap) = slot.as_mut() {
            if !ldap.is_closed() {
                return Ok(ldap.clone());
            }
        }
        let mut ldap = self.connect().await?;
        if let Some((dn, password)) = &self.config.bind {
            // A refused service bind is the operator's problem, never the user's
            // wrong password (result 49 here must not read as invalid_credentials).
            let bound = ldap.simple_bind(dn, password.expose_secret()).await.and_then(|r| r.success());
            if let Err(e) = bound {
                tracing::error!(provider = %self.name, error = %e, "the service account's bind (bind_dn) was refused");
                return Err(Failure::Unavailable(format!("service bind: {e}")));
            }
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    /// Forgets the service connection after a failure: the next login opens a
    /// new one. Not unbound here: logins still using a clone finish on it, and
    /// it closes with its last clone.
    async fn drop_service(&self) {
        self.service.lock().await.take();
    }

    async fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, Failure> {
        let mut ldap = self.service().await?;
        let found = ldap.search(base, Scope::Subtree, filter, attrs.to_vec()).await.and_then(|r| r.success());
        match found {
            Ok((entries, _)) => Ok(entries.into_iter().map(SearchEntry::construct).collect()),
            Err(e) => {
                self.drop_service().await;
                Err(e.into())
            }
        }
    }

    /// Binds as `dn` on a connection of its own, closed right after.
    async fn user_bind(&self, dn: &str, password: &SecretString) -> Result<(), Failure> {
        let mut ldap = self.connect().await?;
        let bound = ldap.simple_bind(dn, password.expose_secret()).await.and_then(|r| r.success());
        let _ = ldap.unbind().await;
        bound.map(|_| ()).map_err(Failure::from)
    }

    async fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, Failure> {
        let c = &self.config;
        let filter = c.user_filter.replace("{username}", &escape(attempt.username));
        let mut attrs = vec![c.email_attribute.as_str(), c.id_attribute.as_str()];
        if let Some(a) = &c.groups_attribute {
            attrs.push(a.as_str());
        }
        let mut entries = self.search(&c.base_dn, &filter, &attrs).await?;
        if entries.len() != 1 {
            // The same work as for a known user with a wrong password.
            let nobody = format!("cn=ferrygate-no-such-user,{}", c.base_dn);
            return match self.user_bind(&nobody, attempt.password).await {
                Ok(()) | Err(Failure::Refused) => Err(Failure::Refused),
                Err(e) => Err(e),
            };
        }
        let entry = entries.remove(0);
        self.user_bind(&entry.dn, attempt.password).await?;
        let first = |name: &str| entry.attrs.get(name).and_then(|v| v.first()).cloned();
        let groups = self.groups(&entry).await?;
        Ok(Grant {
            session_ttl: Some(c.session_ttl),
            user: UserInfo {
                email: Some(first(&c.email_attribute).unwrap_or_else(|| attempt.username.to_owned())),
                user_id: first(&c.id_attribute),
                groups,
                ..UserInfo::default()
            },
            ..Grant::redirect(attempt.destination)
        })
    }

    async fn groups(&self, entry: &SearchEntry) -> Result<Vec<String>, Failure> {
        let c = &self.config;
        if let Some(attribute) = &c.groups_attribute {
            let dns = entry.attrs.get(attribute).map(Vec::as_slice).unwrap_or_default();
            return Ok(dns.iter().filter_map(|dn| first_rdn_value(dn)).collect());
        }
        let (Some(base), Some(filter)) = (&c.groups_base_dn, &c.group_filter) else { return Ok(Vec::new()) };
        let filter = filter.replace("{dn}", &escape(&entry.dn));
        let groups = self.search(base, &filter, &[c.group_name_attribute.as_str()]).await?;
        Ok(groups.into_iter().filter_map(|g| g.attrs.get(&c.group_name_attribute)?.first().cloned()).collect())
    }
}

/// `admins` of `cn=admins,ou=groups,dc=corp,dc=example`: the first RDN's
/// value, its RFC 4514 escapes undone (`CN=Sales\, EMEA,...` is `Sales, EMEA`,
/// `\XX` a byte in hex).
fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut bytes = Vec::with_capacity(rest.len());
    let mut input = rest.bytes();
    while let Some(b) = input.next() {
        match b {
            b',' | b'+' => break,
            b'\\' => match input.next()? {
                h if h.is_ascii_hexdigit() => {
                    let pair = [h, input.next()?];
                    bytes.push(u8::from_str_radix(std::str::from_utf8(&pair).ok()?, 16).ok()?);
                }
                escaped => bytes.push(escaped),
            },
            other => bytes.push(other),
        }
    }
    let value = String::from_utf8(bytes).ok()?;
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Provider for LdapProvider {
    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        Box::pin(async move {
            // An empty password would be an anonymous bind, which "succeeds".
            if attempt.password.expose_secret().is_empty() {
                return Err(LoginError::InvalidCredentials);
            }
            match tokio::time::timeout(self.config.timeout, self.login(attempt)).await {
                Ok(Ok(grant)) => Ok(grant),
                Ok(Err(Failure::Refused)) => Err(LoginError::InvalidCredentials),
                Ok(Err(Failure::Unavailable(why))) => {
                    tracing::warn!(provider = %self.name, error = %why, "ldap server unavailable");
                    Err(LoginError::ProviderUnavailable)
                }
                Err(_) => {
                    tracing::warn!(provider = %self.name, timeout = ?self.config.timeout, "ldap server did not answer in time");
                    self.drop_service().await;
                    Err(LoginError::ProviderTimeout)
                }
            }
        })
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc_4515() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("*"), "\\2a");
        assert_eq!(escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape("é"), "\\c3\\a9");
    }

    #[test]
    fn debug_shows_no_password() {
        let config = LdapConfig {
            url: "ldaps://ldap.example".into(),
            start_tls: false,
            tls: None,
            bind: Some(("cn=svc".into(), SecretString::from("Bind-Pw-secret-77".to_owned()))),
            base_dn: "dc=x".into(),
            user_filter: "(uid={username})".into(),
            email_attribute: "mail".into(),
            id_attribute: "uid".into(),
            groups_base_dn: None,
            group_filter: None,
            group_name_attribute: "cn".into(),
            groups_attribute: None,
            session_ttl: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{config:?} {:?}", LdapProvider::new("corp", config.clone()));
        assert!(!shown.contains("Bind-Pw-secret-77"), "{shown}");
        assert!(shown.contains("cn=svc"), "{shown}");
    }

    #[test]
    fn the_first_rdn_names_the_group() {
        assert_eq!(first_rdn_value("cn=admins,ou=groups,dc=corp,dc=example").as_deref(), Some("admins"));
        assert_eq!(first_rdn_value("CN=Domain Admins,CN=Users,DC=corp,DC=example").as_deref(), Some("Domain Admins"));
        assert_eq!(first_rdn_value("nonsense"), None);
        // RFC 4514 escapes: a comma inside the value, a hex-escaped byte, UTF-8 in hex.
        assert_eq!(first_rdn_value(r"CN=Sales\, EMEA,OU=Groups,DC=corp").as_deref(), Some("Sales, EMEA"));
        assert_eq!(first_rdn_value(r"cn=a\2bb,dc=x").as_deref(), Some("a+b"));
        assert_eq!(first_rdn_value(r"cn=caf\c3\a9,dc=x").as_deref(), Some("café"));
        assert_eq!(first_rdn_value(r"cn=broken\"), None);
    }

    proptest::proptest! {
        /// Whatever is typed, the escaped value holds no filter syntax: no
        /// parenthesis, no asterisk, no NUL, no non-ASCII byte, and every
        /// backslash starts a two-digit hex escape — so the filter keeps its shape.
        #[test]
        fn no_input_changes_the_filter_structure(input in "\\PC{0,24}|[*()\\\\\\x00a-z=|&!]{0,24}") {
            let e = escape(&input);
            proptest::prop_assert!(!e.bytes().any(|b| matches!(b, b'(' | b')' | b'*' | 0) || b >= 0x80), "{}", e);
            let bytes = e.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\\' {
                    proptest::prop_assert!(i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit(), "{}", e);
                    i += 3;
                } else {
                    i += 1;
                }
            }
            let filter = format!("(&(objectClass=person)(uid={e}))");
            let depth = filter.bytes().fold((0i32, 0i32), |(d, max), b| match b {
                b'(' => (d + 1, max.max(d + 1)),
                b')' => (d - 1, max),
                _ => (d, max),
            });
            proptest::prop_assert_eq!(depth, (0, 2));
        }
    }
}
