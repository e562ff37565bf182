//! Ferrygate: a login gateway for hosted portals' "external authentication".
//!
//! This facade re-exports the focused crates and adds the entry points a Rust
//! service needs: [`Gateway::from_config`] and [`Gateway::layer`], usable in a
//! `tower::ServiceBuilder` or an axum `Router::layer` (see `examples/axum.rs`).
//! Requests that are not Ferrygate's own routes reach the inner service
//! untouched; a signed-in user is the [`core::SignedIn`] request extension.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let config = r#"
//!     [sessions]
//!     secret = "0123456789abcdef0123456789abcdef"
//!     [providers.portal]
//!     kind = "qwyk"
//!     server = "https://api.qwyk.example"
//!     organization_id = 12
//!     site_id = 34
//!     [[sites]]
//!     name = "shop"
//!     upstream = "http://127.0.0.1:3000"
//!     provider = "portal"
//!     [sites.login]
//!     path = "/login"
//!     [sites.portal]
//!     url = "https://portal.example/auth/external"
//!     [sites.home]
//!     paths = ["/portal-home"]
//!     redirect = "https://shop.example/"
//! "#;
//! let loaded = ferrygate::Config::from_toml(config, ".".as_ref())?;
//! let gateway = ferrygate::Gateway::from_config(loaded.config).await?;
//!
//! let app = ServiceBuilder::new().layer(gateway.layer()).service(tower::service_fn(
//!     |_req: http::Request<String>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("the app"))) },
//! ));
//! // Ferrygate's own route: answered by the layer.
//! let res = app.clone().oneshot(http::Request::get("/portal-home").body(String::new())?).await?;
//! assert_eq!(res.status(), 303);
//! assert_eq!(res.headers()["location"], "https://shop.example/");
//! // Anything else: the app.
//! let res = app.oneshot(http::Request::get("/products").body(String::new())?).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

use std::sync::Arc;

pub use ferrygate_core as core;
pub use ferrygate_core::{Config, ConfigError, ConfigErrors, GatewayLayer, IdentityLayer, Loaded, Provider, Providers};
#[cfg(feature = "payway")]
pub use ferrygate_provider_payway as payway;
#[cfg(feature = "qwyk")]
pub use ferrygate_provider_qwyk as qwyk;
#[cfg(feature = "rest")]
pub use ferrygate_provider_rest as rest;
#[cfg(feature = "redis")]
pub use ferrygate_store_redis as store_redis;
#[cfg(feature = "server")]
pub use {ferrygate_demo as demo, ferrygate_proxy as proxy, ferrygate_server as server};

use ferrygate_core::config::{ProviderConfig, StoreKind};
use ferrygate_core::{ExposeSecret, HttpClient, MemoryLimiter, MemoryStore, RateLimiter, SessionStore};

/// The layers a Rust service wraps around itself: login routes, then identity.
pub type Layer = tower::layer::util::Stack<IdentityLayer, GatewayLayer>;

/// Builds one provider per `[providers]` entry this build supports (the
/// `qwyk`, `payway` and `rest` features); a site whose provider is missing is
/// refused by [`GatewayLayer::new`].
pub fn build_providers(config: &Config) -> Result<Providers, String> {
    let client = HttpClient::new(config.upstream_tls.ca_file.as_deref())?;
    let mut providers = Providers::new();
    for (name, provider) in &config.providers {
        let built: Option<Arc<dyn Provider>> = match provider {
            #[cfg(feature = "qwyk")]
            ProviderConfig::Qwyk(q) => Some(Arc::new(qwyk::Qwyk::new(q, client.clone()))),
            #[cfg(feature = "payway")]
            ProviderConfig::Payway(p) => Some(Arc::new(payway::Payway::new(name, p, client.clone()))),
            #[cfg(feature = "rest")]
            ProviderConfig::Rest(r) => Some(Arc::new(rest::Rest::new(name, r, client.clone())?)),
            // Reached only when a provider's feature is off; GatewayLayer::new names the gap.
            #[allow(unreachable_patterns)]
            _ => None,
        };
        if let Some(p) = built {
            providers.insert(name.clone(), p);
        }
    }
    Ok(providers)
}

/// Where sessions live and where brute-force attempts are counted.
pub type Backends = (Arc<dyn SessionStore>, Arc<dyn RateLimiter>);

/// The session store `sessions.store` names, and where the brute-force limits
/// are counted: in memory per replica, or in Redis shared by all.
pub fn build_store(config: &Config) -> Result<Backends, String> {
    let sessions = &config.sessions;
    match sessions.store {
        StoreKind::Memory => {
            Ok((Arc::new(MemoryStore::new(sessions.max_entries)), Arc::new(MemoryLimiter::new(&config.limits))))
        }
        #[cfg(feature = "redis")]
        StoreKind::Redis => {
            let url = sessions.redis_url.as_ref().ok_or("sessions.redis_url: required for the redis store")?;
            let redis = Arc::new(ferrygate_store_redis::RedisStore::new(url)?.with_limits(&config.limits));
            Ok((redis.clone(), redis))
        }
        #[cfg(not(feature = "redis"))]
        StoreKind::Redis => Err("sessions.store = \"redis\" needs the `redis` feature".to_owned()),
    }
}

/// A configured gateway, ready to wrap services: the providers, the session
/// store and the limiter its configuration names.
#[derive(Debug, Clone)]
pub struct Gateway {
    layer: GatewayLayer,
}

impl Gateway {
    /// Builds the providers and the layers for `config`.
    pub async fn from_config(config: Config) -> Result<Self, String> {
        let config = Arc::new(config);
        let providers = build_providers(&config)?;
        let (store, limiter) = build_store(&config)?;
        Ok(Self { layer: GatewayLayer::with_limiter(config, providers, store, limiter)? })
    }

    /// The Tower layer: owned login routes, then identity-header hygiene.
    pub fn layer(&self) -> Layer {
        tower::layer::util::Stack::new(IdentityLayer, self.layer.clone())
    }

    /// The configuration in use.
    pub fn config(&self) -> &Arc<Config> {
        self.layer.config()
    }

    /// A gateway for a reloaded `config` that keeps this one's session store and
    /// limiter (so sessions survive the reload) unless `[sessions]` now names a
    /// different store.
    pub async fn reload(&self, config: Config) -> Result<Self, String> {
        let config = Arc::new(config);
        let providers = build_providers(&config)?;
        let (old, new) = (&self.config().sessions, &config.sessions);
        // Compared in place: no copy of a URL that may hold a password.
        let same_store = old.store == new.store
            && old.redis_url.as_ref().map(|u| u.expose_secret()) == new.redis_url.as_ref().map(|u| u.expose_secret());
        let (store, limiter) = if same_store && self.config().limits == config.limits {
            (self.layer.store().clone(), self.layer.limiter().clone())
        } else if same_store {
            // New limits, same sessions: a fresh limiter (counts restart), the same store.
            let (_, limiter) = build_store(&config)?;
            (self.layer.store().clone(), limiter)
        } else {
            tracing::warn!("[sessions] names another store: sessions of the old one are not carried over");
            build_store(&config)?
        };
        Ok(Self { layer: GatewayLayer::with_limiter(config, providers, store, limiter)? })
    }

    /// The gateway layer alone (the server stacks identity and the proxy itself).
    pub fn gateway_layer(&self) -> &GatewayLayer {
        &self.layer
    }
}
