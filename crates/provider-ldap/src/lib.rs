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
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope};
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
    /// Set when a search on the service connection was abandoned half-way
    /// (the gateway's deadline dropped the login): that connection may be
    /// stuck, and the next login opens a new one.
    abandoned: std::sync::atomic::AtomicBool,
}

/// Marks the service connection abandoned unless the search it guards ends.
struct InFlight<'a>(&'a std::sync::atomic::AtomicBool);

impl InFlight<'_> {
    fn ended(self) {
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
    /// No answer in time (the connection, or a StartTLS that stays silent).
    Timeout,
}

impl From<ldap3::LdapError> for Failure {
    fn from(e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::LdapResult { result } if result.rc == INVALID_CREDENTIALS => Failure::Refused,
            ldap3::LdapError::Timeout { .. } => Failure::Timeout,
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

impl LdapProvider {
    /// The provider `name` (its name in `[providers]`) with `config`.
    pub fn new(name: &str, config: LdapConfig) -> Self {
        Self { name: name.to_owned(), config, service: Mutex::new(None), abandoned: Default::default() }
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
        if self.abandoned.swap(false, std::sync::atomic::Ordering::Relaxed) {
            // Not unbound: a search still waiting on it ends with its last clone.
            slot.take();
        }
        if let Some(ldap) = slot.as_mut() {
            if !ldap.is_closed() {
                return Ok(ldap.clone());
            }
        }
        let mut ldap = self.connect().await?;
        if let Some((dn, password)) = &self.config.bind {
            // A refused service bind is the operator's problem, never the user's
            // wrong password (result 49 here must not read as invalid_credentials).
            let bound = ldap
                .with_timeout(self.config.timeout)
                .simple_bind(dn, password.expose_secret())
                .await
                .and_then(|r| r.success());
            match bound {
                Ok(_) => {}
                // No answer in time is a timeout, whoever's bind it was.
                Err(ldap3::LdapError::Timeout { .. }) => return Err(Failure::Timeout),
                Err(e) => {
                    tracing::error!(provider = %self.name, error = %e, "the service account's bind (bind_dn) was refused");
                    return Err(Failure::Unavailable(format!("service bind: {e}")));
                }
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

    async fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<Vec<Entry>, Failure> {
        let mut ldap = self.service().await?;
        let in_flight = InFlight(&self.abandoned);
        let found = ldap
            .with_timeout(self.config.timeout)
            .search(base, Scope::Subtree, filter, attrs.to_vec())
            .await
            .and_then(|r| r.success());
        in_flight.ended();
        match found {
            Ok((entries, _)) => entries.into_iter().map(Entry::parse).collect(),
            Err(e) => {
                self.drop_service().await;
                Err(e.into())
            }
        }
    }

    /// Binds as `dn` on a connection of its own, closed right after.
    async fn user_bind(&self, dn: &str, password: &SecretString) -> Result<(), Failure> {
        let mut ldap = self.connect().await?;
        let bound = ldap
            .with_timeout(self.config.timeout)
            .simple_bind(dn, password.expose_secret())
            .await
            .and_then(|r| r.success());
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
        let user = UserInfo::default()
            .with_email(Some(first(&c.email_attribute).unwrap_or_else(|| attempt.username.to_owned())))
            .with_user_id(first(&c.id_attribute))
            .with_groups(groups);
        Ok(Grant::redirect(attempt.destination).with_session_ttl(Some(c.session_ttl)).with_user(user))
    }

    async fn groups(&self, entry: &Entry) -> Result<Vec<String>, Failure> {
        let c = &self.config;
        if let Some(attribute) = &c.groups_attribute {
            let dns = entry.attrs.get(attribute).map(Vec::as_slice).unwrap_or_default();
            // Only groups under groups_base_dn, when set: `ou=admins,dc=x` is no group.
            let wanted = |dn: &&String| c.groups_base_dn.as_deref().is_none_or(|base| is_under(dn, base));
            return Ok(dns.iter().filter(wanted).filter_map(|dn| first_rdn_value(dn)).collect());
        }
        let (Some(base), Some(filter)) = (&c.groups_base_dn, &c.group_filter) else { return Ok(Vec::new()) };
        let filter = filter.replace("{dn}", &escape(&entry.dn));
        let groups = self.search(base, &filter, &[c.group_name_attribute.as_str()]).await?;
        Ok(groups.into_iter().filter_map(|g| g.attrs.get(&c.group_name_attribute)?.first().cloned()).collect())
    }
}

/// A search result entry: its DN and its attributes' text values (a value
/// that is not UTF-8 is left out: no attribute Ferrygate reads is binary).
#[derive(Debug)]
struct Entry {
    dn: String,
    attrs: std::collections::HashMap<String, Vec<String>>,
}

impl Entry {
    /// Reads an entry as the directory sent it, whatever it sent: anything
    /// malformed (a DN that is not UTF-8, no attribute list, a value that is
    /// no octet string) is that login's `provider_unavailable`, never a
    /// panic (ldap3's `SearchEntry::construct` panics on each of those).
    fn parse(raw: ResultEntry) -> Result<Entry, Failure> {
        let malformed = |what: &str| Failure::Unavailable(format!("malformed search entry: {what}"));
        let mut parts =
            raw.0.match_id(4).and_then(|t| t.expect_constructed()).ok_or_else(|| malformed("not an entry"))?;
        if parts.len() != 2 {
            return Err(malformed("not a DN and an attribute list"));
        }
        let list = parts.pop().and_then(|t| t.expect_constructed()).ok_or_else(|| malformed("no attribute list"))?;
        let dn = parts.pop().and_then(|t| t.expect_primitive()).ok_or_else(|| malformed("no DN"))?;
        let dn = String::from_utf8(dn).map_err(|_| malformed("a DN that is not UTF-8"))?;
        let mut attrs = std::collections::HashMap::new();
        for attribute in list {
            let mut pair = attribute.expect_constructed().ok_or_else(|| malformed("an attribute"))?.into_iter();
            let name = pair.next().and_then(|t| t.expect_primitive()).and_then(|n| String::from_utf8(n).ok());
            let name = name.ok_or_else(|| malformed("an attribute's name"))?;
            let values =
                pair.next().and_then(|t| t.expect_constructed()).ok_or_else(|| malformed("an attribute's values"))?;
            let mut texts = Vec::with_capacity(values.len());
            for value in values {
                let value = value.expect_primitive().ok_or_else(|| malformed("a value"))?;
                texts.extend(String::from_utf8(value).ok());
            }
            attrs.insert(name, texts);
        }
        Ok(Entry { dn, attrs })
    }
}

/// A DN's RDNs, each trimmed around its `=` and lower-cased (attribute types
/// and the usual string values compare case-insensitively); a `\,` is no
/// separator.
fn rdns(dn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                current.extend(chars.next());
            }
            ',' => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out.iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((t, v)) => format!("{}={}", t.trim(), v.trim()).to_lowercase(),
            None => rdn.trim().to_lowercase(),
        })
        .collect()
}

/// Whether `dn` lies strictly below `base`.
fn is_under(dn: &str, base: &str) -> bool {
    let (dn, base) = (rdns(dn), rdns(base));
    dn.len() > base.len() && dn.ends_with(&base)
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
            // Each operation is bounded by `timeout` (the connection by ldap3's
            // connect timeout); the gateway bounds the whole login by it too.
            match self.login(attempt).await {
                Ok(grant) => Ok(grant),
                Err(Failure::Refused) => Err(LoginError::InvalidCredentials),
                Err(Failure::Unavailable(why)) => {
                    tracing::warn!(provider = %self.name, error = %why, "ldap server unavailable");
                    Err(LoginError::ProviderUnavailable)
                }
                Err(Failure::Timeout) => {
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
    fn a_search_dropped_half_way_marks_the_service_connection_abandoned() {
        let abandoned = std::sync::atomic::AtomicBool::new(false);
        InFlight(&abandoned).ended();
        assert!(!abandoned.load(std::sync::atomic::Ordering::Relaxed), "a search that ended");
        drop(InFlight(&abandoned));
        assert!(abandoned.load(std::sync::atomic::Ordering::Relaxed), "a search dropped half-way");
    }
    use ldap3::asn1::{StructureTag, TagClass, PL};

    fn prim(id: u64, bytes: &[u8]) -> StructureTag {
        StructureTag { class: TagClass::Universal, id, payload: PL::P(bytes.to_vec()) }
    }

    fn cons(class: TagClass, id: u64, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag { class, id, payload: PL::C(inner) }
    }

    fn entry(inner: Vec<StructureTag>) -> ResultEntry {
        ResultEntry::new(cons(TagClass::Application, 4, inner))
    }

    fn attribute(name: &[u8], values: &[&[u8]]) -> StructureTag {
        let values = values.iter().map(|v| prim(4, v)).collect();
        cons(TagClass::Universal, 16, vec![prim(4, name), cons(TagClass::Universal, 17, values)])
    }

    #[test]
    fn a_well_formed_entry_is_read() {
        let list =
            cons(TagClass::Universal, 16, vec![attribute(b"mail", &[b"a@x", b"\xff\xfe"]), attribute(b"uid", &[b"a"])]);
        let Ok(e) = Entry::parse(entry(vec![prim(4, b"uid=a,dc=x"), list])) else { panic!("refused") };
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(e.attrs["mail"], vec!["a@x"], "a binary value is left out");
        assert_eq!(e.attrs["uid"], vec!["a"]);
    }

    #[test]
    fn a_malformed_entry_is_an_error_never_a_panic() {
        let list = || cons(TagClass::Universal, 16, vec![attribute(b"mail", &[b"a@x"])]);
        // A SEQUENCE and a SET of the tags given.
        let seq = |inner: Vec<StructureTag>| cons(TagClass::Universal, 16, inner);
        let set = |inner: Vec<StructureTag>| cons(TagClass::Universal, 17, inner);
        let malformed = [
            entry(vec![prim(4, b"\xff\xfeuid=a"), list()]),
            entry(vec![prim(4, b"uid=a,dc=x")]),
            entry(vec![]),
            entry(vec![list(), prim(4, b"uid=a")]),
            entry(vec![prim(4, b"uid=a"), prim(4, b"not a list")]),
            entry(vec![prim(4, b"uid=a"), seq(vec![prim(4, b"mail")])]),
            entry(vec![prim(4, b"uid=a"), seq(vec![seq(vec![])])]),
            entry(vec![prim(4, b"uid=a"), seq(vec![seq(vec![prim(4, b"\xffname"), set(vec![])])])]),
            entry(vec![prim(4, b"uid=a"), seq(vec![seq(vec![prim(4, b"mail"), set(vec![seq(vec![])])])])]),
            ResultEntry::new(prim(4, b"uid=a")),
            ResultEntry::new(cons(TagClass::Application, 5, vec![])),
        ];
        for (i, raw) in malformed.into_iter().enumerate() {
            assert!(matches!(Entry::parse(raw), Err(Failure::Unavailable(_))), "case {i}");
        }
    }

    proptest::proptest! {
        /// Any tree of tags at all: an entry or an error, never a panic.
        #[test]
        fn any_answer_parses_or_is_refused(tree in arbitrary_tag()) {
            let _ = Entry::parse(ResultEntry::new(tree));
        }
    }

    fn arbitrary_tag() -> impl proptest::strategy::Strategy<Value = StructureTag> {
        use proptest::prelude::*;
        let leaf = (0u64..20, proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(id, b)| prim(id, &b));
        leaf.prop_recursive(4, 32, 4, |inner| {
            (
                prop_oneof![Just(TagClass::Universal), Just(TagClass::Application)],
                0u64..20,
                proptest::collection::vec(inner, 0..4),
            )
                .prop_map(|(class, id, v)| cons(class, id, v))
        })
    }

    #[test]
    fn member_of_groups_lie_under_the_base() {
        assert!(is_under("cn=admins,ou=groups,dc=x", "ou=groups,dc=x"));
        assert!(is_under("CN=Admins, OU=Groups, DC=X", "ou=groups,dc=x"));
        assert!(!is_under("ou=admins,dc=x", "ou=groups,dc=x"));
        assert!(!is_under("ou=groups,dc=x", "ou=groups,dc=x"));
        assert!(!is_under("cn=a,ou=groups\\,dc=x", "dc=x"), "an escaped comma separates nothing");
        assert!(!is_under("cn=a,ou=evilgroups,dc=x", "ou=groups,dc=x"));
    }

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
