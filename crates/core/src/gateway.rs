//! The gateway layer: picks the site by Host, answers the routes the site owns
//! (login, wizard, home, logout) and passes everything else to the inner
//! service untouched, tagged with the site's [`Upstream`](crate::config::Upstream).
//!
//! Owned routes resolve to a response, never an `Err` (hyper would close the
//! connection); the pass-through path is one Host lookup and one hash lookup.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::audit::AccountHasher;
use crate::config::{Config, OwnedRoute, Site};
use crate::csrf;
use crate::error::LoginError;
use crate::provider::{BoxFuture, Providers};
use crate::respond::{self, AnswerMode};

/// A boxed error, as bodies and services report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) providers: Providers,
    pub(crate) accounts: AccountHasher,
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
    /// A layer for `config`, with one provider per name in `config.providers`
    /// that a site uses.
    pub fn new(config: Arc<Config>, providers: Providers) -> Result<Self, String> {
        for site in &config.sites {
            if !providers.contains_key(&site.provider) {
                return Err(format!(
                    "site {:?} uses provider {:?} ({}), which this build cannot run (feature disabled?)",
                    site.name,
                    site.provider,
                    site.provider_kind.as_str()
                ));
            }
        }
        let accounts = AccountHasher::new(&config.sessions.secret);
        Ok(Self { shared: Arc::new(Shared { config, providers, accounts }) })
    }

    /// The configuration this layer serves.
    pub fn config(&self) -> &Arc<Config> {
        &self.shared.config
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

/// The request's authority: `Host`, or the URI's (HTTP/2).
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()))
}

impl<S, B, ResBody> Service<Request<B>> for Gateway<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(site) = self.shared.config.site_for_host(request_host(&req)) else {
            return ResponseFuture::ready(respond::text(
                StatusCode::MISDIRECTED_REQUEST,
                "no site is configured for this host\n",
            ));
        };
        let Some(route) = site.route(req.uri().path()) else {
            return self.pass(site.clone(), req);
        };
        match (route, req.method()) {
            (OwnedRoute::Login | OwnedRoute::Wizard, &Method::POST) => {
                let fut = crate::login::handle(self.shared.clone(), site.clone(), req, route);
                ResponseFuture::owned(Box::pin(fut))
            }
            (OwnedRoute::Home, _) => {
                let target = site.home.as_ref().map_or("/", |h| h.redirect.as_str());
                ResponseFuture::ready(respond::see_other(target, &[]))
            }
            (OwnedRoute::Logout, method) => {
                if method == Method::POST && !csrf::origin_allowed(req.headers(), request_host(&req), site) {
                    let mode = AnswerMode::of(req.headers());
                    return ResponseFuture::ready(respond::login_failure(LoginError::OriginRejected, mode, "/"));
                }
                ResponseFuture::ready(self.logout(site))
            }
            _ => self.pass(site.clone(), req),
        }
    }
}

impl<S> Gateway<S> {
    fn pass<B, ResBody>(&mut self, site: Arc<Site>, mut req: Request<B>) -> ResponseFuture<S::Future>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
    {
        req.extensions_mut().insert(site.upstream.clone());
        ResponseFuture::inner(self.inner.call(req))
    }

    fn logout(&self, site: &Site) -> Response<Full<Bytes>> {
        let target = site.logout.as_ref().map_or("/", |l| l.redirect.as_str());
        respond::see_other(target, &[expired_session_cookie(&self.shared.config)])
    }
}

/// A `Set-Cookie` that removes the session cookie.
fn expired_session_cookie(config: &Config) -> HeaderValue {
    let s = &config.sessions;
    let secure = if s.cookie_secure { "; Secure" } else { "" };
    let cookie = format!(
        "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; SameSite=Lax{secure}",
        s.cookie_name
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| unreachable!("cookie names are checked at load"))
}

pin_project_lite::pin_project! {
    /// The response future of [`Gateway`]: the inner service's, or our own answer.
    #[project = Proj]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] fut: F },
        Owned { fut: BoxFuture<'static, Response<Full<Bytes>>> },
        Ready { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(fut: F) -> Self {
        Self { kind: Kind::Inner { fut } }
    }
    fn owned(fut: BoxFuture<'static, Response<Full<Bytes>>>) -> Self {
        Self { kind: Kind::Owned { fut } }
    }
    fn ready(response: Response<Full<Bytes>>) -> Self {
        Self { kind: Kind::Ready { response: Some(response) } }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => Poll::Ready(ready!(fut.poll(cx)).map(|r| r.map(Either::Left))),
            KindProj::Owned { fut } => Poll::Ready(Ok(ready!(fut.as_mut().poll(cx)).map(Either::Right))),
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion").map(Either::Right)))
            }
        }
    }
}
