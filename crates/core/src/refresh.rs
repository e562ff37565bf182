//! Renewing a refreshable session's access token (SPEC 1.4, `refresh = true`).
//!
//! A session whose provider issued a refresh token outlives its access token.
//! The request that finds the token within [`REFRESH_WITHIN`] of its end —
//! a proxied one, or a forward-auth check — renews it before going on, and:
//!
//! - **one renewal per session at a time in a replica**: concurrent requests
//!   of the same session share one renewal (a moka cache entry per session,
//!   whose initialisation runs once for every caller waiting on it) and all
//!   go on with its result. The renewal runs on a task of its own, so a
//!   client that goes away cannot cancel it between the provider's answer
//!   and the write that keeps a rotated refresh token;
//! - **one across replicas**: the renewal is claimed in the session store
//!   (`SET NX` with a TTL in Redis, keyed by an HMAC of the session and the
//!   refresh token), for longer than the renewal may take. A replica that
//!   loses the claim goes on with the current access token while it is still
//!   valid (the common case: renewal starts 30 s early), and otherwise waits,
//!   bounded, for the winner's write — or, once the winner has given the
//!   claim back without a new token (its renewal failed), renews itself. The
//!   claim is given back on every path once the outcome is written;
//! - each renewal first re-reads the session, so a request holding a copy
//!   read before someone else renewed never spends the (rotated) old refresh
//!   token; the renewed session is written only while the session is still
//!   stored, so a logout during a renewal stays a logout;
//! - a rotated refresh token replaces the old one; `invalid_grant` (or a
//!   provider that now wants the user to sign in again) ends the session;
//!   any other failure keeps it, and the next request tries again.

use std::collections::BTreeMap;
use std::time::Duration;

use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};

use crate::error::LoginError;
use crate::identity::AccessToken;
use crate::kind::ProviderEntry;
use crate::provider::Refreshed;
use crate::session::{ms_from_now, now_ms, Session, SessionId, SessionManager, StoreError, StoreKey};

/// An access token this close to its end is renewed.
pub(crate) const REFRESH_WITHIN: Duration = Duration::from_secs(30);

/// How often a replica that lost the claim looks for the winner's write.
const POLL: Duration = Duration::from_millis(50);

/// The configured providers, by name.
type Providers = BTreeMap<String, ProviderEntry>;

/// Renewals in progress in this replica, one per session.
pub(crate) struct Renewals {
    in_flight: Cache<StoreKey, Option<Session>>,
}

impl Default for Renewals {
    fn default() -> Self {
        Self { in_flight: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build() }
    }
}

/// Whether `session`'s access token is due for renewal.
pub(crate) fn due(session: &Session) -> bool {
    session.refresh_token.is_some() && session.token_expires_at_ms() <= ms_from_now(REFRESH_WITHIN)
}

/// Whether `session`'s access token is still valid now.
pub(crate) fn token_valid(session: &Session) -> bool {
    session.token.is_some() && session.token_expires_at_ms() > now_ms()
}

impl Renewals {
    /// Renews the access token of the session `id` on `site` (found due):
    /// the session after renewal, `None` when it ended. Run it on a task of
    /// its own (see the module docs).
    pub(crate) async fn renew(
        &self,
        sessions: &SessionManager,
        providers: &Providers,
        id: &SessionId,
        site: &str,
    ) -> Result<Option<Session>, StoreError> {
        let key = sessions.store_key(id);
        let renewal = Renewal { sessions, providers, id, site };
        let outcome = self.in_flight.try_get_with(key, renewal.run()).await;
        // Later requests read the store again: the entry only joins concurrent ones.
        self.in_flight.invalidate(&key).await;
        outcome.map_err(StoreError::new)
    }
}

/// The access token a request of `session` carries to `site`: when the
/// site's provider passes it (`pass_access_token`, known at load) and it is
/// still valid.
pub(crate) fn access_token(site: &crate::site::Site, session: &Session) -> Option<AccessToken> {
    if !site.passes_access_token || !token_valid(session) {
        return None;
    }
    session.token.as_deref().and_then(|t| crate::client::credential_header(&format!("Bearer {t}"))).map(AccessToken)
}

struct Renewal<'a> {
    sessions: &'a SessionManager,
    providers: &'a Providers,
    id: &'a SessionId,
    site: &'a str,
}

