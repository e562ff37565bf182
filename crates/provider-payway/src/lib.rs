//! The `payway` provider (spec 1.2, Payway's "Login Form Integration"):
//!
//! 1. a service token by OAuth2 client credentials (`client_secret_post`),
//!    cached until `expires_in` minus min(30 s, 10 %); concurrent logins that
//!    find it missing share ONE token request;
//! 2. `POST {server}/oauth2/login` with `Authorization: OAuth <token>` and the
//!    user's credentials, answered with a login handle; a 401 drops the token
//!    and retries once with a fresh one;
//! 3. a redirect to `{server}/oauth2/auth` carrying the login handle and the
//!    gateway's fresh `state`, which the gateway binds to the browser.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrygate_core::client::{credential_header, Answer};
use ferrygate_core::kind::{Build, ProviderKind, SiteRules};
use ferrygate_core::provider::{BoxFuture, Grant, LoginAttempt, Provider};
use ferrygate_core::{query, ExposeSecret, HttpClient, LoginError, SecretString};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;
use serde::Deserialize;

/// `expires_in` assumed when the token endpoint gives none.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const FORM: &str = "application/x-www-form-urlencoded";

/// The cached service token and how long it may be reused.
#[derive(Clone)]
struct ServiceToken {
    value: Arc<SecretString>,
    reuse_for: Duration,
}

struct ReuseFor;

impl Expiry<(), ServiceToken> for ReuseFor {
    fn expire_after_create(&self, _: &(), token: &ServiceToken, _: Instant) -> Option<Duration> {
        Some(token.reuse_for)
    }
}

/// How long a token of `expires_in` is reused: `expires_in` minus a margin of
/// min(30 s, 10 % of `expires_in`).
pub fn reuse_for(expires_in: Duration) -> Duration {
    expires_in - (expires_in / 10).min(Duration::from_secs(30))
}

/// A payway provider's configuration, validated.
#[derive(Debug, Clone)]
pub struct PaywayConfig {
    /// `{server}`, without a trailing slash.
    pub server: String,
    pub token_url: String,
    pub token_scope: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub oid: String,
    pub redirect_uri: String,
    pub scope: String,
    pub timeout: Duration,
}

/// The `payway` kind: `[providers.X]` with `kind = "payway"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaywayKind;

/// `[providers.X]` of a payway provider, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    server: String,
    token_url: Option<String>,
    token_scope: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    oid: String,
    redirect_uri: String,
    scope: Option<String>,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    timeout: Option<Duration>,
}

impl ProviderKind for PaywayKind {
    fn name(&self) -> &'static str {
        "payway"
    }

    /// Sites sign users into the portal through the authorization redirect and
    /// check its `state` on the callback.
    fn site_rules(&self) -> SiteRules {
        SiteRules { callback: true, default_destination: "/my-portal", ..SiteRules::default() }
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: Table = build.parse(table)?;
        let server = build.server_url("server", &t.server);
        let token_url = t.token_url.unwrap_or_else(|| format!("{server}/oauth2/token"));
        build.http_url("token_url", &token_url);
        // The landing page gets the authorization code: HTTPS only (SPEC 1.2).
        build.secure_url("redirect_uri", &t.redirect_uri);
        let client_secret = build.secret("client_secret", t.client_secret, t.client_secret_file);
        if client_secret.is_none() {
            build.error("client_secret", "required");
        }
        let config = PaywayConfig {
            server,
            token_url,
            token_scope: t.token_scope.unwrap_or_else(|| "/oauth2/login/x".to_owned()),
            client_id: t.client_id,
            client_secret: client_secret?,
            oid: t.oid,
            redirect_uri: t.redirect_uri,
            scope: t.scope.unwrap_or_default(),
            timeout: build.duration("timeout", t.timeout, Duration::from_secs(5)),
        };
        Some(Arc::new(Payway::new(build.name(), &config, build.client())))
    }
}

/// A configured Payway provider.
pub struct Payway {
    name: String,
    config: PaywayConfig,
    login_url: String,
    auth_url: String,
    client: HttpClient,
    token: Cache<(), ServiceToken>,
}

impl std::fmt::Debug for Payway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payway").field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct LoginAnswer {
    status: String,
    result: Option<String>,
    code: Option<String>,
}

/// What one login call came to.
enum Outcome {
    Handle(String),
    Refused(LoginError),
    TokenRejected,
}

