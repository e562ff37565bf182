//! The listeners: accept, TLS handshake with ALPN, the connection's first
//! bytes told apart (h2 prior knowledge or HTTP/1.1), and a graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrygate_core::ClientConn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::connection::{serve_io, sniff, Builders, Protocol, HEADER_READ_TIMEOUT};
use crate::stack::Current;
use crate::StartError;

pub(crate) struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) tls: Option<TlsAcceptor>,
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })
}

pub(crate) async fn serve(listener: Listener, current: Current, mut stop: watch::Receiver<bool>, grace: Duration) {
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
