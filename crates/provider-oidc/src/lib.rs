//! The `oidc` provider kind (SPEC 1.4): users of an enterprise identity
//! provider (Okta, Entra ID, Keycloak, Auth0, PingFederate) sign in from the
//! site's own form, by the OAuth2 resource-owner password grant.
//!
//! 1. Discovery (`discovery.rs`): `{issuer}/.well-known/openid-configuration`,
//!    fetched on first use and kept; its `issuer` must equal the configured
//!    one exactly. A failed fetch is not kept: the next login tries again.
//! 2. The token request (`token.rs`): `POST {token_endpoint}` with
//!    `grant_type=password`, the client authenticated by
//!    `client_secret_basic` or `client_secret_post`; refusals mapped.
//! 3. The ID token verified ([`verify`]) with the JWKS key its `kid` names
//!    (`keys.rs`): an unknown `kid` re-fetches the JWKS, at most once a
//!    minute, so a key rotation needs no restart. With `id_token =
//!    "optional"` and none in the answer, the claims come from the userinfo
//!    endpoint (`claims.rs`).
//! 4. With `refresh = true`, the refresh token is kept in the session and
//!    [`Provider::refresh`] renews the access token (`grant_type=refresh_token`).
//!
//! Every exchange is bounded by `timeout` (the HTTP client's bound); the
//! gateway bounds a whole login by it too.

mod claims;
mod config;
mod discovery;
mod keys;
mod token;
pub mod verify;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrygate_core::client::{credential_header, Answer};
use ferrygate_core::provider::{BoxFuture, Grant, LoginAttempt, Provider, Refreshed};
use ferrygate_core::{ExposeSecret, HttpClient, LoginError, SecretString};
use http::header::ACCEPT;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::discovery::Endpoints;
use crate::keys::Keys;
use crate::verify::IdTokenRefused;
pub use config::{ClientAuth, IdToken, OidcConfig, OidcKind};
pub use token::basic_credentials;

/// `expires_in` assumed when the token endpoint gives none.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// An unknown `kid` re-fetches the JWKS at most this often.
pub const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(60);

