//! A client connection's own upstream connection ("lane").
//!
//! An HTTP/1.1 client connection carries one request at a time, so it can keep
//! one upstream connection of its own: no pool checkout, no lock held across
//! requests, and — the point — no second task. The upstream connection's
//! future is polled by the client connection's task (see [`Driven`]), so a
//! proxied exchange wakes one task instead of two and hands nothing between
//! them.
//!
//! Bounded: a lane connects on its connection's first proxied request, closes
//! with its connection (whose idle time the server's header-read timeout
//! bounds), and at most [`MAX_LANES`] are open per process. Whatever a lane
//! cannot take — another site than the one it is connected to, a WebSocket
//! upgrade, a connection's last request (HTTP/1.0, `Connection: close`), an
//! upstream still finishing the previous answer, the cap reached — goes
//! through the shared pool instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use ferrygate_core::tls::Connector;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::sync::{Semaphore, SemaphorePermit};
use tower::Service;

use crate::{BoxError, Watched};

/// The most lanes open at once in this process; requests beyond use the pool.
pub const MAX_LANES: usize = 4096;

/// One permit per open lane; a permit is given back when dropped — however
/// its holder ends (a connect that fails, a request given up mid-connect, a
/// connection closed).
static OPEN: Semaphore = Semaphore::const_new(MAX_LANES);

type Slot = SemaphorePermit<'static>;

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// One client connection's upstream connection. Cheap to clone; the server
/// puts a clone in every request of an HTTP/1.1 connection's extensions and
/// serves that connection as a [`Driven`] future.
pub struct Lane<B>
where
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    state: Arc<Mutex<State<B>>>,
}

impl<B> Clone for Lane<B>
where
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn clone(&self) -> Self {
        Self { state: self.state.clone() }
    }
}

impl<B> std::fmt::Debug for Lane<B>
where
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

struct Open<B>
where
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    /// The upstream origin (scheme and authority) this connection goes to.
    origin: Uri,
    sender: SendRequest<Watched<B>>,
    conn: Pin<Box<Connection<Io, Watched<B>>>>,
    _slot: Slot,
}

struct State<B>
where
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    open: Option<Open<B>>,
    /// Set when the connection has something new to do (a request queued, a
    /// connection installed): the driving task polls it once more.
    dirty: bool,
}

impl<B> Default for Lane<B>
where
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn default() -> Self {
        Self { state: Arc::new(Mutex::new(State { open: None, dirty: false })) }
    }
}

impl<B> Lane<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A lane with no connection yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls the upstream connection, if any, with the client connection's
    /// context, and drops it once it has ended. [`Driven`] calls this on
    /// every wake-up, before polling the client connection.
    fn drive(&self, cx: &mut Context<'_>) {
        let mut state = self.lock();
        state.dirty = false;
        if let Some(open) = &mut state.open {
            if let Poll::Ready(result) = open.conn.as_mut().poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                state.open = None;
            }
        }
    }

    /// Whether a request was queued (or a connection installed) since the
    /// last `drive`: then the task drives the lane once more before
    /// it sleeps, or the request would never be written.
    fn take_dirty(&self) -> bool {
        std::mem::take(&mut self.lock().dirty)
    }

    /// Sends `req` (origin-form URI) to `origin` on this lane, connecting
    /// first if needed. `Err(req)` gives back a request the lane did not take,
    /// or one its connection closed before writing it: the pool sends it.
    pub(crate) async fn send(
        &self,
        req: Request<Watched<B>>,
        origin: &Uri,
        connector: &Connector,
    ) -> Result<Result<Response<Incoming>, BoxError>, Request<Watched<B>>> {
        let attempt = {
            let mut state = self.lock();
            let attempt = match &mut state.open {
                Some(open) if open.origin != *origin => return Err(req),
                Some(open) if open.sender.is_ready() => Ok(open.sender.try_send_request(req)),
                // Still finishing the previous answer.
                Some(open) if !open.sender.is_closed() => return Err(req),
                _ => Err(req),
            };
            match attempt {
                Ok(_) => state.dirty = true,
                Err(_) => state.open = None,
            }
            attempt
        };
        let pending = match attempt {
            Ok(pending) => pending,
            Err(req) => {
                let Ok(slot) = OPEN.try_acquire() else { return Err(req) };
                let connected = async {
                    let io = connector.clone().call(origin.clone()).await?;
                    http1::handshake::<_, Watched<B>>(io).await.map_err(BoxError::from)
                }
                .await;
                let (mut sender, conn) = match connected {
                    Ok(pair) => pair,
                    Err(e) => return Ok(Err(e)),
                };
                let pending = sender.try_send_request(req);
                let mut state = self.lock();
                state.open = Some(Open { origin: origin.clone(), sender, conn: Box::pin(conn), _slot: slot });
                state.dirty = true;
                pending
            }
        };
        match pending.await {
            Ok(res) => Ok(Ok(res)),
            Err(mut e) => match e.take_message() {
                Some(req) => Err(req),
                None => Ok(Err(e.into_error().into())),
            },
        }
    }
}

