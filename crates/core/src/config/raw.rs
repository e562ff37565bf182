//! The configuration file as written: serde structs that mirror the TOML of the
//! spec key for key. Unknown keys are refused here; meaning is checked in
//! [`super::validate`], which turns these into the typed [`super::Config`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::de::duration;
use super::{Rate, StoreKind};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    pub(crate) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(crate) upstream_tls: RawUpstreamTls,
    #[serde(default)]
    pub(crate) sessions: RawSessions,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    /// Each provider's table as written; its kind parses it.
    pub(crate) providers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub(crate) sites: Vec<RawSite>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Vec<String>>,
    pub(crate) trusted_proxies: Option<Vec<String>>,
    pub(crate) require_https: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) shutdown_grace: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) upstream_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) hsts_max_age: Option<Duration>,
    pub(crate) tls: Option<RawTls>,
    #[serde(default)]
    pub(crate) allow_encoded_slashes: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) listen: Vec<String>,
    pub(crate) cert: String,
    pub(crate) key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) ca_file: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessions {
    #[serde(default)]
    pub(crate) store: StoreKind,
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_url_file: Option<String>,
    pub(crate) redis_cluster: Option<Vec<String>>,
    pub(crate) redis_sentinel: Option<RawSentinel>,
    pub(crate) redis_password: Option<String>,
    pub(crate) redis_password_file: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) secret_file: Option<String>,
    pub(crate) cookie_name: Option<String>,
    pub(crate) cookie_secure: Option<bool>,
    pub(crate) max_entries: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    pub(crate) max_ttl: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSentinel {
    pub(crate) master: String,
    pub(crate) nodes: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) login_body_bytes: Option<u64>,
    pub(crate) login_per_ip: Option<Rate>,
    pub(crate) login_per_account: Option<Rate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSite {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) hosts: Vec<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) provider: String,
    #[serde(default)]
    pub(crate) allowed_origins: Vec<String>,
    #[serde(default)]
    pub(crate) protected_paths: Vec<String>,
    pub(crate) login: RawLogin,
    pub(crate) portal: Option<RawPortal>,
    pub(crate) home: Option<RawRedirectRoute>,
    pub(crate) logout: Option<RawRedirectRoute>,
    pub(crate) wizard: Option<RawWizard>,
    pub(crate) forgot_password: Option<RawForgotPassword>,
    pub(crate) callback: Option<RawCallback>,
    #[serde(default)]
    pub(crate) rewrite_location: Vec<RawRewrite>,
    #[serde(default)]
    pub(crate) authorize: Vec<RawAuthorize>,
    pub(crate) forward_auth: Option<RawForwardAuth>,
    pub(crate) error_stylesheet: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForwardAuth {
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) redirect: bool,
    #[serde(default)]
    pub(crate) style: crate::site::ForwardAuthStyle,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorize {
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) groups: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    #[serde(default)]
    pub(crate) networks: Vec<String>,
    #[serde(default)]
    pub(crate) public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogin {
    pub(crate) path: String,
    pub(crate) username_field: Option<String>,
    pub(crate) password_field: Option<String>,
    pub(crate) remember_field: Option<String>,
    pub(crate) destination_field: Option<String>,
    pub(crate) failure_redirect: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPortal {
    pub(crate) url: Option<String>,
    pub(crate) default_destination: Option<String>,
    pub(crate) allowed_destinations: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedirectRoute {
    pub(crate) paths: Vec<String>,
    pub(crate) redirect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWizard {
    pub(crate) path: String,
    pub(crate) destination: String,
    #[serde(default)]
    pub(crate) params: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForgotPassword {
    pub(crate) path: String,
    pub(crate) redirect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCallback {
    pub(crate) path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRewrite {
    pub(crate) from: String,
    pub(crate) to: String,
}
