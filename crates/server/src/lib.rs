//! Ferrygate's server: binds the listeners, assembles config → layers → proxy,
//! serves HTTP/1.1 and h2 (plain, or TLS with ALPN), reloads, and drains
//! gracefully.
//!
//! The stack every request goes through:
//! `Gateway` (owned routes) → `Identity` (identity headers) → `Proxy`. The
//! current stack sits in an `ArcSwap`: a reload swaps it in one store, each
//! request takes the stack current when it arrives and finishes on it.

mod admin;
mod connection;
mod listener;
pub mod metrics;
mod reload;
mod request_id;
mod stack;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrygate_core::GatewayLayer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use listener::{bind, serve, Listener};
use reload::CertSwap;
pub use reload::Reloader;
pub use request_id::{RequestId, RequestIdLayer, WithRequestId};
pub use stack::Stack;
use stack::{active, Active, Current};

/// Why the server could not start (or reload).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener's address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    /// The configuration cannot be served (a site without an upstream).
    #[error("{0}")]
    Config(#[source] ferrygate_core::ConfigErrors),
    /// `upstream_tls.ca_file` cannot be used.
    #[error("upstream_tls.ca_file: {0}")]
    UpstreamTls(#[source] ferrygate_core::tls::TlsError),
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
