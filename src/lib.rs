//! Ferrygate: a login gateway for hosted portals' "external authentication".
//!
//! This facade re-exports the focused crates and adds the entry points a Rust
//! service needs: [`Gateway::from_config`] and [`Gateway::layer`], usable in a
//! `tower::ServiceBuilder`, and `Gateway::around` for an axum `Router` (see
//! `examples/axum.rs`).
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
//! let loaded = ferrygate::from_toml(config, ".".as_ref())?;
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

#![deny(missing_docs)]

use std::sync::Arc;

pub use ferrygate_core as core;
pub use ferrygate_core::SignedIn;
pub use ferrygate_core::{
    Config, ConfigError, ConfigErrors, GatewayLayer, GatewayService, Identity, IdentityLayer, Kinds, Loaded, Provider,
    ProviderKind,
};
/// The demo's sites and providers, in-process: a provider for your tests
/// (`demo::Demo::start_provider()`).
#[cfg(feature = "server")]
pub use ferrygate_demo as demo;
#[cfg(feature = "ldap")]
pub use ferrygate_provider_ldap as ldap;
#[cfg(feature = "oidc")]
pub use ferrygate_provider_oidc as oidc;
#[cfg(feature = "payway")]
pub use ferrygate_provider_payway as payway;
#[cfg(feature = "qwyk")]
pub use ferrygate_provider_qwyk as qwyk;
#[cfg(feature = "rest")]
pub use ferrygate_provider_rest as rest;
/// The whole gateway as a server (what `ferrygate serve` runs).
#[cfg(feature = "server")]
pub use ferrygate_server::{Reloader, Server, StartError};
#[cfg(feature = "redis")]
pub use ferrygate_store_redis as store_redis;

use ferrygate_core::config::StoreKind;
use ferrygate_core::{ExposeSecret, MemoryLimiter, MemoryStore, RateLimiter, SessionStore, SetupError};

/// The layers a Rust service wraps around itself: login routes, then identity.
pub type Layer = tower::layer::util::Stack<IdentityLayer, GatewayLayer>;

/// The provider kinds this build registers: `qwyk`, `payway`, `rest`, `oidc` and `ldap`,
/// each behind its feature. Add a kind of your own with
/// [`Kinds::with`](ferrygate_core::Kinds::with) and load the configuration
/// with [`Config::from_toml`] or [`Config::load`]:
///
/// ```
/// use std::sync::Arc;
/// use ferrygate::core::kind::{Build, SiteRules};
/// use ferrygate::core::{BoxFuture, Grant, LoginAttempt, LoginError, Provider};
///
/// /// `kind = "everyone"`: lets anybody in (a sketch; see examples/custom_provider.rs).
/// struct Everyone;
///
/// impl ferrygate::ProviderKind for Everyone {
///     fn name(&self) -> &'static str {
///         "everyone"
///     }
///     fn build(&self, table: ferrygate::core::toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
///         #[derive(serde::Deserialize)]
///         #[serde(deny_unknown_fields)]
///         struct Table {}
///         let _: Table = build.parse(table)?;
///         Some(Arc::new(Open))
///     }
/// }
///
/// struct Open;
///
/// impl Provider for Open {
///     fn authenticate<'a>(&'a self, a: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
///         Box::pin(async move { Ok(Grant::redirect(a.destination)) })
///     }
/// }
///
/// let kinds = ferrygate::kinds().with(Everyone);
/// assert_eq!(kinds.names().collect::<Vec<_>>(), ["everyone", "ldap", "oidc", "payway", "qwyk", "rest"]);
/// let text = r#"
///     [sessions]
///     secret = "0123456789abcdef0123456789abcdef"
///     [providers.open]
///     kind = "everyone"
///     [[sites]]
///     name = "app"
///     upstream = "http://127.0.0.1:3000"
///     provider = "open"
///     [sites.login]
///     path = "/login"
/// "#;
/// let loaded = ferrygate::Config::from_toml(text, ".".as_ref(), &kinds).unwrap();
/// assert_eq!(loaded.config.providers["open"].kind, "everyone");
/// // The built-in kinds alone refuse it, naming the key.
/// let refused = ferrygate::from_toml(text, ".".as_ref()).unwrap_err();
/// assert!(refused.to_string().contains("providers.open.kind"));
/// ```
pub fn kinds() -> Kinds {
    let kinds = Kinds::new();
    #[cfg(feature = "qwyk")]
    let kinds = kinds.with(qwyk::QwykKind);
    #[cfg(feature = "payway")]
    let kinds = kinds.with(payway::PaywayKind);
    #[cfg(feature = "rest")]
    let kinds = kinds.with(rest::RestKind);
    #[cfg(feature = "oidc")]
    let kinds = kinds.with(oidc::OidcKind);
    #[cfg(feature = "ldap")]
    let kinds = kinds.with(ldap::LdapKind);
    kinds
}

/// Parses and validates TOML text with the built-in [`kinds`]; relative
/// paths are relative to `base_dir`.
pub fn from_toml(text: &str, base_dir: &std::path::Path) -> Result<Loaded, ConfigErrors> {
    Config::from_toml(text, base_dir, &kinds())
}

/// Reads and validates the file at `path` with the built-in [`kinds`].
pub fn load(path: &std::path::Path) -> Result<Loaded, ConfigErrors> {
    Config::load(path, &kinds())
}

/// Where sessions live and where brute-force attempts are counted.
pub type Backends = (Arc<dyn SessionStore>, Arc<dyn RateLimiter>);

