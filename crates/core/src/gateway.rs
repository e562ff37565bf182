//! The gateway layer: picks the site by Host, answers the routes the site owns
//! (login, wizard, home, logout, returning users, protected paths) and passes
//! everything else to the inner service untouched, tagged with the site's
//! [`Upstream`](crate::config::Upstream) and, for a live session, [`SignedIn`].
//!
//! Owned routes resolve to a response, never an `Err` (hyper would close the
//! connection). A request without our cookie to a path we do not own takes the
//! fast path: one Host lookup, one hash lookup, no allocation of ours.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::audit::AccountHasher;
use crate::authority;
use crate::config::{Config, OwnedRoute, Site};
use crate::csrf;
use crate::error::LoginError;
use crate::identity::{CallbackDestination, SignedIn};
use crate::provider::BoxFuture;
use crate::ratelimit::{MemoryLimiter, RateLimiter};
use crate::respond::{self, AnswerMode};
use crate::session::{Session, SessionManager, SessionStore, StateRefused};

/// A boxed error, as bodies and services report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: AccountHasher,
    pub(crate) sessions: SessionManager,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    /// Accounts with a login attempt in progress.
    pub(crate) in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    /// `Strict-Transport-Security` for our own HTTPS answers, made once (`None` when off).
    hsts: Option<http::HeaderValue>,
}

/// Builds [`Gateway`] services around an inner service (the proxy, or an app).
#[derive(Clone)]
pub struct GatewayLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GatewayLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayLayer").field("sites", &self.shared.config.sites.len()).finish_non_exhaustive()
    }
}

impl GatewayLayer {
    /// A layer for `config` (its providers built by their kinds), keeping
    /// sessions in `store`.
    pub fn new(config: Arc<Config>, store: Arc<dyn SessionStore>) -> Self {
        let limiter = Arc::new(MemoryLimiter::new(&config.limits));
        Self::with_limiter(config, store, limiter)
    }

    /// As [`new`](Self::new), with the brute-force limits kept by `limiter`
    /// (the Redis store's, so replicas count together).
    pub fn with_limiter(config: Arc<Config>, store: Arc<dyn SessionStore>, limiter: Arc<dyn RateLimiter>) -> Self {
        let accounts = AccountHasher::new(&config.sessions.secret);
        let sessions = SessionManager::new(&config.sessions, store);
        let in_flight = std::sync::Mutex::default();
        let max_age = config.server.hsts_max_age;
        let hsts = (!max_age.is_zero())
            .then(|| http::HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())).ok())
            .flatten();
        Self { shared: Arc::new(Shared { config, accounts, sessions, limiter, in_flight, hsts }) }
    }

    /// The configuration this layer serves.
    pub fn config(&self) -> &Arc<Config> {
        &self.shared.config
    }

    /// The session store in use (for readiness checks, and kept across reloads).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        self.shared.sessions.store()
    }

    /// The brute-force limiter in use (kept across reloads).
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.shared.limiter
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = Gateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gateway { inner, shared: self.shared.clone() }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct Gateway<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Gateway<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// The CSRF check of an owned route (see [`csrf`]).
pub(crate) fn same_origin(
    shared: &Shared,
    site: &Site,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    ext: &http::Extensions,
) -> bool {
    let trusted = &shared.config.server.trusted_proxies;
    let conn = ext.get::<crate::conn::ClientConn>();
    let trusted_peer = conn.is_some_and(|c| crate::conn::is_trusted(c.peer.ip(), trusted));
    let https = crate::conn::is_https(conn, headers, trusted);
    csrf::origin_allowed(headers, &csrf::request_authorities(uri, headers, trusted_peer), site, https)
}

type GatewayResponse<ResBody> = Response<Either<ResBody, Full<Bytes>>>;

