//! The login POST (spec section 3): checks, body parsing, destination,
//! the provider call, the audit event and the answer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::USER_AGENT;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};

use super::form::{read_fields, truthy, Fields};
use crate::conn::{self, ClientConn};
use crate::destination;
use crate::error::{BoxError, LoginError};
use crate::gate::Gate;
use crate::provider::{Grant, LoginAttempt};
use crate::ratelimit::Refusal;
use crate::respond::{self, AnswerMode};
use crate::session::{ms_from_now, new_state, Carried, Session};
use crate::site::{OwnedRoute, Site};

/// Longest username or password accepted, in bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 1024;

pub(crate) async fn handle<B>(
    gate: Arc<Gate>,
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
    let client_ip = conn::client_ip(conn.as_ref(), req.headers(), &gate.config.server.trusted_proxies);
    let previous = req.extensions().get::<Carried>().and_then(|c| gate.sessions.cookies().session_id(c));
    let mut seen = Seen::default();
    let result = seen.attempt(&gate, &site, req, route, conn, client_ip).await;
    let result = match result {
        Ok(grant) if crate::identity::oversized(&grant.user).is_some() => {
            let field = crate::identity::oversized(&grant.user);
            tracing::warn!(site = %site.name, provider = %site.provider, field, "the provider's identity is oversized");
            Err(LoginError::ProviderUnavailable)
        }
        Ok(grant) => {
            let session = new_session(&gate, &site, seen.account.as_deref().unwrap_or(""), &grant);
            match gate.sessions.create(&session, previous.as_ref(), seen.remember).await {
                Ok(cookie) => {
                    let mut cookies = vec![cookie];
                    if grant.binds_state {
                        cookies.push(gate.sessions.state_cookie(&seen.state, &seen.destination));
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
    site.upstream.metrics.login(result.as_ref().map(|_| ()).map_err(|e| *e));
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
        Err(err) => match &seen.kept_destination {
            Some(d) => {
                let back = crate::query::append(&site.login.failure_redirect, &[("destination", d)]);
                respond::login_failure(err, mode, &back)
            }
            None => respond::login_failure(err, mode, &site.login.failure_redirect),
        },
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
    /// The destination the user asked for (validated): a failure's redirect
    /// back to the form keeps it, so the retry goes where the user was going.
    kept_destination: Option<String>,
}

/// The session a grant starts: as long as the token lives (or the provider's
/// session lifetime), never longer than `sessions.max_ttl`. With a refresh
/// token it lasts the provider's session lifetime, and the access token's own
/// end is kept apart (renewed by [`crate::refresh`]).
fn new_session(gate: &Gate, site: &Site, account: &str, grant: &Grant) -> Session {
    let max = gate.sessions.max_ttl();
    let token_ttl = grant.token.as_ref().map(|t| t.expires_in);
    let refreshable = grant.refresh_token.is_some() && grant.session_ttl.is_some();
    let ttl = if refreshable { grant.session_ttl } else { token_ttl.or(grant.session_ttl) };
    let ttl = ttl.unwrap_or(max).min(max);
    Session {
        site: site.name.clone(),
        provider: site.provider.clone(),
        // Trimmed: the site reads a header value trimmed.
        user: grant.user.email.as_deref().unwrap_or(account).trim().to_owned(),
        user_id: grant.user.user_id.clone(),
        org_id: grant.user.org_id.clone(),
        external_id: grant.user.external_id.clone(),
        groups: crate::identity::usable_groups(&site.name, &grant.user.groups),
        token: grant.token.as_ref().map(|t| t.value.expose_secret().to_owned()),
        token_type: grant.token.as_ref().map(|t| t.token_type.clone()).unwrap_or_default(),
        refresh_token: grant.refresh_token.as_ref().filter(|_| refreshable).map(|t| t.expose_secret().to_owned()),
        token_expires_at_ms: token_ttl.filter(|_| refreshable).map(ms_from_now),
        expires_at_ms: ms_from_now(ttl),
    }
}

impl Seen {
    /// The checks, the body, the limits and the provider call, noting what the
    /// form gave as it is read (a refusal half-way keeps what came before).
    async fn attempt<B>(
        &mut self,
        gate: &Gate,
        site: &Site,
        req: Request<B>,
        route: OwnedRoute,
        conn: Option<ClientConn>,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<Grant, LoginError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let config = &gate.config;
        if config.server.require_https && !conn::is_https(conn.as_ref(), req.headers(), &config.server.trusted_proxies)
        {
            return Err(LoginError::HttpsRequired);
        }
        if !gate.same_origin(site, req.uri(), req.headers(), req.extensions()) {
            return Err(LoginError::OriginRejected);
        }
        // Where the user was going, kept on a failure's way back to the form: the
        // query's now (so even a refusal before the body is read keeps it).
        let query = Fields::from_query(req.uri().query().unwrap_or(""));
        if route != OwnedRoute::Wizard && asked_in_query(&query).is_some_and(|d| !d.is_empty()) {
            self.kept_destination = Some(allowed_destination(site, asked_in_query(&query)));
        }
        if let Some(ip) = client_ip {
            gate.limiter.hit_ip(&limit_key(ip)).await.map_err(rate_limited)?;
        }
        let (parts, body) = req.into_parts();
        let fields = read_fields(&parts.headers, body, config.limits.login_body_bytes).await?;

        let login = &site.login;
        let destination = match route {
            OwnedRoute::Wizard => wizard_destination(site, &fields),
            _ => {
                let asked = fields.get(&login.destination_field).filter(|d| !d.is_empty());
                let destination = allowed_destination(site, asked.or_else(|| asked_in_query(&query)));
                if asked.is_some() {
                    self.kept_destination = Some(destination.clone());
                }
                destination
            }
        };
        let username = fields.get(&login.username_field).map(str::trim).unwrap_or("");
        let password = fields.get(&login.password_field).unwrap_or("");
        if username.is_empty() || password.is_empty() {
            return Err(LoginError::MissingCredentials);
        }
        if username.len() > MAX_FIELD_BYTES
            || password.len() > MAX_FIELD_BYTES
            || crate::account::AccountHasher::has_invisible(username)
            || password.contains('\0')
        {
            return Err(LoginError::InvalidInput);
        }
        self.account = Some(username.to_owned());
        let account_key = gate.accounts.hash(username);
        self.account_key = Some(account_key.clone());
        gate.limiter.account_open(&account_key).await.map_err(rate_limited)?;
        // One attempt per account at a time (per replica): concurrent guesses would
        // otherwise all reach the provider before the first failure is counted.
        let _in_flight =
            InFlight::enter(&gate.in_flight, &account_key).ok_or(LoginError::RateLimited { retry_after_secs: 1 })?;
        let remember = fields.get(&login.remember_field).is_some_and(truthy);
        self.remember = remember;

        let password = SecretString::from(password.to_owned());
        let user_agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        self.state = new_state();
        self.destination.clone_from(&destination);
        let attempt = LoginAttempt {
            state: &self.state,
            site,
            username,
            password: &password,
            remember,
            destination: &destination,
            client_ip,
            user_agent,
        };
        let provider = &config.providers.get(&site.provider).ok_or(LoginError::ProviderUnavailable)?.provider;
        // The one bound on a whole authentication (each HTTP exchange is also
        // bounded by the client): `timeout`, then `provider_timeout`.
        let deadline = provider.timeout();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(deadline, provider.authenticate(&attempt)).await.unwrap_or_else(|_| {
        tracing::warn!(site = %site.name, provider = %site.provider, timeout = ?deadline, "the provider did not answer in time");
        Err(LoginError::ProviderTimeout)
    });
        site.upstream.metrics.provider_duration(started.elapsed());
        if matches!(result, Err(LoginError::InvalidCredentials | LoginError::ProviderRejected)) {
            gate.limiter.account_failed(&account_key).await;
        }
        result
    }
}

/// A refusal of the limiter as the answer: `rate_limited` with `Retry-After`
/// rounded up to whole seconds, or the store's unavailability.
pub(super) fn rate_limited(refusal: Refusal) -> LoginError {
    match refusal {
        Refusal::Over(wait) => {
            LoginError::RateLimited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        }
        Refusal::Unavailable => LoginError::SessionStoreUnavailable,
    }
}

/// The per-IP key: the address, or its /64 for IPv6 (one host holds a whole /64).
pub(super) fn limit_key(ip: std::net::IpAddr) -> String {
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
