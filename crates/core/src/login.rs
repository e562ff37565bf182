//! The login POST (spec section 3): checks, body parsing, destination,
//! the provider call, the audit event and the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{OwnedRoute, Site};
use crate::conn::{self, ClientConn};
use crate::destination;
use crate::error::LoginError;
use crate::gateway::{same_origin, BoxError, Shared};
use crate::provider::{Grant, LoginAttempt};
use crate::ratelimit::Refusal;
use crate::respond::{self, media_type, AnswerMode};
use crate::session::{new_state, now_ms, Session};

/// Longest username or password accepted, in bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 1024;

/// How long a login body may take to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

pub(crate) async fn handle<B>(
    shared: Arc<Shared>,
    site: Arc<Site>,
    req: Request<B>,
    route: OwnedRoute,
) -> Response<Full<Bytes>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mode = AnswerMode::of(req.headers());
    let conn = req.extensions().get::<ClientConn>().copied();
    let client_ip = conn::client_ip(conn.as_ref(), req.headers(), &shared.config.server.trusted_proxies);
    let previous = shared.sessions.session_id(req.headers());
    let mut seen = Seen::default();
    let result = match attempt(&shared, &site, req, route, conn, client_ip, &mut seen).await {
        Ok(grant) => {
            let session = new_session(&shared, &site, seen.account.as_deref().unwrap_or(""), &grant);
            match shared.sessions.create(&session, previous.as_ref(), seen.remember).await {
                Ok(cookie) => {
                    let mut cookies = vec![cookie];
                    if grant.binds_state {
                        cookies.push(shared.sessions.state_cookie(&seen.state, &seen.destination));
                    }
                    Ok((grant.redirect, cookies))
                }
                Err(e) => {
                    tracing::error!(site = %site.name, error = %e, "cannot store the new session");
                    Err(LoginError::SessionStoreUnavailable)
                }
            }
        }
        Err(e) => Err(e),
    };

    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.code(),
    };
    let account_hash = seen.account_key.as_deref();
    metrics::counter!(
        "ferrygate_login_attempts_total",
        "site" => site.name.clone(),
        "provider" => site.provider.clone(),
        "outcome" => outcome
    )
    .increment(1);
    tracing::info!(
        target: "ferrygate::audit",
        event = "login",
        site = %site.name,
        provider = %site.provider,
        outcome,
        client_ip = client_ip.map(tracing::field::display),
        account = account_hash,
    );
    match result {
        Ok((redirect, cookies)) => respond::login_success(&redirect, mode, &cookies),
        Err(err) => respond::login_failure(err, mode, &site.login.failure_redirect),
    }
}

/// What the attempt learnt of the form, for the session and the audit log.
#[derive(Default)]
struct Seen {
    account: Option<String>,
    /// Its keyed hash: the limiter's key and the audit log's account field.
    account_key: Option<String>,
    remember: bool,
    /// The OAuth2 state offered to the provider, and the destination it carries.
    state: String,
    destination: String,
}

/// The session a grant starts: as long as the token lives (or the provider's
/// session lifetime), never longer than `sessions.max_ttl`.
fn new_session(shared: &Shared, site: &Site, account: &str, grant: &Grant) -> Session {
    let max = shared.sessions.max_ttl();
    let ttl = grant.token.as_ref().map(|t| t.expires_in).or(grant.session_ttl).unwrap_or(max).min(max);
    Session {
        site: site.name.clone(),
        provider: site.provider.clone(),
        user: grant.user.email.clone().unwrap_or_else(|| account.to_owned()),
        user_id: grant.user.user_id.clone(),
        org_id: grant.user.org_id.clone(),
        external_id: grant.user.external_id.clone(),
        token: grant.token.as_ref().map(|t| t.value.expose_secret().to_owned()),
        token_type: grant.token.as_ref().map(|t| t.token_type.clone()).unwrap_or_default(),
        expires_at_ms: now_ms() + ttl.as_millis() as u64,
    }
}

