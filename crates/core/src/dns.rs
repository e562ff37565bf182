//! Host names resolved through the system resolver (getaddrinfo, on the
//! blocking pool) with each answer reused for [`DNS_REUSE`]: the proxy opens
//! an upstream connection per client connection, which must not mean a DNS
//! query (with a Kubernetes search list, several) per client connection,
//! while a change in DNS still shows within seconds. IP-literal upstreams
//! never reach a resolver.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use moka::sync::Cache;
use tower::Service;

use crate::error::BoxError;

/// How long a host name's addresses are reused before it is resolved again.
pub(crate) const DNS_REUSE: Duration = Duration::from_secs(5);

/// The most host names remembered (they come from the config, so a handful).
const DNS_ENTRIES: u64 = 256;

type Addrs = Arc<[SocketAddr]>;

/// A resolver that reuses getaddrinfo's answers for a few seconds.
#[derive(Clone)]
pub struct CachedDns<R = GaiResolver> {
    inner: R,
    cache: Cache<Name, Addrs>,
}

impl Default for CachedDns {
    fn default() -> Self {
        Self::new(GaiResolver::new())
    }
}

impl<R> CachedDns<R> {
    /// Reuses `inner`'s answers for `DNS_REUSE` (5 s).
    pub fn new(inner: R) -> Self {
        Self::reusing_for(inner, DNS_REUSE)
    }

    /// Reuses `inner`'s answers for `reuse`.
    pub fn reusing_for(inner: R, reuse: Duration) -> Self {
        Self { inner, cache: Cache::builder().max_capacity(DNS_ENTRIES).time_to_live(reuse).build() }
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
    R::Error: Into<BoxError>,
    R::Future: Send,
{
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(addrs) = self.cache.get(&name) {
            return Box::pin(std::future::ready(Ok(addrs.iter().copied().collect::<Vec<_>>().into_iter())));
        }
        let mut inner = self.inner.clone();
        let cache = self.cache.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = inner.call(name.clone()).await.map_err(Into::into)?.collect();
            cache.insert(name, addrs.clone().into());
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
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
        let reuse = Duration::from_millis(300);
        let mut dns = CachedDns::reusing_for(resolver, reuse);
        let app: Name = "app".parse().unwrap();
        let first: Vec<SocketAddr> = dns.call(app.clone()).await.unwrap().collect();
        let again: Vec<SocketAddr> = dns.call(app.clone()).await.unwrap().collect();
        assert_eq!(first, again);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the second lookup within the reuse time went to the resolver");
        let other: Vec<SocketAddr> = dns.call("db".parse().unwrap()).await.unwrap().collect();
        assert_ne!(other, first);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Past its reuse time, an answer is asked for again.
        tokio::time::sleep(reuse + Duration::from_millis(50)).await;
        let _ = dns.call(app).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
