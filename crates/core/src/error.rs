//! The login outcomes a user or client can see, with their codes and statuses
//! (spec section 3), and the boxed error and future types every crate shares.
//! An expected failure is a response, never an `Err`.

use std::future::Future;
use std::pin::Pin;

use http::StatusCode;

/// A boxed error, as bodies and services report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error and its sources, `: `-separated, as logs and messages show
/// them: typed errors keep their cause as [`source`](std::error::Error::source)
/// and show it through this.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// A boxed, sendable future, as trait methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A part of the configuration that cannot be put to use when the gateway
/// is built (a Redis URL the client refuses, a store this build lacks): the
/// key it is about and why — never the value, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SetupError {
    pub key: &'static str,
    pub message: String,
}

impl SetupError {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }
}

/// Every refusal of the login path, by its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginError {
    MissingCredentials,
    InvalidInput,
    InvalidCredentials,
    ProviderRejected,
    OriginRejected,
    HttpsRequired,
    StateMismatch,
    /// A signed-in user an authorization rule does not admit.
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited {
        retry_after_secs: u64,
    },
    ProviderUnavailable,
    SessionStoreUnavailable,
    ProviderTimeout,
}

/// Shown as its wire code.
impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for LoginError {}

impl LoginError {
    /// The wire code, e.g. `invalid_credentials`.
    pub fn code(self) -> &'static str {
        match self {
            LoginError::MissingCredentials => "missing_credentials",
            LoginError::InvalidInput => "invalid_input",
            LoginError::InvalidCredentials => "invalid_credentials",
            LoginError::ProviderRejected => "provider_rejected",
            LoginError::OriginRejected => "origin_rejected",
            LoginError::HttpsRequired => "https_required",
            LoginError::StateMismatch => "state_mismatch",
            LoginError::Forbidden => "forbidden",
            LoginError::PayloadTooLarge => "payload_too_large",
            LoginError::UnsupportedMediaType => "unsupported_media_type",
            LoginError::RateLimited { .. } => "rate_limited",
            LoginError::ProviderUnavailable => "provider_unavailable",
            LoginError::SessionStoreUnavailable => "session_store_unavailable",
            LoginError::ProviderTimeout => "provider_timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            LoginError::MissingCredentials | LoginError::InvalidInput => StatusCode::BAD_REQUEST,
            LoginError::InvalidCredentials | LoginError::ProviderRejected => StatusCode::UNAUTHORIZED,
            LoginError::OriginRejected
            | LoginError::HttpsRequired
            | LoginError::StateMismatch
            | LoginError::Forbidden => StatusCode::FORBIDDEN,
            LoginError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            LoginError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            LoginError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            LoginError::ProviderUnavailable => StatusCode::BAD_GATEWAY,
            LoginError::SessionStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short human sentence; never contains anything the user sent.
    pub fn message(self) -> &'static str {
        match self {
            LoginError::MissingCredentials => "Enter your email address and password.",
            LoginError::InvalidInput => "The login form contained a value that cannot be accepted.",
            LoginError::InvalidCredentials => "The email address or password is not correct.",
            LoginError::ProviderRejected => "This account cannot sign in right now.",
            LoginError::OriginRejected => "The login form was posted from another site.",
            LoginError::HttpsRequired => "Sign-in requires a secure (HTTPS) connection.",
            LoginError::StateMismatch => "The sign-in could not be verified; please sign in again.",
            LoginError::Forbidden => "You are signed in, but this page is not open to you.",
            LoginError::PayloadTooLarge => "The login request is too large.",
            LoginError::UnsupportedMediaType => "The login request must be a form post or JSON.",
            LoginError::RateLimited { .. } => "Too many sign-in attempts; please wait and try again.",
            LoginError::ProviderUnavailable => "The sign-in service is unavailable; please try again shortly.",
            LoginError::SessionStoreUnavailable => "Sign-in is temporarily unavailable; please try again shortly.",
            LoginError::ProviderTimeout => "The sign-in service did not answer in time; please try again.",
        }
    }

    /// Whether a browser gets a redirect back to the form (a failure the user
    /// can act on) rather than the bare status (a request that is not a
    /// legitimate form post).
    pub fn user_actionable(self) -> bool {
        !matches!(
            self,
            LoginError::OriginRejected
                | LoginError::HttpsRequired
                | LoginError::StateMismatch
                | LoginError::Forbidden
                | LoginError::PayloadTooLarge
                | LoginError::UnsupportedMediaType
        )
    }

    pub fn retry_after_secs(self) -> Option<u64> {
        match self {
            LoginError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_match_the_spec_table() {
        let table = [
            (LoginError::MissingCredentials, "missing_credentials", 400),
            (LoginError::InvalidInput, "invalid_input", 400),
            (LoginError::InvalidCredentials, "invalid_credentials", 401),
            (LoginError::ProviderRejected, "provider_rejected", 401),
            (LoginError::OriginRejected, "origin_rejected", 403),
            (LoginError::HttpsRequired, "https_required", 403),
            (LoginError::StateMismatch, "state_mismatch", 403),
            (LoginError::Forbidden, "forbidden", 403),
            (LoginError::PayloadTooLarge, "payload_too_large", 413),
            (LoginError::UnsupportedMediaType, "unsupported_media_type", 415),
            (LoginError::RateLimited { retry_after_secs: 3 }, "rate_limited", 429),
            (LoginError::ProviderUnavailable, "provider_unavailable", 502),
            (LoginError::SessionStoreUnavailable, "session_store_unavailable", 503),
            (LoginError::ProviderTimeout, "provider_timeout", 504),
        ];
        for (err, code, status) in table {
            assert_eq!(err.code(), code);
            assert_eq!(err.to_string(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
        }
    }
}
