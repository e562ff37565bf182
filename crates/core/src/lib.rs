//! Ferrygate's core: the configuration model and its validation, the
//! [`Provider`] trait, and the Tower layers that own the login routes
//! ([`GatewayLayer`]) and the identity headers ([`IdentityLayer`]).
//!
//! This crate depends on no other Ferrygate crate; providers, the proxy and
//! the server build on it.

mod access;
mod account;
pub mod authority;
mod check;
pub mod client;
pub mod config;
pub mod conn;
mod csrf;
mod decision;
pub mod destination;
mod dns;
mod error;
mod error_page;
mod future;
mod gate;
mod gateway;
pub mod hop;
mod identity;
pub mod kind;
mod owned;
mod owned_route;
pub mod path;
pub mod provider;
pub mod query;
pub mod ratelimit;
mod refresh;
mod respond;
mod router;
pub mod session;
mod site;
pub mod telemetry;
pub mod tls;

pub use access::Access;
pub use account::AccountHasher;
pub use client::HttpClient;
pub use config::{Config, ConfigError, ConfigErrors, Loaded};
pub use conn::ClientConn;
pub use error::LoginError;
pub use error::{BoxError, BoxFuture, SetupError};
pub use error_page::OwnError;
pub use future::GatewayResponse;
pub use gateway::{GatewayLayer, GatewayService};
pub use identity::strip_identity_headers;
#[cfg(feature = "axum")]
pub use identity::NotSignedIn;
pub use identity::{CallbackDestination, Identity, IdentityLayer, SignedIn};
pub use kind::{Build, Kinds, ProviderEntry, ProviderKind, SiteRules};
pub use owned::OwnedRoutes;
pub use provider::{ForgotPassword, Grant, LoginAttempt, Provider, Refreshed, Token, UserInfo};
pub use ratelimit::{MemoryLimiter, RateLimiter, Refusal};
pub use respond::refused;
pub use router::{SiteRouter, Target};
pub use secrecy::{ExposeSecret, SecretString};
pub use session::{MemoryStore, Session, SessionStore, StoreError, StoreKey};
/// The TOML crate a [`ProviderKind`] receives its table in.
pub use toml;