async fn attempt<B>(
    shared: &Shared,
    site: &Site,
    req: Request<B>,
    route: OwnedRoute,
    conn: Option<ClientConn>,
    client_ip: Option<std::net::IpAddr>,
    seen: &mut Seen,
) -> Result<Grant, LoginError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let config = &shared.config;
    if config.server.require_https && !conn::is_https(conn.as_ref(), req.headers(), &config.server.trusted_proxies) {
        return Err(LoginError::HttpsRequired);
    }
    if !same_origin(shared, site, req.uri(), req.headers(), req.extensions()) {
        return Err(LoginError::OriginRejected);
    }
    if let Some(ip) = client_ip {
        shared.limiter.hit_ip(&limit_key(ip)).await.map_err(rate_limited)?;
    }
    let (parts, body) = req.into_parts();
    let fields = read_fields(&parts.headers, body, config.limits.login_body_bytes).await?;

    let login = &site.login;
    let username = fields.get(&login.username_field).map(str::trim).unwrap_or("");
    let password = fields.get(&login.password_field).unwrap_or("");
    if username.is_empty() || password.is_empty() {
        return Err(LoginError::MissingCredentials);
    }
    if username.len() > MAX_FIELD_BYTES
        || password.len() > MAX_FIELD_BYTES
        || crate::audit::AccountHasher::has_invisible(username)
        || password.contains('\0')
    {
        return Err(LoginError::InvalidInput);
    }
    seen.account = Some(username.to_owned());
    let account_key = shared.accounts.hash(username);
    seen.account_key = Some(account_key.clone());
    shared.limiter.account_open(&account_key).await.map_err(rate_limited)?;
    // One attempt per account at a time (per replica): concurrent guesses would
    // otherwise all reach the provider before the first failure is counted.
    let _in_flight =
        InFlight::enter(&shared.in_flight, &account_key).ok_or(LoginError::RateLimited { retry_after_secs: 1 })?;
    let remember = fields.get(&login.remember_field).is_some_and(truthy);
    seen.remember = remember;

    let destination = match route {
        OwnedRoute::Wizard => wizard_destination(site, &fields),
        _ => {
            let query = Fields::from_query(parts.uri.query().unwrap_or(""));
            let asked = fields.get(&login.destination_field).filter(|d| !d.is_empty());
            allowed_destination(site, asked.or_else(|| asked_in_query(&query)))
        }
    };

    let password = SecretString::from(password.to_owned());
    let user_agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    seen.state = new_state();
    seen.destination.clone_from(&destination);
    let attempt = LoginAttempt {
        state: &seen.state,
        site,
        username,
        password: &password,
        remember,
        destination: &destination,
        client_ip,
        user_agent,
    };
    let provider = &config.providers.get(&site.provider).ok_or(LoginError::ProviderUnavailable)?.provider;
    // The provider bounds its own calls; this only guards against one that hangs.
    let deadline = provider.timeout() + Duration::from_secs(1);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(deadline, provider.authenticate(&attempt))
        .await
        .unwrap_or(Err(LoginError::ProviderTimeout));
    metrics::histogram!("ferrygate_provider_request_duration_seconds", "provider" => site.provider.clone())
        .record(started.elapsed().as_secs_f64());
    if matches!(result, Err(LoginError::InvalidCredentials | LoginError::ProviderRejected)) {
        shared.limiter.account_failed(&account_key).await;
    }
    result
}

/// A refusal of the limiter as the answer: `rate_limited` with `Retry-After`
/// rounded up to whole seconds, or the store's unavailability.
fn rate_limited(refusal: Refusal) -> LoginError {
    match refusal {
        Refusal::Over(wait) => {
            LoginError::RateLimited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        }
        Refusal::Unavailable => LoginError::SessionStoreUnavailable,
    }
}

/// The per-IP key: the address, or its /64 for IPv6 (one host holds a whole /64).
fn limit_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// An account's attempt in progress; leaves the set when dropped.
pub(crate) struct InFlight<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    key: String,
}

impl<'a> InFlight<'a> {
    fn enter(set: &'a std::sync::Mutex<std::collections::HashSet<String>>, key: &str) -> Option<Self> {
        let mut guard = set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.insert(key.to_owned()).then(|| Self { set, key: key.to_owned() })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.key);
    }
}

/// The destination asked for in a login page's query: `destination`, else `next`.
pub(crate) fn asked_in_query(query: &Fields) -> Option<&str> {
    query.get("destination").or_else(|| query.get("next"))
}

/// The asked destination when it passes validation, else the site's default.
pub(crate) fn allowed_destination(site: &Site, asked: Option<&str>) -> String {
    let portal = &site.portal;
    match asked.filter(|a| !a.is_empty()) {
        None => portal.default_destination.clone(),
        Some(raw) => destination::validate(raw, &portal.allowed_destinations).unwrap_or_else(|why| {
            let shown: String = raw.chars().take(200).collect();
            tracing::warn!(site = %site.name, destination = ?shown, reason = %why, "refused destination replaced by the default");
            portal.default_destination.clone()
        }),
    }
}

/// `wizard.destination` with the configured routing/product fields as its query.
pub(crate) fn wizard_destination(site: &Site, fields: &Fields) -> String {
    let Some(wizard) = &site.wizard else { return site.portal.default_destination.clone() };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for name in &wizard.params {
        if let Some(v) = fields.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            query.append_pair(name, v);
        }
    }
    let query = query.finish();
    let target = if query.is_empty() {
        wizard.destination.clone()
    } else {
        let sep = if wizard.destination.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", wizard.destination)
    };
    allowed_destination(site, Some(&target))
}

fn truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes")
}

