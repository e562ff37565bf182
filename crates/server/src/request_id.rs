//! Request ids: a client's `X-Request-Id` is kept, else one is made; it goes
//! upstream with the request and comes back on the response (unless the
//! response carries one of its own).
//!
//! This is what tower-http's `SetRequestId` + `PropagateRequestId` did here,
//! without what nothing in Ferrygate reads: those also put the id into the
//! request's and the response's extensions — a boxed entry in each, a response
//! extension map of its own, and a growth of the request's — five of a
//! proxied request's 21 allocations. A made id is one allocation
//! ([`ferrygate_proxy::short_header`]), shared by the request and the response.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use tower::{Layer, Service};

/// The request id header.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids without a syscall each: a random per-process prefix and a
/// counter, `{prefix:16 hex}-{n:012x}` (29 characters).
#[derive(Clone)]
pub(crate) struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestIds").finish_non_exhaustive()
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once per process: enough to tell processes apart.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        Self { prefix: h.finish(), next: Arc::default() }
    }
}

impl RequestIds {
    /// The next id, in one allocation whose clones share it.
    fn make(&self) -> Option<HeaderValue> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        ferrygate_proxy::short_header(format_args!("{:016x}-{n:012x}", self.prefix))
    }
}

/// Sets and propagates `X-Request-Id` (see the module).
#[derive(Clone, Debug, Default)]
pub struct RequestIdLayer {
    ids: RequestIds,
}

impl RequestIdLayer {
    /// Ids with a prefix of this layer's own.
    pub fn new() -> Self {
        Self { ids: RequestIds::default() }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner, ids: self.ids.clone() }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct RequestId<S> {
    inner: S,
    ids: RequestIds,
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = WithRequestId<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) => Some(id.clone()),
            None => {
                let id = self.ids.make();
                if let Some(id) = &id {
                    req.headers_mut().insert(X_REQUEST_ID, id.clone());
                }
                id
            }
        };
        WithRequestId { inner: self.inner.call(req), id }
    }
}

pin_project_lite::pin_project! {
    /// The inner answer, with the request's id unless it has one.
    #[derive(Debug)]
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for WithRequestId<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            if let http::header::Entry::Vacant(slot) = res.headers_mut().entry(X_REQUEST_ID) {
                slot.insert(id);
            }
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    /// Answers with the request id it got in a header of its own, and with
    /// `X-Request-Id: site-id` when asked to.
    fn site() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone {
        tower::service_fn(|req: Request<()>| async move {
            let mut res = Response::new(());
            if let Some(id) = req.headers().get(X_REQUEST_ID) {
                res.headers_mut().insert("seen", id.clone());
            }
            if req.uri().path() == "/own" {
                res.headers_mut().insert(X_REQUEST_ID, HeaderValue::from_static("site-id"));
            }
            Ok(res)
        })
    }

    async fn ask(
        svc: &RequestId<impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone>,
        req: Request<()>,
    ) -> Response<()> {
        svc.clone().oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn an_id_is_made_sent_upstream_and_returned() {
        let svc = RequestIdLayer::new().layer(site());
        let res = ask(&svc, Request::get("/").body(()).unwrap()).await;
        let id = res.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(res.headers()["seen"], id.as_str(), "upstream and client saw different ids");
        let (prefix, counter) = id.split_once('-').unwrap();
        assert_eq!((prefix.len(), counter.len()), (16, 12), "{id}");
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()), "{id}");
        let next = ask(&svc, Request::get("/").body(()).unwrap()).await;
        let next = next.headers()[X_REQUEST_ID].to_str().unwrap();
        assert_ne!(next, id, "ids repeat");
        assert_eq!(next.split_once('-').unwrap().0, prefix, "one prefix per layer");
    }

    #[tokio::test]
    async fn a_client_id_is_kept_and_a_site_s_own_answer_id_too() {
        let svc = RequestIdLayer::new().layer(site());
        let res = ask(&svc, Request::get("/").header(X_REQUEST_ID, "trace-42").body(()).unwrap()).await;
        assert_eq!(res.headers()["seen"], "trace-42");
        assert_eq!(res.headers().get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(), ["trace-42"]);
        let res = ask(&svc, Request::get("/own").body(()).unwrap()).await;
        assert_eq!(res.headers().get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(), ["site-id"]);
    }

    #[test]
    fn a_counter_past_twelve_digits_still_makes_an_id() {
        let ids = RequestIds::default();
        ids.next.store(u64::MAX, Ordering::Relaxed);
        let id = ids.make().unwrap();
        assert_eq!(id.len(), 16 + 1 + 16);
    }
}
