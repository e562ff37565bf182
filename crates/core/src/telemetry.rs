//! Ferrygate's own metrics (spec section 7) in one place. Labelled handles
//! are made once per site and label value — lazily, on first use, so they
//! belong to whichever recorder is installed by then — and the request path
//! only records through them: no label is allocated or hashed per request.

use crate::owned_route::OwnedRoute;
use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use metrics::{Counter, Histogram};

use crate::error::LoginError;

/// `ferrygate_requests_total{site,route,status}`.
pub const REQUESTS_TOTAL: &str = "ferrygate_requests_total";
/// `ferrygate_login_attempts_total{site,provider,outcome}`.
pub const LOGIN_ATTEMPTS_TOTAL: &str = "ferrygate_login_attempts_total";
/// `ferrygate_provider_request_duration_seconds{provider}`.
pub const PROVIDER_DURATION: &str = "ferrygate_provider_request_duration_seconds";
/// `ferrygate_upstream_request_duration_seconds{site}`.
pub const UPSTREAM_DURATION: &str = "ferrygate_upstream_request_duration_seconds";

/// The `route` label of [`REQUESTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// Proxied to the site.
    Proxy,
    /// A protected path answered by Ferrygate (redirect to login, 503).
    Protected,
    /// A route the site owns, answered by Ferrygate.
    Owned(OwnedRoute),
}

impl From<OwnedRoute> for RouteLabel {
    fn from(route: OwnedRoute) -> Self {
        RouteLabel::Owned(route)
    }
}

impl RouteLabel {
    const COUNT: usize = 2 + OwnedRoute::COUNT;

    /// Its slot among the metric handles.
    fn index(self) -> usize {
        match self {
            RouteLabel::Proxy => 0,
            RouteLabel::Protected => 1,
            RouteLabel::Owned(route) => 2 + route as usize,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RouteLabel::Proxy => "proxy",
            RouteLabel::Protected => "protected",
            RouteLabel::Owned(route) => route.label(),
        }
    }
}

/// Status codes 100 to 599, one handle each when used.
const STATUSES: usize = 500;

/// Login outcomes: success, then every [`LoginError`] code.
const OUTCOMES: [&str; 15] = [
    "success",
    "missing_credentials",
    "invalid_input",
    "invalid_credentials",
    "provider_rejected",
    "origin_rejected",
    "https_required",
    "state_mismatch",
    "forbidden",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "provider_unavailable",
    "session_store_unavailable",
    "provider_timeout",
];

/// One site's handles (and its provider's, as that site uses it).
pub struct SiteMetrics {
    site: String,
    provider: String,
    requests: [OnceLock<Box<[OnceLock<Counter>]>>; RouteLabel::COUNT],
    logins: [OnceLock<Counter>; OUTCOMES.len()],
    upstream_duration: OnceLock<Histogram>,
    provider_duration: OnceLock<Histogram>,
}

impl std::fmt::Debug for SiteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteMetrics").field("site", &self.site).finish_non_exhaustive()
    }
}

impl SiteMetrics {
    pub fn new(site: &str, provider: &str) -> Self {
        Self {
            site: site.to_owned(),
            provider: provider.to_owned(),
            requests: Default::default(),
            logins: Default::default(),
            upstream_duration: OnceLock::new(),
            provider_duration: OnceLock::new(),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: RouteLabel, status: StatusCode) {
        let Some(slot) = (status.as_u16() as usize).checked_sub(100).filter(|&i| i < STATUSES) else { return };
        let by_status = self.requests[route.index()]
            .get_or_init(|| (0..STATUSES).map(|_| OnceLock::new()).collect::<Vec<_>>().into_boxed_slice());
        by_status[slot]
            .get_or_init(|| {
                metrics::counter!(
                    REQUESTS_TOTAL,
                    "site" => self.site.clone(),
                    "route" => route.label(),
                    "status" => status.as_u16().to_string()
                )
            })
            .increment(1);
    }

    /// Counts one login attempt by its outcome.
    pub fn login(&self, outcome: Result<(), LoginError>) {
        let code = outcome.err().map_or("success", |e| e.code());
        let Some(i) = OUTCOMES.iter().position(|o| *o == code) else { return };
        self.logins[i]
            .get_or_init(|| {
                metrics::counter!(
                    LOGIN_ATTEMPTS_TOTAL,
                    "site" => self.site.clone(),
                    "provider" => self.provider.clone(),
                    "outcome" => OUTCOMES[i]
                )
            })
            .increment(1);
    }

    /// Records how long the site took to answer.
    pub fn upstream_duration(&self, took: Duration) {
        self.upstream_duration
            .get_or_init(|| metrics::histogram!(UPSTREAM_DURATION, "site" => self.site.clone()))
            .record(took.as_secs_f64());
    }

    /// Records how long the site's provider took to authenticate.
    pub fn provider_duration(&self, took: Duration) {
        self.provider_duration
            .get_or_init(|| metrics::histogram!(PROVIDER_DURATION, "provider" => self.provider.clone()))
            .record(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_slot_and_a_label_of_its_own() {
        use OwnedRoute::*;
        let owned = [Login, Wizard, Home, Logout, ForgotPassword, Callback, ForwardAuth];
        let all: Vec<RouteLabel> =
            [RouteLabel::Proxy, RouteLabel::Protected].into_iter().chain(owned.map(RouteLabel::from)).collect();
        assert_eq!(all.len(), RouteLabel::COUNT);
        let mut slots: Vec<usize> = all.iter().map(|r| r.index()).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..RouteLabel::COUNT).collect::<Vec<_>>());
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), RouteLabel::COUNT);
    }

    #[test]
    fn every_login_error_has_an_outcome_slot() {
        use LoginError::*;
        for e in [
            MissingCredentials,
            InvalidInput,
            InvalidCredentials,
            ProviderRejected,
            OriginRejected,
            HttpsRequired,
            StateMismatch,
            Forbidden,
            PayloadTooLarge,
            UnsupportedMediaType,
            RateLimited { retry_after_secs: 1 },
            ProviderUnavailable,
            SessionStoreUnavailable,
            ProviderTimeout,
        ] {
            assert!(OUTCOMES.contains(&e.code()), "{e:?}");
        }
    }
}
