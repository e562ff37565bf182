//! The reverse proxy: the innermost service. It forwards a request to the
//! [`Upstream`] the gateway tagged it with, streaming both bodies, and knows
//! nothing of logins.
//!
//! What it does to a request, in order: the URI is re-based on the upstream,
//! hop-by-hop headers go (those named in `Connection` too), `X-Forwarded-*`
//! are written (a client's own values are kept only from a trusted proxy),
//! and `Host` becomes the upstream's, as nginx does by default (the original
//! is in `X-Forwarded-Host`). Upgrades (WebSocket) are spliced once both sides
//! agree on `101`. Upstream `Location` headers pass through `rewrite_location`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferrygate_core::config::Upstream;
use ferrygate_core::conn::{is_trusted, ClientConn};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use tower::Service;

/// The body of a proxied answer: the upstream's, streamed, or our own error text.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Forwards requests to their site's upstream. Cheap to clone; clones share
/// the connection pool.
pub struct Proxy<B> {
    client: Client<HttpsConnector<HttpConnector>, B>,
    trusted: Arc<[IpNet]>,
    timeout: Duration,
}

impl<B> Clone for Proxy<B> {
    fn clone(&self) -> Self {
        Self { client: self.client.clone(), trusted: self.trusted.clone(), timeout: self.timeout }
    }
}

impl<B> std::fmt::Debug for Proxy<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl<B> Proxy<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A proxy over `connector`; `timeout` bounds the wait for the upstream's
    /// response headers (bodies stream for as long as they take).
    pub fn new(connector: HttpsConnector<HttpConnector>, trusted: Vec<IpNet>, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client, trusted: trusted.into(), timeout }
    }
}

impl<B> Service<Request<B>> for Proxy<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(upstream) = req.extensions().get::<Arc<Upstream>>().cloned() else {
            tracing::error!("request reached the proxy without an upstream");
            return Box::pin(std::future::ready(Ok(error(StatusCode::INTERNAL_SERVER_ERROR, "no upstream\n"))));
        };
        let client_upgrade = upgrade_protocol(req.headers()).map(|_| hyper::upgrade::on(&mut req));
        if let Err(status) = prepare(&mut req, &upstream, &self.trusted) {
            return Box::pin(std::future::ready(Ok(error(status, "bad request\n"))));
        }
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let mut res = match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %upstream.origin, error = %e, "upstream unavailable");
                    return Ok(error(StatusCode::BAD_GATEWAY, "bad gateway\n"));
                }
                Err(_) => {
                    tracing::warn!(upstream = %upstream.origin, ?timeout, "upstream did not answer in time");
                    return Ok(error(StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n"));
                }
            };
            match client_upgrade {
                Some(client_side) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    let upstream_side = hyper::upgrade::on(&mut res);
                    tokio::spawn(splice(client_side, upstream_side));
                }
                _ => remove_hop_by_hop(res.headers_mut()),
            }
            rewrite_location(res.headers_mut(), &upstream);
            Ok(res.map(Either::Left))
        })
    }
}

fn error(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(text.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// The protocol a request asks to upgrade to, when it asks.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}

/// Rewrites `req` in place for the upstream.
fn prepare<B>(req: &mut Request<B>, upstream: &Upstream, trusted: &[IpNet]) -> Result<(), StatusCode> {
    let original_host = req
        .headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = if upstream.base_path.is_empty() {
        let mut parts = upstream.origin.clone().into_parts();
        parts.path_and_query = Some(path_and_query.parse().map_err(|_| StatusCode::BAD_REQUEST)?);
        Uri::from_parts(parts).map_err(|_| StatusCode::BAD_REQUEST)?
    } else {
        format!("{}{}{}", upstream.origin.to_string().trim_end_matches('/'), upstream.base_path, path_and_query)
            .parse()
            .map_err(|_| StatusCode::BAD_REQUEST)?
    };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;

    let conn = req.extensions().get::<ClientConn>().copied();
    let upgrade = upgrade_protocol(req.headers());
    let headers = req.headers_mut();
    remove_hop_by_hop(headers);
    headers.remove(header::HOST);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }

    let Some(conn) = conn else { return Ok(()) };
    let from_trusted = is_trusted(conn.peer.ip(), trusted);
    let peer = HeaderValue::from_str(&conn.peer.ip().to_string()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let xfh = HeaderName::from_static("x-forwarded-host");
    if from_trusted {
        let earlier: Vec<&str> = headers.get_all(&xff).iter().filter_map(|v| v.to_str().ok()).collect();
        let value = if earlier.is_empty() {
            peer
        } else {
            HeaderValue::from_str(&format!("{}, {}", earlier.join(", "), conn.peer.ip()))
                .map_err(|_| StatusCode::BAD_REQUEST)?
        };
        headers.insert(&xff, value);
    } else {
        headers.insert(&xff, peer);
        headers.remove(&xfp);
        headers.remove(&xfh);
        headers.remove(header::FORWARDED);
    }
    if !headers.contains_key(&xfp) {
        headers.insert(&xfp, HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
    }
    if let (false, Some(host)) = (headers.contains_key(&xfh), original_host) {
        headers.insert(&xfh, host);
    }
    Ok(())
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1 and those `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Applies the first matching `rewrite_location` rule (prefix match).
fn rewrite_location(headers: &mut HeaderMap, upstream: &Upstream) {
    if upstream.rewrite_location.is_empty() {
        return;
    }
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else { return };
    let Some(rule) = upstream.rewrite_location.iter().find(|r| location.starts_with(&r.from)) else { return };
    let rewritten = format!("{}{}", rule.to, &location[rule.from.len()..]);
    if let Ok(v) = HeaderValue::from_str(&rewritten) {
        headers.insert(header::LOCATION, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_standard_and_listed_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-end-to-end", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-end-to-end"]);
    }

    #[test]
    fn rewrites_location_by_prefix() {
        let upstream = Upstream {
            origin: "http://127.0.0.1:1".parse().unwrap(),
            base_path: String::new(),
            rewrite_location: vec![ferrygate_core::config::Rewrite {
                from: "https://portal-internal.example/login".into(),
                to: "/login".into(),
            }],
        };
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, "https://portal-internal.example/login?x=1".parse().unwrap());
        rewrite_location(&mut h, &upstream);
        assert_eq!(h[header::LOCATION], "/login?x=1");
        h.insert(header::LOCATION, "https://elsewhere.example/login".parse().unwrap());
        rewrite_location(&mut h, &upstream);
        assert_eq!(h[header::LOCATION], "https://elsewhere.example/login");
    }
}
