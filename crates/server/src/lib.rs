//! Ferrygate's server: binds the listeners, assembles config → layers → proxy,
//! serves HTTP/1.1 and h2 (plain, or TLS with ALPN), reloads, and drains
//! gracefully.
//!
//! The stack every request goes through:
//! `Gateway` (owned routes) → `Identity` (identity headers) → `Proxy`. The
//! current stack sits in an `ArcSwap`: a reload swaps it in one store, each
//! request takes the stack current when it arrives and finishes on it.

mod admin;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrygate_core::tls::Connector;
use ferrygate_core::{ClientConn, GatewayLayer, IdentityLayer, SessionStore};
use ferrygate_proxy::{Lane, Proxy};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestId, PropagateRequestIdLayer, RequestId, SetRequestId, SetRequestIdLayer,
};

/// Why the server could not start (or reload).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The service stack for one configuration: request ids, then the gateway's
/// layers, then the proxy.
pub type Stack = SetRequestId<
    PropagateRequestId<ferrygate_core::GatewayService<ferrygate_core::Identity<Proxy<Incoming>>>>,
    RequestIds,
>;

/// Request ids without a syscall each: a random per-process prefix and a counter.
#[derive(Clone)]
pub struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once per process: enough to tell processes apart.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        Self { prefix: format!("{:016x}", h.finish()).into(), next: Arc::default() }
    }
}

impl std::fmt::Debug for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestIds").finish_non_exhaustive()
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        ferrygate_proxy::short_header(format_args!("{}-{n:012x}", self.prefix)).map(RequestId::new)
    }
}

/// What one configuration serves with. Each worker thread builds its own
/// stack (and so its own upstream pool) from `gateway`, once per generation.
pub(crate) struct Active {
    gateway: GatewayLayer,
    connector: Connector,
    store: Arc<dyn SessionStore>,
    generation: u64,
}

/// The stack over an already built connector (each worker makes its own pool).
fn stack_with(gateway: GatewayLayer, connector: Connector) -> Stack {
    let config = gateway.config();
    let proxy = Proxy::new(connector, config.server.trusted_proxies.clone(), config.server.upstream_timeout);
    ServiceBuilder::new()
        // A client's X-Request-Id is kept, else one is made; it goes upstream and back.
        .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(gateway)
        .layer(IdentityLayer)
        .service(proxy)
}

fn active(gateway: GatewayLayer) -> Result<Active, StartError> {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Built here, so a config the proxy cannot run is refused before the swap.
    let connector = ferrygate_core::tls::https_connector(gateway.config().upstream_tls.ca_file.as_deref(), false)
        .map_err(|e| StartError(format!("upstream_tls.ca_file: {e}")))?;
    let store = gateway.store().clone();
    Ok(Active { gateway, connector, store, generation: GENERATION.fetch_add(1, Ordering::Relaxed) })
}

