//! The gateway: the core's layers for one configuration, in request order —
//!
//! 1. [`SiteRouter`]: the authority, the site, the owned route or guarded
//!    path at the canonical path (400 / 421) → the [`Target`] extension;
//! 2. [`Access`]: our cookies taken out of the request in one scan, the
//!    session resolved once, and [`decide`](crate::decision::decide) for the
//!    path → `SignedIn`, or Ferrygate's answer (303 / 403 / 503);
//! 3. [`OwnedRoutes`]: the routes the site owns (login, wizard, returning
//!    users, home, logout, forgot-password, callback, forward-auth);
//!
//! then the inner service (the proxy, or an app) for everything else, with
//! [`IdentityLayer`](crate::identity::IdentityLayer) in front of it writing
//! the identity headers. [`Gate`] is what the layers share.
//!
//! [`Target`]: crate::router::Target

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Extensions, HeaderMap, HeaderValue, Response};
use http_body_util::Full;
use tower::Layer;

use crate::access::{Access, AccessLayer};
use crate::account::AccountHasher;
use crate::config::Config;
use crate::conn::{self, ClientConn};
use crate::decision::Resolved;
use crate::owned::{OwnedRoutes, OwnedRoutesLayer};
use crate::ratelimit::{MemoryLimiter, RateLimiter};
use crate::router::{SiteRouter, SiteRouterLayer};
use crate::session::{Carried, SessionManager, SessionStore};
use crate::site::Site;
use crate::telemetry::RouteLabel;

/// The core's layers around a service `S`.
pub type GatewayService<S> = SiteRouter<Access<OwnedRoutes<S>>>;

/// Builds [`GatewayService`]s around an inner service (the proxy, or an app).
#[derive(Clone)]
pub struct GatewayLayer {
    gate: Arc<Gate>,
}

impl std::fmt::Debug for GatewayLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayLayer").field("sites", &self.gate.config.sites.len()).finish_non_exhaustive()
    }
}

impl GatewayLayer {
    /// A layer for `config` (its providers built by their kinds), keeping
    /// sessions in `store` and counting brute-force attempts in memory.
    pub fn new(config: Arc<Config>, store: Arc<dyn SessionStore>) -> Self {
        let limiter = Arc::new(MemoryLimiter::new(&config.limits));
        Self::with_limiter(config, store, limiter)
    }

    /// As [`new`](Self::new), with the brute-force limits kept by `limiter`
    /// (the Redis store's, so replicas count together).
    pub fn with_limiter(config: Arc<Config>, store: Arc<dyn SessionStore>, limiter: Arc<dyn RateLimiter>) -> Self {
        Self { gate: Arc::new(Gate::new(config, store, limiter)) }
    }

    /// The configuration this layer serves.
    pub fn config(&self) -> &Arc<Config> {
        &self.gate.config
    }

    /// The session store in use (for readiness checks, and kept across reloads).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        self.gate.sessions.store()
    }

    /// The brute-force limiter in use (kept across reloads).
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.gate.limiter
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = GatewayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let owned = OwnedRoutesLayer::new(self.gate.clone()).layer(inner);
        let access = AccessLayer::new(self.gate.clone()).layer(owned);
        SiteRouterLayer::new(self.gate.config.clone()).layer(access)
    }
}

/// What the gateway's layers share for one configuration: the
/// configuration, the session manager, the brute-force limiter, the logins
/// and renewals in progress.
pub(crate) struct Gate {
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: AccountHasher,
    pub(crate) sessions: SessionManager,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    /// Accounts with a login attempt in progress.
    pub(crate) in_flight: Mutex<HashSet<String>>,
    /// Access-token renewals in progress (see [`crate::refresh`]).
    pub(crate) renewals: crate::refresh::Renewals,
    /// `Strict-Transport-Security` for our own HTTPS answers, made once (`None` when off).
    hsts: Option<HeaderValue>,
}

impl Gate {
    fn new(config: Arc<Config>, store: Arc<dyn SessionStore>, limiter: Arc<dyn RateLimiter>) -> Self {
        let accounts = AccountHasher::new(&config.sessions.secret);
        let sessions = SessionManager::new(config.sessions.cookie_settings(), store);
        let max_age = config.server.hsts_max_age;
        let hsts = (!max_age.is_zero())
            .then(|| HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())).ok())
            .flatten();
        let renewals = crate::refresh::Renewals::default();
        Self { config, accounts, sessions, limiter, in_flight: Mutex::default(), renewals, hsts }
    }

    /// The request's session on `site`, resolved once (cookie → store), its
    /// access token renewed first when due — on a task of its own, which a
    /// request that goes away cannot cancel (see [`crate::refresh`]).
    pub(crate) async fn resolve(self: &Arc<Self>, carried: &Carried, site: &str) -> Resolved {
        if !carried.has_session() {
            return Resolved::Anonymous;
        }
        match self.live_session(carried, site).await {
            Ok(Some((id, session))) => Resolved::Live(id, Box::new(session)),
            Ok(None) => Resolved::Ended,
            Err(e) => {
                tracing::warn!(site, error = %e, "session lookup failed");
                Resolved::Unavailable
            }
        }
    }

    async fn live_session(
        self: &Arc<Self>,
        carried: &Carried,
        site: &str,
    ) -> Result<Option<(crate::session::SessionId, crate::session::Session)>, crate::session::StoreError> {
        let Some((id, session)) = self.sessions.lookup(carried, site).await? else { return Ok(None) };
        if !crate::refresh::due(&session) {
            return Ok(Some((id, session)));
        }
        let (gate, task_id, site) = (self.clone(), id.clone(), site.to_owned());
        let renewal =
            tokio::spawn(
                async move { gate.renewals.renew(&gate.sessions, &gate.config.providers, &task_id, &site).await },
            );
        let renewed = renewal.await.map_err(crate::session::StoreError::new)??;
        Ok(renewed.map(|s| (id, s)))
    }

    /// The CSRF check of an owned route (see [`crate::csrf`]).
    pub(crate) fn same_origin(&self, site: &Site, uri: &http::Uri, headers: &HeaderMap, ext: &Extensions) -> bool {
        crate::csrf::same_origin(&self.config.server.trusted_proxies, site, uri, headers, ext)
    }

    /// `Strict-Transport-Security` for an answer of ours to an HTTPS request.
    pub(crate) fn hsts(&self, headers: &HeaderMap, ext: &Extensions) -> Option<HeaderValue> {
        let hsts = self.hsts.as_ref()?;
        conn::is_https(ext.get::<ClientConn>(), headers, &self.config.server.trusted_proxies).then(|| hsts.clone())
    }
}

/// Finishes an answer of Ferrygate's own: `ferrygate_requests_total` (the
/// proxy counts its own) and HSTS when the request came over HTTPS.
pub(crate) fn finish(
    site: &Site,
    label: RouteLabel,
    hsts: Option<HeaderValue>,
    mut response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    site.upstream.metrics.request(label, response.status());
    if let Some(v) = hsts {
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    response
}
