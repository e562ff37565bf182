//! The session layer: one store lookup per request that needs one, and the
//! access decision for protected paths.
//!
//! A request with our session cookie that will reach the site (or may be a
//! returning user's login page) has its session looked up once, for its
//! site only (a session belongs to the site it was created on). A live one
//! becomes the [`SignedIn`] extension, from which the identity layer writes
//! the identity headers. A protected path without a live session is
//! answered here with a redirect to the site's login page, and is never
//! served unverified: a store that cannot answer is a 503. A path under an
//! authorization rule (`[[sites.authorize]]`, the longest matching path)
//! is protected too, and a signed-in user in none of the rule's groups gets
//! 403 `forbidden`: [`decide`] is that one decision.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::{Layer, Service};

use crate::error::LoginError;
use crate::future::{GatewayResponse, ResponseFuture};
use crate::identity::SignedIn;
use crate::respond::{self, AnswerMode};
use crate::router::Routed;
use crate::session::Session;
use crate::site::{AuthorizeRule, OwnedRoute, Site};
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
        // The forward-auth check looks the session up itself, for the original path.
        Some(OwnedRoute::Home | OwnedRoute::Logout | OwnedRoute::ForgotPassword | OwnedRoute::ForwardAuth) => false,
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
        let Some(Routed { site, route, protected, rule }) = req.extensions().get::<Routed>() else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let (route, protected, rule) = (*route, *protected, *rule);
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
            match shared.session(req.headers(), &site.name).await {
                Ok(found) => {
                    let rule = rule.and_then(|i| site.authorize.get(i));
                    match decide(protected, rule, found.as_ref().map(|(_, s)| s)) {
                        Verdict::SignIn => return own(&req, to_login(&site, &req)),
                        Verdict::Forbidden => {
                            let mode = AnswerMode::of(req.headers());
                            return own(&req, respond::login_failure(LoginError::Forbidden, mode, "/"));
                        }
                        Verdict::Allow => {}
                    }
                    if let Some((_, session)) = found {
                        if matches!(route, Some(OwnedRoute::Login | OwnedRoute::Wizard)) {
                            req.extensions_mut().insert(Current(session.clone()));
                        }
                        if let Some(token) = crate::refresh::access_token(&site, &session) {
                            req.extensions_mut().insert(token);
                        }
                        req.extensions_mut().insert(SignedIn::from(session));
                    }
                }
                Err(e) => {
                    tracing::warn!(site = %site.name, error = %e, "session lookup failed");
                    // A store that cannot answer is never read as "no session" where
                    // that matters: a protected page is not served unverified (nor
                    // sent to sign in again), and a signed-in user's login page is
                    // not answered with the form. Public pages go on without identity.
                    let returning = matches!(route, Some(OwnedRoute::Login | OwnedRoute::Wizard));
                    if protected || returning {
                        let answer = respond::store_unavailable();
                        return own(&req, answer);
                    }
                }
            }
            inner.call(req).await
        }))
    }
}

/// Whether a request may reach a path: the one access decision, shared by
/// the session layer and forward authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass (with the user's identity, if signed in).
    Allow,
    /// A protected path without a live session: sign in first.
    SignIn,
    /// Signed in, but the path's authorization rule admits none of the user's groups.
    Forbidden,
}

/// The decision for a path that is `protected` (by `protected_paths` or a
/// rule) and falls under `rule`, for the request's live `session` of this site.
pub fn decide(protected: bool, rule: Option<&AuthorizeRule>, session: Option<&Session>) -> Verdict {
    match (session, rule) {
        (None, _) if protected || rule.is_some() => Verdict::SignIn,
        (Some(s), Some(rule)) if !rule.admits(&s.groups) => Verdict::Forbidden,
        _ => Verdict::Allow,
    }
}

/// `login.path?destination=<the request's path and query>`.
fn to_login<B>(site: &Site, req: &Request<B>) -> Response<http_body_util::Full<bytes::Bytes>> {
    let wanted = req.uri().path_and_query().map_or("/", |p| p.as_str());
    respond::see_other(&site.login_target(wanted), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(groups: &[&str]) -> Session {
        Session {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Session::for_test("u", std::time::Duration::from_secs(3600))
        }
    }

    #[test]
    fn one_decision_for_sessions_protected_paths_and_rules() {
        let admins = AuthorizeRule { path: "/admin".into(), groups: vec!["admins".into(), "root".into()] };
        assert_eq!(decide(false, None, None), Verdict::Allow);
        assert_eq!(decide(true, None, None), Verdict::SignIn);
        assert_eq!(decide(true, Some(&admins), None), Verdict::SignIn);
        assert_eq!(decide(true, None, Some(&session(&[]))), Verdict::Allow);
        assert_eq!(decide(true, Some(&admins), Some(&session(&["staff"]))), Verdict::Forbidden);
        assert_eq!(decide(true, Some(&admins), Some(&session(&[]))), Verdict::Forbidden);
        assert_eq!(decide(true, Some(&admins), Some(&session(&["staff", "root"]))), Verdict::Allow);
    }
}
