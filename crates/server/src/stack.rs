//! The service stack one configuration serves with — request ids, the
//! gateway's layers, identity, the proxy — built once per worker thread and
//! configuration generation, and taken fresh by each request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ferrygate_core::tls::Connector;
use ferrygate_core::{GatewayLayer, IdentityLayer};
use ferrygate_proxy::Proxy;
use hyper::body::Incoming;
use tower::ServiceBuilder;

use crate::request_id::{RequestId, RequestIdLayer};

use crate::StartError;

/// The service stack for one configuration: request ids, then the gateway's
/// layers, then the proxy.
pub type Stack = RequestId<ferrygate_core::GatewayService<ferrygate_core::Identity<Proxy<Incoming>>>>;

/// What one configuration serves with. Each worker thread builds its own
/// stack (and so its own upstream pool) from `gateway`, once per generation.
pub(crate) struct Active {
    pub(crate) gateway: GatewayLayer,
    pub(crate) connector: Connector,
    pub(crate) generation: u64,
}

/// The stack over an already built connector (each worker makes its own pool).
fn stack_with(gateway: GatewayLayer, connector: Connector) -> Stack {
    let config = gateway.config();
    let proxy = Proxy::new(connector, config.server.trusted_proxies.clone(), config.server.upstream_timeout);
    ServiceBuilder::new()
        // A client's X-Request-Id is kept, else one is made; it goes upstream and back.
        .layer(RequestIdLayer::new())
        .layer(gateway)
        .layer(IdentityLayer)
        .service(proxy)
}

pub(crate) fn active(gateway: GatewayLayer) -> Result<Active, StartError> {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Built here, so a config the proxy cannot run is refused before the swap.
    gateway.config().servable().map_err(StartError::Config)?;
    let connector = ferrygate_core::tls::https_connector(gateway.config().upstream_tls.ca_file.as_deref(), false)
        .map_err(StartError::UpstreamTls)?;
    Ok(Active { gateway, connector, generation: GENERATION.fetch_add(1, Ordering::Relaxed) })
}

/// The stack current when each request arrives.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) active: Arc<ArcSwap<Active>>,
}

impl Current {
    /// This worker's stack for the current configuration, rebuilt once per generation.
    pub(crate) fn stack(&self) -> Stack {
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
