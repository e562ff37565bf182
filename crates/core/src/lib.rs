//! Ferrygate's core: the configuration model and its validation, the
//! [`Provider`] trait, and the Tower layers that own the login routes
//! ([`GatewayLayer`]) and the identity headers ([`IdentityLayer`]).
//!
//! This crate depends on no other Ferrygate crate; providers, the proxy and
//! the server build on it.

pub mod access;
pub mod account;
pub mod authority;
pub mod check;
pub mod client;
pub mod config;
pub mod conn;
pub mod csrf;
pub mod decision;
pub mod destination;
pub mod dns;
pub mod error;
pub mod error_page;
pub mod future;
pub mod gateway;
pub mod hop;
pub mod identity;
pub mod kind;
pub mod owned;
mod owned_route;
pub mod path;
pub mod provider;
pub mod query;
pub mod ratelimit;
pub mod refresh;
pub mod respond;
pub mod router;
pub mod session;
pub mod site;
pub mod telemetry;
pub mod tls;

pub use client::HttpClient;
pub use config::{Config, ConfigError, ConfigErrors, Loaded};
pub use conn::ClientConn;
pub use error::LoginError;
pub use error::{BoxError, BoxFuture, SetupError};
pub use gateway::{GatewayLayer, GatewayService};
pub use identity::{CallbackDestination, Identity, IdentityLayer, SignedIn};
pub use kind::{Build, Kinds, ProviderEntry, ProviderKind, SiteRules};
pub use provider::{ForgotPassword, Grant, LoginAttempt, Provider, Refreshed, Token, UserInfo};
pub use ratelimit::{MemoryLimiter, RateLimiter, Refusal};
pub use router::Target;
pub use secrecy::{ExposeSecret, SecretString};
pub use session::{MemoryStore, Session, SessionStore, StoreError, StoreKey};
/// The TOML crate a [`ProviderKind`] receives its table in.
pub use toml;
