//! What the proxy does to a request on its way to the site: the target in
//! origin form under the upstream's base path, HTTP/1.1, hop-by-hop headers
//! removed, h2's split cookies joined, the host the site was chosen by, and
//! `X-Forwarded-For/-Proto/-Host` (a client's own kept only from a trusted
//! proxy).

use ferrygate_core::config::Upstream;
use ferrygate_core::conn::{canonical, is_trusted, ClientConn};
use ferrygate_core::hop::remove_hop_by_hop;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri, Version};
use ipnet::IpNet;

use crate::BoxError;

/// A header value of at most 64 bytes, formatted in place: the value is the
/// only allocation, and its clones share it (no copy, no allocation).
/// `None` if longer, or not a valid header value.
pub fn short_header(args: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    use std::io::Write;
    let mut value = Short { buf: [0u8; 64], len: 0 };
    let mut cursor = std::io::Cursor::new(&mut value.buf[..]);
    cursor.write_fmt(args).ok()?;
    value.len = cursor.position() as usize;
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(value)).ok()
}

/// The bytes of a [`short_header`], owned by its one shared buffer.
struct Short {
    buf: [u8; 64],
    len: usize,
}

impl AsRef<[u8]> for Short {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Forwarding claims an untrusted client may not make.
const CLIENT_FORWARDING: [HeaderName; 9] = [
    XFF,
    XFP,
    XFH,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
];

/// Rewrites `req` in place for the upstream.
pub(crate) fn prepare<B>(
    req: &mut Request<B>,
    upstream: &Upstream,
    trusted: &[IpNet],
    websocket: bool,
) -> Result<(), StatusCode> {
    // The host the site was chosen by: the gateway wrote the request's
    // canonical authority into `Host` (`ferrygate_core::authority`).
    let original_host = match req.headers().get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    if let Some(uri) = origin_form(req.uri(), upstream)? {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_11;

    let conn = req.extensions().get::<ClientConn>().copied();
    let headers = req.headers_mut();
    remove_hop_by_hop(headers);
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    join_cookies(headers);
    match &original_host {
        Some(host) => {
            headers.insert(header::HOST, host.clone());
        }
        // HTTP/1.0 allows a request without one; HTTP/1.1 to the site needs one.
        None => {
            if let Some(Ok(host)) =
                upstream.origin.as_ref().and_then(Uri::authority).map(|a| HeaderValue::from_str(a.as_str()))
            {
                headers.insert(header::HOST, host);
            }
        }
    }

    let from_trusted = conn.is_some_and(|c| is_trusted(c.peer.ip(), trusted));
    // One pass over the names (a request has a handful) instead of nine
    // hashed removals; after it an untrusted request has none of them.
    if !from_trusted && headers.keys().any(|name| CLIENT_FORWARDING.contains(name)) {
        for name in &CLIENT_FORWARDING {
            headers.remove(name);
        }
    }
    let Some(conn) = conn else { return Ok(()) };
    let peer = canonical(conn.peer.ip());
    let proto = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    if !from_trusted {
        // None of the client's is left: these are the only ones.
        headers.insert(XFF, short_header(format_args!("{peer}")).ok_or(StatusCode::BAD_REQUEST)?);
        headers.insert(XFP, proto);
        if let Some(host) = original_host {
            headers.insert(XFH, host);
        }
        return Ok(());
    }
    // A trusted proxy's are kept: the peer is appended to its chain.
    let earlier: Vec<&str> = headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()).collect();
    let xff = if earlier.is_empty() {
        short_header(format_args!("{peer}"))
    } else {
        HeaderValue::from_str(&format!("{}, {peer}", earlier.join(", "))).ok()
    };
    headers.insert(XFF, xff.ok_or(StatusCode::BAD_REQUEST)?);
    if !headers.contains_key(XFP) {
        headers.insert(XFP, proto);
    }
    if let (false, Some(host)) = (headers.contains_key(XFH), original_host) {
        headers.insert(XFH, host);
    }
    Ok(())
}

/// The request target for the upstream in origin form (`/path?query`, under
/// the upstream's base path); `None` when the client's already is exactly that.
fn origin_form(uri: &Uri, upstream: &Upstream) -> Result<Option<Uri>, StatusCode> {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    if upstream.base_path.is_empty() {
        if uri.scheme().is_none() && uri.authority().is_none() && uri.path_and_query().is_some() {
            return Ok(None);
        }
        return pq.parse().map(Some).map_err(|_| StatusCode::BAD_REQUEST);
    }
    Uri::try_from(format!("{}{pq}", upstream.base_path)).map(Some).map_err(|_| StatusCode::BAD_REQUEST)
}

/// The pool picks its connection by the URI: origin-form made absolute.
pub(crate) fn absolute<B>(req: Request<B>, origin: &Uri) -> Result<Request<B>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let mut uri = origin.clone().into_parts();
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = Uri::from_parts(uri)?;
    Ok(Request::from_parts(parts, body))
}

/// h2 clients send cookies as several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
pub(crate) fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}
