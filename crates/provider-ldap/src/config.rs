//! `[providers.X]` with `kind = "ldap"`: the table as written and its checks.

use std::sync::Arc;
use std::time::Duration;

use ferrygate_core::kind::{Build, ProviderKind};
use ferrygate_core::{Provider, SecretString};
use serde::Deserialize;

/// An ldap provider's configuration, validated.
#[derive(Clone)]
pub struct LdapConfig {
    pub url: String,
    pub start_tls: bool,
    /// The TLS settings for `ldaps://` and StartTLS (system roots plus
    /// `upstream_tls.ca_file`); `None` for plain `ldap://` (tests only).
    pub tls: Option<Arc<ferrygate_core::tls::rustls::ClientConfig>>,
    /// The service account (`bind_dn`, `bind_password`); `None` searches anonymously.
    pub bind: Option<(String, SecretString)>,
    pub base_dn: String,
    pub user_filter: String,
    pub email_attribute: String,
    pub id_attribute: String,
    pub groups_base_dn: Option<String>,
    pub group_filter: Option<String>,
    pub group_name_attribute: String,
    pub groups_attribute: Option<String>,
    pub session_ttl: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("bind_dn", &self.bind.as_ref().map(|(dn, _)| dn))
            .field("base_dn", &self.base_dn)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    url: String,
    #[serde(default)]
    start_tls: bool,
    #[serde(default)]
    allow_insecure: bool,
    bind_dn: Option<String>,
    bind_password: Option<String>,
    bind_password_file: Option<String>,
    base_dn: String,
    user_filter: Option<String>,
    email_attribute: Option<String>,
    id_attribute: Option<String>,
    groups_base_dn: Option<String>,
    group_filter: Option<String>,
    group_name_attribute: Option<String>,
    groups_attribute: Option<String>,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    session_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    timeout: Option<Duration>,
}

/// The `ldap` kind: `[providers.X]` with `kind = "ldap"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LdapKind;

impl ProviderKind for LdapKind {
    fn name(&self) -> &'static str {
        "ldap"
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: Table = build.parse(table)?;
        let secure = if t.url.starts_with("ldaps://") {
            true
        } else if t.url.starts_with("ldap://") {
            t.start_tls
        } else {
            build.error("url", "must start with ldap:// or ldaps://");
            return None;
        };
        if !secure && !t.allow_insecure {
            build.error(
                "allow_insecure",
                "a password would cross the network unencrypted: use ldaps://, or start_tls = true \
                 (allow_insecure = true is for loopback tests only)",
            );
        }
        let tls = if secure {
            match ferrygate_core::tls::client_config(build.ca_file()) {
                Ok(c) => Some(c),
                Err(e) => {
                    build.error("url", e.to_string());
                    None
                }
            }
        } else {
            None
        };
        let password = build.secret("bind_password", t.bind_password, t.bind_password_file);
        let bind = match (t.bind_dn, password) {
            (Some(dn), Some(pw)) => Some((dn, pw)),
            (None, None) => None,
            (Some(_), None) => {
                build.error("bind_password", "required with bind_dn");
                None
            }
            (None, Some(_)) => {
                build.error("bind_dn", "required with bind_password");
                None
            }
        };
        let user_filter = t.user_filter.unwrap_or_else(|| "(&(objectClass=inetOrgPerson)(uid={username}))".to_owned());
        if !user_filter.contains("{username}") {
            build.error("user_filter", "must contain {username}");
        }
        if let Some(f) = &t.group_filter {
            if !f.contains("{dn}") {
                build.error("group_filter", "must contain {dn}");
            }
        }
        let groups_attribute = t.groups_attribute.filter(|a| !a.is_empty());
        if groups_attribute.is_none() && t.group_filter.is_some() != t.groups_base_dn.is_some() {
            build.error("group_filter", "group_filter and groups_base_dn go together");
        }
        let config = LdapConfig {
            url: t.url,
            start_tls: t.start_tls,
            tls,
            bind,
            base_dn: t.base_dn,
            user_filter,
            email_attribute: t.email_attribute.unwrap_or_else(|| "mail".to_owned()),
            id_attribute: t.id_attribute.unwrap_or_else(|| "uid".to_owned()),
            groups_base_dn: t.groups_base_dn,
            group_filter: t.group_filter,
            group_name_attribute: t.group_name_attribute.unwrap_or_else(|| "cn".to_owned()),
            groups_attribute,
            session_ttl: build.duration("session_ttl", t.session_ttl, Duration::from_secs(8 * 3600)),
            timeout: build.duration("timeout", t.timeout, Duration::from_secs(5)),
        };
        Some(Arc::new(crate::LdapProvider::new(build.name(), config)))
    }
}
