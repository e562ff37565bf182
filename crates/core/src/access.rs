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
//! ([`Carried`](crate::session::Carried)) and, for a returning user's login
//! page, the live session ([`LiveSession`]); both are taken out again
//! before a request reaches the site (`owned::pass`).

use std::sync::Arc;
use std::task::{Context, Poll};

use std::net::IpAddr;

use http::{Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::decision::{decide, Guard, Resolved, Verdict};
use crate::error::LoginError;
use crate::future::{GatewayResponse, ResponseFuture};
use crate::gate::{finish, Gate};
use crate::identity::SignedIn;
use crate::respond::{self, AnswerMode};
use crate::router::Target;
use crate::session::Session;
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

/// What an owned route reads of the session layer's work.
#[derive(Clone, Copy)]
struct Reads {
    /// The session, resolved here (identity for the site, a returning user).
    session: bool,
    /// Our cookies themselves ([`Carried`]): the previous session's id, the
    /// session to end, the OAuth2 state, the session a check resolves.
    cookies: bool,
}

/// What the request asks: the path's guard, and what it reads.
fn needs<'t>(target: &'t Target, method: &Method, client: Option<IpAddr>) -> (Guard<'t>, Reads) {
    let (session, cookies) = (Reads { session: true, cookies: false }, Reads { session: false, cookies: true });
    match target.owned {
        // Proxied to the site: with identity when signed in.
        None => (target.guard(client), session),
        Some(OwnedRoute::Callback) => (Guard::Public, Reads { session: true, cookies: true }),
        // A returning user's login or wizard page.
        Some(OwnedRoute::Login | OwnedRoute::Wizard) if method != Method::POST => (Guard::Returning, session),
        // The check resolves the session itself, once it trusts the peer and
        // can read the original request (no store read for anyone else).
        Some(OwnedRoute::Login | OwnedRoute::Wizard | OwnedRoute::Logout | OwnedRoute::ForwardAuth) => {
            (Guard::Public, cookies)
        }
        Some(OwnedRoute::Home | OwnedRoute::ForgotPassword) => {
            (Guard::Public, Reads { session: false, cookies: false })
        }
    }
}

/// The live session of a returning user's login or wizard page, for
/// `owned/returning.rs` (crate-private: it holds the portal token; taken
/// out before anything reaches the site).
#[derive(Clone)]
pub(crate) struct LiveSession(pub(crate) Box<Session>);

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
        // Our cookies out of the request (the site never sees them).
        let carried = match self.gate.sessions.cookies().take(req.headers_mut()) {
            Ok(carried) => carried,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                let answer = respond::refused(StatusCode::BAD_REQUEST, "bad_request", "malformed Cookie header\n");
                return ResponseFuture::ready(answer);
            }
        };
        let Some(target) = req.extensions().get::<Target>() else { return ResponseFuture::inner(self.inner.call(req)) };
        let client = self.gate.rule_client(target.rule(), req.headers(), req.extensions());
        let owned = target.owned;
        let reads = needs(target, req.method(), client).1;
        if reads.cookies {
            // Always set: an outer layer's value never stands in for ours.
            req.extensions_mut().insert(carried.clone());
        }
        let Some(target) = req.extensions().get::<Target>() else { return ResponseFuture::inner(self.inner.call(req)) };
        let guard = needs(target, req.method(), client).0;
        if !reads.session || !carried.has_session() {
            // Nothing to look up: decided now.
            let verdict = decide(guard, &Resolved::Anonymous);
            if let Some(answer) = answer(&self.gate, &target.site, &req, verdict) {
                return ResponseFuture::ready(answer);
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
            let (guard, _) = needs(&target, req.method(), client);
            if let Some(answer) = answer(&gate, site, &req, decide(guard, &resolved)) {
                return Ok(answer.map(http_body_util::Either::Right));
            }
            if let Resolved::Live(session) = resolved {
                if let Some(token) = crate::refresh::access_token(site, &session) {
                    req.extensions_mut().insert(token);
                }
                if matches!(owned, Some(OwnedRoute::Login | OwnedRoute::Wizard)) {
                    req.extensions_mut().insert(LiveSession(session.clone()));
                }
                req.extensions_mut().insert(SignedIn::from(*session));
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
