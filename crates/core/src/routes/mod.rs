//! The routes a site owns (spec section 2), each in its own module, each a
//! decision: the request to pass on to the site, or Ferrygate's own answer.
//!
//! | route | module |
//! |---|---|
//! | `login.path` / `wizard.path`, POST | `routes/login.rs` |
//! | `login.path` / `wizard.path`, GET with a live session | `routes/returning.rs` |
//! | `home.paths`, `logout.paths` | `routes/home.rs` |
//! | `forgot_password.path`, POST | `routes/forgot_password.rs` |
//! | `callback.path` | `routes/callback.rs` |
//! | `forward_auth.path` (a proxy in front asking) | `routes/forward_auth.rs` |
//!
//! Everything else, and what a route passes on, goes to the inner service
//! without Ferrygate's cookies (the `Routed` extension names the site and its
//! upstream). An owned
//! route's answer is a response, never an `Err` (hyper would close the
//! connection).

mod callback;
mod forgot_password;
pub mod form;
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

use crate::access::Current;
use crate::error::BoxError;
use crate::future::{GatewayResponse, ResponseFuture, SiteAnswer};
use crate::router::Routed;
use crate::site::OwnedRoute;
use crate::state::{finish, Shared};

/// What a route decided.
pub(crate) enum Decision<B> {
    /// Pass the request on to the site, adding these `Set-Cookie`s to its answer.
    Pass(Request<B>, Vec<HeaderValue>),
    /// Ferrygate's own answer.
    Answer(Response<Full<Bytes>>),
}

/// Adds [`Routes`] around a service.
#[derive(Clone)]
pub struct RoutesLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RoutesLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutesLayer").finish_non_exhaustive()
    }
}

impl RoutesLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for RoutesLayer {
    type Service = Routes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Routes { inner, shared: self.shared.clone() }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct Routes<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl<S, B, R> Service<Request<B>> for Routes<S>
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
        let Some(routed) = req.extensions().get::<Routed>() else {
            return ResponseFuture::inner(SiteAnswer::new(self.inner.call(req)));
        };
        // The fast path: not a route of ours.
        let Some(route) = routed.route else { return pass(&self.shared, &mut self.inner, req) };
        let site = routed.site.clone();
        let method = req.method();
        // Other answers with nothing to wait for.
        match Some(route) {
            Some(OwnedRoute::Home) => {
                let answer = home::home(&self.shared, &site, &req);
                let hsts = self.shared.hsts(req.headers(), req.extensions());
                return ResponseFuture::ready(finish(&site, OwnedRoute::Home.into(), hsts, answer));
            }
            Some(OwnedRoute::Login | OwnedRoute::Wizard)
                if method != Method::POST && req.extensions().get::<Current>().is_none() =>
            {
                return pass(&self.shared, &mut self.inner, req)
            }
            Some(OwnedRoute::ForgotPassword) if method != Method::POST => {
                return pass(&self.shared, &mut self.inner, req)
            }
            _ => {}
        }
        let shared = self.shared.clone();
        // Take the inner service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::boxed(Box::pin(async move {
            let hsts = shared.hsts(req.headers(), req.extensions());
            let decision = match (route, req.method() == Method::POST) {
                (OwnedRoute::Login | OwnedRoute::Wizard, true) => {
                    Decision::Answer(login::handle(shared.clone(), site.clone(), req, route).await)
                }
                (OwnedRoute::ForgotPassword, true) => {
                    Decision::Answer(forgot_password::handle(shared.clone(), site.clone(), req).await)
                }
                (OwnedRoute::Logout, _) => Decision::Answer(home::logout(&shared, &site, req).await),
                (OwnedRoute::Callback, _) => callback::check(&shared, &site, req).await,
                (OwnedRoute::ForwardAuth, _) => Decision::Answer(forward_auth::check(&shared, &site, req).await),
                (OwnedRoute::Login | OwnedRoute::Wizard, false) => returning::resume(&shared, &site, route, req),
                _ => Decision::Pass(req, Vec::new()),
            };
            match decision {
                Decision::Answer(answer) => Ok(finish(&site, route.into(), hsts, answer).map(Either::Right)),
                Decision::Pass(req, cookies) => {
                    let mut res = pass(&shared, &mut inner, req).await?;
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
/// in [`Routed`]) without Ferrygate's own cookies: the site never sees a
/// session id or a state.
fn pass<S, B, R>(
    shared: &Shared,
    inner: &mut S,
    mut req: Request<B>,
) -> ResponseFuture<SiteAnswer<S::Future>, R, S::Error>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    shared.sessions.strip_cookies(req.headers_mut());
    ResponseFuture::inner(SiteAnswer::new(inner.call(req)))
}
