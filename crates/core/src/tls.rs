//! rustls in one place: the crypto provider (ring), installed once for the
//! process, and the client roots (webpki plus `upstream_tls.ca_file`).

use std::path::Path;
use std::sync::{Arc, Once};

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tower::Service;

/// A certificate file that cannot be used; names the file, never quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// Installs ring as the process-wide rustls provider; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed: keep that one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Loads every PEM certificate of `path`; at least one is required.
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("cannot load {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// A TLS client config that verifies servers against webpki's roots and `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in load_roots(path)? {
            roots.add(cert).map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}

/// A connector for plain HTTP or verified HTTPS with `TCP_NODELAY`; h2 is
/// offered by ALPN when `http2` (provider calls), while the proxy speaks
/// HTTP/1.1 to sites so upgrades (WebSocket) keep working.
pub fn https_connector(ca_file: Option<&Path>, http2: bool) -> Result<Connector, TlsError> {
    let mut http = HttpConnector::new_with_resolver(CachedDns::default());
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
    let tls = (*client_config(ca_file)?).clone();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1();
    Ok(if http2 { builder.enable_http2().wrap_connector(http) } else { builder.wrap_connector(http) })
}

/// The connector for sites and providers: HTTP or verified HTTPS, over [`CachedDns`].
pub type Connector = HttpsConnector<HttpConnector<CachedDns>>;

/// How long a host name's addresses are reused before it is resolved again.
pub const DNS_REUSE: Duration = Duration::from_secs(5);

/// The most host names remembered (they come from the config, so a handful).
const DNS_ENTRIES: usize = 256;

type Addrs = Arc<[SocketAddr]>;

/// The system resolver (getaddrinfo, on the blocking pool) with its answers
/// reused for [`DNS_REUSE`]: the proxy opens an upstream connection per client
/// connection, which must not mean a DNS query (with a Kubernetes search list,
/// several) per client connection. IP-literal upstreams never reach a resolver.
#[derive(Clone)]
pub struct CachedDns<R = GaiResolver> {
    inner: R,
    cache: Arc<Mutex<HashMap<Name, (Instant, Addrs)>>>,
}

impl Default for CachedDns {
    fn default() -> Self {
        Self::new(GaiResolver::new())
    }
}

impl<R> CachedDns<R> {
    /// Reuses `inner`'s answers for [`DNS_REUSE`].
    pub fn new(inner: R) -> Self {
        Self { inner, cache: Arc::default() }
    }

    fn fresh(&self, name: &Name) -> Option<Addrs> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(name).filter(|(at, _)| at.elapsed() < DNS_REUSE).map(|(_, addrs)| addrs.clone())
    }
}

impl<R> std::fmt::Debug for CachedDns<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDns").finish_non_exhaustive()
    }
}

impl<R> Service<Name> for CachedDns<R>
where
    R: Service<Name> + Clone + Send + 'static,
    R::Response: Iterator<Item = SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
{
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(addrs) = self.fresh(&name) {
            return Box::pin(std::future::ready(Ok(addrs.iter().copied().collect::<Vec<_>>().into_iter())));
        }
        let mut inner = self.inner.clone();
        let cache = self.cache.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = inner.call(name.clone()).await.map_err(Into::into)?.collect();
            let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= DNS_ENTRIES {
                cache.retain(|_, (at, _)| at.elapsed() < DNS_REUSE);
            }
            if cache.len() < DNS_ENTRIES {
                cache.insert(name, (Instant::now(), addrs.clone().into()));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod dns_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn answers_are_reused_for_a_while_per_name() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let resolver = tower::service_fn(move |name: Name| {
            counted.fetch_add(1, Ordering::SeqCst);
            let addr: SocketAddr = if name.as_str() == "app" { "10.0.0.1:0" } else { "10.0.0.2:0" }.parse().unwrap();
            std::future::ready(Ok::<_, std::io::Error>(vec![addr].into_iter()))
        });
        let mut dns = CachedDns::new(resolver);
        let app: Name = "app".parse().unwrap();
        let first: Vec<SocketAddr> = dns.call(app.clone()).await.unwrap().collect();
        let again: Vec<SocketAddr> = dns.call(app.clone()).await.unwrap().collect();
        assert_eq!(first, again);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the second lookup within DNS_REUSE went to the resolver");
        let other: Vec<SocketAddr> = dns.call("db".parse().unwrap()).await.unwrap().collect();
        assert_ne!(other, first);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // An old answer is not reused.
        dns.cache.lock().unwrap().get_mut(&app).unwrap().0 -= DNS_REUSE;
        let _ = dns.call(app).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
