//! Deadlines without a timer registration per request.
//!
//! Every proxied exchange waits on two deadlines: hyper's header-read timeout
//! (armed anew for each request of a keep-alive connection) and the proxy's
//! `upstream_timeout`. As tokio timers, each request inserted two entries into
//! the runtime's timer wheel and took them out again, and an insertion made
//! while the worker had last parked with no earlier timer woke the I/O driver
//! with an eventfd `write(2)` — about one every eight requests, with a spurious
//! `epoll_wait` return after it.
//!
//! Here a worker's deadlines live in a table of its own ([`Deadlines`]),
//! watched by one task that sleeps on a single tokio timer until the earliest
//! of them. A deadline costs an insert and a remove in that table under an
//! uncontended lock; the watcher's timer moves only when a deadline earlier
//! than the one it sleeps towards arrives, or when it fires. Deadlines keep
//! tokio's precision (the watcher sleeps to the earliest one exactly), and a
//! deadline is never ready before its instant: [`Deadline`] checks the clock
//! itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::Notify;

/// A table of deadlines and the task that watches it. Cheap to clone; clones
/// share the table. Use one per worker thread: the watcher is spawned on the
/// runtime that polls the first deadline.
///
/// Also hyper's [`Timer`](hyper::rt::Timer), so hyper's own timeouts use the
/// same table.
#[derive(Clone, Default)]
pub struct Deadlines {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    table: Mutex<Table>,
    /// Wakes the watcher: a deadline earlier than the one it sleeps towards
    /// has arrived, or the table is gone.
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    entries: Slab<Entry>,
    /// The instant the watcher sleeps towards; `None` while it waits for a
    /// first deadline.
    armed: Option<Instant>,
    /// Whether a watcher task is alive.
    watched: bool,
}

struct Entry {
    at: Instant,
    /// `None` once the watcher has woken it.
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every deadline due by `now`; returns (and records as armed) the
    /// earliest still to come.
    fn fire(&self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let mut table = self.lock();
        let mut earliest: Option<Instant> = None;
        for (_, entry) in table.entries.iter_mut() {
            if entry.waker.is_none() {
                continue;
            }
            if entry.at <= now {
                due.extend(entry.waker.take());
            } else {
                earliest = Some(earliest.map_or(entry.at, |e| e.min(entry.at)));
            }
        }
        table.armed = earliest;
        drop(table);
        // Outside the lock: a waker may run code that takes a deadline.
        due.into_iter().for_each(Waker::wake);
        earliest
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The watcher holds only a weak reference: let it see that and end.
        self.wake.notify_one();
    }
}

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines").field("pending", &self.shared.lock().entries.len()).finish()
    }
}

impl Deadlines {
    /// An empty table; its watcher starts with the first deadline polled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A future that is ready `timeout` from now.
    pub fn after(&self, timeout: Duration) -> Deadline {
        self.at(Instant::now() + timeout)
    }

    /// A future that is ready at `at`.
    pub fn at(&self, at: Instant) -> Deadline {
        Deadline { shared: self.shared.clone(), at, key: None }
    }

    /// Deadlines in the table (not yet dropped).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.shared.lock().entries.len()
    }
}