/// The TLS certificate in use, swapped on reload; open connections keep theirs.
#[derive(Debug)]
struct CertSwap(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertSwap {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

/// Swaps in a new configuration while the server runs.
#[derive(Clone)]
pub struct Reloader {
    active: Arc<ArcSwap<Active>>,
    certs: Option<Arc<CertSwap>>,
    /// One reload at a time, so an older config never lands after a newer one.
    lock: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// Serves `gateway`'s configuration from the next request on. Listener
    /// addresses are fixed at start; the TLS certificate follows the new config.
    pub fn reload(&self, gateway: GatewayLayer) -> Result<(), StartError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.active.load_full();
        let (old, new) = (&current.gateway.config().server, &gateway.config().server);
        if old.listen != new.listen
            || old.tls.is_some() != new.tls.is_some()
            || old.shutdown_grace != new.shutdown_grace
        {
            tracing::warn!("listeners, TLS on/off and shutdown_grace are fixed at start: restart to change them");
        }
        let certified = gateway.config().server.tls.as_ref().map(|t| t.certified.clone());
        let next = active(gateway)?;
        if let (Some(certs), Some(certified)) = (&self.certs, certified) {
            certs.0.store(certified);
        }
        self.active.store(Arc::new(next));
        Ok(())
    }
}

/// A bound, not yet running, server.
pub struct Server {
    listeners: Vec<Listener>,
    admin: Option<TcpListener>,
    active: Arc<ArcSwap<Active>>,
    certs: Option<Arc<CertSwap>>,
    draining: Arc<AtomicBool>,
    grace: Duration,
    /// Shared by every [`Reloader`]: one reload at a time across all of them.
    reload_lock: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addrs", &self.local_addrs()).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds every listener of the gateway's config (plain, TLS, admin).
    pub async fn bind(gateway: GatewayLayer) -> Result<Self, StartError> {
        let mut plain = Vec::new();
        for addr in &gateway.config().server.listen {
            plain.push(bind(*addr).await?);
        }
        Self::with_listeners(gateway, plain).await
    }

    /// Serves plain HTTP on listeners bound by the caller (who may need the
    /// address before writing the config, as the demo does), plus the TLS and
    /// admin listeners of the config.
    pub async fn with_listeners(gateway: GatewayLayer, plain: Vec<TcpListener>) -> Result<Self, StartError> {
        let config = gateway.config().clone();
        let mut listeners: Vec<Listener> = plain.into_iter().map(|tcp| Listener { tcp, tls: None }).collect();
        let mut certs = None;
        if let Some(tls) = &config.server.tls {
            let swap = Arc::new(CertSwap(ArcSwap::new(tls.certified.clone())));
            let mut server_config =
                rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(swap.clone());
            server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let acceptor = TlsAcceptor::from(Arc::new(server_config));
            for addr in &tls.listen {
                listeners.push(Listener { tcp: bind(*addr).await?, tls: Some(acceptor.clone()) });
            }
            certs = Some(swap);
        }
        let admin = match &config.admin {
            Some(a) => Some(bind(a.listen).await?),
            None => None,
        };
        Ok(Self {
            listeners,
            admin,
            active: Arc::new(ArcSwap::from_pointee(active(gateway)?)),
            certs,
            draining: Arc::new(AtomicBool::new(false)),
            grace: config.server.shutdown_grace,
            reload_lock: Arc::default(),
        })
    }

    /// The bound traffic addresses, plain listeners first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.tcp.local_addr().ok()).collect()
    }

    /// The admin listener's address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that swaps in new configurations.
    pub fn reloader(&self) -> Reloader {
        Reloader { active: self.active.clone(), certs: self.certs.clone(), lock: self.reload_lock.clone() }
    }

    /// Serves until `shutdown` resolves; then `/readyz` turns 503, listeners
    /// stop accepting, and requests in flight get `server.shutdown_grace`.
    ///
    /// Traffic is served by one single-threaded runtime per core, each
    /// accepting on every listener and keeping its own upstream pool: a
    /// request and its upstream exchange stay on one thread, with no
    /// cross-thread wake-ups (the multi-threaded scheduler spent about a third
    /// of the CPU in them under load).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if let Some(listener) = self.admin {
            let admin = Arc::new(admin::Admin {
                active: self.active.clone(),
                draining: self.draining.clone(),
                metrics: metrics::handle(),
            });
            tokio::spawn(admin.serve(listener));
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 64);
        let mut shared = Vec::new();
        for l in self.listeners {
            match l.tcp.into_std() {
                Ok(std) => shared.push((std, l.tls)),
                Err(e) => tracing::error!(error = %e, "a listener could not be handed to the workers"),
            }
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut threads = Vec::new();
        for i in 0..workers {
            let listeners: Vec<(std::net::TcpListener, Option<TlsAcceptor>)> =
                shared.iter().filter_map(|(l, tls)| Some((l.try_clone().ok()?, tls.clone()))).collect();
            let active = self.active.clone();
            let stop = stop_rx.clone();
            let grace = self.grace;
            let thread = std::thread::Builder::new().name(format!("ferrygate-worker-{i}")).spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "worker runtime failed to start"),
                };
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for (std, tls) in listeners {
                        match TcpListener::from_std(std) {
                            Ok(tcp) => {
                                let current = Current { active: active.clone() };
                                tasks.push(tokio::spawn(serve(Listener { tcp, tls }, current, stop.clone(), grace)));
                            }
                            Err(e) => tracing::error!(error = %e, "worker cannot use a listener"),
                        }
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                // Work still running (a stuck DNS lookup, say) must not hold the exit.
                runtime.shutdown_timeout(Duration::from_millis(100));
            });
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
            }
        }
        drop(shared);
        shutdown.await;
        self.draining.store(true, Ordering::SeqCst);
        tracing::info!(grace = ?self.grace, "shutting down: no new connections, finishing requests in flight");
        let _ = stop_tx.send(true);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        if tokio::time::timeout(self.grace + Duration::from_secs(5), joined).await.is_err() {
            tracing::warn!("workers did not stop in time; exiting anyway");
        }
    }
}

/// The stack current when each request arrives.
#[derive(Clone)]
struct Current {
    active: Arc<ArcSwap<Active>>,
}

