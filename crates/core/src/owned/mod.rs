//! The routes a site owns (spec section 2), each in its own module, each a
//! decision: the request to pass on to the site, or Ferrygate's own answer.
//!
//! | route | module |
//! |---|---|
//! | `login.path` / `wizard.path`, POST | `owned/login.rs` |
//! | `login.path` / `wizard.path`, GET with a live session | `owned/returning.rs` |
//! | `home.paths`, `logout.paths` | `owned/home.rs` |
//! | `forgot_password.path`, POST | `owned/forgot_password.rs` |
//! | `callback.path` | `owned/callback.rs` |
//! | `forward_auth.path` (a proxy in front asking) | `owned/forward_auth.rs` |
//!
//! Everything else, and what a route passes on, goes to the inner service
//! (the [`Target`] extension names the site and its upstream); the session
//! layer has already taken Ferrygate's cookies out. An owned route's answer
//! is a response, never an `Err` (hyper would close the connection).

mod callback;
mod forgot_password;
pub(crate) mod form;
mod forward_auth;
mod home;
pub(crate) mod login;
mod returning;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::access::LiveSession;
use crate::error::BoxError;
use crate::future::{GatewayResponse, ResponseFuture, SiteAnswer};
use crate::gate::{finish, Gate};
use crate::router::Target;
use crate::session::Carried;
use crate::site::OwnedRoute;

/// What a route decided.
pub(crate) enum Decision<B> {
    /// Pass the request on to the site, adding these `Set-Cookie`s to its answer.
    Pass(Request<B>, Vec<HeaderValue>),
    /// Ferrygate's own answer.
    Answer(Response<Full<Bytes>>),
}

/// Adds [`OwnedRoutes`] around a service.
#[derive(Clone)]
pub(crate) struct OwnedRoutesLayer {
    gate: Arc<Gate>,
}

impl std::fmt::Debug for OwnedRoutesLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedRoutesLayer").finish_non_exhaustive()
    }
}

impl OwnedRoutesLayer {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for OwnedRoutesLayer {
    type Service = OwnedRoutes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OwnedRoutes { inner, gate: self.gate.clone() }
    }
}

/// The routes a site owns (login, wizard, returning users, home, logout,
/// forgot-password, callback, forward-auth); everything else goes on.
#[derive(Clone)]
pub struct OwnedRoutes<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> std::fmt::Debug for OwnedRoutes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedRoutes").finish_non_exhaustive()
    }
}

impl<S, B, R> Service<Request<B>> for OwnedRoutes<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = GatewayResponse<R>;
    type Error = S::Error;
    type Future = ResponseFuture<SiteAnswer<S::Future>, R, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The fast path: not a route of ours.
        // (The site's `Arc` is cloned only for a route of ours.)
        let Some((site, route)) =
            req.extensions().get::<Target>().and_then(|t| Some((t.owned?, t))).map(|(r, t)| (t.site.clone(), r))
        else {
            return ResponseFuture::inner(SiteAnswer::new(self.inner.call(req)));
        };
        let post = req.method() == Method::POST;
        let returning = || req.extensions().get::<LiveSession>().is_some();
        // Answers with nothing to wait for, and the pages the site serves itself.
        match (route, post) {
            (OwnedRoute::Home, _) => {
                let answer = home::home(&self.gate, &site, &req);
                let hsts = self.gate.hsts(req.headers(), req.extensions());
                return ResponseFuture::ready(finish(&site, route.into(), hsts, answer));
            }
            (OwnedRoute::Login | OwnedRoute::Wizard, false) if !returning() => return pass(&mut self.inner, req),
            (OwnedRoute::ForgotPassword, false) => return pass(&mut self.inner, req),
            (OwnedRoute::Login | OwnedRoute::Wizard | OwnedRoute::ForgotPassword, _)
            | (OwnedRoute::Logout | OwnedRoute::Callback | OwnedRoute::ForwardAuth, _) => {}
        }
        let gate = self.gate.clone();
        // Take the inner service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::boxed(Box::pin(async move {
            let hsts = gate.hsts(req.headers(), req.extensions());
            let decision = match (route, post) {
                (OwnedRoute::Login | OwnedRoute::Wizard, true) => {
                    Decision::Answer(login::handle(gate.clone(), site.clone(), req, route).await)
                }
                (OwnedRoute::Login | OwnedRoute::Wizard, false) => returning::resume(&gate, &site, route, req),
                (OwnedRoute::ForgotPassword, _) => {
                    Decision::Answer(forgot_password::handle(gate.clone(), site.clone(), req).await)
                }
                (OwnedRoute::Logout, _) => Decision::Answer(home::logout(&gate, &site, req).await),
                (OwnedRoute::Callback, _) => callback::check(&gate, &site, req).await,
                (OwnedRoute::ForwardAuth, _) => Decision::Answer(forward_auth::check(&gate, &site, req).await),
                (OwnedRoute::Home, _) => Decision::Answer(home::home(&gate, &site, &req)),
            };
            match decision {
                Decision::Answer(answer) => Ok(finish(&site, route.into(), hsts, answer).map(Either::Right)),
                Decision::Pass(req, cookies) => {
                    let mut res = pass(&mut inner, req).await?;
                    for cookie in cookies {
                        res.headers_mut().append(header::SET_COOKIE, cookie);
                    }
                    Ok(res)
                }
            }
        }))
    }
}

/// Hands the request to the inner service (which finds the site's upstream
/// in [`Target`]), without what the session layer left for the owned routes:
/// our cookies' values and a returning user's session (its tokens) never
/// reach the site or an embedding app.
fn pass<S, B, R>(inner: &mut S, mut req: Request<B>) -> ResponseFuture<SiteAnswer<S::Future>, R, S::Error>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    let ext = req.extensions_mut();
    ext.remove::<Carried>();
    ext.remove::<LiveSession>();
    ResponseFuture::inner(SiteAnswer::new(inner.call(req)))
}
