//! Brute-force limits (spec section 3): every login POST counts against the
//! client address (`login_per_ip`); failed attempts count against the
//! normalised account (`login_per_account`). Over either: 429 `rate_limited`
//! with `Retry-After`.
//!
//! [`MemoryLimiter`] keeps GCRA state (governor) per replica; its keyed state
//! is swept of idle keys as it goes, so memory stays bounded. The Redis store
//! implements [`RateLimiter`] with a shared fixed window, so replicas count
//! together. Accounts are keyed by their keyed hash, never in plain text.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as Governor};

use crate::config::{Limits, Rate};
use crate::error::BoxFuture;

/// Why an attempt may not go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the limit; try again after this long.
    Over(Duration),
    /// The shared count cannot be reached: refuse rather than guess (fail closed).
    Unavailable,
}

/// Counts logins per client address and failures per account.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one login POST from `ip`; refused when over the limit.
    fn hit_ip<'a>(&'a self, ip: &'a str) -> BoxFuture<'a, Result<(), Refusal>>;
    /// Whether `account` (a keyed hash) may try now.
    fn account_open<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), Refusal>>;
    /// Counts one failed attempt for `account`.
    fn account_failed<'a>(&'a self, account: &'a str) -> BoxFuture<'a, ()>;
}

fn quota(rate: Rate) -> Option<Quota> {
    let burst = NonZeroU32::new(rate.count)?;
    Some(Quota::with_period(rate.per / rate.count)?.allow_burst(burst))
}

type AccountGovernor =
    Governor<String, governor::state::keyed::DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Per-replica limits in memory.
pub struct MemoryLimiter {
    per_ip: Option<DefaultKeyedRateLimiter<String>>,
    per_account: Option<(AccountGovernor, Duration)>,
    /// Accounts out of attempts, until when.
    blocked: moka::sync::Cache<String, Instant>,
    calls: AtomicU64,
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter").finish_non_exhaustive()
    }
}

/// Sweep idle keys every this many calls.
const SWEEP_EVERY: u64 = 4096;

impl MemoryLimiter {
    pub fn new(limits: &Limits) -> Self {
        let per_account = limits.login_per_account.and_then(|r| {
            let q = quota(r)?;
            Some((Governor::keyed(q).with_middleware::<StateInformationMiddleware>(), q.replenish_interval()))
        });
        let block_ttl = limits.login_per_account.map_or(Duration::from_secs(60), |r| r.per);
        Self {
            per_ip: limits.login_per_ip.and_then(quota).map(Governor::keyed),
            per_account,
            blocked: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(block_ttl).build(),
            calls: AtomicU64::new(0),
        }
    }

    /// Keyed state held right now (for the memory-bound test).
    pub fn keys(&self) -> usize {
        self.per_ip.as_ref().map_or(0, |g| g.len()) + self.per_account.as_ref().map_or(0, |(g, _)| g.len())
    }

    /// Drops the state of keys that are back to a full bucket.
    pub fn sweep(&self) {
        if let Some(g) = &self.per_ip {
            g.retain_recent();
            g.shrink_to_fit();
        }
        if let Some((g, _)) = &self.per_account {
            g.retain_recent();
            g.shrink_to_fit();
        }
        self.blocked.run_pending_tasks();
    }

    fn tick(&self) {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
    }
}

impl RateLimiter for MemoryLimiter {
    fn hit_ip<'a>(&'a self, ip: &'a str) -> BoxFuture<'a, Result<(), Refusal>> {
        self.tick();
        let result = match &self.per_ip {
            None => Ok(()),
            Some(g) => g
                .check_key(&ip.to_owned())
                .map_err(|not_until| Refusal::Over(not_until.wait_time_from(g.clock().now()))),
        };
        Box::pin(std::future::ready(result))
    }

    fn account_open<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), Refusal>> {
        let now = Instant::now();
        let result = match self.blocked.get(account) {
            Some(until) if until > now => Err(Refusal::Over(until - now)),
            _ => Ok(()),
        };
        Box::pin(std::future::ready(result))
    }

    fn account_failed<'a>(&'a self, account: &'a str) -> BoxFuture<'a, ()> {
        self.tick();
        if let Some((g, replenish)) = &self.per_account {
            let until = match g.check_key(&account.to_owned()) {
                // The last attempt of the burst: closed until the next one comes back.
                Ok(state) if state.remaining_burst_capacity() == 0 => Some(Instant::now() + *replenish),
                Ok(_) => None,
                Err(not_until) => Some(Instant::now() + not_until.wait_time_from(g.clock().now())),
            };
            if let Some(until) = until {
                self.blocked.insert(account.to_owned(), until);
            }
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ip: &str, account: &str) -> Limits {
        let parse = |s: &str| {
            let (n, per) = s.split_once('/').unwrap();
            Some(Rate {
                count: n.parse().unwrap(),
                per: if per == "min" { Duration::from_secs(60) } else { Duration::from_secs(1) },
            })
        };
        Limits { login_body_bytes: 1024, login_per_ip: parse(ip), login_per_account: parse(account) }
    }

    #[tokio::test]
    async fn per_ip_allows_the_burst_then_refuses_with_a_wait() {
        let l = MemoryLimiter::new(&limits("3/min", "5/min"));
        for _ in 0..3 {
            assert!(l.hit_ip("198.51.100.1").await.is_ok());
        }
        let Refusal::Over(wait) = l.hit_ip("198.51.100.1").await.unwrap_err() else { panic!("not over") };
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(l.hit_ip("198.51.100.2").await.is_ok(), "another address has its own bucket");
    }

    #[tokio::test]
    async fn failed_attempts_close_the_account_after_the_burst() {
        let l = MemoryLimiter::new(&limits("100/min", "3/min"));
        for i in 0..3 {
            assert!(l.account_open("acct").await.is_ok(), "attempt {i}");
            l.account_failed("acct").await;
        }
        let Refusal::Over(wait) = l.account_open("acct").await.unwrap_err() else { panic!("not over") };
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(l.account_open("other").await.is_ok());
    }

    #[tokio::test]
    async fn idle_keys_are_swept() {
        let l = MemoryLimiter::new(&limits("1000/sec", "1000/sec"));
        for i in 0..5000 {
            let _ = l.hit_ip(&format!("10.0.{}.{}", i / 256, i % 256)).await;
        }
        // One hit of a 1000/sec bucket is back to full within a few ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
        l.sweep();
        assert!(l.keys() < 100, "{} keys kept", l.keys());
    }
}