impl Renewal<'_> {
    /// The session after renewal: `None` when it ended.
    async fn run(self) -> Result<Option<Session>, StoreError> {
        let sessions = self.sessions;
        let Some(mut session) = sessions.reread(self.id).await?.filter(|s| s.is_live_on(self.site)) else {
            return Ok(None);
        };
        let Some(refresh_token) = session.refresh_token.clone().filter(|_| due(&session)) else {
            // Renewed meanwhile (or not refreshable).
            return Ok(Some(session));
        };
        let Some(provider) = self.providers.get(&session.provider).map(|e| e.provider.clone()) else {
            return Ok(Some(session));
        };
        let secret = SecretString::from(refresh_token);
        // Lazy: nothing is sent before it is awaited. None: this provider
        // renews no more (e.g. `refresh = false` since a reload); claim nothing.
        let Some(call) = provider.refresh(&secret) else { return Ok(Some(session)) };
        // Each of a provider's steps is bounded by its own timeout (an oidc
        // renewal takes at most four: discovery, the token request, the ID
        // token's keys, userinfo); this bounds a provider that hangs, a second
        // after the slowest legitimate renewal, so it never cuts one short
        // after the token answer (a rotated refresh token) is in hand.
        let limit = provider.timeout() * 4 + Duration::from_secs(1);
        // Held for longer than the renewal and its write may take, should the
        // replica die before it gives the claim back.
        let hold = limit + Duration::from_secs(10);
        let claim = sessions.renewal_claim(self.id, secret.expose_secret());
        if !sessions.claim_renewal(&claim, hold).await? {
            match self.wait_for_other(session, &claim, secret.expose_secret(), limit, hold).await? {
                Waited::Settled(now) => return Ok(now),
                Waited::Claimed(now) => session = now,
            }
        }
        let name = session.provider.clone();
        let outcome = tokio::time::timeout(limit, call).await.unwrap_or(Err(LoginError::ProviderTimeout));
        let settled = self.settle(session, outcome, secret, &name).await;
        // Given back whatever the outcome: a claim held on would make the next
        // requests wait for a renewal that is not happening.
        if let Err(e) = sessions.release_renewal(&claim).await {
            tracing::debug!(provider = %name, error = %e, "a renewal claim was not given back; it expires by itself");
        }
        settled
    }

    /// Writes the renewal's outcome: the renewed session, the session ended,
    /// or (any other failure) kept as it was.
    async fn settle(
        &self,
        mut session: Session,
        outcome: Result<Refreshed, LoginError>,
        used: SecretString,
        name: &str,
    ) -> Result<Option<Session>, StoreError> {
        let sessions = self.sessions;
        let counted = |outcome: &'static str| {
            metrics::counter!("ferrygate_token_refreshes_total", "provider" => name.to_owned(), "outcome" => outcome)
                .increment(1);
        };
        match outcome {
            Ok(refreshed) if another_user(&session, &refreshed) => {
                counted("ended");
                tracing::warn!(provider = %name, site = self.site, "a renewal named another user: session ended");
                sessions.end(self.id).await?;
                Ok(None)
            }
            Ok(refreshed) => {
                apply(&mut session, refreshed, used, self.site);
                if !sessions.replace(self.id, &session).await? {
                    // Ended (a logout) while the provider answered: it stays ended.
                    counted("ended");
                    return Ok(None);
                }
                counted("renewed");
                Ok(Some(session))
            }
            Err(e @ (LoginError::InvalidCredentials | LoginError::ProviderRejected)) => {
                counted("ended");
                tracing::info!(provider = %name, site = self.site, outcome = %e,
                    "the provider refused the refresh token: session ended");
                sessions.end(self.id).await?;
                Ok(None)
            }
            Err(e) => {
                counted("failed");
                tracing::warn!(provider = %name, site = self.site, error = %e, "token refresh failed; the session is kept");
                Ok(Some(session))
            }
        }
    }

    /// Another request renews: go on with the current token while it is
    /// valid, else wait (bounded) for the renewed session to be written; if
    /// the claim comes free without one (that renewal failed), claim it.
    async fn wait_for_other(
        &self,
        mut session: Session,
        claim: &StoreKey,
        refresh_token: &str,
        limit: Duration,
        hold: Duration,
    ) -> Result<Waited, StoreError> {
        let deadline = tokio::time::Instant::now() + limit;
        while !token_valid(&session) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            match self.sessions.reread(self.id).await?.filter(|s| s.is_live_on(self.site)) {
                None => return Ok(Waited::Settled(None)),
                Some(now) if now.refresh_token.as_deref() != Some(refresh_token) => {
                    return Ok(Waited::Settled(Some(now)))
                }
                Some(now) => session = now,
            }
            if !token_valid(&session) && self.sessions.claim_renewal(claim, hold).await? {
                return Ok(Waited::Claimed(session));
            }
        }
        Ok(Waited::Settled(Some(session)))
    }
}

