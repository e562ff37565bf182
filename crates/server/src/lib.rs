//! Ferrygate's server: binds the listeners, assembles config → layers → proxy,
//! serves HTTP/1.1 and h2 (plain, or TLS with ALPN), and drains gracefully.
//!
//! The stack every connection serves:
//! `Gateway` (owned routes) → `Identity` (identity headers) → `Proxy`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrygate_core::{ClientConn, GatewayLayer, IdentityLayer};
use ferrygate_proxy::Proxy;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;
use tower_http::add_extension::AddExtension;

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The service stack for one configuration.
type Stack = ferrygate_core::Gateway<ferrygate_core::Identity<Proxy<Incoming>>>;

struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

/// A bound, not yet running, server.
pub struct Server {
    listeners: Vec<Listener>,
    stack: Stack,
    grace: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addrs", &self.local_addrs()).finish_non_exhaustive()
    }
}

/// Builds the request stack around `gateway`: its layers, then the proxy.
pub fn stack(gateway: GatewayLayer) -> Result<Stack, StartError> {
    let config = gateway.config();
    let connector =
        ferrygate_core::tls::https_connector(config.upstream_tls.ca_file.as_deref(), false).map_err(StartError)?;
    let proxy = Proxy::new(connector, config.server.trusted_proxies.clone(), config.server.upstream_timeout);
    Ok(ServiceBuilder::new().layer(gateway).layer(IdentityLayer).service(proxy))
}

impl Server {
    /// Binds every listener of the gateway's config (plain and TLS).
    pub async fn bind(gateway: GatewayLayer) -> Result<Self, StartError> {
        let mut plain = Vec::new();
        for addr in &gateway.config().server.listen {
            plain.push(bind(*addr).await?);
        }
        Self::with_listeners(gateway, plain).await
    }

    /// Serves plain HTTP on listeners bound by the caller (who may need the
    /// address before writing the config, as the demo does), plus the TLS
    /// listeners of the config.
    pub async fn with_listeners(gateway: GatewayLayer, plain: Vec<TcpListener>) -> Result<Self, StartError> {
        let config = gateway.config().clone();
        let mut listeners: Vec<Listener> = plain.into_iter().map(|tcp| Listener { tcp, tls: None }).collect();
        if let Some(tls) = &config.server.tls {
            let acceptor = TlsAcceptor::from(tls.server_config.clone());
            for addr in &tls.listen {
                listeners.push(Listener { tcp: bind(*addr).await?, tls: Some(acceptor.clone()) });
            }
        }
        let grace = config.server.shutdown_grace;
        Ok(Self { listeners, stack: stack(gateway)?, grace })
    }

    /// The bound addresses, plain listeners first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.tcp.local_addr().ok()).collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests finish for up to `server.shutdown_grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for listener in self.listeners {
            tasks.push(tokio::spawn(serve(listener, self.stack.clone(), stop_rx.clone(), self.grace)));
        }
        shutdown.await;
        tracing::info!(grace = ?self.grace, "shutting down: no new connections, finishing requests in flight");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))
}

async fn serve(listener: Listener, stack: Stack, mut stop: watch::Receiver<bool>, grace: Duration) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
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
        let service = TowerToHyperService::new(AddExtension::new(stack.clone(), conn));
        let builder = builder.clone();
        match &listener.tls {
            None => {
                let fut =
                    graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Some(tls) = handshake(&acceptor, stream, peer).await else { return };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "shutdown grace ran out; closing the remaining connections");
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
