//! The identity layer: no client can claim an identity. Every request that
//! passes through loses any `X-Ferrygate-*` header it brought, in any case and
//! with `_` for `-` (and, on a site whose provider passes its access token,
//! any `Authorization`); then, when the gateway found a live session ([`SignedIn`]
//! extension), the identity headers are set from it — after the names a
//! client listed in `Connection` are gone, so it cannot remove them.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request};

use crate::session::Session;
use tower::{Layer, Service};

/// Adds [`Identity`] around a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityLayer;

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identity { inner }
    }
}

/// Writes the identity headers of a signed-in request (and strips any a
/// client sent).
#[derive(Debug, Clone)]
pub struct Identity<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Identity<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The extensions taken out (a pointer's move), so they are read in
        // place while the headers change; put back below.
        let mut extensions = std::mem::take(req.extensions_mut());
        let headers = req.headers_mut();
        // First, so no `Connection` header can name what is written below.
        crate::hop::strip_connection_listed(headers);
        strip_identity_headers(headers);
        if let Some(user) = extensions.get::<SignedIn>() {
            user.write_headers(headers);
        }
        // On a site whose provider passes its access token, a bearer header is
        // an identity claim too: only the gateway's, of a live session, gets through.
        if extensions.get::<crate::router::Target>().is_some_and(|r| r.site.passes_access_token) {
            headers.remove(http::header::AUTHORIZATION);
        }
        if let Some(token) = extensions.remove::<AccessToken>() {
            token.write(headers);
        }
        if let Some(CallbackDestination(d)) = extensions.get::<CallbackDestination>() {
            if let Ok(v) = HeaderValue::from_str(d) {
                headers.insert(HeaderName::from_static("x-ferrygate-destination"), v);
            }
        }
        *req.extensions_mut() = extensions;
        self.inner.call(req)
    }
}

/// The access token a request carries to the site (`pass_access_token`),
/// as its `Authorization: Bearer` value (made once, marked sensitive):
/// crate-private, so no client or inner service can set or read it.
#[derive(Clone)]
pub(crate) struct AccessToken(pub(crate) HeaderValue);

impl AccessToken {
    /// Writes it, replacing any `Authorization` the client sent.
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.insert(http::header::AUTHORIZATION, self.0);
    }
}

/// On an OAuth2 callback whose `state` checked out: the destination that
/// state was bound to at login (sent to the site as `X-Ferrygate-Destination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackDestination(pub String);

/// The signed-in user of a request with a live session: a request extension,
/// and the source of the `X-Ferrygate-*` identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The account (email) as the user signed in with.
    pub user: String,
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    /// The provider's name in `[providers]`.
    pub provider: String,
    /// The user's groups (empty for providers without groups).
    pub groups: Vec<String>,
}

impl From<Session> for SignedIn {
    fn from(s: Session) -> Self {
        Self { user: s.user, user_id: s.user_id, org_id: s.org_id, provider: s.provider, groups: s.groups }
    }
}

/// The groups that can be carried in `X-Ferrygate-Groups` (comma-separated):
/// a name holding a comma, a control character or leading or trailing
/// whitespace (which HTTP trims: the site would read another name than the
/// rules decided on) is dropped, and logged.
pub(crate) fn usable_groups(site: &str, groups: &[String]) -> Vec<String> {
    groups
        .iter()
        .filter(|g| {
            let usable =
                !g.is_empty() && !g.contains(',') && !g.chars().any(char::is_control) && g.trim() == g.as_str();
            if !usable {
                tracing::warn!(site, "a group name with a comma, a control character or outer whitespace was dropped");
            }
            usable
        })
        .cloned()
        .collect()
}

/// Longest identity value (user, an id, one group name) a provider may give,
/// in bytes, and most bytes of group names in all: beyond them the answer is
/// the provider's malfunction (`provider_unavailable`), never a session that
/// no store or header could carry.
pub(crate) const MAX_IDENTITY_VALUE: usize = 4096;
pub(crate) const MAX_GROUPS_BYTES: usize = 32 * 1024;

/// Which of a provider's identity values is over the limits, if any.
pub(crate) fn oversized(user: &crate::provider::UserInfo) -> Option<&'static str> {
    let fields = [
        ("user", user.email.as_deref()),
        ("user id", user.user_id.as_deref()),
        ("org id", user.org_id.as_deref()),
        ("external id", user.external_id.as_deref()),
    ];
    if let Some((name, _)) = fields.iter().find(|(_, v)| v.is_some_and(|v| v.len() > MAX_IDENTITY_VALUE)) {
        return Some(name);
    }
    let groups: usize = user.groups.iter().map(String::len).sum();
    (groups > MAX_GROUPS_BYTES || user.groups.iter().any(|g| g.len() > MAX_IDENTITY_VALUE)).then_some("groups")
}

impl SignedIn {
    /// Sets `X-Ferrygate-User`, `-User-Id`, `-Org-Id`, `-Groups` (when
    /// known) and `-Provider`.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if !self.groups.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.groups.join(",")) {
                headers.insert(HeaderName::from_static("x-ferrygate-groups"), v);
            }
        }
        let pairs = [
            ("x-ferrygate-user", Some(&self.user)),
            ("x-ferrygate-user-id", self.user_id.as_ref()),
            ("x-ferrygate-org-id", self.org_id.as_ref()),
            ("x-ferrygate-provider", Some(&self.provider)),
        ];
        for (name, value) in pairs {
            // A value that cannot be a header (control characters) is left out, never forwarded raw.
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

#[cfg(feature = "axum")]
mod axum_extractor {
    use std::convert::Infallible;

    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::{header, HeaderValue, StatusCode};

    use super::SignedIn;

    /// `user: SignedIn` in an axum handler: the signed-in user, or a 401.
    impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
        type Rejection = NotSignedIn;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<SignedIn>().cloned().ok_or(NotSignedIn)
        }
    }

    /// `user: Option<SignedIn>` in an axum handler: `None` when nobody is signed in.
    impl<S: Send + Sync> OptionalFromRequestParts<S> for SignedIn {
        type Rejection = Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<SignedIn>().cloned())
        }
    }

    /// The rejection of a [`SignedIn`] extractor without a signed-in user:
    /// 401 with the JSON error shape, `{"error": "unauthenticated", ...}`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct NotSignedIn;

    impl IntoResponse for NotSignedIn {
        fn into_response(self) -> Response {
            let body = r#"{"error":"unauthenticated","message":"Sign in to see this page."}"#;
            let mut res = Response::new(body.into());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
    }
}

#[cfg(feature = "axum")]
pub use axum_extractor::NotSignedIn;

/// Whether `name` (lower-case, as `http` stores it) is an `X-Ferrygate-*` header.
pub(crate) fn is_identity_header(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 12
        && b[0].eq_ignore_ascii_case(&b'x')
        && matches!(b[1], b'-' | b'_')
        && b[2..11].eq_ignore_ascii_case(b"ferrygate")
        && matches!(b[11], b'-' | b'_')
}

/// Removes every client-sent identity header.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    if !headers.keys().any(|n| is_identity_header(n.as_str())) {
        return;
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(|n| is_identity_header(n.as_str())).cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling() {
        let mut h = HeaderMap::new();
        for name in ["x-ferrygate-user", "X-FERRYGATE-USER-ID", "x_ferrygate_org_id", "x-ferrygate_provider", "x-other"]
        {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), "v".parse().unwrap());
        }
        strip_identity_headers(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-other"]);
    }
}
