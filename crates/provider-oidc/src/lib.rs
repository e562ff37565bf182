//! The `oidc` provider kind (SPEC 1.4): users of an enterprise identity
//! provider (Okta, Entra ID, Keycloak, Auth0, PingFederate) sign in from the
//! site's own form, by the OAuth2 resource-owner password grant.
//!
//! 1. Discovery: `{issuer}/.well-known/openid-configuration`, fetched on first
//!    use and kept; its `issuer` must equal the configured one exactly. A
//!    failed fetch is not kept: the next login tries again.
//! 2. `POST {token_endpoint}` with `grant_type=password`, the client
//!    authenticated by `client_secret_basic` or `client_secret_post`.
//! 3. The ID token verified ([`verify`]) with the JWKS key its `kid` names;
//!    an unknown `kid` re-fetches the JWKS, at most once a minute, so a key
//!    rotation needs no restart. With `id_token = "optional"` and none in the
//!    answer, the claims come from the userinfo endpoint.
//! 4. With `refresh = true`, the refresh token is kept in the session and
//!    [`Provider::refresh`] renews the access token (`grant_type=refresh_token`).

mod config;
pub mod verify;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use ferrygate_core::client::{credential_header, Answer};
use ferrygate_core::provider::{BoxFuture, Grant, LoginAttempt, Provider, Refreshed, Token, UserInfo};
use ferrygate_core::{ExposeSecret, HttpClient, LoginError, SecretString};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

pub use config::{ClientAuth, IdToken, OidcConfig, OidcKind};
use verify::{Claims, Refusal};

/// `expires_in` assumed when the token endpoint gives none.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// An unknown `kid` re-fetches the JWKS at most this often.
pub const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(60);
const FORM: &str = "application/x-www-form-urlencoded";

/// The endpoints in use: discovered, or overridden by the configuration.
#[derive(Debug, Clone)]
struct Endpoints {
    token: String,
    jwks: String,
    userinfo: Option<String>,
}

impl Endpoints {
    /// The first endpoint a password or token would cross in clear to another host.
    fn insecure(&self) -> Option<&str> {
        [Some(&self.token), Some(&self.jwks), self.userinfo.as_ref()]
            .into_iter()
            .flatten()
            .find(|url| !url::Url::parse(url).is_ok_and(|u| ferrygate_core::client::secure_or_loopback(&u)))
            .map(String::as_str)
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    userinfo_endpoint: Option<String>,
}

/// The provider's signing keys: read without waiting; fetched by one caller
/// at a time (`fetching`), which also remembers when an unknown `kid` last
/// fetched them.
#[derive(Default)]
struct Keys {
    set: RwLock<Option<Arc<JwkSet>>>,
    fetching: Mutex<Option<Instant>>,
}

/// A JWKS as published: each key that jsonwebtoken can read is kept, the
/// others (algorithms and curves it does not know, e.g. ES512 or Ed448
/// encryption keys) are skipped, so one unusual key cannot stop every login.
#[derive(Deserialize)]
struct PublishedKeys {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
    id_token: Option<String>,
    refresh_token: Option<String>,
}

/// The keys of a published JWKS that jsonwebtoken can read, and how many it could not.
fn readable(published: PublishedKeys) -> (JwkSet, usize) {
    let total = published.keys.len();
    let keys: Vec<_> = published.keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect();
    let skipped = total - keys.len();
    (JwkSet { keys }, skipped)
}

/// `expires_in` as a number, or a string of digits (Entra ID's v1 endpoint).
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

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
enum Failure {
    /// The login outcome it means (already logged).
    Login(LoginError),
    /// The ID token was refused (logged by the caller, with the reason).
    IdToken(Refusal),
}

impl From<LoginError> for Failure {
    fn from(e: LoginError) -> Self {
        Failure::Login(e)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B).
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `Basic base64(urlencode(id):urlencode(secret))`, RFC 6749 2.3.1.
pub fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

impl Oidc {
    pub fn new(name: &str, config: OidcConfig, client: HttpClient) -> Self {
        let basic = (config.client_auth == ClientAuth::ClientSecretBasic)
            .then(|| credential_header(&basic_credentials(&config.client_id, config.client_secret.expose_secret())))
            .flatten();
        let endpoints = tokio::sync::OnceCell::new();
        Self { name: name.to_owned(), config, client, endpoints, basic, keys: Keys::default() }
    }

