//! One client connection: its protocol (told from its first bytes or ALPN),
//! hyper's connection with the per-connection service, its upstream lane
//! (HTTP/1.1), and a graceful finish when the server drains.

use std::future::Future;
use std::time::Duration;

use ferrygate_core::ClientConn;
use ferrygate_deadline::Deadlines;
use ferrygate_proxy::{Driven, Lane};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use crate::stack::{Current, Stack};

/// How long a new connection may take to send its first bytes, then (hyper's
/// header-read timeout) to complete a request's headers, and an idle HTTP/1.1
/// connection to send its next request's.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One client connection's service: tags each request with the connection
/// (and, on HTTP/1.1, its upstream lane), then runs the current stack.
struct PerConn {
    current: Current,
    conn: ClientConn,
    lane: Option<Lane<Incoming>>,
}

impl hyper::service::Service<http::Request<Incoming>> for PerConn {
    type Response = <Stack as Service<http::Request<Incoming>>>::Response;
    type Error = <Stack as Service<http::Request<Incoming>>>::Error;
    type Future = Guarded<tower::util::Oneshot<Stack, http::Request<Incoming>>>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        // Before the request id and the identity are written: a client's
        // `Connection` header cannot name them (see `ferrygate_core::hop`).
        ferrygate_core::hop::strip_connection_listed(req.headers_mut());
        let extensions = req.extensions_mut();
        extensions.insert(self.conn);
        if let Some(lane) = &self.lane {
            extensions.insert(lane.clone());
        }
        Guarded { inner: self.current.stack().oneshot(req) }
    }
}

pin_project_lite::pin_project! {
    /// A request's future whose panic is that request's 500 (SPEC 7: no panic
    /// in one request stops another). The release profile unwinds for this.
    pub(crate) struct Guarded<F> {
        #[pin]
        inner: F,
    }
}

impl<F, R, E> Future for Guarded<F>
where
    F: Future<Output = Result<ferrygate_core::GatewayResponse<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.project().inner;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(polled) => polled,
            // Never polled again: the answer is ready.
            Err(_) => {
                tracing::error!("a request's handling panicked; answered 500 internal_error");
                let res = ferrygate_core::refused(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal_error\n",
                );
                std::task::Poll::Ready(Ok(res.map(http_body_util::Either::Right)))
            }
        }
    }
}

/// The protocol builders, shared by a worker's connections.
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    /// Builders whose timeouts (hyper's header-read timeout per request, h2
    /// keep-alive pings) live in this worker's table of deadlines rather than
    /// one tokio timer each.
    pub(crate) fn new() -> Self {
        let deadlines = Deadlines::new();
        let mut http1 = http1::Builder::new();
        http1.timer(deadlines.clone()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(deadlines.clone()).keep_alive_interval(Some(Duration::from_secs(30))).max_concurrent_streams(256);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1().timer(deadlines.clone()).header_read_timeout(HEADER_READ_TIMEOUT);
        auto.http2().timer(deadlines).keep_alive_interval(Some(Duration::from_secs(30))).max_concurrent_streams(256);
        Self { http1, http2, auto }
    }
}

/// Which protocol a connection speaks, told from its first bytes (h2 "prior
/// knowledge" starts with the connection preface) or its ALPN.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    /// Too few bytes yet to tell: hyper-util's auto builder reads on.
    Unsure,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(crate) fn sniff(first: &[u8]) -> Protocol {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Protocol::Http1
    } else if n == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unsure
    }
}

pub(crate) type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// A served connection that can be asked to finish its request in flight and close.
trait Graceful: Future {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I> Graceful for http1::UpgradeableConnection<I, PerConn>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I> Graceful for http2::Connection<I, PerConn, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

impl<I> Graceful for auto::UpgradeableConnection<'static, I, PerConn, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Runs `conn` (with its lane) until it ends; once the server drains, asks it
/// to finish what is in flight.
async fn until_drained<C, E>(
    conn: C,
    lane: Option<Lane<Incoming>>,
    mut draining: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    C: Graceful<Output = Result<(), E>>,
    E: Into<ConnError>,
{
    let mut conn = std::pin::pin!(conn);
    let drained = tokio::select! {
        res = Driven::new(conn.as_mut(), lane.clone()) => return res.map_err(Into::into),
        changed = draining.changed() => changed.is_ok(),
    };
    if drained {
        conn.as_mut().graceful_shutdown();
    }
    Driven::new(conn, lane).await.map_err(Into::into)
}

pub(crate) async fn serve_io<I>(
    io: TokioIo<I>,
    protocol: Protocol,
    builders: &Builders,
    draining: watch::Receiver<bool>,
    current: Current,
    conn: ClientConn,
) -> Result<(), ConnError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match protocol {
        Protocol::Http1 => {
            // One request at a time: the connection gets an upstream lane of its own.
            let lane = Lane::new();
            let service = PerConn { current, conn, lane: Some(lane.clone()) };
            until_drained(builders.http1.serve_connection(io, service).with_upgrades(), Some(lane), draining).await
        }
        Protocol::Http2 => {
            let service = PerConn { current, conn, lane: None };
            until_drained(builders.http2.serve_connection(io, service), None, draining).await
        }
        Protocol::Unsure => {
            let service = PerConn { current, conn, lane: None };
            until_drained(builders.auto.serve_connection_with_upgrades(io, service).into_owned(), None, draining).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_h2_prior_knowledge_from_http1() {
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(sniff(b"POST /login HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Protocol::Http2);
        // A preface cut short by the network: hyper-util's auto builder reads on.
        assert_eq!(sniff(b"PRI * HTTP/2"), Protocol::Unsure);
        assert_eq!(sniff(b"P"), Protocol::Unsure);
        // `PRI` as an HTTP/1.1 method is not the preface.
        assert_eq!(sniff(b"PRI / HTTP/1.1\r\n"), Protocol::Http1);
    }
}
