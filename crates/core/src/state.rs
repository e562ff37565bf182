//! What the gateway's layers share for one configuration: the configuration,
//! the session cookies and store, the brute-force limiter, and how an answer
//! of Ferrygate's own is finished (counted, HSTS on HTTPS).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Extensions, HeaderMap, HeaderValue, Response};
use http_body_util::Full;

use crate::audit::AccountHasher;
use crate::config::Config;
use crate::conn::{self, ClientConn};
use crate::csrf;
use crate::ratelimit::RateLimiter;
use crate::session::{SessionManager, SessionStore};
use crate::site::Site;
use crate::telemetry::Route;

pub(crate) struct Shared {
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

impl Shared {
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

    /// The request's live session on `site`, its access token renewed first
    /// when due — on a task of its own, which a request that goes away
    /// cannot cancel (see [`crate::refresh`]).
    pub(crate) async fn session(
        self: &Arc<Self>,
        headers: &HeaderMap,
        site: &str,
    ) -> Result<Option<(crate::session::SessionId, crate::session::Session)>, crate::session::StoreError> {
        let Some((id, session)) = self.sessions.lookup(headers, site).await? else { return Ok(None) };
        if !crate::refresh::due(&session) {
            return Ok(Some((id, session)));
        }
        let (shared, task_id, site) = (self.clone(), id.clone(), site.to_owned());
        let renewal = tokio::spawn(async move {
            shared.renewals.renew(&shared.sessions, &shared.config.providers, &task_id, &site).await
        });
        let renewed = renewal.await.map_err(|e| crate::session::StoreError(format!("renewal task: {e}")))??;
        Ok(renewed.map(|s| (id, s)))
    }

    /// The CSRF check of an owned route (see [`csrf`]).
    pub(crate) fn same_origin(&self, site: &Site, uri: &http::Uri, headers: &HeaderMap, ext: &Extensions) -> bool {
        let trusted = &self.config.server.trusted_proxies;
        let conn = ext.get::<ClientConn>();
        let trusted_peer = conn.is_some_and(|c| conn::is_trusted(c.peer.ip(), trusted));
        let https = conn::is_https(conn, headers, trusted);
        csrf::origin_allowed(headers, &csrf::request_authorities(uri, headers, trusted_peer), site, https)
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
    route: Route,
    hsts: Option<HeaderValue>,
    mut response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    site.upstream.metrics.request(route, response.status());
    if let Some(v) = hsts {
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    response
}
