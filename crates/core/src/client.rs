//! The HTTP client providers use to talk to their services: pooled, verified
//! TLS, one deadline for the whole exchange, bounded answer size.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{BoxError, LoginError};
use crate::tls::TlsError;

/// Largest provider answer read, in bytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A pooled client for provider calls; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<crate::tls::Connector, Full<Bytes>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// A provider's whole answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Shows the status and the body's length only: a provider's answer may carry
/// tokens (an OAuth2 token response, a login handle).
impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The exchange failed (its cause the source; shown with it).
    #[error("{}", crate::error::Chain(.0.as_ref()))]
    Unavailable(#[source] BoxError),
    /// The answer's body could not be read (or was over its limit).
    #[error("reading the answer: {}", crate::error::Chain(.0.as_ref()))]
    Reading(#[source] BoxError),
}

impl From<ClientError> for LoginError {
    /// No answer in time is `provider_timeout`; no answer at all `provider_unavailable`.
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Timeout(_) => LoginError::ProviderTimeout,
            ClientError::Unavailable(_) | ClientError::Reading(_) => LoginError::ProviderUnavailable,
        }
    }
}

impl ClientError {
    /// Logs why `what` (a provider's call) got no answer, naming the
    /// provider, and gives the login outcome that means.
    pub fn logged(self, provider: &str, what: &str) -> LoginError {
        match &self {
            ClientError::Timeout(t) => tracing::warn!(provider, timeout = ?t, "{what} timed out"),
            ClientError::Unavailable(_) | ClientError::Reading(_) => {
                tracing::warn!(provider, error = %self, "{what} failed")
            }
        }
        self.into()
    }
}

impl HttpClient {
    /// A client trusting webpki's roots and, when given, the PEM roots of `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let connector = crate::tls::https_connector(ca_file, true)?;
        let inner = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        Ok(Self { inner })
    }

    /// Sends `req` and reads the whole answer, all within `timeout`.
    pub async fn send(&self, req: Request<Full<Bytes>>, timeout: Duration) -> Result<Answer, ClientError> {
        let exchange = async {
            let res = self.inner.request(req).await.map_err(|e| ClientError::Unavailable(e.into()))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await.map_err(ClientError::Reading)?.to_bytes();
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(ClientError::Timeout(timeout)))
    }
}

/// Whether `url` may carry a password, a token or a login handle: `https://`,
/// or plain `http://` to a loopback host (tests, the demo).
pub fn secure_or_loopback(url: &url::Url) -> bool {
    url.scheme() == "https"
        || match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// A header value that carries a credential (a service token, a password):
/// marked sensitive, so `Debug` shows no more than "Sensitive" and HTTP/2
/// never keeps it in a compression table. `None` if it is no valid header value.
pub fn credential_header(value: &str) -> Option<http::HeaderValue> {
    let mut header = http::HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_debug_shows_no_body() {
        let answer = super::Answer {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from_static(br#"{"access_token":"s3cret-at","refresh_token":"s3cret-rt"}"#),
        };
        let shown = format!("{answer:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("200"), "{shown}");
    }

    #[test]
    fn credential_headers_are_sensitive() {
        let header = super::credential_header("OAuth s3cret-token").unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("s3cret"));
        assert!(super::credential_header("bad\r\nvalue").is_none());
    }
}
