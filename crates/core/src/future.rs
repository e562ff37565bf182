//! The response future of the gateway's layers: the inner service's future,
//! a boxed one for answers that wait on the store or a provider, or an answer
//! ready at once. The body is the site's (`Left`) or Ferrygate's own (`Right`).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};

use crate::error::BoxFuture;

/// What the gateway answers with: the site's body, or one of its own.
pub type GatewayResponse<R> = Response<Either<R, Full<Bytes>>>;

pin_project_lite::pin_project! {
    /// See the [module docs](self).
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        kind: Kind<F, R, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, R, E> {
        Inner { #[pin] fut: F },
        Boxed { fut: BoxFuture<'static, Result<GatewayResponse<R>, E>> },
        Ready { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F, R, E> ResponseFuture<F, R, E> {
    pub(crate) fn inner(fut: F) -> Self {
        Self { kind: Kind::Inner { fut } }
    }
    pub(crate) fn boxed(fut: BoxFuture<'static, Result<GatewayResponse<R>, E>>) -> Self {
        Self { kind: Kind::Boxed { fut } }
    }
    pub(crate) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self { kind: Kind::Ready { response: Some(response) } }
    }
}

impl<F, R, E> std::fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R, E>
where
    F: Future<Output = Result<GatewayResponse<R>, E>>,
{
    type Output = Result<GatewayResponse<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion").map(Either::Right)))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The site's answer, as the gateway's (`Left`).
    #[derive(Debug)]
    pub struct SiteAnswer<F> {
        #[pin]
        fut: F,
    }
}

impl<F> SiteAnswer<F> {
    pub(crate) fn new(fut: F) -> Self {
        Self { fut }
    }
}

impl<F, R, E> Future for SiteAnswer<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<GatewayResponse<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().fut.poll(cx)).map(|r| r.map(Either::Left)))
    }
}