    async fn send(&self, req: Request<Full<Bytes>>, what: &str) -> Result<Answer, LoginError> {
        self.client.send(req, self.config.timeout).await.map_err(|e| e.logged(&self.name, what))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, LoginError> {
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

    /// The endpoints: discovered once (a failure is not kept), overrides first.
    async fn endpoints(&self) -> Result<&Endpoints, LoginError> {
        self.endpoints.get_or_try_init(|| self.discover()).await
    }

    /// Discovery, and the overrides on top of it.
    async fn discover(&self) -> Result<Endpoints, LoginError> {
        let c = &self.config;
        let discovered = if c.token_endpoint.is_some() && c.jwks_uri.is_some() {
            None
        } else {
            let url = format!("{}/.well-known/openid-configuration", c.issuer.trim_end_matches('/'));
            let doc: Discovery = self.get_json(&url, "discovery").await?;
            if doc.issuer != c.issuer {
                tracing::error!(provider = %self.name, configured = %c.issuer, discovered = %doc.issuer,
                    "the discovery document names another issuer");
                return Err(LoginError::ProviderUnavailable);
            }
            Some(doc)
        };
        let pick = |over: &Option<String>, found: Option<&Option<String>>| {
            over.clone().or_else(|| found.and_then(|f| f.clone())).filter(|u| !u.is_empty())
        };
        let d = discovered.as_ref();
        let token = pick(&c.token_endpoint, d.map(|d| &d.token_endpoint));
        let jwks = pick(&c.jwks_uri, d.map(|d| &d.jwks_uri));
        let userinfo = pick(&c.userinfo_endpoint, d.map(|d| &d.userinfo_endpoint));
        let (Some(token), Some(jwks)) = (token, jwks) else {
            tracing::error!(provider = %self.name, "discovery gave no token_endpoint or jwks_uri");
            return Err(LoginError::ProviderUnavailable);
        };
        let endpoints = Endpoints { token, jwks, userinfo };
        if let Some(url) = endpoints.insecure() {
            tracing::error!(provider = %self.name, endpoint = %url,
                "a discovered endpoint is not https:// (plain http:// only on a loopback host)");
            return Err(LoginError::ProviderUnavailable);
        }
        Ok(endpoints)
    }

    fn cached_keys(&self) -> Option<Arc<JwkSet>> {
        self.keys.set.read().ok().and_then(|k| k.clone())
    }

    /// The signing keys: fetched on first use, and again when `stale` (a
    /// token named a key we lack) unless an unknown `kid` did so this minute.
    async fn keys(&self, jwks: &str, stale: bool) -> Result<Arc<JwkSet>, LoginError> {
        if let Some(set) = self.cached_keys().filter(|_| !stale) {
            return Ok(set);
        }
        let mut refetched = self.keys.fetching.lock().await;
        let cached = self.cached_keys();
        match (&cached, stale) {
            // Fetched by another caller while this one waited.
            (Some(set), false) => return Ok(set.clone()),
            (Some(set), true) if refetched.is_some_and(|at| at.elapsed() < JWKS_REFETCH_EVERY) => {
                tracing::warn!(provider = %self.name, "an unknown kid, and the keys were fetched again less than a minute ago");
                return Ok(set.clone());
            }
            _ => {}
        }
        let published: PublishedKeys = self.get_json(jwks, "JWKS request").await?;
        let (set, skipped) = readable(published);
        if skipped > 0 {
            tracing::info!(provider = %self.name, skipped, "JWKS keys of unknown types skipped");
        }
        let set = Arc::new(set);
        if stale && cached.is_some() {
            *refetched = Some(Instant::now());
        }
        if let Ok(mut slot) = self.keys.set.write() {
            *slot = Some(set.clone());
        }
        Ok(set)
    }

    /// The claims of a verified ID token; an unknown `kid` re-fetches the keys once.
    async fn verified(&self, endpoints: &Endpoints, token: &str) -> Result<Claims, Failure> {
        let c = &self.config;
        let keys = self.keys(&endpoints.jwks, false).await?;
        match verify::verify(token, &keys, &c.issuer, &c.client_id, now_secs()) {
            Err(Refusal::UnknownKey(_)) => {
                let keys = self.keys(&endpoints.jwks, true).await?;
                verify::verify(token, &keys, &c.issuer, &c.client_id, now_secs()).map_err(Failure::IdToken)
            }
            other => other.map_err(Failure::IdToken),
        }
    }

    /// `POST {token_endpoint}` with `params` and the client's authentication.
    async fn token_request(&self, endpoints: &Endpoints, params: &[(&str, &str)]) -> Result<TokenAnswer, LoginError> {
        let c = &self.config;
        let post = c.client_auth == ClientAuth::ClientSecretPost;
        let body = {
            let mut body = form_urlencoded::Serializer::new(String::new());
            body.extend_pairs(params);
            if post {
                body.append_pair("client_id", &c.client_id);
                body.append_pair("client_secret", c.client_secret.expose_secret());
            }
            body.finish()
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&endpoints.token)
            .header(CONTENT_TYPE, FORM)
            .header(ACCEPT, "application/json");
        if !post {
            req = req.header(AUTHORIZATION, self.basic.clone().ok_or(LoginError::ProviderUnavailable)?);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, "token request").await?;
        if answer.status == StatusCode::OK {
            return serde_json::from_slice::<TokenAnswer>(&answer.body)
                .ok()
                .filter(|t| !t.access_token.is_empty())
                .ok_or_else(|| {
                    tracing::warn!(provider = %self.name, "the token answer holds no access token");
                    LoginError::ProviderUnavailable
                });
        }
        Err(self.refusal(&answer))
    }

    /// What a token endpoint's refusal means (SPEC 1.4), logged.
    fn refusal(&self, answer: &Answer) -> LoginError {
        let status = answer.status.as_u16();
        let code = serde_json::from_slice::<ErrorAnswer>(&answer.body).ok().map(|e| e.error);
        // Error codes are the provider's words, not the user's: logged when plain.
        let code = code.filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()));
        match (answer.status, code.as_deref()) {
            (_, Some("invalid_grant")) => LoginError::InvalidCredentials,
            (_, Some(c @ ("invalid_client" | "unauthorized_client" | "unsupported_grant_type" | "invalid_scope"))) => {
                tracing::error!(provider = %self.name, status, code = c,
                    "the identity provider refused this client: check client_id, client_secret, client_auth, \
                     scope and that the password grant is enabled");
                LoginError::ProviderUnavailable
            }
            // Busy, not refusing: never a reason to end a session.
            (StatusCode::TOO_MANY_REQUESTS, _) | (_, Some("temporarily_unavailable" | "slow_down")) => {
                tracing::warn!(provider = %self.name, status, "the token endpoint is busy");
                LoginError::ProviderUnavailable
            }
            (s, _) if s.is_server_error() => {
                tracing::warn!(provider = %self.name, status, "the token endpoint failed");
                LoginError::ProviderUnavailable
            }
            (StatusCode::UNAUTHORIZED, None) => {
                tracing::error!(provider = %self.name, status, "the token endpoint refused the client");
                LoginError::ProviderUnavailable
            }
            (_, Some(c)) => {
                tracing::warn!(provider = %self.name, status, code = c, "the identity provider refused the login");
                LoginError::ProviderRejected
            }
            (_, None) => {
                tracing::warn!(provider = %self.name, status, "the token endpoint answered no error code");
                LoginError::ProviderUnavailable
            }
        }
    }