/// The session store `sessions.store` names, and where the brute-force limits
/// are counted: in memory per replica, or in Redis shared by all.
pub fn build_store(config: &Config) -> Result<Backends, SetupError> {
    let sessions = &config.sessions;
    match sessions.store {
        StoreKind::Memory => {
            Ok((Arc::new(MemoryStore::new(sessions.max_entries)), Arc::new(MemoryLimiter::new(&config.limits))))
        }
        #[cfg(feature = "redis")]
        StoreKind::Redis => {
            use ferrygate_store_redis::Target;
            let password = sessions.redis_password.as_ref();
            let target = match (&sessions.redis_url, &sessions.redis_sentinel) {
                (Some(url), _) => Target::Single(url),
                (None, Some(s)) => Target::Sentinel { master: &s.master, nodes: &s.nodes, password },
                (None, None) if !sessions.redis_cluster.is_empty() => {
                    Target::Cluster { nodes: &sessions.redis_cluster, password }
                }
                (None, None) => return Err(SetupError::new("sessions.redis_url", "required for the redis store")),
            };
            let redis = Arc::new(ferrygate_store_redis::RedisStore::with_target(target)?.with_limits(&config.limits));
            Ok((redis.clone(), redis))
        }
        #[cfg(not(feature = "redis"))]
        StoreKind::Redis => Err(SetupError::new("sessions.store", "\"redis\" needs the `redis` feature")),
    }
}

/// A configured gateway, ready to wrap services: the providers, the session
/// store and the limiter its configuration names.
#[derive(Debug, Clone)]
pub struct Gateway {
    layer: GatewayLayer,
}

impl Gateway {
    /// The layers for `config` (its providers already built by their kinds),
    /// with the session store and limiter it names.
    pub async fn from_config(config: Config) -> Result<Self, SetupError> {
        let config = Arc::new(config);
        let (store, limiter) = build_store(&config)?;
        Ok(Self { layer: GatewayLayer::with_limiter(config, store, limiter) })
    }

    /// The Tower layer: the site router, sessions and protected paths, the
    /// routes Ferrygate owns, then identity-header hygiene; everything else
    /// reaches the wrapped service with the signed-in user as the
    /// [`SignedIn`] extension. In an axum handler (feature `axum`, on by
    /// default) `SignedIn` is an extractor:
    ///
    /// ```
    /// use axum::routing::get;
    /// use ferrygate::SignedIn;
    ///
    /// async fn account(user: SignedIn) -> String {
    ///     format!("Hello, {}", user.user)
    /// }
    ///
    /// async fn home(user: Option<SignedIn>) -> &'static str {
    ///     if user.is_some() { "welcome back" } else { "welcome" }
    /// }
    ///
    /// # async fn run(gateway: ferrygate::Gateway) {
    /// let routes = axum::Router::new().route("/account", get(account)).route("/", get(home));
    /// let app: axum::Router = gateway.around(routes);
    /// # }
    /// ```
    ///
    /// For an axum `Router` prefer [`around`](Self::around) to
    /// `Router::layer(gateway.layer())`: axum's `Router::layer` puts the layer
    /// inside each route's method router, which adds its `Allow` header to
    /// Ferrygate's answers to methods the route has no handler for (the
    /// login POST's 303, logout).
    pub fn layer(&self) -> Layer {
        tower::layer::util::Stack::new(IdentityLayer, self.layer.clone())
    }

    /// `router` inside the [layer](Self::layer) as a whole, as an axum
    /// `Router` again (to serve, nest or merge): Ferrygate's answers are its
    /// own, with no header of axum's method routers added.
    #[cfg(feature = "axum")]
    pub fn around(&self, router: axum::Router) -> axum::Router {
        let wrapped = tower::ServiceBuilder::new()
            .map_response(|res: axum::http::Response<_>| res.map(axum::body::Body::new))
            .layer(self.layer())
            .service(router);
        axum::Router::new().fallback_service(wrapped)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Arc<Config> {
        self.layer.config()
    }

    /// A gateway for a reloaded `config` that keeps this one's session store and
    /// limiter (so sessions survive the reload) unless `[sessions]` now names a
    /// different store.
    pub async fn reload(&self, config: Config) -> Result<Self, SetupError> {
        let config = Arc::new(config);
        let (old, new) = (&self.config().sessions, &config.sessions);
        // Compared in place: no copy of a URL that may hold a password.
        type Secret = ferrygate_core::SecretString;
        let same =
            |a: Option<&Secret>, b: Option<&Secret>| a.map(|s| s.expose_secret()) == b.map(|s| s.expose_secret());
        let same_all =
            |a: &[Secret], b: &[Secret]| a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(Some(a), Some(b)));
        let same_sentinel = match (&old.redis_sentinel, &new.redis_sentinel) {
            (Some(a), Some(b)) => a.master == b.master && same_all(&a.nodes, &b.nodes),
            (a, b) => a.is_none() && b.is_none(),
        };
        let same_store = old.store == new.store
            && same(old.redis_url.as_ref(), new.redis_url.as_ref())
            && same_all(&old.redis_cluster, &new.redis_cluster)
            && same_sentinel
            && same(old.redis_password.as_ref(), new.redis_password.as_ref());
        let (store, limiter) = if same_store && self.config().limits == config.limits {
            (self.layer.store().clone(), self.layer.limiter().clone())
        } else if same_store {
            // New limits, same sessions: a limiter with the new limits (in memory the
            // counts restart; with Redis they live on in Redis), the same store.
            let (_, limiter) = build_store(&config)?;
            (self.layer.store().clone(), limiter)
        } else {
            tracing::warn!("[sessions] names another store: sessions of the old one are not carried over");
            build_store(&config)?
        };
        Ok(Self { layer: GatewayLayer::with_limiter(config, store, limiter) })
    }

    /// The gateway layer alone (the server stacks identity and the proxy itself).
    pub fn gateway_layer(&self) -> &GatewayLayer {
        &self.layer
    }
}
