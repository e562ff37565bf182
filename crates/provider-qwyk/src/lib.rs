//! The `qwyk` provider (spec 1.1, Qwyk's "External authentication" guide):
//! `POST {server}/api/portals/auth/login` with the user's credentials and the
//! integer organization and site ids, then a redirect to the portal carrying
//! the access token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrygate_core::client::Answer;
use ferrygate_core::config::Site;
use ferrygate_core::kind::{Build, ProviderKind, SiteRules};
use ferrygate_core::provider::{BoxFuture, Grant, LoginAttempt, Provider, Token};
use ferrygate_core::session::Session;
use ferrygate_core::{query, ExposeSecret, HttpClient, LoginError};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

/// `token_type` when the answer has none.
pub const DEFAULT_TOKEN_TYPE: &str = "bearer";
/// `expires_in` (seconds) when the answer has none.
pub const DEFAULT_EXPIRES_IN: u64 = 7200;

/// A configured Qwyk provider.
#[derive(Debug)]
pub struct Qwyk {
    /// The provider's name in `[providers]` (for logs).
    name: String,
    login_url: String,
    organization_id: i64,
    site_id: i64,
    timeout: Duration,
    client: HttpClient,
}

#[derive(Serialize)]
struct LoginBody<'a> {
    email: &'a str,
    password: &'a str,
    organization_id: i64,
    site_id: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

/// The `qwyk` kind: `[providers.X]` with `kind = "qwyk"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QwykKind;

/// `[providers.X]` of a qwyk provider, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    server: String,
    organization_id: i64,
    site_id: i64,
    #[serde(default, deserialize_with = "ferrygate_core::config::de::duration")]
    timeout: Option<Duration>,
}

impl ProviderKind for QwykKind {
    fn name(&self) -> &'static str {
        "qwyk"
    }

    /// Sites sign users into the portal (`portal.url` required) and may have
    /// a booking-wizard entry.
    fn site_rules(&self) -> SiteRules {
        SiteRules { wizard: true, portal_url: true, default_destination: "/my-portal", ..SiteRules::default() }
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: Table = build.parse(table)?;
        let server = build.server_url("server", &t.server);
        let timeout = build.duration("timeout", t.timeout, Duration::from_secs(5));
        Some(Arc::new(Qwyk::new(build.name(), &server, t.organization_id, t.site_id, timeout, build.client())))
    }
}

impl Qwyk {
    /// The provider `name` (its name in `[providers]`) for the Qwyk API at
    /// `server` (no trailing slash).
    pub fn new(
        name: &str,
        server: &str,
        organization_id: i64,
        site_id: i64,
        timeout: Duration,
        client: HttpClient,
    ) -> Self {
        Self {
            name: name.to_owned(),
            login_url: format!("{server}/api/portals/auth/login"),
            organization_id,
            site_id,
            timeout,
            client,
        }
    }

    async fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginError> {
        let body = serde_json::to_vec(&LoginBody {
            email: attempt.username,
            password: attempt.password.expose_secret(),
            organization_id: self.organization_id,
            site_id: self.site_id,
        })
        .map_err(|_| LoginError::InvalidInput)?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(&self.login_url)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.client.send(req, self.timeout).await.map_err(|e| e.logged(&self.name, "login call"))?;
        let token = token_from(&self.name, answer)?;
        let redirect = portal_redirect(
            attempt.site,
            token.value.expose_secret(),
            &token.token_type,
            token.expires_in,
            attempt.destination,
        )?;
        Ok(Grant::redirect(redirect).with_token(token))
    }
}

impl Provider for Qwyk {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        Box::pin(self.login(attempt))
    }

    fn resume(&self, site: &Site, session: &Session, destination: &str) -> Option<String> {
        let token = session.token.as_deref()?;
        let remaining = session.remaining();
        if remaining.is_zero() {
            return None;
        }
        portal_redirect(site, token, &session.token_type, remaining, destination).ok()
    }
}

/// Reads the login answer: 200 with a token, any 4xx a refusal, the rest an outage.
fn token_from(provider: &str, answer: Answer) -> Result<Token, LoginError> {
    match answer.status {
        StatusCode::OK => {}
        s if s.is_client_error() => return Err(LoginError::InvalidCredentials),
        s => {
            tracing::warn!(provider, status = s.as_u16(), "unexpected login status");
            return Err(LoginError::ProviderUnavailable);
        }
    }
    let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
        // serde's message may quote a value (the token itself): log only where and what kind.
        tracing::warn!(provider, kind = ?e.classify(), line = e.line(), column = e.column(), "login answer is not a token");
        LoginError::ProviderUnavailable
    })?;
    if parsed.access_token.is_empty() {
        tracing::warn!(provider, "login answer has an empty access_token");
        return Err(LoginError::ProviderUnavailable);
    }
    Ok(Token::new(
        parsed.access_token.into(),
        parsed.token_type.filter(|t| !t.is_empty()).unwrap_or_else(|| DEFAULT_TOKEN_TYPE.to_owned()),
        Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_EXPIRES_IN)),
    ))
}

/// `{portal.url}?token=T&token_type=bearer&expires_in=N&destination=D`, every
/// value percent-encoded as a query component. `expires_in` is passed in so a
/// returning user gets the token's remaining lifetime, not the original.
pub fn portal_redirect(
    site: &Site,
    token: &str,
    token_type: &str,
    expires_in: Duration,
    destination: &str,
) -> Result<String, LoginError> {
    let Some(portal) = site.portal.url.as_deref() else {
        tracing::error!(site = %site.name, "qwyk site without portal.url");
        return Err(LoginError::ProviderUnavailable);
    };
    let expires_in = expires_in.as_secs().to_string();
    Ok(query::append(
        portal,
        &[("token", token), ("token_type", token_type), ("expires_in", &expires_in), ("destination", destination)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn reads_tokens_with_defaults() {
        let t =
            token_from("q", answer(200, r#"{"access_token":"abc","token_type":"bearer","expires_in":60}"#)).unwrap();
        assert_eq!(t.value.expose_secret(), "abc");
        assert_eq!(t.expires_in, Duration::from_secs(60));
        let t = token_from("q", answer(200, r#"{"access_token":"abc"}"#)).unwrap();
        assert_eq!(t.token_type, "bearer");
        assert_eq!(t.expires_in, Duration::from_secs(7200));
    }

    #[test]
    fn maps_statuses_and_bad_bodies() {
        assert_eq!(token_from("q", answer(401, "{}")).unwrap_err(), LoginError::InvalidCredentials);
        assert_eq!(token_from("q", answer(422, "{}")).unwrap_err(), LoginError::InvalidCredentials);
        assert_eq!(token_from("q", answer(500, "{}")).unwrap_err(), LoginError::ProviderUnavailable);
        assert_eq!(token_from("q", answer(302, "")).unwrap_err(), LoginError::ProviderUnavailable);
        assert_eq!(token_from("q", answer(200, "<html>")).unwrap_err(), LoginError::ProviderUnavailable);
        assert_eq!(token_from("q", answer(200, r#"{"token":"x"}"#)).unwrap_err(), LoginError::ProviderUnavailable);
        assert_eq!(
            token_from("q", answer(200, r#"{"access_token":""}"#)).unwrap_err(),
            LoginError::ProviderUnavailable
        );
    }
}
