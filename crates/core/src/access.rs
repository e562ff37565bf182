//! The session layer: one store lookup per request that needs one, and the
//! access decision for protected paths.
//!
//! A request with our session cookie that will reach the site (or may be a
//! returning user's login page) has its session looked up once, for its
//! site only (a session belongs to the site it was created on). A live one
//! becomes the [`SignedIn`] extension, from which the identity layer writes
//! the identity headers. A protected path without a live session is
//! answered here with a redirect to the site's login page, and is never
//! served unverified: a store that cannot answer is a 503.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::future::{GatewayResponse, ResponseFuture};
use crate::identity::SignedIn;
use crate::respond;
use crate::router::Routed;
use crate::session::Session;
use crate::site::{OwnedRoute, Site};
use crate::state::{finish, Shared};
use crate::telemetry::Route;

/// The live session of a returning user's login or wizard page (crate-private:
/// it holds the portal token).
#[derive(Clone)]
pub(crate) struct Current(pub(crate) Session);

/// Adds [`Access`] around a service.
#[derive(Clone)]
pub struct AccessLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AccessLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLayer").finish_non_exhaustive()
    }
}

impl AccessLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Access { inner, shared: self.shared.clone() }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct Access<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Access<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

/// Whether a request on `route` needs the session itself (not just its id).
fn needs_session(route: Option<OwnedRoute>, method: &Method) -> bool {
    match route {
        // Proxied to the site: with identity when signed in.
        None | Some(OwnedRoute::Callback) => true,
        // A returning user's login or wizard page.
        Some(OwnedRoute::Login | OwnedRoute::Wizard) => method != Method::POST,
        Some(OwnedRoute::Home | OwnedRoute::Logout | OwnedRoute::ForgotPassword) => false,
    }
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
        let Some(Routed { site, route, protected }) = req.extensions().get::<Routed>() else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let (route, protected) = (*route, *protected);
        let with_cookie = self.shared.sessions.has_cookie(req.headers());
        if !with_cookie || !needs_session(route, req.method()) {
            if protected {
                // No cookie, no session: nothing to look up.
                let hsts = self.shared.hsts(req.headers(), req.extensions());
                return ResponseFuture::ready(finish(site, Route::Protected, hsts, to_login(site, &req)));
            }
            return ResponseFuture::inner(self.inner.call(req));
        }
        let site = site.clone();
        let shared = self.shared.clone();
        // Take the inner service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::boxed(Box::pin(async move {
            let own = |req: &Request<B>, response| {
                let hsts = shared.hsts(req.headers(), req.extensions());
                Ok(finish(&site, Route::Protected, hsts, response).map(http_body_util::Either::Right))
            };
            match shared.sessions.lookup(req.headers(), &site.name).await {
                Ok(Some((_, session))) => {
                    if matches!(route, Some(OwnedRoute::Login | OwnedRoute::Wizard)) {
                        req.extensions_mut().insert(Current(session.clone()));
                    }
                    req.extensions_mut().insert(SignedIn::from(session));
                }
                Ok(None) if protected => return own(&req, to_login(&site, &req)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(site = %site.name, error = %e, "session lookup failed");
                    if protected {
                        // Fail closed: a protected page is never served unverified.
                        let answer = respond::text(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable\n");
                        return own(&req, answer);
                    }
                }
            }
            inner.call(req).await
        }))
    }
}

/// `login.path?destination=<the request's path and query>`.
fn to_login<B>(site: &Site, req: &Request<B>) -> Response<http_body_util::Full<bytes::Bytes>> {
    let wanted = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let encoded: String = form_urlencoded::byte_serialize(wanted.as_bytes()).collect();
    respond::see_other(&format!("{}?destination={encoded}", site.login.path), &[])
}
