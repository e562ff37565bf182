//! A site as configured: its hosts, upstream, provider, and the routes it
//! owns, matched on the canonical path (`crate::path`).

pub use crate::owned_route::OwnedRoute;
use std::collections::HashMap;
use std::sync::Arc;

use http::Uri;

/// Where a site's proxied traffic goes.
#[derive(Debug)]
pub struct Upstream {
    /// Scheme and authority of the site; none when the configuration was
    /// written for a Tower layer (the app is the site: nothing is proxied).
    pub origin: Option<Uri>,
    /// Path prefix of `upstream` ("" when none), prepended to every request path.
    pub base_path: String,
    pub rewrite_location: Vec<Rewrite>,
    /// The site's metric handles (requests, upstream and provider timings).
    pub metrics: Arc<crate::telemetry::SiteMetrics>,
}

/// nginx `proxy_redirect`: a Location starting with `from` gets `to` instead.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// Lower-cased; empty for the default site.
    pub hosts: Vec<String>,
    pub upstream: Arc<Upstream>,
    pub provider: String,
    /// The provider sends the session's access token to the site
    /// (`pass_access_token`): a client's own `Authorization` never reaches it.
    pub passes_access_token: bool,
    /// Normalised origins (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    pub protected_paths: Vec<String>,
    pub login: LoginRoute,
    pub portal: Portal,
    pub home: Option<RedirectRoute>,
    pub logout: Option<RedirectRoute>,
    pub wizard: Option<Wizard>,
    pub forgot_password: Option<ForgotPassword>,
    pub callback: Option<Callback>,
    /// `[sites.forward_auth]`: the check a proxy in front asks (SPEC 2.1).
    pub forward_auth: Option<ForwardAuth>,
    /// `[[sites.authorize]]`, one entry per path (canonical), longest path first.
    pub authorize: Vec<AuthorizeRule>,
    /// `error_stylesheet`: linked from Ferrygate's own error pages.
    pub error_stylesheet: Option<String>,
    /// Every path Ferrygate answers itself, computed at load.
    pub(crate) routes: HashMap<String, OwnedRoute>,
}

/// `[sites.forward_auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// Canonical; the check also answers below it (Envoy's `path_prefix`).
    pub path: String,
    /// A missing session is a 302 to the login page instead of a 401.
    pub redirect: bool,
    /// Where the original request is read from.
    pub style: ForwardAuthStyle,
}

/// `forward_auth.style` (SPEC 2.1): which source names the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardAuthStyle {
    /// Whichever source is present; two that disagree are refused (400).
    #[default]
    Auto,
    /// `X-Original-URI` and `X-Original-Method` only.
    Nginx,
    /// `X-Forwarded-Uri` and `X-Forwarded-Method` only (Traefik, Caddy).
    Forwarded,
    /// The rest of the path after `forward_auth.path` only (Envoy's `path_prefix`).
    Path,
}

/// One path of a `[[sites.authorize]]` rule (spec 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizeRule {
    /// Canonical, matched segment-wise.
    pub path: String,
    /// A signed-in user must be in at least one (none: any user).
    pub groups: Vec<String>,
    /// The methods the rule applies to (none: every method; `GET` covers `HEAD`).
    pub methods: Vec<http::Method>,
    /// The client address must be in one (none: any address).
    pub networks: Vec<ipnet::IpNet>,
    /// No session needed: a hole in `protected_paths`.
    pub public: bool,
}

impl AuthorizeRule {
    /// A rule for `path` admitting users in `groups`, for every method and network.
    pub fn new(path: impl Into<String>, groups: Vec<String>) -> Self {
        Self { path: path.into(), groups, methods: Vec::new(), networks: Vec::new(), public: false }
    }

    /// Whether a user in `groups` may pass.
    pub fn admits(&self, groups: &[String]) -> bool {
        self.groups.is_empty() || groups.iter().any(|g| self.groups.contains(g))
    }

    /// Whether the client at `client` may pass (unknown: only when no network is named).
    pub fn admits_client(&self, client: Option<std::net::IpAddr>) -> bool {
        self.networks.is_empty()
            || client.is_some_and(|ip| self.networks.iter().any(|n| n.contains(&crate::conn::canonical(ip))))
    }

    /// Whether the rule applies to a request with `method` (`None`: a
    /// forward-auth check whose proxy sends no method — every rule applies,
    /// but for a public one scoped to methods: a hole opens only for a
    /// method known to be one it names).
    pub fn applies_to(&self, method: Option<&http::Method>) -> bool {
        let Some(method) = method else { return !self.public || self.methods.is_empty() };
        self.methods.is_empty()
            || self.methods.iter().any(|m| m == method || (*m == http::Method::GET && method == http::Method::HEAD))
    }
}

impl Site {
    /// `login.path?destination=<wanted>`: where a request that needs a
    /// signed-in user is sent (the session layer, and the forward-auth check
    /// with `redirect = true`).
    pub fn login_target(&self, wanted: &str) -> String {
        crate::query::append(&self.login.path, &[("destination", wanted)])
    }

    /// The owned route at `path`, a [canonical](crate::path::canonical) path: one hash lookup.
    #[inline]
    pub fn owned_route(&self, path: &str) -> Option<OwnedRoute> {
        if self.routes.is_empty() {
            return None;
        }
        self.routes.get(path).copied().or_else(|| {
            let fa = self.forward_auth.as_ref()?;
            crate::path::under(path, &fa.path).then_some(OwnedRoute::ForwardAuth)
        })
    }

    /// Whether `path`, a [canonical](crate::path::canonical) path, lies in one
    /// of `protected_paths` (whole segments).
    pub fn is_protected(&self, path: &str) -> bool {
        self.protected_paths.iter().any(|p| crate::path::under(path, p))
    }

    /// The authorization rule for `path` (canonical) and `method`: among the
    /// rules whose path matches and whose methods include it, the longest
    /// path wins, a tie the first in the file. Its index in [`Site::authorize`].
    pub fn rule(&self, path: &str, method: Option<&http::Method>) -> Option<usize> {
        self.authorize.iter().position(|r| r.applies_to(method) && crate::path::under(path, &r.path))
    }
}

#[derive(Debug)]
pub struct LoginRoute {
    pub path: String,
    pub username_field: String,
    pub password_field: String,
    pub remember_field: String,
    pub destination_field: String,
    pub failure_redirect: String,
}

#[derive(Debug)]
pub struct Portal {
    /// The portal's external-authentication address (token providers).
    pub url: Option<String>,
    pub default_destination: String,
    pub allowed_destinations: Vec<String>,
}

#[derive(Debug)]
pub struct RedirectRoute {
    pub paths: Vec<String>,
    pub redirect: String,
}

#[derive(Debug)]
pub struct Wizard {
    pub path: String,
    pub destination: String,
    pub params: Vec<String>,
}

#[derive(Debug)]
pub struct ForgotPassword {
    pub path: String,
    pub redirect: String,
}

#[derive(Debug)]
pub struct Callback {
    pub path: String,
}