impl<S, B, ResBody> Service<Request<B>> for Gateway<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = GatewayResponse<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The site is chosen by the request's authority, parsed once, and the
        // site hears that same authority (see `authority`).
        let (site, rewrite) = match authority::of_request(&req) {
            Ok(a) => {
                let site = self.shared.config.site_for_host(a.as_ref().map(|a| a.host()));
                let rewrite = a.filter(|a| a.changed() || req.uri().authority().is_some()).map(|a| a.header_value());
                (site, rewrite)
            }
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                return ResponseFuture::ready(respond::text(StatusCode::BAD_REQUEST, "malformed host\n"));
            }
        };
        if let Some(v) = rewrite {
            req.headers_mut().insert(header::HOST, v);
        }
        let Some(site) = site else {
            return ResponseFuture::ready(respond::text(
                StatusCode::MISDIRECTED_REQUEST,
                "no site is configured for this host\n",
            ));
        };
        let (route, protected) = {
            let path = crate::path::canonical(req.uri().path());
            let route = site.route(&path);
            (route, route.is_none() && site.is_protected(&path))
        };
        let cookies = self.shared.sessions.our_cookies(req.headers());
        // The fast paths: nothing to look up, nothing to wait for.
        match route {
            None if !cookies.session && !protected => return pass(&self.shared, &mut self.inner, site, req),
            Some(OwnedRoute::Home) => {
                let response = if req.method() == Method::POST
                    && !same_origin(&self.shared, site, req.uri(), req.headers(), req.extensions())
                {
                    respond::login_failure(LoginError::OriginRejected, AnswerMode::of(req.headers()), "/")
                } else {
                    respond::see_other(site.home.as_ref().map_or("/", |h| h.redirect.as_str()), &[])
                };
                count(&site.name, "home", &response);
                return ResponseFuture::ready(with_hsts(&self.shared, req.headers(), req.extensions(), response));
            }
            Some(OwnedRoute::Login | OwnedRoute::Wizard) if !cookies.session && req.method() != Method::POST => {
                return pass(&self.shared, &mut self.inner, site, req)
            }
            Some(OwnedRoute::ForgotPassword) if req.method() != Method::POST => {
                return pass(&self.shared, &mut self.inner, site, req)
            }
            _ => {}
        }
        // Take the inner service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let fut = owned(self.shared.clone(), site.clone(), route, protected, cookies.session, req, inner);
        ResponseFuture::boxed(Box::pin(fut))
    }
}

/// Hands the request to the inner service, tagged with its upstream, without
/// Ferrygate's own cookies (the site never sees a session id or a state).
fn pass<S, B, ResBody>(
    shared: &Shared,
    inner: &mut S,
    site: &Site,
    mut req: Request<B>,
) -> ResponseFuture<S::Future, ResBody, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    shared.sessions.strip_cookies(req.headers_mut());
    req.extensions_mut().insert(site.upstream.clone());
    ResponseFuture::inner(inner.call(req))
}