/// A configured oidc provider.
pub struct Oidc {
    name: String,
    config: OidcConfig,
    client: HttpClient,
    /// Discovered once; a failure leaves it empty for the next login to try.
    endpoints: tokio::sync::OnceCell<Endpoints>,
    /// `client_secret_basic`'s `Authorization` value, made once (sensitive).
    basic: Option<http::HeaderValue>,
    keys: Keys,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("name", &self.name).field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why a token exchange gave no token.
pub(crate) enum Failure {
    /// The login outcome it means (already logged).
    Login(LoginError),
    /// The ID token was refused (logged by the caller, with the reason).
    IdToken(IdTokenRefused),
}

impl From<LoginError> for Failure {
    fn from(e: LoginError) -> Self {
        Failure::Login(e)
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Oidc {
    pub fn new(name: &str, config: OidcConfig, client: HttpClient) -> Self {
        let basic = (config.client_auth == ClientAuth::ClientSecretBasic)
            .then(|| credential_header(&basic_credentials(&config.client_id, config.client_secret.expose_secret())))
            .flatten();
        let endpoints = tokio::sync::OnceCell::new();
        Self { name: name.to_owned(), config, client, endpoints, basic, keys: Keys::default() }
    }

    pub(crate) async fn send(&self, req: Request<Full<Bytes>>, what: &str) -> Result<Answer, LoginError> {
        self.client.send(req, self.config.timeout).await.map_err(|e| e.logged(&self.name, what))
    }

    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, LoginError> {
        let req = Request::builder()
            .uri(url)
            .header(ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, what).await?;
        if answer.status != StatusCode::OK {
            tracing::warn!(provider = %self.name, status = answer.status.as_u16(), "{what} failed");
            return Err(LoginError::ProviderUnavailable);
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            tracing::warn!(provider = %self.name, error = %e, "{what}: not the expected JSON");
            LoginError::ProviderUnavailable
        })
    }

    async fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, Failure> {
        let endpoints = self.endpoints().await?;
        let params = [
            ("grant_type", "password"),
            ("username", attempt.username),
            ("password", attempt.password.expose_secret()),
            ("scope", self.config.scope.as_str()),
        ];
        let answer = self.token_request(endpoints, &params).await?;
        let claims = match self.claims(endpoints, &answer).await? {
            Some(claims) => claims,
            None => self.userinfo(endpoints, &answer.access_token).await?,
        };
        let refresh_token =
            answer.refresh_token.clone().filter(|t| self.config.refresh && !t.is_empty()).map(SecretString::from);
        Ok(Grant::redirect(attempt.destination)
            .with_token(self.token(&answer))
            .with_session_ttl(refresh_token.is_some().then_some(self.config.session_ttl))
            .with_refresh_token(refresh_token)
            .with_user(self.user(&claims)))
    }

    async fn renew(&self, refresh_token: &SecretString) -> Result<Refreshed, Failure> {
        let endpoints = self.endpoints().await?;
        let params = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        let answer = self.token_request(endpoints, &params).await?;
        let mut refreshed = Refreshed::new(self.token(&answer));
        refreshed.refresh_token = answer.refresh_token.clone().filter(|t| !t.is_empty()).map(SecretString::from);
        // A renewed ID token is optional. One that fails its checks ends the
        // session; keys that cannot be fetched now keep the renewed tokens
        // (the refresh token may already be rotated) and the claims as they were.
        let mut verified = false;
        if let Some(id_token) = &answer.id_token {
            // Bounded on its own (key fetches, and waiting for another
            // caller's): the token answer, and a rotated refresh token in it,
            // is in hand and is kept whatever the keys do — the renewal's
            // overall bound must never fall after this point.
            match tokio::time::timeout(self.config.timeout, self.verified(endpoints, id_token)).await {
                Ok(Ok(claims)) => {
                    refreshed.user_id = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
                    refreshed.user = self.username(&claims).map(str::to_owned);
                    refreshed.groups = self.groups(&claims);
                    verified = true;
                }
                // Keys not to be had just now (unreachable, or a new key not yet
                // published to us): the tokens came from the token endpoint over
                // an authenticated channel; keep them and the claims as they were.
                Err(_) | Ok(Err(Failure::Login(_) | Failure::IdToken(IdTokenRefused::UnknownKey(_)))) => {
                    tracing::warn!(provider = %self.name, "renewed ID token not checked (keys unavailable): claims kept");
                }
                Ok(Err(Failure::IdToken(why))) => {
                    tracing::warn!(provider = %self.name, reason = %why, "renewed ID token refused: session ended");
                    return Err(Failure::Login(LoginError::InvalidCredentials));
                }
            }
        }
        // No groups claim in a renewed ID token (Keycloak and Entra ID leave
        // it out when the user has no group left): the groups are userinfo's,
        // else none — a group the user was removed from is never kept. With
        // neither an ID token nor userinfo there is nothing to go on, and the
        // groups stay as they were.
        let unknown = refreshed.groups.is_none() && (verified || answer.id_token.is_none());
        if unknown && (endpoints.userinfo.is_some() || verified) {
            match endpoints.userinfo.is_some().then(|| self.userinfo(endpoints, &answer.access_token)) {
                // Bounded on its own too, for the same reason.
                Some(fetched) => match tokio::time::timeout(self.config.timeout, fetched).await {
                    Ok(Ok(claims)) => refreshed.groups = Some(self.groups(&claims).unwrap_or_default()),
                    _ => tracing::warn!(provider = %self.name, "userinfo not had on renewal: groups kept"),
                },
                None => refreshed.groups = Some(Vec::new()),
            }
        }
        Ok(refreshed)
    }

    /// The login outcome of a failure, the ID token's refusal logged.
    fn outcome(&self, failure: Failure) -> LoginError {
        match failure {
            Failure::Login(e) => e,
            Failure::IdToken(why) => {
                tracing::warn!(provider = %self.name, reason = %why, "ID token refused");
                LoginError::ProviderUnavailable
            }
        }
    }
}

impl Provider for Oidc {
    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        // Bounded by `timeout` in the gateway, which gives up with `provider_timeout`.
        Box::pin(async move { self.login(attempt).await.map_err(|f| self.outcome(f)) })
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn refresh<'a>(&'a self, refresh_token: &'a SecretString) -> Option<BoxFuture<'a, Result<Refreshed, LoginError>>> {
        if !self.config.refresh {
            return None;
        }
        // Each step is bounded on its own (the exchanges by the client, the ID
        // token check and userinfo by `timeout` each, see `renew`); no
        // deadline here that could drop a token answer (and its rotated
        // refresh token) half-way. The gateway's bound comes after all four.
        Some(Box::pin(async move { self.renew(refresh_token).await.map_err(|f| self.outcome(f)) }))
    }

    fn passes_access_token(&self) -> bool {
        self.config.pass_access_token
    }
}
