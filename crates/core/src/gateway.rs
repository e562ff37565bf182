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
//! the identity headers. `gate.rs` holds what the layers share.
//!
//! [`Target`]: crate::router::Target

use std::sync::Arc;

use tower::Layer;

use crate::access::{Access, AccessLayer};
use crate::config::Config;
use crate::gate::Gate;
use crate::owned::{OwnedRoutes, OwnedRoutesLayer};
use crate::ratelimit::{MemoryLimiter, RateLimiter};
use crate::router::{SiteRouter, SiteRouterLayer};
use crate::session::SessionStore;

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