/// Ready at its instant; in its table from its first poll until dropped.
pub struct Deadline {
    shared: Arc<Shared>,
    at: Instant,
    key: Option<usize>,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Deadline {
    fn forget(&mut self) {
        if let Some(key) = self.key.take() {
            self.shared.lock().entries.remove(key);
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.forget();
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.at {
            this.forget();
            return Poll::Ready(());
        }
        let at = this.at;
        let start_watcher = {
            let mut table = this.shared.lock();
            match this.key {
                Some(key) => {
                    let entry = &mut table.entries[key];
                    if !entry.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        entry.waker = Some(cx.waker().clone());
                    }
                }
                None => this.key = Some(table.entries.insert(Entry { at, waker: Some(cx.waker().clone()) })),
            }
            if table.armed.is_none_or(|armed| at < armed) {
                table.armed = Some(at);
                if table.watched {
                    this.shared.wake.notify_one();
                }
            }
            !std::mem::replace(&mut table.watched, true)
        };
        if start_watcher {
            // Spawned with the lock released: a runtime shutting down drops
            // the task at once, and its guard takes the lock.
            tokio::spawn(watch(Arc::downgrade(&this.shared), this.shared.wake.clone()));
        }
        Poll::Pending
    }
}

/// Sleeps until the table's earliest deadline, wakes what is due, and again;
/// ends when the table is gone.
async fn watch(shared: Weak<Shared>, wake: Arc<Notify>) {
    /// Marks the table unwatched however the task ends — its runtime shutting
    /// down included — so the next deadline starts another watcher.
    struct Watching(Weak<Shared>);
    impl Drop for Watching {
        fn drop(&mut self) {
            if let Some(shared) = self.0.upgrade() {
                let mut table = shared.lock();
                table.watched = false;
                table.armed = None;
            }
        }
    }
    let _watching = Watching(shared.clone());
    let mut sleep = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
    loop {
        let next = match shared.upgrade() {
            Some(shared) => shared.fire(Instant::now()),
            None => return,
        };
        // A deadline that arrives from here on notifies; `notify_one` keeps
        // the permit if this task is not waiting yet, so none is missed.
        match next {
            Some(at) => {
                sleep.as_mut().reset(at.into());
                tokio::select! {
                    () = &mut sleep => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

impl hyper::rt::Timer for Deadlines {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.after(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.at(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous: the bound only catches a deadline that fired late or never.
    /// (A `timeout` around a deadline cannot tell: when it fires it polls the
    /// deadline, which then sees the clock past its instant and is ready.)
    const LATE: Duration = Duration::from_secs(1);

    /// Awaits `deadline`; how long it took, failing if it took `LATE` or more.
    async fn took(deadline: Deadline) -> Duration {
        let started = Instant::now();
        tokio::time::timeout(LATE * 3, deadline).await.expect("never ready");
        let took = started.elapsed();
        assert!(took < LATE, "ready only after {took:?}");
        took
    }

    #[tokio::test]
    async fn a_deadline_is_ready_at_its_instant_not_before() {
        let deadlines = Deadlines::new();
        let took = took(deadlines.after(Duration::from_millis(80))).await;
        assert!(took >= Duration::from_millis(80), "ready after {took:?}");
    }

    #[tokio::test]
    async fn an_earlier_deadline_than_the_armed_one_wakes_the_watcher() {
        let deadlines = Deadlines::new();
        let mut late = deadlines.after(Duration::from_secs(30));
        assert!(futures_util::poll!(&mut late).is_pending());
        tokio::task::yield_now().await; // the watcher now sleeps towards +30 s
        assert!(took(deadlines.after(Duration::from_millis(50))).await >= Duration::from_millis(50));
        assert!(futures_util::poll!(&mut late).is_pending(), "the later one fired with the earlier");
    }

    #[tokio::test]
    async fn many_deadlines_fire_each_at_its_own_instant() {
        let deadlines = Deadlines::new();
        let started = Instant::now();
        let order: Vec<u64> = vec![90, 30, 60, 10, 120, 30];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for ms in order.clone() {
            let (deadline, tx) = (deadlines.after(Duration::from_millis(ms)), tx.clone());
            tokio::spawn(async move {
                deadline.await;
                tx.send((ms, started.elapsed())).unwrap();
            });
        }
        drop(tx);
        let mut fired = Vec::new();
        while let Some((ms, took)) = tokio::time::timeout(LATE, rx.recv()).await.expect("one never fired") {
            assert!(took >= Duration::from_millis(ms) && took < LATE, "{ms} ms ready after {took:?}");
            fired.push(ms);
        }
        let mut sorted = order;
        sorted.sort_unstable();
        assert_eq!(fired, sorted);
    }

    #[tokio::test]
    async fn dropped_deadlines_leave_the_table_and_the_watcher_ends_with_it() {
        let deadlines = Deadlines::new();
        let mut pending: Vec<Deadline> = (1..=100).map(|s| deadlines.after(Duration::from_secs(s))).collect();
        for d in &mut pending {
            assert!(futures_util::poll!(d).is_pending());
        }
        assert_eq!(deadlines.pending(), 100);
        let metrics = tokio::runtime::Handle::current().metrics();
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), 1, "one watcher");
        pending.truncate(10);
        assert_eq!(deadlines.pending(), 10);
        drop((pending, deadlines));
        for _ in 0..10 {
            if metrics.num_alive_tasks() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the watcher outlived its table");
    }

    #[test]
    fn a_table_outliving_its_runtime_gets_a_new_watcher() {
        let deadlines = Deadlines::new();
        let run = |ms| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(took(deadlines.after(Duration::from_millis(ms))))
        };
        run(20);
        // The first runtime, and the watcher spawned on it, are gone: a
        // deadline with no watcher would be ready only after `LATE`.
        run(20);
    }

    #[tokio::test]
    async fn hyper_s_header_read_timeout_runs_on_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.timer(Deadlines::new()).header_read_timeout(Duration::from_millis(100));
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        });
        let conn = tokio::spawn(http1.serve_connection(hyper_util::rt::TokioIo::new(server), service));
        // A whole request, answered; then half of the next one's head.
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut answer = [0u8; 256];
        let n = client.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer[..n]));
        let started = Instant::now();
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let ended = tokio::time::timeout(LATE, conn).await.expect("a half-sent head kept the connection");
        assert!(ended.unwrap().is_err(), "ended without the header-read timeout error");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100) && took < LATE, "timed out after {took:?}");
    }
}
