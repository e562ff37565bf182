//! The provider trait: credentials in, a grant (redirect + token) or a typed
//! failure out. One crate per provider kind implements it; the core never
//! knows a provider's wire format.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::error::LoginError;
use crate::session::Session;
use crate::site::Site;

pub use crate::error::BoxFuture;

/// One login attempt, as the gateway hands it to a provider.
pub struct LoginAttempt<'a> {
    pub site: &'a Site,
    /// As typed (trimmed); never logged.
    pub username: &'a str,
    pub password: &'a SecretString,
    /// The form's "remember me".
    pub remember: bool,
    /// Already validated against the site's allowed destinations.
    pub destination: &'a str,
    pub client_ip: Option<IpAddr>,
    pub user_agent: &'a str,
    /// A fresh, unguessable OAuth2 `state` for this attempt. A provider that
    /// puts it in its redirect sets [`Grant::binds_state`], and the gateway
    /// binds it to the browser with a signed cookie (checked on the callback).
    pub state: &'a str,
}

impl fmt::Debug for LoginAttempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("site", &self.site.name)
            .field("remember", &self.remember)
            .field("destination", &self.destination)
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

/// A provider's access token and how long it lives.
#[non_exhaustive]
pub struct Token {
    pub value: SecretString,
    pub token_type: String,
    pub expires_in: Duration,
}

impl Token {
    pub fn new(value: SecretString, token_type: impl Into<String>, expires_in: Duration) -> Self {
        Self { value, token_type: token_type.into(), expires_in }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What a provider knows of the user besides the account name. Built from
/// [`UserInfo::default`] and the `with_*` methods (more may come).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserInfo {
    /// The account as the provider knows it (e.g. the directory's spelling),
    /// when it differs from what the user typed.
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    pub external_id: Option<String>,
    /// The groups the provider puts the user in (none for providers that have
    /// no such notion); authorization rules decide on them.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The account as the provider spells it.
    #[must_use]
    pub fn with_email(mut self, email: Option<String>) -> Self {
        self.email = email;
        self
    }

    #[must_use]
    pub fn with_user_id(mut self, user_id: Option<String>) -> Self {
        self.user_id = user_id;
        self
    }

    #[must_use]
    pub fn with_org_id(mut self, org_id: Option<String>) -> Self {
        self.org_id = org_id;
        self
    }

    #[must_use]
    pub fn with_external_id(mut self, external_id: Option<String>) -> Self {
        self.external_id = external_id;
        self
    }

    #[must_use]
    pub fn with_groups(mut self, groups: Vec<String>) -> Self {
        self.groups = groups;
        self
    }
}

/// A successful login: [`Grant::redirect`] and the `with_*` methods (more
/// may come).
#[non_exhaustive]
pub struct Grant {
    /// Where the browser goes next; may carry the token, so never logged.
    pub redirect: String,
    /// The token to cache, for providers that issue one; the session lives as
    /// long as it does.
    pub token: Option<Token>,
    /// The session's lifetime when there is no token (`rest`'s `session_ttl`).
    pub session_ttl: Option<Duration>,
    pub user: UserInfo,
    /// Whether the redirect carries [`LoginAttempt::state`].
    pub binds_state: bool,
    /// A refresh token: the session then lasts [`Grant::session_ttl`] and the
    /// access token is renewed by [`Provider::refresh`] when it nears its end.
    pub refresh_token: Option<SecretString>,
}

impl Grant {
    /// A grant that only redirects (no token, default lifetime, no user ids).
    pub fn redirect(to: impl Into<String>) -> Self {
        Self {
            redirect: to.into(),
            token: None,
            session_ttl: None,
            user: UserInfo::default(),
            binds_state: false,
            refresh_token: None,
        }
    }

    /// The token to cache: the session lives as long as it does.
    #[must_use]
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    #[must_use]
    pub fn with_session_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.session_ttl = ttl;
        self
    }

    #[must_use]
    pub fn with_user(mut self, user: UserInfo) -> Self {
        self.user = user;
        self
    }

    /// The redirect carries [`LoginAttempt::state`].
    #[must_use]
    pub fn binding_state(mut self) -> Self {
        self.binds_state = true;
        self
    }

    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: Option<SecretString>) -> Self {
        self.refresh_token = refresh_token;
        self
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("redirect", &"[redacted]")
            .field("token", &self.token)
            .field("session_ttl", &self.session_ttl)
            .field("user", &self.user)
            .field("binds_state", &self.binds_state)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A renewed access token, and what the provider now says of the user: each
/// of `user_id`, `user` and `groups` replaces the session's only when given.
#[non_exhaustive]
pub struct Refreshed {
    pub token: Token,
    /// The provider rotated the refresh token: this one replaces the old.
    pub refresh_token: Option<SecretString>,
    /// The user's id (`sub`): another one than the session's ends the session.
    pub user_id: Option<String>,
    /// The account name.
    pub user: Option<String>,
    pub groups: Option<Vec<String>>,
}

impl Refreshed {
    /// A renewal that changes nothing but the access token.
    pub fn new(token: Token) -> Self {
        Self { token, refresh_token: None, user_id: None, user: None, groups: None }
    }
}

impl fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refreshed")
            .field("token", &self.token)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("user_id", &self.user_id)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// An upstream authentication service.
pub trait Provider: Send + Sync + 'static {
    /// Authenticates the attempt server to server. Wrong credentials, refusals,
    /// outages and timeouts are `Err` with their [`LoginError`].
    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>>;

    /// How long one authentication may take (the provider's `timeout` key):
    /// the gateway gives up then, with `provider_timeout`.
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Where a returning user with a live session goes, without calling the
    /// provider: the portal redirect built from the cached token and its
    /// REMAINING lifetime. `None` when this provider has no such redirect.
    fn resume(&self, site: &Site, session: &Session, destination: &str) -> Option<String> {
        let _ = (site, session, destination);
        None
    }

    /// Renews a session's access token with its refresh token.
    /// `Err(InvalidCredentials)` means the provider no longer honours it (the
    /// user was disabled or signed out there) and `Err(ProviderRejected)` that
    /// the user must sign in again (e.g. MFA now required): the session ends.
    /// Any other error keeps the session, and the next request tries again.
    /// `None` when this provider issues no refresh tokens.
    fn refresh<'a>(&'a self, refresh_token: &'a SecretString) -> Option<BoxFuture<'a, Result<Refreshed, LoginError>>> {
        let _ = refresh_token;
        None
    }

    /// Whether requests to the site carry the session's access token as
    /// `Authorization: Bearer <token>` (`pass_access_token`).
    fn passes_access_token(&self) -> bool {
        false
    }

    /// A forgot-password request for `email`, as a detached task: the gateway
    /// answers at once and identically whatever happens, so the work (and
    /// whether the account exists) never shows in the answer or its timing.
    /// `None` when this provider has no such flow.
    fn forgot_password(&self, request: ForgotPassword) -> Option<BoxFuture<'static, ()>> {
        let _ = request;
        None
    }
}

/// A forgot-password request, as the gateway hands it to a provider.
#[derive(Debug, Clone)]
pub struct ForgotPassword {
    pub site: Arc<Site>,
    pub email: String,
    pub client_ip: Option<IpAddr>,
    pub user_agent: String,
}
