//! The reverse proxy: the innermost service. It forwards a request to the
//! [`Upstream`] of the site the gateway routed it to ([`Target`]), streaming both bodies, and knows
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
//! response headers, counted from the end of the request body (see [`Deadlines`]).
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
use ferrygate_core::hop::connection_tokens;
pub use ferrygate_core::hop::remove_hop_by_hop;
use ferrygate_core::strip_identity_headers;
use ferrygate_core::telemetry::RouteLabel;
use ferrygate_core::tls::Connector;
use ferrygate_core::BoxError;
use ferrygate_core::Target;
use ferrygate_deadline::Deadlines;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tower::Service;

mod lane;
mod request;
mod upgrade;
pub use lane::{open_lanes, Driven, Lane, MAX_LANES};
#[cfg(test)]
use request::join_cookies;
pub use request::short_header;
use request::{absolute, prepare};
use upgrade::{is_websocket, splice, websocket_accept, SEC_WEBSOCKET_ACCEPT};

/// The body of a proxied answer: the upstream's, streamed, or our own error text.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

struct Inner<B> {
    client: Client<Connector, Watched<B>>,
    /// What lanes connect with (the pool has its own clone).
    connector: Connector,
    trusted: Vec<IpNet>,
    timeout: Duration,
    /// The upstream timeouts of this proxy's requests.
    deadlines: Deadlines,
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
        Self { inner: Arc::new(Inner { client, connector, trusted, timeout, deadlines: Deadlines::new() }) }
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
        let Some(upstream) = req.extensions().get::<Target>().map(|r| r.site.upstream.clone()) else {
            tracing::error!("request reached the proxy without an upstream");
            return ready(error(StatusCode::INTERNAL_SERVER_ERROR, "no upstream\n"));
        };
        if upstream.origin.is_none() {
            // Loaded for a Tower layer (no `upstream`), then served: nothing to proxy to.
            tracing::error!("a site without an upstream cannot be proxied to");
            return ready(error(StatusCode::INTERNAL_SERVER_ERROR, "no upstream\n"));
        }
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
            let res = forward(&inner, req, &upstream, started, progress, client_upgrade, lane).await;
            upstream.metrics.upstream_duration(started.elapsed());
            upstream.metrics.request(RouteLabel::Proxy, res.status());
            Ok(res)
        })
    }
}

async fn forward<B>(
    inner: &Inner<B>,
    req: Request<Watched<B>>,
    upstream: &Upstream,
    started: std::time::Instant,
    progress: Option<Arc<Progress>>,
    client_upgrade: Option<(hyper::upgrade::OnUpgrade, Option<HeaderValue>)>,
    lane: Option<Lane<B>>,
) -> Response<ProxyBody>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Some(origin) = upstream.origin.as_ref() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no upstream\n");
    };
    {
        let timeout = inner.timeout;
        // The clock starts once the whole request body has gone upstream; while
        // it is going, an upload that makes no progress for as long gives up too
        // (an upstream that stopped reading, or a client that stopped sending).
        let deadlines = &inner.deadlines;
        let deadline = async move {
            // Without a body, "sent" is now: the clock read at the start serves.
            let Some(p) = progress else { return deadlines.since(started, timeout).await };
            loop {
                if p.done.load(Ordering::Acquire) {
                    return deadlines.after(timeout).await;
                }
                let idle_until = p.started + Duration::from_millis(p.last_ms.load(Ordering::Acquire)) + timeout;
                if std::time::Instant::now() >= idle_until {
                    return;
                }
                deadlines.at(idle_until).await;
            }
        };
        let send = async {
            let req = match lane {
                Some(lane) => match lane.send(req, origin, &inner.connector).await {
                    Ok(sent) => return sent,
                    Err(req) => req,
                },
                None => req,
            };
            inner.client.request(absolute(req, origin)?).await.map_err(BoxError::from)
        };
        let mut res = tokio::select! {
            // The answer first: once it is in, the deadline is not polled (nor the clock read).
            biased;
            res = send => match res {
                Ok(res) => res,
                Err(e) => {
                    tracing::warn!(upstream = %origin, error = %e, "upstream unavailable");
                    return error(StatusCode::BAD_GATEWAY, "bad gateway\n");
                }
            },
            () = deadline => {
                tracing::warn!(upstream = %origin, ?timeout, "upstream did not answer in time");
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
                tracing::warn!(upstream = %origin, "101 that does not complete the client's WebSocket handshake");
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

/// The proxy's own refusal (marked as Ferrygate's, so a browser may get the
/// error page).
fn error(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(text.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    let code = match status {
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ => "internal_error",
    };
    res.extensions_mut().insert(ferrygate_core::OwnError(code));
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

/// Whether the client means to send more requests on its connection.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let mut tokens = connection_tokens(headers);
    match version {
        Version::HTTP_10 | Version::HTTP_09 => tokens.any(|t| t.eq_ignore_ascii_case("keep-alive")),
        _ => !tokens.any(|t| t.eq_ignore_ascii_case("close")),
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
        tracing::warn!(upstream = ?upstream.origin, "a rewrite_location result would leave the site; Location passed unchanged");
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

    /// An upstream with one `rewrite_location` rule.
    fn rewriting(from: &str, to: &str) -> Upstream {
        Upstream {
            metrics: Arc::new(ferrygate_core::telemetry::SiteMetrics::new("s", "p")),
            origin: Some("http://127.0.0.1:1".parse().unwrap()),
            base_path: String::new(),
            rewrite_location: vec![ferrygate_core::config::Rewrite { from: from.into(), to: to.into() }],
        }
    }

    #[test]
    fn rewrites_location_by_prefix() {
        let upstream = rewriting("https://portal-internal.example/login", "/login");
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
        let upstream = rewriting("https://old.example/", "/");
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
