//! The session layer: our cookies taken out of the request in one scan, the
//! session resolved once for the request's site ([`Gate::resolve`]), and
//! the access decision ([`decide`]) answered.
//!
//! A session belongs to the site it was created on. A live one becomes the
//! [`SignedIn`] extension, from which the identity layer writes the identity
//! headers. A protected path without a live session is answered here with
//! a redirect to the site's login page, a signed-in user outside the path's
//! rule gets 403 `forbidden`, and a store that cannot answer is a 503
//! wherever the answer depends on it: never served unverified. An owned
//! route finds what it needs in the request's extensions: the cookies
//! ([`Carried`](crate::session::Carried)) and the [`Resolved`] session.

use std::sync::Arc;
use std::task::{Context, Poll};

use std::net::IpAddr;

use http::{Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::conn::{self, ClientConn};
use crate::decision::{decide, Guard, Resolved, Verdict};
use crate::error::LoginError;
use crate::future::{GatewayResponse, ResponseFuture};
use crate::gate::{finish, Gate};
use crate::identity::SignedIn;
use crate::respond::{self, AnswerMode};
use crate::router::Target;
use crate::site::{OwnedRoute, Site};
use crate::telemetry::RouteLabel;

/// Adds [`Access`] around a service.
#[derive(Clone)]
pub(crate) struct AccessLayer {
    gate: Arc<Gate>,
}

impl std::fmt::Debug for AccessLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLayer").finish_non_exhaustive()
    }
}

impl AccessLayer {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Access { inner, gate: self.gate.clone() }
    }
}

/// The session layer: our cookies taken out in one scan, the session
/// resolved once, and the access decision answered (303 / 403 / 503).
#[derive(Clone)]
pub struct Access<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> std::fmt::Debug for Access<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

/// What a request asks of the session: the path's guard, and whether the
/// request (or the owned route it is for) reads the session at all.
fn needs<'t>(target: &'t Target, method: &Method, client: Option<IpAddr>) -> (Guard<'t>, bool) {
    match target.owned {
        // Proxied to the site: with identity when signed in.
        None => (target.guard(client), true),
        Some(OwnedRoute::Callback) => (Guard::Public, true),
        // A returning user's login or wizard page.
        Some(OwnedRoute::Login | OwnedRoute::Wizard) if method != Method::POST => (Guard::Returning, true),
        // The check decides for the original path itself, on the session resolved here.
        Some(OwnedRoute::ForwardAuth) => (Guard::Public, true),
        Some(
            OwnedRoute::Login | OwnedRoute::Wizard | OwnedRoute::Home | OwnedRoute::Logout | OwnedRoute::ForgotPassword,
        ) => (Guard::Public, false),
    }
}

/// Whether the owned route reads our cookies themselves (the previous
/// session's id, the session to end, the OAuth2 state).
fn reads_cookies(owned: Option<OwnedRoute>) -> bool {
    matches!(owned, Some(OwnedRoute::Login | OwnedRoute::Wizard | OwnedRoute::Logout | OwnedRoute::Callback))
}

impl<S, B, R> Service<Request<B>> for Access<S>
where
    S: Service<Request<B>, Response = GatewayResponse<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = GatewayResponse<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if req.extensions().get::<Target>().is_none() {
            return ResponseFuture::inner(self.inner.call(req));
        }
        // The one scan of the Cookie header: the site never sees our cookies.
        let carried = match self.gate.sessions.cookies().take(req.headers_mut()) {
            Ok(carried) => carried,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                let answer = respond::refused(StatusCode::BAD_REQUEST, "bad_request", "malformed Cookie header\n");
                return ResponseFuture::ready(answer);
            }
        };
        let Some(target) = req.extensions().get::<Target>() else { return ResponseFuture::inner(self.inner.call(req)) };
        // The client's address, only when a rule's networks ask for it.
        let client = target.rule().is_some_and(|r| !r.networks.is_empty()).then(|| {
            let conn = req.extensions().get::<ClientConn>();
            conn::client_ip(conn, req.headers(), &self.gate.config.server.trusted_proxies)
        });
        let client = client.flatten();
        let (guard, reads_session) = needs(target, req.method(), client);
        let owned = target.owned;
        if !carried.has_session() || !reads_session {
            // Nothing to look up: decided now.
            let verdict = decide(guard, &Resolved::Anonymous);
            if let Some(answer) = answer(&self.gate, &target.site, &req, verdict) {
                return ResponseFuture::ready(answer);
            }
            if owned.is_some() {
                if reads_cookies(owned) && !carried.is_empty() {
                    req.extensions_mut().insert(carried);
                }
                req.extensions_mut().insert(Resolved::Anonymous);
            }
            return ResponseFuture::inner(self.inner.call(req));
        }
        let target = target.clone();
        let gate = self.gate.clone();
        // Take the inner service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::boxed(Box::pin(async move {
            let site = &target.site;
            let resolved = gate.resolve(&carried, &site.name).await;
            // The guard borrows the target: decided before anything moves.
            let verdict = decide(needs(&target, req.method(), client).0, &resolved);
            if let Some(answer) = answer(&gate, site, &req, verdict) {
                return Ok(answer.map(http_body_util::Either::Right));
            }
            // The check answers with the identity itself; every other request
            // carries it on to the site.
            match resolved.session() {
                Some(session) if owned != Some(OwnedRoute::ForwardAuth) => {
                    if let Some(token) = crate::refresh::access_token(site, session) {
                        req.extensions_mut().insert(token);
                    }
                    req.extensions_mut().insert(SignedIn::from(session.clone()));
                }
                _ => {}
            }
            if owned.is_some() {
                if reads_cookies(owned) {
                    req.extensions_mut().insert(carried);
                }
                req.extensions_mut().insert(resolved);
            }
            inner.call(req).await
        }))
    }
}

/// Ferrygate's answer for `verdict`, if it is not to pass.
fn answer<B>(
    gate: &Gate,
    site: &Site,
    req: &Request<B>,
    verdict: Verdict,
) -> Option<Response<http_body_util::Full<bytes::Bytes>>> {
    let response = match verdict {
        Verdict::Allow => return None,
        Verdict::SignIn => to_login(site, req),
        Verdict::Forbidden => respond::login_failure(LoginError::Forbidden, AnswerMode::of(req.headers()), "/"),
        Verdict::Unavailable => respond::store_unavailable(),
    };
    let hsts = gate.hsts(req.headers(), req.extensions());
    Some(finish(site, RouteLabel::Protected, hsts, response))
}

/// `login.path?destination=<the request's path and query>`.
fn to_login<B>(site: &Site, req: &Request<B>) -> Response<http_body_util::Full<bytes::Bytes>> {
    let wanted = req.uri().path_and_query().map_or("/", |p| p.as_str());
    respond::see_other(&site.login_target(wanted), &[])
}