impl Payway {
    /// `name` is the provider's name in `[providers]` (for metrics and logs).
    pub fn new(name: &str, config: &PaywayConfig, client: HttpClient) -> Self {
        Self {
            name: name.to_owned(),
            login_url: format!("{}/oauth2/login", config.server),
            auth_url: format!("{}/oauth2/auth", config.server),
            config: config.clone(),
            client,
            token: Cache::builder().max_capacity(1).expire_after(ReuseFor).build(),
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>, what: &str) -> Result<Answer, LoginError> {
        self.client.send(req, self.config.timeout).await.map_err(|e| e.logged(&self.name, what))
    }

    /// The cached service token, fetched once for all concurrent callers when missing.
    async fn service_token(&self) -> Result<Arc<SecretString>, LoginError> {
        self.token.try_get_with((), self.fetch_token()).await.map(|t| t.value).map_err(|e| *e)
    }

    async fn fetch_token(&self) -> Result<ServiceToken, LoginError> {
        metrics::counter!("ferrygate_service_token_fetches_total", "provider" => self.name.clone()).increment(1);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", self.config.client_secret.expose_secret())
            .append_pair("scope", &self.config.token_scope)
            .finish();
        let req = Request::builder()
            .method(Method::POST)
            .uri(&self.config.token_url)
            .header(CONTENT_TYPE, FORM)
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, "service token request").await?;
        if answer.status != StatusCode::OK {
            tracing::warn!(provider = %self.name, status = answer.status.as_u16(), "token endpoint refused the client");
            return Err(LoginError::ProviderUnavailable);
        }
        let token: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            tracing::warn!(provider = %self.name, kind = ?e.classify(), "token answer is not a token");
            LoginError::ProviderUnavailable
        })?;
        if token.access_token.is_empty() {
            return Err(LoginError::ProviderUnavailable);
        }
        let expires_in = token.expires_in.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(ServiceToken { value: Arc::new(token.access_token.into()), reuse_for: reuse_for(expires_in) })
    }

    async fn login_call(&self, attempt: &LoginAttempt<'_>, token: &SecretString) -> Result<Outcome, LoginError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", attempt.username)
            .append_pair("password", attempt.password.expose_secret())
            .append_pair("persist", if attempt.remember { "true" } else { "false" })
            .finish();
        let req = Request::builder()
            .method(Method::POST)
            .uri(&self.login_url)
            .header(CONTENT_TYPE, FORM)
            .header(ACCEPT, "application/json")
            .header(
                AUTHORIZATION,
                credential_header(&format!("OAuth {}", token.expose_secret()))
                    .ok_or(LoginError::ProviderUnavailable)?,
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, "login request").await?;
        Ok(self.outcome(&answer))
    }

    /// The error shape counts whatever the status, except that a 401 is a
    /// token problem unless it says `invalid_username_or_password` (an OAuth2
    /// resource server answers a revoked or expired token with 401 and a body
    /// of its own, possibly in the error shape: `invalid_token`).
    fn outcome(&self, answer: &Answer) -> Outcome {
        let parsed = serde_json::from_slice::<LoginAnswer>(&answer.body);
        let wrong_password = parsed
            .as_ref()
            .is_ok_and(|a| a.status == "error" && a.code.as_deref() == Some("invalid_username_or_password"));
        if answer.status == StatusCode::UNAUTHORIZED && !wrong_password {
            return Outcome::TokenRejected;
        }
        match parsed {
            Ok(a) if a.status == "ok" && answer.status.is_success() => match a.result.filter(|r| !r.is_empty()) {
                Some(handle) => Outcome::Handle(handle),
                None => Outcome::Refused(LoginError::ProviderUnavailable),
            },
            Ok(a) if a.status == "error" => match a.code.as_deref() {
                Some("invalid_username_or_password") => Outcome::Refused(LoginError::InvalidCredentials),
                code => {
                    tracing::warn!(provider = %self.name, code = code.unwrap_or("(none)"), "login refused by payway");
                    Outcome::Refused(LoginError::ProviderRejected)
                }
            },
            _ => {
                tracing::warn!(provider = %self.name, status = answer.status.as_u16(), "unexpected login answer");
                Outcome::Refused(LoginError::ProviderUnavailable)
            }
        }
    }

    async fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginError> {
        let mut retried = false;
        let handle = loop {
            let token = self.service_token().await?;
            match self.login_call(attempt, &token).await? {
                Outcome::Handle(h) => break h,
                Outcome::Refused(e) => return Err(e),
                Outcome::TokenRejected if !retried => {
                    tracing::info!(provider = %self.name, "service token rejected; fetching a new one");
                    // Only the rejected token: another login may already hold a fresh one.
                    let _ = self
                        .token
                        .entry(())
                        .and_compute_with(|cached| {
                            let rejected = cached.is_some_and(|c| Arc::ptr_eq(&c.value().value, &token));
                            std::future::ready(if rejected { Op::Remove } else { Op::Nop })
                        })
                        .await;
                    retried = true;
                }
                Outcome::TokenRejected => {
                    tracing::warn!(provider = %self.name, "a fresh service token was rejected too");
                    return Err(LoginError::ProviderUnavailable);
                }
            }
        };
        let c = &self.config;
        let redirect = query::append(
            &self.auth_url,
            &[
                ("client_id", &c.client_id),
                ("redirect_uri", &c.redirect_uri),
                ("state", attempt.state),
                ("response_type", "code"),
                ("oid", &c.oid),
                ("scope", &c.scope),
                ("login_handle", &handle),
            ],
        );
        Ok(Grant::redirect(redirect).binding_state())
    }
}

impl Provider for Payway {
    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        Box::pin(self.login(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_the_smaller_of_30s_and_a_tenth() {
        assert_eq!(reuse_for(Duration::from_secs(3600)), Duration::from_secs(3570));
        assert_eq!(reuse_for(Duration::from_secs(100)), Duration::from_secs(90));
        assert_eq!(reuse_for(Duration::from_secs(0)), Duration::ZERO);
    }
}