/// The login form's fields, first value of each name.
#[derive(Default)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The fields of a query string.
    pub(crate) fn from_query(query: &str) -> Self {
        Fields(form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads a form or JSON body of at most `limit` bytes.
pub(crate) async fn read_fields<B>(headers: &http::HeaderMap, body: B, limit: usize) -> Result<Fields, LoginError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type).unwrap_or("");
    let json = if content_type.eq_ignore_ascii_case(FORM) {
        false
    } else if content_type.eq_ignore_ascii_case(JSON) {
        true
    } else {
        return Err(LoginError::UnsupportedMediaType);
    };
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(LoginError::PayloadTooLarge);
    }
    // A client dribbling its form must not hold a task and a socket for ever.
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    let bytes = read.await.map_err(|_| LoginError::InvalidInput)?.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            LoginError::PayloadTooLarge
        } else {
            LoginError::InvalidInput
        }
    })?;
    let bytes = bytes.to_bytes();
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| LoginError::InvalidInput)?;
        Ok(Fields(
            map.into_iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((k, v))
                })
                .collect(),
        ))
    } else {
        Ok(Fields(form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()))
    }
}

/// `forgot_password.path`, POST: the same answer for every account and outcome.
pub(crate) async fn forgot_password<B>(shared: Arc<Shared>, site: Arc<Site>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mode = AnswerMode::of(req.headers());
    let Some(route) = &site.forgot_password else {
        return respond::text(http::StatusCode::NOT_FOUND, "not found\n");
    };
    if !same_origin(&shared, &site, req.uri(), req.headers(), req.extensions()) {
        return respond::login_failure(LoginError::OriginRejected, mode, &route.redirect);
    }
    let conn = req.extensions().get::<ClientConn>().copied();
    let client_ip = conn::client_ip(conn.as_ref(), req.headers(), &shared.config.server.trusted_proxies);
    // Each request may make the provider send an email: counted like a login POST.
    if let Some(ip) = client_ip {
        if let Err(refusal) = shared.limiter.hit_ip(&limit_key(ip)).await {
            return respond::login_failure(rate_limited(refusal), mode, &route.redirect);
        }
    }
    let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (parts, body) = req.into_parts();
    let fields = match read_fields(&parts.headers, body, shared.config.limits.login_body_bytes).await {
        Ok(f) => f,
        Err(e) if !e.user_actionable() => return respond::login_failure(e, mode, &route.redirect),
        Err(_) => Fields::default(),
    };
    let email = fields.get("email").map(str::trim).unwrap_or("");
    if !email.is_empty() && email.len() <= MAX_FIELD_BYTES {
        let request =
            crate::provider::ForgotPassword { site: site.clone(), email: email.to_owned(), client_ip, user_agent };
        if let Some(task) =
            shared.config.providers.get(&site.provider).and_then(|p| p.provider.forgot_password(request))
        {
            tokio::spawn(task);
        }
    }
    tracing::info!(
        target: "ferrygate::audit",
        event = "forgot_password",
        site = %site.name,
        provider = %site.provider,
        client_ip = client_ip.map(tracing::field::display),
        account = (!email.is_empty()).then(|| shared.accounts.hash(email)),
    );
    match mode {
        AnswerMode::Browser => respond::see_other(&route.redirect, &[]),
        AnswerMode::Json => respond::accepted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn headers(content_type: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    async fn parse(content_type: &str, body: Vec<u8>) -> Result<Fields, LoginError> {
        read_fields(&headers(content_type), Full::new(Bytes::from(body)), 256).await
    }

    #[tokio::test]
    async fn reads_form_and_json_fields() {
        let f = parse(FORM, b"email=a%40b.example&password=p%26w&email=second".to_vec()).await.unwrap();
        assert_eq!((f.get("email"), f.get("password")), (Some("a@b.example"), Some("p&w")));
        let f = parse("application/json; charset=utf-8", br#"{"email":"x","remember":true,"n":3,"o":{}}"#.to_vec())
            .await
            .unwrap();
        assert_eq!((f.get("remember"), f.get("n"), f.get("o")), (Some("true"), Some("3"), None));
        assert_eq!(parse(JSON, b"[1,2]".to_vec()).await.err(), Some(LoginError::InvalidInput));
        assert_eq!(parse("text/plain", vec![]).await.err(), Some(LoginError::UnsupportedMediaType));
        assert_eq!(parse(FORM, vec![b'a'; 300]).await.err(), Some(LoginError::PayloadTooLarge));
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_or_is_refused_cleanly(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), json in proptest::prelude::any::<bool>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let result = rt.block_on(parse(if json { JSON } else { FORM }, body.clone()));
            match result {
                Ok(_) => proptest::prop_assert!(body.len() <= 256),
                Err(e) => proptest::prop_assert!(matches!(e, LoginError::InvalidInput | LoginError::PayloadTooLarge), "{:?}", e),
            }
        }
    }
}
