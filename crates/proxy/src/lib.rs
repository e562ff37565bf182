//! The reverse proxy: the innermost service. It forwards a request to the
//! [`Upstream`] of the site the gateway routed it to ([`Routed`]), streaming both bodies, and knows
//! nothing of logins.
//!
//! What it does to a request: the URI is re-based on the upstream, hop-by-hop
//! headers go (those named in `Connection` too), cookies split by h2 are
//! joined, and `X-Forwarded-For/-Proto/-Host` are written; the client's own
//! forwarding headers are kept only from a trusted proxy. `Host` is passed
//! unchanged (it is also in `X-Forwarded-Host`). WebSocket upgrades are spliced
//! once both sides agree on `101`; other upgrade tokens (`h2c`) are not
//! forwarded, so no tunnel can bypass the gateway. Upstream `Location` headers
//! pass through `rewrite_location`. `upstream_timeout` bounds the wait for the
//! response headers, counted from the end of the request body.
//!
//! Where a request goes: an HTTP/1.1 client connection's requests use its
//! [`Lane`] (one upstream connection of its own, driven by the same task);
//! the rest — h2 clients, WebSocket upgrades, a lane that cannot take the
//! request — use a pooled client shared by the worker.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferrygate_core::config::Upstream;
use ferrygate_core::conn::{canonical, is_trusted, ClientConn};
use ferrygate_core::hop::connection_tokens;
pub use ferrygate_core::hop::remove_hop_by_hop;
use ferrygate_core::identity::strip_identity_headers;
use ferrygate_core::router::Routed;
use ferrygate_core::telemetry::Route;
use ferrygate_core::tls::Connector;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tower::Service;

mod lane;
pub use lane::{open_lanes, Driven, Lane, MAX_LANES};

/// The body of a proxied answer: the upstream's, streamed, or our own error text.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Inner<B> {
    client: Client<Connector, Watched<B>>,
    /// What lanes connect with (the pool has its own clone).
    connector: Connector,
    trusted: Vec<IpNet>,
    timeout: Duration,
}

/// Forwards requests to their site's upstream. Cheap to clone (one `Arc`);
/// clones share the connection pool.
pub struct Proxy<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Proxy<B> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<B> std::fmt::Debug for Proxy<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("timeout", &self.inner.timeout).finish_non_exhaustive()
    }
}

impl<B> Proxy<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A proxy over `connector` (HTTP/1.1 to sites); `timeout` bounds the wait
    /// for the upstream's response headers once the request body has been sent.
    pub fn new(connector: Connector, trusted: Vec<IpNet>, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        Self { inner: Arc::new(Inner { client, connector, trusted, timeout }) }
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(upstream) = req.extensions().get::<Routed>().map(|r| r.site.upstream.clone()) else {
            tracing::error!("request reached the proxy without an upstream");
            return ready(error(StatusCode::INTERNAL_SERVER_ERROR, "no upstream\n"));
        };
        if req.method() == Method::CONNECT {
            return ready(error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
        }
        let mut req = req;
        let websocket = is_websocket(req.method(), req.headers());
        // The client's side of the upgrade, and the `Sec-WebSocket-Accept` the
        // site must answer with for it to be spliced.
        let client_upgrade = websocket.then(|| (hyper::upgrade::on(&mut req), websocket_accept(req.headers())));
        // A lane is for a client connection that stays: upgrades (handed over)
        // and last requests (HTTP/1.0, `Connection: close`) use the pool, whose
        // connections outlive them.
        let stays = !websocket && keeps_alive(req.version(), req.headers());
        let lane = req.extensions_mut().remove::<Lane<B>>().filter(|_| stays);
        let (parts, body) = req.into_parts();
        // Bodyless requests (most) need no progress tracking at all.
        let progress = (!body.is_end_stream()).then(|| Arc::new(Progress::new()));
        let mut req = Request::from_parts(parts, Watched { inner: body, progress: progress.clone() });
        if let Err(status) = prepare(&mut req, &upstream, &self.inner.trusted, websocket) {
            return ready(error(status, "bad request\n"));
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let res = forward(&inner, req, &upstream, progress, client_upgrade, lane).await;
            upstream.metrics.upstream_duration(started.elapsed());
            upstream.metrics.request(Route::Proxy, res.status());
            Ok(res)
        })
    }
}