/// Lanes open in this process.
pub fn open_lanes() -> usize {
    MAX_LANES - OPEN.available_permits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_bounded_and_slots_come_back() {
        // The same kind of counter as OPEN, with a cap of three.
        static SLOTS: Semaphore = Semaphore::const_new(3);
        let mut taken: Vec<Slot> = (0..3).map_while(|_| SLOTS.try_acquire().ok()).collect();
        assert_eq!(taken.len(), 3);
        assert!(SLOTS.try_acquire().is_err(), "a fourth lane over a cap of three");
        assert_eq!(SLOTS.available_permits(), 0, "a refused take leaves the count as it was");
        taken.pop();
        let again = SLOTS.try_acquire();
        assert!(again.is_ok());
        assert!(SLOTS.try_acquire().is_err());
        drop((taken, again));
        assert_eq!(SLOTS.available_permits(), 3, "every slot came back");
    }

    #[tokio::test]
    async fn a_lane_given_up_while_connecting_gives_its_slot_back() {
        // The connect is held in name resolution (getaddrinfo runs on the
        // blocking pool, so the first poll is always pending).
        let connector = ferrygate_core::tls::https_connector(None, false).unwrap();
        let lane: Lane<http_body_util::Empty<bytes::Bytes>> = Lane::new();
        let before = open_lanes();
        let origin: Uri = "http://lane-test.invalid:80".parse().unwrap();
        let req = Request::get("/").body(Watched { inner: http_body_util::Empty::new(), progress: None }).unwrap();
        let send = lane.send(req, &origin, &connector);
        // Poll once (the slot is taken, the connect starts), then give up.
        let mut send = Box::pin(send);
        assert!(futures_util::poll!(send.as_mut()).is_pending());
        assert_eq!(open_lanes(), before + 1, "the connect holds a slot");
        drop(send);
        assert_eq!(open_lanes(), before, "the slot of an abandoned connect was kept");
    }
}

pin_project_lite::pin_project! {
    /// A client connection and its upstream lane, polled by one task: the
    /// lane first (it may have an answer for the connection), then the
    /// connection, then the lane again if the connection gave it a request.
    /// This is the whole contract between a lane and the server: serve the
    /// connection as `Driven::new(connection, lane)`, and give the same lane
    /// to its requests as an extension.
    pub struct Driven<F> {
        #[pin]
        conn: F,
        lane: Option<Lane<Incoming>>,
    }
}

impl<F> Driven<F> {
    /// `conn`, driven together with `lane` (or alone, for connections without one).
    pub fn new(conn: F, lane: Option<Lane<Incoming>>) -> Self {
        Self { conn, lane }
    }
}

impl<F> std::fmt::Debug for Driven<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driven").field("lane", &self.lane.is_some()).finish_non_exhaustive()
    }
}

impl<F: Future> Future for Driven<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let Some(lane) = this.lane.as_ref() else { return this.conn.poll(cx) };
        loop {
            lane.drive(cx);
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if !lane.take_dirty() {
                return Poll::Pending;
            }
        }
    }
}
