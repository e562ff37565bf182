//! What the gateway's layers share for one configuration ([`Gate`]): the
//! configuration, the session manager, the brute-force limiter, the logins
//! and renewals in progress; the one place a request's session is resolved
//! ([`Gate::resolve`]); and how an answer of Ferrygate's own is finished.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Extensions, HeaderMap, HeaderValue, Response};
use http_body_util::Full;

use crate::account::AccountHasher;
use crate::config::Config;
use crate::conn::{self, ClientConn};
use crate::decision::Resolved;
use crate::ratelimit::RateLimiter;
use crate::session::{Carried, SessionManager, SessionStore};
use crate::site::Site;
use crate::telemetry::RouteLabel;

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
    pub(crate) fn new(config: Arc<Config>, store: Arc<dyn SessionStore>, limiter: Arc<dyn RateLimiter>) -> Self {
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
            Ok(Some((_, session))) => Resolved::Live(Box::new(session)),
            Ok(None) => Resolved::Anonymous,
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

    /// The client's address when `rule` names networks (spec 2.2), read
    /// strictly ([`conn::rule_client_ip`]); `None` otherwise.
    pub(crate) fn rule_client(
        &self,
        rule: Option<&crate::site::AuthorizeRule>,
        headers: &HeaderMap,
        ext: &Extensions,
    ) -> Option<std::net::IpAddr> {
        rule.filter(|r| !r.networks.is_empty())?;
        conn::rule_client_ip(ext.get::<ClientConn>(), headers, &self.config.server.trusted_proxies)
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
