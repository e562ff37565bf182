//! Deadlines without a timer registration per request: the server (hyper's
//! header-read timeout) and the proxy (`upstream_timeout`) each own tables of
//! them, so this crate depends on neither.
//!
//! Every proxied exchange waits on two deadlines: hyper's header-read timeout
//! (armed anew for each request of a keep-alive connection) and the proxy's
//! `upstream_timeout`. As tokio timers, each request inserted two entries into
//! the runtime's timer wheel and took them out again, and an insertion made
//! while the worker had last parked with no earlier timer woke the I/O driver
//! with an eventfd `write(2)` — about one every eight requests, with a spurious
//! `epoll_wait` return after it.
//!
//! Here deadlines live in a table of their own ([`Deadlines`]; the server
//! keeps one per listener and worker for hyper, and each worker's proxy one),
//! watched by one task that sleeps on a single tokio timer until the earliest
//! of them. A deadline costs an insert and a remove in that table under an
//! uncontended lock; the watcher's timer moves only when a deadline earlier
//! than the one it sleeps towards arrives, or when it fires. Deadlines keep
//! tokio's precision (the watcher sleeps to the earliest one exactly), and a
//! deadline is never ready before its instant: only the watcher reads the
//! clock, and it fires what is due by then.
//!
//! The price: each time the watcher wakes (a deadline fired, or an earlier
//! one arrived — an h2 ping's 20 s ack timeout among 30 s header-read
//! deadlines, say) it scans the whole table, which holds one entry per
//! connection or request in flight. A worker's table is small, and the
//! watcher wakes rarely under load (every request's deadline is later than
//! the armed one); a timer wheel would not scan, at the cost per request this
//! replaces. Deadlines read the std clock, so tokio's paused test clock
//! (`start_paused`, `advance`) does not move them.

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

    /// A future that is ready `timeout` from now (or, for a timeout too
    /// long to add to the clock, about thirty years from now).
    pub fn after(&self, timeout: Duration) -> Deadline {
        self.since(Instant::now(), timeout)
    }

    /// A future that is ready `timeout` after `start` (capped as [`after`](Self::after) is).
    pub fn since(&self, start: Instant, timeout: Duration) -> Deadline {
        self.at(start.checked_add(timeout).unwrap_or_else(|| start + Duration::from_secs(86_400 * 365 * 30)))
    }

    /// A future that is ready at `at`.
    pub fn at(&self, at: Instant) -> Deadline {
        Deadline { shared: self.shared.clone(), at, key: None, fired: false }
    }

    /// Deadlines in the table (not yet dropped).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.shared.lock().entries.len()
    }
}

/// Ready once the table's watcher has seen the clock past its instant (the
/// future itself never reads the clock: a poll is a lock and a look); in its
/// table from its first poll until it is ready or dropped.
pub struct Deadline {
    shared: Arc<Shared>,
    at: Instant,
    key: Option<usize>,
    fired: bool,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Deadline {
    fn forget(&mut self) {
        if let Some(key) = self.key.take() {
            let entry = self.shared.lock().entries.remove(key);
            // Its waker is dropped with the lock released.
            drop(entry);
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
        if this.fired {
            return Poll::Ready(());
        }
        let at = this.at;
        // A waker replaced (or an entry removed) below is dropped after the lock is released.
        let mut replaced = None;
        let start_watcher = {
            let mut table = this.shared.lock();
            match this.key {
                // Fired: the watcher saw the clock past `at` and took the waker.
                Some(key) if table.entries[key].waker.is_none() => {
                    let fired = table.entries.remove(key);
                    drop(table);
                    drop(fired);
                    (this.key, this.fired) = (None, true);
                    return Poll::Ready(());
                }
                Some(key) => {
                    let entry = &mut table.entries[key];
                    if !entry.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        replaced = entry.waker.replace(cx.waker().clone());
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
        drop(replaced);
        if start_watcher {
            // The guard is made here, not in the task: a task its runtime
            // drops before ever polling it (or a spawn outside a runtime, which
            // panics) still marks the table unwatched. Spawned with the lock
            // released, since that drop takes it.
            let watching = Watching(Arc::downgrade(&this.shared));
            tokio::spawn(watch(watching, this.shared.wake.clone()));
        }
        Poll::Pending
    }
}

/// Held by the watcher task: marks the table unwatched however the task ends
/// — its runtime shutting down included — and wakes the deadlines still
/// waiting, so their next poll starts another watcher on their own runtime.
struct Watching(Weak<Shared>);

impl Drop for Watching {
    fn drop(&mut self) {
        let Some(shared) = self.0.upgrade() else { return };
        let waiting: Vec<Waker> = {
            let mut table = shared.lock();
            table.watched = false;
            table.armed = None;
            table.entries.iter().filter_map(|(_, e)| e.waker.clone()).collect()
        };
        waiting.into_iter().for_each(Waker::wake);
    }
}

/// Sleeps until the table's earliest deadline, wakes what is due, and again;
/// ends when the table is gone.
async fn watch(watching: Watching, wake: Arc<Notify>) {
    let shared = watching.0.clone();
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
    async fn a_deadline_already_past_when_first_polled_is_ready_on_the_next_wake_up() {
        let deadlines = Deadlines::new();
        let past = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        took(deadlines.at(past)).await;
        took(deadlines.since(past, Duration::from_millis(1))).await;
    }

    #[tokio::test]
    async fn a_timeout_too_long_for_the_clock_is_a_far_deadline_not_a_panic() {
        let deadlines = Deadlines::new();
        let mut forever = deadlines.after(Duration::MAX);
        assert!(futures_util::poll!(&mut forever).is_pending());
        assert!(forever.at > Instant::now() + Duration::from_secs(86_400 * 365));
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
        // Each at its own instant (above); the order of two woken by one scan is the table's.
        fired.sort_unstable();
        let mut all = order;
        all.sort_unstable();
        assert_eq!(fired, all);
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

    #[test]
    fn a_watcher_whose_runtime_never_ran_it_leaves_the_table_watchable() {
        let deadlines = Deadlines::new();
        let runtime = || tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut deadline = deadlines.after(Duration::from_millis(30));
        // Polled once: the watcher is spawned, and the runtime goes before it
        // ever runs (block_on returns as soon as its own future is done).
        runtime().block_on(async { assert!(futures_util::poll!(&mut deadline).is_pending()) });
        // The same deadline, still pending, on another runtime.
        runtime().block_on(took(deadline));
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