async fn forward<B>(
    inner: &Inner<B>,
    req: Request<Watched<B>>,
    upstream: &Upstream,
    progress: Option<Arc<Progress>>,
    client_upgrade: Option<(hyper::upgrade::OnUpgrade, Option<HeaderValue>)>,
    lane: Option<Lane<B>>,
) -> Response<ProxyBody>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    {
        let timeout = inner.timeout;
        // The clock starts once the whole request body has gone upstream; while
        // it is going, an upload that makes no progress for as long gives up too
        // (an upstream that stopped reading, or a client that stopped sending).
        let deadline = async move {
            let Some(p) = progress else { return tokio::time::sleep(timeout).await };
            loop {
                if p.done.load(Ordering::Acquire) {
                    return tokio::time::sleep(timeout).await;
                }
                let idle_until = p.started + Duration::from_millis(p.last_ms.load(Ordering::Acquire)) + timeout;
                if std::time::Instant::now() >= idle_until {
                    return;
                }
                tokio::time::sleep_until(idle_until.into()).await;
            }
        };
        let send = async {
            let req = match lane {
                Some(lane) => match lane.send(req, &upstream.origin, &inner.connector).await {
                    Ok(sent) => return sent,
                    Err(req) => req,
                },
                None => req,
            };
            inner.client.request(absolute(req, &upstream.origin)?).await.map_err(BoxError::from)
        };
        let mut res = tokio::select! {
            res = send => match res {
                Ok(res) => res,
                Err(e) => {
                    tracing::warn!(upstream = %upstream.origin, error = %e, "upstream unavailable");
                    return error(StatusCode::BAD_GATEWAY, "bad gateway\n");
                }
            },
            () = deadline => {
                tracing::warn!(upstream = %upstream.origin, ?timeout, "upstream did not answer in time");
                return error(StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n");
            }
        };
        let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        let protocol = res.headers().get(header::UPGRADE).cloned();
        remove_hop_by_hop(res.headers_mut());
        match (client_upgrade, upgraded, protocol) {
            (Some((client_side, Some(expected))), true, Some(protocol))
                if res.headers().get(SEC_WEBSOCKET_ACCEPT) == Some(&expected) =>
            {
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                res.headers_mut().insert(header::UPGRADE, protocol);
                let upstream_side = hyper::upgrade::on(&mut res);
                tokio::spawn(splice(client_side, upstream_side));
            }
            (_, true, _) => {
                // A 101 that is not the answer to this handshake would turn the
                // connection into a raw tunnel past everything the gateway does.
                tracing::warn!(upstream = %upstream.origin, "101 that does not complete the client's WebSocket handshake");
                let mut res = error(StatusCode::BAD_GATEWAY, "bad gateway\n");
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return res;
            }
            _ => {}
        }
        rewrite_location(res.headers_mut(), upstream);
        res.map(Either::Left)
    }
}

fn ready(res: Response<ProxyBody>) -> Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>> {
    Box::pin(std::future::ready(Ok(res)))
}

fn error(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(text.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// How far a request body has got: the last frame's time, and whether it ended.
struct Progress {
    started: std::time::Instant,
    last_ms: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    fn new() -> Self {
        Self { started: std::time::Instant::now(), last_ms: AtomicU64::new(0), done: AtomicBool::new(false) }
    }
}

pin_project_lite::pin_project! {
    /// A request body that reports its progress and when it has been sent in
    /// full, and passes trailers on without client-sent `X-Ferrygate-*`.
    struct Watched<B> {
        #[pin]
        inner: B,
        progress: Option<Arc<Progress>>,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(p) = this.project().progress.take() {
                p.done.store(true, Ordering::Release);
            }
        }
    }
}

impl<B: Body> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut polled = this.inner.poll_frame(cx);
        // Trailers are headers too: no client-sent identity in them either
        // (some upstreams merge trailers into headers).
        if let Poll::Ready(Some(Ok(frame))) = &mut polled {
            if let Some(trailers) = frame.trailers_mut() {
                strip_identity_headers(trailers);
            }
        }
        if let (Poll::Ready(frame), Some(p)) = (&polled, this.progress.as_ref()) {
            match frame {
                Some(Ok(_)) => p.last_ms.store(p.started.elapsed().as_millis() as u64, Ordering::Release),
                None | Some(Err(_)) => p.done.store(true, Ordering::Release),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A header value of at most 64 bytes, formatted in place: the value is the
/// only allocation. `None` if longer, or not a valid header value.
pub fn short_header(args: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    use std::io::Write;
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    cursor.write_fmt(args).ok()?;
    let len = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..len]).ok()
}

/// Whether the client means to send more requests on its connection.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let mut tokens = connection_tokens(headers);
    match version {
        Version::HTTP_10 | Version::HTTP_09 => tokens.any(|t| t.eq_ignore_ascii_case("keep-alive")),
        _ => !tokens.any(|t| t.eq_ignore_ascii_case("close")),
    }
}

