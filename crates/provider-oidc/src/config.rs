//! `[providers.X]` with `kind = "oidc"`: the table as written and its checks.

use std::sync::Arc;
use std::time::Duration;

use ferrygate_core::kind::{Build, ProviderKind};
use ferrygate_core::{Provider, SecretString};
use serde::Deserialize;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Whether the token answer must carry an ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdToken {
    /// An answer without one is refused.
    Required,
    /// Without one, the claims come from the userinfo endpoint.
    Optional,
}

/// An oidc provider's configuration, validated.
#[derive(Clone)]
pub struct OidcConfig {
    /// Exactly as configured: the discovery document's `issuer` must equal it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub client_auth: ClientAuth,
    pub scope: String,
    /// Overrides of the discovered endpoints.
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub id_token: IdToken,
    pub username_claim: String,
    pub groups_claim: String,
    pub refresh: bool,
    pub pass_access_token: bool,
    pub session_ttl: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_auth", &self.client_auth)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    client_auth: Option<ClientAuth>,
    scope: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
    id_token: Option<IdToken>,
    username_claim: Option<String>,
    groups_claim: Option<String>,
    #[serde(default)]
    refresh: bool,
    #[serde(default)]
    pass_access_token: bool,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    session_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    timeout: Option<Duration>,
}

/// The `oidc` kind: `[providers.X]` with `kind = "oidc"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OidcKind;

impl OidcKind {
    /// An optional endpoint override: empty is unset.
    fn endpoint(build: &mut Build<'_, '_>, field: &str, value: Option<String>) -> Option<String> {
        let value = value.filter(|v| !v.is_empty())?;
        build.secure_url(field, &value)?;
        Some(value)
    }
}

impl ProviderKind for OidcKind {
    fn name(&self) -> &'static str {
        "oidc"
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: Table = build.parse(table)?;
        if let Some(url) = build.secure_url("issuer", &t.issuer) {
            if url.query().is_some() || url.fragment().is_some() {
                build.error("issuer", "must have no query or fragment");
            }
        }
        if t.client_id.is_empty() {
            build.error("client_id", "must not be empty");
        }
        let client_secret = build.secret("client_secret", t.client_secret, t.client_secret_file);
        if client_secret.is_none() {
            build.error("client_secret", "required (or client_secret_file)");
        }
        let scope = t.scope.unwrap_or_else(|| "openid email profile".to_owned());
        if !scope.split(' ').any(|s| s == "openid") {
            build.error("scope", "must include openid");
        }
        let token_endpoint = Self::endpoint(build, "token_endpoint", t.token_endpoint);
        let userinfo_endpoint = Self::endpoint(build, "userinfo_endpoint", t.userinfo_endpoint);
        let jwks_uri = Self::endpoint(build, "jwks_uri", t.jwks_uri);
        let username_claim = t.username_claim.unwrap_or_else(|| "email".to_owned());
        let groups_claim = t.groups_claim.unwrap_or_else(|| "groups".to_owned());
        for (field, value) in [("username_claim", &username_claim), ("groups_claim", &groups_claim)] {
            if value.is_empty() {
                build.error(field, "must not be empty");
            }
        }
        let config = OidcConfig {
            issuer: t.issuer,
            client_id: t.client_id,
            client_secret: client_secret?,
            client_auth: t.client_auth.unwrap_or(ClientAuth::ClientSecretBasic),
            scope,
            token_endpoint,
            userinfo_endpoint,
            jwks_uri,
            id_token: t.id_token.unwrap_or(IdToken::Required),
            username_claim,
            groups_claim,
            refresh: t.refresh,
            pass_access_token: t.pass_access_token,
            session_ttl: build.duration("session_ttl", t.session_ttl, Duration::from_secs(8 * 3600)),
            timeout: build.duration("timeout", t.timeout, Duration::from_secs(5)),
        };
        Some(Arc::new(crate::Oidc::new(build.name(), config, build.client())))
    }
}
