//! The gateway: the core's layers for one configuration, in request order —
//!
//! 1. [`SiteRouter`]: the authority, the site, the
//!    owned route or protected path at the canonical path (400 / 421);
//! 2. [`Access`]: one session lookup, `SignedIn`, and
//!    the decision for protected paths;
//! 3. [`Routes`]: the routes the site owns (login,
//!    wizard, returning users, home, logout, forgot-password, callback);
//!
//! then the inner service (the proxy, or an app) for everything else, with
//! [`IdentityLayer`](crate::identity::IdentityLayer) in front of it writing
//! the identity headers.

use std::sync::Arc;

use tower::Layer;

use crate::access::{Access, AccessLayer};
use crate::config::Config;
use crate::ratelimit::{MemoryLimiter, RateLimiter};
use crate::router::{SiteRouter, SiteRouterLayer};
use crate::routes::{Routes, RoutesLayer};
use crate::session::SessionStore;
use crate::state::Shared;

/// The core's layers around a service `S`.
pub type GatewayService<S> = SiteRouter<Access<Routes<S>>>;

/// Builds [`GatewayService`]s around an inner service (the proxy, or an app).
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
    /// sessions in `store` and counting brute-force attempts in memory.
    pub fn new(config: Arc<Config>, store: Arc<dyn SessionStore>) -> Self {
        let limiter = Arc::new(MemoryLimiter::new(&config.limits));
        Self::with_limiter(config, store, limiter)
    }

    /// As [`new`](Self::new), with the brute-force limits kept by `limiter`
    /// (the Redis store's, so replicas count together).
    pub fn with_limiter(config: Arc<Config>, store: Arc<dyn SessionStore>, limiter: Arc<dyn RateLimiter>) -> Self {
        Self { shared: Arc::new(Shared::new(config, store, limiter)) }
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
    type Service = GatewayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let routes = RoutesLayer::new(self.shared.clone()).layer(inner);
        let access = AccessLayer::new(self.shared.clone()).layer(routes);
        SiteRouterLayer::new(self.shared.config.clone()).layer(access)
    }
}