    /// The user's claims: the verified ID token's, or (optional and absent) userinfo's.
    async fn claims(&self, endpoints: &Endpoints, answer: &TokenAnswer) -> Result<Option<Claims>, Failure> {
        if let Some(id_token) = &answer.id_token {
            return self.verified(endpoints, id_token).await.map(Some);
        }
        if self.config.id_token == IdToken::Required {
            return Err(Failure::IdToken(Refusal::Claims("no id_token in the token answer".into())));
        }
        Ok(None)
    }

    async fn userinfo(&self, endpoints: &Endpoints, access_token: &str) -> Result<Claims, LoginError> {
        let Some(url) = &endpoints.userinfo else {
            tracing::error!(provider = %self.name, "id_token = \"optional\" needs a userinfo_endpoint");
            return Err(LoginError::ProviderUnavailable);
        };
        let bearer = credential_header(&format!("Bearer {access_token}")).ok_or(LoginError::ProviderUnavailable)?;
        let req = Request::builder()
            .uri(url)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, bearer)
            .body(Full::default())
            .map_err(|_| LoginError::ProviderUnavailable)?;
        let answer = self.send(req, "userinfo request").await?;
        let claims = (answer.status == StatusCode::OK)
            .then(|| serde_json::from_slice::<Claims>(&answer.body).ok())
            .flatten()
            .filter(|c| c.get("sub").and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
        claims.ok_or_else(|| {
            tracing::warn!(provider = %self.name, status = answer.status.as_u16(), "userinfo gave no claims with a sub");
            LoginError::ProviderUnavailable
        })
    }

