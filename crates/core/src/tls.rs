//! rustls in one place: the crypto provider (ring), installed once for the
//! process, and the client roots (webpki plus `upstream_tls.ca_file`).

use std::path::Path;
use std::sync::{Arc, Once};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use crate::dns::CachedDns;
/// The rustls in use (for providers that configure TLS themselves, e.g. LDAP).
pub use rustls;

/// A certificate file that cannot be used; names the file, never quotes it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot load {}: {source}", path.display())]
    Load { path: std::path::PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{} holds no PEM certificate", path.display())]
    Empty { path: std::path::PathBuf },
    #[error("{}: {source}", path.display())]
    Certificate { path: std::path::PathBuf, source: rustls::Error },
}

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
        .map_err(|source| TlsError::Load { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_owned() });
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
            roots.add(cert).map_err(|source| TlsError::Certificate { path: path.to_owned(), source })?;
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