/// Every request that needs the session store or a provider.
async fn owned<S, B, ResBody>(
    shared: Arc<Shared>,
    site: Arc<Site>,
    route: Option<OwnedRoute>,
    protected: bool,
    with_cookie: bool,
    mut req: Request<B>,
    mut inner: S,
) -> Result<GatewayResponse<ResBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let hsts = hsts_value(&shared, req.headers(), req.extensions());
    let label = route.map_or("protected", route_label);
    let counted = site.clone();
    let own = |mut r: Response<Full<Bytes>>| {
        count(&counted.name, label, &r);
        if let Some(v) = &hsts {
            r.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
        Ok(r.map(Either::Right))
    };
    match (route, req.method()) {
        (Some(OwnedRoute::Login | OwnedRoute::Wizard), &Method::POST) => {
            let route = route.unwrap_or(OwnedRoute::Login);
            return own(crate::login::handle(shared.clone(), site, req, route).await);
        }
        (Some(OwnedRoute::ForgotPassword), &Method::POST) => {
            return own(crate::login::forgot_password(shared.clone(), site, req).await);
        }
        (Some(OwnedRoute::Logout), _) => {
            let (parts, _body) = req.into_parts();
            return own(logout(&shared, &site, &parts).await);
        }
        _ => {}
    }
    let mut set_cookies = Vec::new();
    if route == Some(OwnedRoute::Callback) {
        let offered = crate::login::Fields::from_query(req.uri().query().unwrap_or(""));
        match shared.sessions.take_state(req.headers(), offered.get("state")).await {
            Ok(destination) => {
                req.extensions_mut().insert(CallbackDestination(destination));
                set_cookies.push(shared.sessions.clear_state_cookie());
            }
            Err(StateRefused::StoreUnavailable) => {
                return own(respond::login_failure(
                    LoginError::SessionStoreUnavailable,
                    AnswerMode::of(req.headers()),
                    &site.login.failure_redirect,
                ));
            }
            Err(why) => {
                tracing::warn!(site = %site.name, reason = ?why, "callback refused: state_mismatch");
                let mode = AnswerMode::of(req.headers());
                return own(respond::login_failure(LoginError::StateMismatch, mode, "/"));
            }
        }
    }
    let session = if with_cookie {
        match shared.sessions.lookup(req.headers(), &site.name).await {
            Ok(found) => found.map(|(_, s)| s),
            Err(e) => {
                tracing::warn!(site = %site.name, error = %e, "session lookup failed");
                if protected {
                    // Fail closed: a protected page is never served unverified.
                    return own(respond::text(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable\n"));
                }
                None
            }
        }
    } else {
        None
    };
    match (&session, route) {
        (Some(s), Some(r @ (OwnedRoute::Login | OwnedRoute::Wizard))) => {
            if let Some(target) = resume(&shared, &site, s, r, req.uri().query()) {
                return own(respond::see_other(&target, &[]));
            }
        }
        (None, None) if protected => {
            let wanted = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let encoded: String = form_urlencoded::byte_serialize(wanted.as_bytes()).collect();
            return own(respond::see_other(&format!("{}?destination={encoded}", site.login.path), &[]));
        }
        _ => {}
    }
    if let Some(s) = session {
        req.extensions_mut().insert(SignedIn::from(s));
    }
    let mut res = pass(&shared, &mut inner, &site, req).await?;
    for cookie in set_cookies {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(res)
}

fn route_label(route: OwnedRoute) -> &'static str {
    match route {
        OwnedRoute::Login => "login",
        OwnedRoute::Wizard => "wizard",
        OwnedRoute::Home => "home",
        OwnedRoute::Logout => "logout",
        OwnedRoute::ForgotPassword => "forgot_password",
        OwnedRoute::Callback => "callback",
    }
}

/// `ferrygate_requests_total` for an answer of ours (the proxy counts its own).
fn count(site: &str, route: &'static str, response: &Response<Full<Bytes>>) {
    metrics::counter!(
        "ferrygate_requests_total",
        "site" => site.to_owned(),
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
}

/// `Strict-Transport-Security` for an answer of ours to an HTTPS request.
fn hsts_value(shared: &Shared, headers: &http::HeaderMap, ext: &http::Extensions) -> Option<http::HeaderValue> {
    let hsts = shared.hsts.as_ref()?;
    let conn = ext.get::<crate::conn::ClientConn>();
    crate::conn::is_https(conn, headers, &shared.config.server.trusted_proxies).then(|| hsts.clone())
}

fn with_hsts(
    shared: &Shared,
    headers: &http::HeaderMap,
    ext: &http::Extensions,
    mut response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    if let Some(v) = hsts_value(shared, headers, ext) {
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    response
}

/// The portal redirect of a returning user, when the provider has one.
fn resume(shared: &Shared, site: &Site, session: &Session, route: OwnedRoute, query: Option<&str>) -> Option<String> {
    if session.provider != site.provider {
        return None;
    }
    let fields = crate::login::Fields::from_query(query.unwrap_or(""));
    let destination = match route {
        OwnedRoute::Wizard => crate::login::wizard_destination(site, &fields),
        _ => crate::login::allowed_destination(site, crate::login::asked_in_query(&fields)),
    };
    let target = shared.config.providers.get(&site.provider)?.provider.resume(site, session, &destination)?;
    metrics::counter!("ferrygate_returning_user_redirects_total").increment(1);
    Some(target)
}

async fn logout(shared: &Shared, site: &Site, req: &http::request::Parts) -> Response<Full<Bytes>> {
    if req.method == Method::POST && !same_origin(shared, site, &req.uri, &req.headers, &req.extensions) {
        return respond::login_failure(LoginError::OriginRejected, AnswerMode::of(&req.headers), "/");
    }
    if let Some(id) = shared.sessions.session_id(&req.headers) {
        if let Err(e) = shared.sessions.end(&id).await {
            // The browser's cookie goes anyway; the entry lapses at its TTL.
            tracing::warn!(site = %site.name, error = %e, "could not remove the session from the store");
        }
    }
    let target = site.logout.as_ref().map_or("/", |l| l.redirect.as_str());
    respond::see_other(target, &[shared.sessions.expired_cookie()])
}

pin_project_lite::pin_project! {
    /// The response future of [`Gateway`]: the inner service's, or our own answer.
    pub struct ResponseFuture<F, ResBody, E> {
        #[pin]
        kind: Kind<F, ResBody, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, ResBody, E> {
        Inner { #[pin] fut: F },
        Boxed { fut: BoxFuture<'static, Result<GatewayResponse<ResBody>, E>> },
        Ready { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F, ResBody, E> ResponseFuture<F, ResBody, E> {
    fn inner(fut: F) -> Self {
        Self { kind: Kind::Inner { fut } }
    }
    fn boxed(fut: BoxFuture<'static, Result<GatewayResponse<ResBody>, E>>) -> Self {
        Self { kind: Kind::Boxed { fut } }
    }
    fn ready(response: Response<Full<Bytes>>) -> Self {
        Self { kind: Kind::Ready { response: Some(response) } }
    }
}

impl<F, ResBody, E> std::fmt::Debug for ResponseFuture<F, ResBody, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<GatewayResponse<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => Poll::Ready(ready!(fut.poll(cx)).map(|r| r.map(Either::Left))),
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion").map(Either::Right)))
            }
        }
    }
}