    /// Who the claims say the user is.
    fn user(&self, claims: &Claims) -> UserInfo {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
        let sub = text("sub");
        let name = self.username(claims).or_else(|| text("preferred_username")).or(sub);
        let groups = self.groups(claims).unwrap_or_default();
        UserInfo { email: name.map(str::to_owned), user_id: sub.map(str::to_owned), groups, ..UserInfo::default() }
    }

    /// The `username_claim`'s value; an `email` the provider says is not
    /// verified is none (anyone could have typed it into their profile).
    fn username<'c>(&self, claims: &'c Claims) -> Option<&'c str> {
        let claim = self.config.username_claim.as_str();
        // Verified only as the JSON value `true`, or when the claim is absent
        // (`0`, `"0"`, `"no"`, `"true"` are no verification).
        let unverified = !matches!(claims.get("email_verified"), None | Some(Value::Bool(true)));
        if claim == "email" && unverified {
            tracing::info!(provider = %self.name, "the email claim is not verified: not used as the user name");
            return None;
        }
        claims.get(claim).and_then(Value::as_str).filter(|v| !v.is_empty())
    }

    /// The groups claim: a string or an array of strings; `None` when absent.
    fn groups(&self, claims: &Claims) -> Option<Vec<String>> {
        match claims.get(&self.config.groups_claim)? {
            Value::String(g) => Some(vec![g.clone()]),
            Value::Array(all) => Some(all.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect()),
            _ => None,
        }
    }