/// A WebSocket handshake: the only upgrade passed through.
fn is_websocket(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// The `Sec-WebSocket-Accept` that answers the request's `Sec-WebSocket-Key`
/// (RFC 6455 §4.2.2): base64 of SHA-1 of the key and the protocol's GUID.
fn websocket_accept(headers: &HeaderMap) -> Option<HeaderValue> {
    use base64::Engine;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let key = headers.get("sec-websocket-key")?.as_bytes().trim_ascii();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(ctx.finish())).ok()
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
fn prepare<B>(req: &mut Request<B>, upstream: &Upstream, trusted: &[IpNet], websocket: bool) -> Result<(), StatusCode> {
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
            if let Some(Ok(host)) = upstream.origin.authority().map(|a| HeaderValue::from_str(a.as_str())) {
                headers.insert(header::HOST, host);
            }
        }
    }

    let trusted_peer = conn.filter(|c| is_trusted(c.peer.ip(), trusted));
    if trusted_peer.is_none() {
        for name in &CLIENT_FORWARDING {
            headers.remove(name);
        }
    }
    let Some(conn) = conn else { return Ok(()) };
    let peer = canonical(conn.peer.ip());
    let earlier: Vec<&str> = headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()).collect();
    let xff = if earlier.is_empty() {
        short_header(format_args!("{peer}"))
    } else {
        HeaderValue::from_str(&format!("{}, {peer}", earlier.join(", "))).ok()
    };
    headers.insert(XFF, xff.ok_or(StatusCode::BAD_REQUEST)?);
    if !headers.contains_key(XFP) {
        headers.insert(XFP, HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
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
    format!("{}{pq}", upstream.base_path).parse().map(Some).map_err(|_| StatusCode::BAD_REQUEST)
}

/// The pool picks its connection by the URI: origin-form made absolute.
fn absolute<B>(req: Request<B>, origin: &Uri) -> Result<Request<B>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let mut uri = origin.clone().into_parts();
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = Uri::from_parts(uri)?;
    Ok(Request::from_parts(parts, body))
}

/// h2 clients send cookies as several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Applies the first matching `rewrite_location` rule (prefix match).
fn rewrite_location(headers: &mut HeaderMap, upstream: &Upstream) {
    if upstream.rewrite_location.is_empty() {
        return;
    }
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else { return };
    let Some(rule) = upstream.rewrite_location.iter().find(|r| location.starts_with(&r.from)) else { return };
    let rewritten = format!("{}{}", rule.to, &location[rule.from.len()..]);
    // `//host` and `/\host` are other hosts to a browser: a rule that maps to
    // a path must never turn an upstream's Location into one.
    if rewritten.starts_with("//") || rewritten.starts_with("/\\") {
        tracing::warn!(upstream = %upstream.origin, "a rewrite_location result would leave the site; Location passed unchanged");
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&rewritten) {
        headers.insert(header::LOCATION, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_split_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; b=2"]);
    }

    #[test]
    fn short_headers_are_formatted_in_place_and_bounded() {
        assert_eq!(short_header(format_args!("{}-{:04x}", "abc", 10)).unwrap(), "abc-000a");
        let ip: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(short_header(format_args!("{ip}")).unwrap(), "2001:db8::1");
        assert!(short_header(format_args!("{}", "x".repeat(65))).is_none());
        assert!(short_header(format_args!("a\nb")).is_none());
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let mut h = HeaderMap::new();
        assert!(keeps_alive(Version::HTTP_11, &h));
        assert!(!keeps_alive(Version::HTTP_10, &h));
        h.insert(header::CONNECTION, "Keep-Alive".parse().unwrap());
        assert!(keeps_alive(Version::HTTP_10, &h));
        h.insert(header::CONNECTION, "x-hop, close".parse().unwrap());
        assert!(!keeps_alive(Version::HTTP_11, &h));
    }

    #[test]
    fn the_websocket_accept_is_rfc_6455s() {
        let mut h = HeaderMap::new();
        assert_eq!(websocket_accept(&h), None);
        // RFC 6455 §1.3's own example.
        h.insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
        assert_eq!(websocket_accept(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn only_websocket_upgrades_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade, HTTP2-Settings".parse().unwrap());
        h.insert(header::UPGRADE, "h2c".parse().unwrap());
        assert!(!is_websocket(&Method::GET, &h));
        h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        assert!(is_websocket(&Method::GET, &h));
        assert!(!is_websocket(&Method::POST, &h));
    }

    #[test]
    fn rewrites_location_by_prefix() {
        let upstream = Upstream {
            metrics: Arc::new(ferrygate_core::telemetry::SiteMetrics::new("s", "p")),
            site: "s".into(),
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

    #[test]
    fn a_rewrite_never_makes_a_scheme_relative_location() {
        let upstream = Upstream {
            metrics: Arc::new(ferrygate_core::telemetry::SiteMetrics::new("s", "p")),
            site: "s".into(),
            origin: "http://127.0.0.1:1".parse().unwrap(),
            base_path: String::new(),
            rewrite_location: vec![ferrygate_core::config::Rewrite {
                from: "https://old.example/".into(),
                to: "/".into(),
            }],
        };
        for evil in ["https://old.example//evil.example/", "https://old.example/\\evil.example/"] {
            let mut h = HeaderMap::new();
            h.insert(header::LOCATION, evil.parse().unwrap());
            rewrite_location(&mut h, &upstream);
            assert_eq!(h[header::LOCATION], evil, "rewritten into another host");
        }
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, "https://old.example/account".parse().unwrap());
        rewrite_location(&mut h, &upstream);
        assert_eq!(h[header::LOCATION], "/account");
    }
}
