//! Reloading: a new configuration's stack swapped in atomically (requests in
//! flight finish on the one they started with), and the TLS certificate
//! swapped with it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ferrygate_core::GatewayLayer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::stack::{active, Active};
use crate::StartError;

/// The TLS certificate in use, swapped on reload; open connections keep theirs.
#[derive(Debug)]
pub(crate) struct CertSwap(pub(crate) ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertSwap {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Swaps in a new configuration while the server runs.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) active: Arc<ArcSwap<Active>>,
    pub(crate) certs: Option<Arc<CertSwap>>,
    /// One reload at a time, so an older config never lands after a newer one.
    pub(crate) lock: Arc<std::sync::Mutex<()>>,
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