    fn token(&self, answer: &TokenAnswer) -> Token {
        Token {
            value: SecretString::from(answer.access_token.clone()),
            token_type: answer.token_type.clone().unwrap_or_else(|| "Bearer".to_owned()),
            expires_in: answer.expires_in.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs),
        }
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
        Ok(Grant {
            token: Some(self.token(&answer)),
            session_ttl: refresh_token.is_some().then_some(self.config.session_ttl),
            refresh_token,
            user: self.user(&claims),
            ..Grant::redirect(attempt.destination)
        })
    }

    async fn renew(&self, refresh_token: &SecretString) -> Result<Refreshed, Failure> {
        let endpoints = self.endpoints().await?;
        let params = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        let answer = self.token_request(endpoints, &params).await?;
        let mut refreshed = Refreshed {
            token: self.token(&answer),
            refresh_token: answer.refresh_token.clone().filter(|t| !t.is_empty()).map(SecretString::from),
            user_id: None,
            user: None,
            groups: None,
        };
        // A renewed ID token is optional. One that fails its checks ends the
        // session; keys that cannot be fetched now keep the renewed tokens
        // (the refresh token may already be rotated) and the claims as they were.
        let mut verified = false;
        if let Some(id_token) = &answer.id_token {
            // Bounded on its own: the token answer is in hand and must be kept.
            let checked = tokio::time::timeout(self.config.timeout, self.verified(endpoints, id_token)).await;
            match checked {
                Ok(Ok(claims)) => {
                    refreshed.user_id = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
                    refreshed.user = self.username(&claims).map(str::to_owned);
                    refreshed.groups = self.groups(&claims);
                    verified = true;
                }
                // Keys not to be had just now (unreachable, or a new key not yet
                // published to us): the tokens came from the token endpoint over
                // an authenticated channel; keep them and the claims as they were.
                Err(_) | Ok(Err(Failure::Login(_) | Failure::IdToken(Refusal::UnknownKey(_)))) => {
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
        Box::pin(async move {
            match tokio::time::timeout(self.config.timeout, self.login(attempt)).await {
                Ok(outcome) => outcome.map_err(|f| self.outcome(f)),
                Err(_) => {
                    tracing::warn!(provider = %self.name, timeout = ?self.config.timeout, "the identity provider did not answer in time");
                    Err(LoginError::ProviderTimeout)
                }
            }
        })
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn refresh<'a>(&'a self, refresh_token: &'a SecretString) -> Option<BoxFuture<'a, Result<Refreshed, LoginError>>> {
        if !self.config.refresh {
            return None;
        }
        // Each call has its own timeout (the ID token check one of its own, after
        // the token answer); no deadline here that could drop a token answer
        // (and its rotated refresh token) half-way. The core bounds the whole
        // by four timeouts.
        Some(Box::pin(async move { self.renew(refresh_token).await.map_err(|f| self.outcome(f)) }))
    }

    fn passes_access_token(&self) -> bool {
        self.config.pass_access_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_unknown_types_are_skipped_not_fatal() {
        let published: PublishedKeys = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "EC", "kid": "p521", "crv": "P-521", "alg": "ES512", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "x448", "crv": "X448", "x": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP-512", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "sig", "use": "sig", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
        ]}))
        .unwrap();
        let (set, skipped) = readable(published);
        assert_eq!(set.keys.iter().map(|k| k.common.key_id.as_deref()).collect::<Vec<_>>(), [Some("sig")]);
        assert_eq!(skipped, 3);
    }

    #[test]
    fn discovered_endpoints_must_be_https_or_loopback() {
        let at = |token: &str, userinfo: Option<&str>| Endpoints {
            token: token.into(),
            jwks: "https://idp.example/keys".into(),
            userinfo: userinfo.map(str::to_owned),
        };
        assert_eq!(at("https://idp.example/token", None).insecure(), None);
        assert_eq!(at("http://127.0.0.1:8080/token", Some("http://localhost/u")).insecure(), None);
        assert_eq!(at("http://[::1]:1/token", None).insecure(), None);
        assert_eq!(at("http://idp.example/token", None).insecure(), Some("http://idp.example/token"));
        assert_eq!(at("https://idp.example/token", Some("http://10.0.0.1/u")).insecure(), Some("http://10.0.0.1/u"));
        assert_eq!(at("not a url", None).insecure(), Some("not a url"));
    }

    #[test]
    fn expires_in_may_be_a_number_or_a_string() {
        for (answer, want) in [
            (r#"{"access_token":"a","expires_in":300}"#, Some(300)),
            (r#"{"access_token":"a","expires_in":"3599"}"#, Some(3599)),
            (r#"{"access_token":"a"}"#, None),
            (r#"{"access_token":"a","expires_in":"soon"}"#, None),
        ] {
            let t: TokenAnswer = serde_json::from_str(answer).unwrap();
            assert_eq!(t.expires_in, want, "{answer}");
        }
    }

    #[test]
    fn basic_credentials_form_encode_before_base64() {
        // RFC 6749 2.3.1 / Appendix B: space is '+', ':' and '%' are escaped.
        let value = basic_credentials("my client", "s3cr:t%");
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+client:s3cr%3At%25");
    }
}