type Oneshot = tower::util::Oneshot<Stack, http::Request<Incoming>>;

impl Current {
    /// This worker's stack for the current configuration, rebuilt once per generation.
    fn stack(&self) -> Stack {
        thread_local! {
            static STACK: std::cell::RefCell<Option<(u64, Stack)>> = const { std::cell::RefCell::new(None) };
        }
        let active = self.active.load();
        STACK.with(|cell| {
            let mut cell = cell.borrow_mut();
            match &*cell {
                Some((generation, stack)) if *generation == active.generation => stack.clone(),
                _ => {
                    let fresh = stack_with(active.gateway.clone(), active.connector.clone());
                    *cell = Some((active.generation, fresh.clone()));
                    fresh
                }
            }
        })
    }
}

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
    type Future = Oneshot;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        // Before the request id and the identity are written: a client's
        // `Connection` header cannot name them (see `ferrygate_core::hop`).
        ferrygate_core::hop::strip_connection_listed(req.headers_mut());
        let extensions = req.extensions_mut();
        extensions.insert(self.conn);
        if let Some(lane) = &self.lane {
            extensions.insert(lane.clone());
        }
        self.current.stack().oneshot(req)
    }
}

pin_project_lite::pin_project! {
    /// A client connection and its upstream lane, polled by one task: the
    /// lane first (it may have an answer for the connection), then the
    /// connection, then the lane again if the connection gave it a request.
    struct Driven<F> {
        #[pin]
        conn: F,
        lane: Option<Lane<Incoming>>,
    }
}

impl<F: Future> Future for Driven<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let Some(lane) = this.lane.as_ref() else { return this.conn.poll(cx) };
        loop {
            lane.drive(cx);
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if !lane.take_dirty() {
                return Poll::Pending;
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))
}

/// How long a new connection may take to send its first bytes, then (hyper's
/// header-read timeout) to complete a request's headers, and an idle HTTP/1.1
/// connection to send its next request's.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The protocol builders, shared by a worker's connections.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new() -> Self {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30))).max_concurrent_streams(256);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .max_concurrent_streams(256);
        Self { http1, http2, auto }
    }
}

/// Which protocol a connection speaks, told from its first bytes (h2 "prior
/// knowledge" starts with the connection preface) or its ALPN.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Protocol {
    Http1,
    Http2,
    /// Too few bytes yet to tell: hyper-util's auto builder reads on.
    Unsure,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn sniff(first: &[u8]) -> Protocol {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Protocol::Http1
    } else if n == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unsure
    }
}

async fn serve(listener: Listener, current: Current, mut stop: watch::Receiver<bool>, grace: Duration) {
    // Every connection holds a receiver: a send asks them to finish, the
    // channel closing says they all have.
    let (drain, draining) = watch::channel(false);
    let builders = Arc::new(Builders::new());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = ClientConn { peer, tls: listener.tls.is_some() };
        let current = current.clone();
        let builders = builders.clone();
        let draining = draining.clone();
        let acceptor = listener.tls.clone();
        tokio::spawn(async move {
            let mut draining = draining;
            let result = match acceptor {
                None => {
                    let mut first = [0u8; 24];
                    // A connection that has sent nothing yet is simply closed on drain.
                    let peeked = tokio::select! {
                        peeked = tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)) => peeked,
                        _ = draining.changed() => return,
                    };
                    let protocol = match peeked {
                        Ok(Ok(n)) if n > 0 => sniff(&first[..n]),
                        _ => return,
                    };
                    serve_io(TokioIo::new(stream), protocol, &builders, draining, current, conn).await
                }
                Some(acceptor) => {
                    let tls = tokio::select! {
                        tls = handshake(&acceptor, stream, peer) => tls,
                        _ = draining.changed() => return,
                    };
                    let Some(tls) = tls else { return };
                    let protocol =
                        if tls.get_ref().1.alpn_protocol() == Some(b"h2") { Protocol::Http2 } else { Protocol::Http1 };
                    serve_io(TokioIo::new(tls), protocol, &builders, draining, current, conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(draining);
    let _ = drain.send(true);
    if tokio::time::timeout(grace, drain.closed()).await.is_err() {
        tracing::warn!(?grace, "shutdown grace ran out; closing the remaining connections");
    }
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

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
        res = Driven { conn: conn.as_mut(), lane: lane.clone() } => return res.map_err(Into::into),
        changed = draining.changed() => changed.is_ok(),
    };
    if drained {
        conn.as_mut().graceful_shutdown();
    }
    Driven { conn, lane }.await.map_err(Into::into)
}

async fn serve_io<I>(
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

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
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