/// How waiting for another request's renewal ended.
enum Waited {
    /// With this session (`None`: it ended).
    Settled(Option<Session>),
    /// The claim came free with the token still expired: renew here.
    Claimed(Session),
}

/// Whether a renewal names another user (`sub`) than the session's.
fn another_user(session: &Session, refreshed: &Refreshed) -> bool {
    matches!((session.user_id.as_deref(), refreshed.user_id.as_deref()), (Some(was), Some(now)) if was != now)
}

/// The session with the renewed token (and rotated refresh token, and what
/// the provider now says of the user, field by field).
fn apply(session: &mut Session, refreshed: Refreshed, used: SecretString, site: &str) {
    let Refreshed { token, refresh_token, user_id, user, groups } = refreshed;
    session.token = Some(token.value.expose_secret().to_owned());
    session.token_type = token.token_type;
    session.token_expires_at_ms = Some(ms_from_now(token.expires_in));
    session.refresh_token = Some(refresh_token.unwrap_or(used).expose_secret().to_owned());
    if let Some(user) = user {
        session.user = user;
    }
    if user_id.is_some() {
        session.user_id = user_id;
    }
    if let Some(groups) = groups {
        session.groups = crate::identity::usable_groups(site, &groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Token;

    fn session(token_in: Duration) -> Session {
        Session {
            user_id: Some("u-alice".into()),
            groups: vec!["staff".into()],
            token: Some("at-1".into()),
            token_type: "Bearer".into(),
            refresh_token: Some("rt-1".into()),
            token_expires_at_ms: Some(now_ms() + token_in.as_millis() as u64),
            ..Session::for_test("alice@corp.test", Duration::from_secs(3600))
        }
    }

    fn renewed(refresh: Option<&str>, sub: Option<&str>, groups: Option<&[&str]>) -> Refreshed {
        Refreshed {
            token: Token {
                value: "at-2".to_owned().into(),
                token_type: "Bearer".into(),
                expires_in: Duration::from_secs(600),
            },
            refresh_token: refresh.map(|r| r.to_owned().into()),
            user_id: sub.map(str::to_owned),
            user: None,
            groups: groups.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn due_within_30_seconds_of_the_end_and_only_with_a_refresh_token() {
        assert!(!due(&session(Duration::from_secs(31 + 5))));
        assert!(due(&session(Duration::from_secs(29))));
        assert!(due(&session(Duration::ZERO)));
        let plain = Session { refresh_token: None, ..session(Duration::ZERO) };
        assert!(!due(&plain), "a session without a refresh token is never renewed");
        assert!(token_valid(&session(Duration::from_secs(5))));
        assert!(!token_valid(&Session { token_expires_at_ms: Some(now_ms() - 1), ..session(Duration::ZERO) }));
    }

    #[test]
    fn a_rotated_refresh_token_replaces_the_old_and_a_kept_one_stays() {
        let mut s = session(Duration::ZERO);
        apply(&mut s, renewed(Some("rt-2"), None, None), "rt-1".to_owned().into(), "s");
        assert_eq!((s.token.as_deref(), s.refresh_token.as_deref()), (Some("at-2"), Some("rt-2")));
        assert!(s.token_expires_at_ms.unwrap() > now_ms() + 590_000);
        assert_eq!(s.groups, ["staff"], "no claims: the session's identity stays");
        let mut s = session(Duration::ZERO);
        apply(&mut s, renewed(None, None, None), "rt-1".to_owned().into(), "s");
        assert_eq!(s.refresh_token.as_deref(), Some("rt-1"));
    }

    #[test]
    fn renewed_claims_update_what_they_carry_and_another_sub_is_another_user() {
        let s = session(Duration::ZERO);
        assert!(!another_user(&s, &renewed(None, Some("u-alice"), None)));
        assert!(another_user(&s, &renewed(None, Some("u-mallory"), None)));
        assert!(!another_user(&s, &renewed(None, None, None)));
        let mut s = session(Duration::ZERO);
        apply(&mut s, renewed(None, Some("u-alice"), Some(&["admins"])), "rt-1".to_owned().into(), "s");
        assert_eq!((s.groups.as_slice(), s.user.as_str()), (["admins".to_owned()].as_slice(), "alice@corp.test"));
        // A renewal without a groups claim keeps the groups (not: none).
        apply(&mut s, renewed(None, Some("u-alice"), None), "rt-1".to_owned().into(), "s");
        assert_eq!(s.groups, ["admins"]);
    }
}
