//! Sessions in Redis, shared by every replica: a login on one is honoured by
//! the others, a logout on one ends it everywhere.
//!
//! Each session is one key, `ferrygate:session:<hex>`, where `<hex>` is the
//! gateway's keyed hash of the session id (never the id itself, so a dump of
//! Redis yields no usable cookie), holding compact JSON with the entry's own
//! TTL (`SET … PX`). Every call is bounded in time: when Redis is away, logins
//! answer `session_store_unavailable` within seconds instead of hanging, and
//! the connection manager reconnects by itself when Redis is back.

use std::sync::LazyLock;
use std::time::Duration;

use ferrygate_core::config::{Limits, Rate};
use ferrygate_core::provider::BoxFuture;
use ferrygate_core::ratelimit::{RateLimiter, Refusal};
use ferrygate_core::session::{Mark, Session, SessionStore, StoreError, StoreKey};
use ferrygate_core::{SecretString, SetupError};
use redis::AsyncCommands;
use redis::Script;

mod backend;
pub use backend::Target;
use backend::{Backend, Conn};

const PREFIX: &str = "ferrygate:session:";
/// A single-use mark's key, named by the mark: `ferrygate:used-state:<hex>`
/// (OAuth2 states, for the state cookie's lifetime), `ferrygate:renewal:<hex>`
/// (renewal claims, given back once written).
fn mark_key(mark: Mark, k: &StoreKey) -> String {
    format!("ferrygate:{}:{}", mark.name(), k.to_hex())
}

/// Why a Redis call failed: the error's kind only (a server's message may
/// quote what it was sent).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("redis: {0:?}")]
    Redis(redis::ErrorKind),
    #[error("redis: no connection within {0:?}")]
    NoConnection(Duration),
    #[error("redis: no answer within {0:?}")]
    NoAnswer(Duration),
    #[error("encoding the session")]
    Encode(#[source] serde_json::Error),
}
/// `ferrygate_store_request_duration_seconds`: each store call's time.
const STORE_DURATION: &str = "ferrygate_store_request_duration_seconds";
/// `ferrygate_store_errors_total`: calls and connections that failed.
const STORE_ERRORS: &str = "ferrygate_store_errors_total";

/// Upper bound on one store call, reconnection attempts included.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The scripts, hashed (SHA-1, for EVALSHA) once per process.
static HIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HIT));
static PEEK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PEEK));

/// A Redis-backed [`SessionStore`] (and [`RateLimiter`]); cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    backend: std::sync::Arc<Backend>,
    per_ip: Option<Rate>,
    per_account: Option<Rate>,
}

/// One fixed window: count this hit, start the window's clock on the first,
/// answer the count and the window's remaining milliseconds.
const HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

/// The window's count and remaining milliseconds, without counting.
const PEEK: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
return {n, redis.call('PTTL', KEYS[1])}
";

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `url` (`redis://`, `rediss://` or `redis+unix://`). Connects
    /// lazily: Ferrygate starts even while Redis is down, and reports it
    /// through readiness and 503s.
    pub fn new(url: &SecretString) -> Result<Self, SetupError> {
        Self::with_target(Target::Single(url))
    }

    /// A store on one server, a Redis Cluster, or the primary Sentinel names.
    pub fn with_target(target: Target<'_>) -> Result<Self, SetupError> {
        Ok(Self { backend: std::sync::Arc::new(Backend::new(target)?), per_ip: None, per_account: None })
    }

    /// A connection for the next command, within the call's bound.
    async fn conn(&self) -> Result<Conn, StoreError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.backend.conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                self.failed().await;
                Err(StoreError::new(Failure::Redis(e.kind())))
            }
            Err(_) => {
                self.failed().await;
                Err(StoreError::new(Failure::NoConnection(CALL_TIMEOUT)))
            }
        }
    }

    /// Counts the brute-force limits in Redis too, shared by every replica
    /// (a fixed window of the rate's period, burst = the rate's count).
    #[must_use]
    pub fn with_limits(mut self, limits: &Limits) -> Self {
        self.per_ip = limits.login_per_ip;
        self.per_account = limits.login_per_account;
        self
    }

    async fn window(&self, script: &Script, key: String, rate: Rate) -> Result<(u64, Duration), Refusal> {
        let mut conn = self.conn().await.map_err(|e| {
            tracing::warn!(error = %e, "rate limit cannot be counted; refusing");
            Refusal::Unavailable
        })?;
        let mut call = script.key(key);
        call.arg(rate.per.as_millis() as u64);
        match self.call(call.invoke_async::<(u64, i64)>(&mut conn)).await {
            Ok((n, ttl)) => Ok((n, Duration::from_millis(ttl.max(0) as u64))),
            Err(e) => {
                // Fail closed: an uncounted attempt would be an unlimited one.
                tracing::warn!(error = %e, "rate limit cannot be counted; refusing");
                Err(Refusal::Unavailable)
            }
        }
    }

    async fn call<T>(&self, op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(CALL_TIMEOUT, op).await;
        handles().duration.record(started.elapsed().as_secs_f64());
        let result = match answer {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => StoreError::new(Failure::Redis(e.kind())),
            Err(_) => StoreError::new(Failure::NoAnswer(CALL_TIMEOUT)),
        };
        self.failed().await;
        Err(result)
    }

    /// `SET key session PX ttl`, with `XX` (`only_present`) only while the
    /// key exists; whether it was set.
    async fn set(
        &self,
        k: &StoreKey,
        session: &Session,
        ttl: Duration,
        only_present: bool,
    ) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(session).map_err(|e| StoreError::new(Failure::Encode(e)))?;
        let ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut conn = self.conn().await?;
        let mut set = redis::cmd("SET");
        set.arg(key(k)).arg(value).arg("PX").arg(ms);
        if only_present {
            set.arg("XX");
        }
        let set: Option<String> = self.call(set.query_async(&mut conn)).await?;
        Ok(set.is_some())
    }

    /// After a failed call or connection: counted, and the next command
    /// connects anew (a failover, a cluster node gone).
    async fn failed(&self) {
        handles().errors.increment(1);
        self.backend.forget().await;
    }
}

/// The store's metric handles, made at the first call (after the binary has
/// installed its recorder), not looked up in the registry per call.
struct Handles {
    duration: metrics::Histogram,
    errors: metrics::Counter,
}

fn handles() -> &'static Handles {
    static HANDLES: std::sync::OnceLock<Handles> = std::sync::OnceLock::new();
    HANDLES.get_or_init(|| Handles {
        duration: metrics::histogram!(STORE_DURATION),
        errors: metrics::counter!(STORE_ERRORS),
    })
}

fn key(k: &StoreKey) -> String {
    format!("{PREFIX}{}", k.to_hex())
}

impl SessionStore for RedisStore {
    fn get<'a>(&'a self, k: &'a StoreKey) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let raw: Option<Vec<u8>> = self.call(conn.get(key(k))).await?;
            Ok(raw.and_then(|bytes| match serde_json::from_slice::<Session>(&bytes) {
                Ok(s) if s.is_live() => Some(s),
                Ok(_) => None,
                Err(e) => {
                    // serde's message can quote the entry (a token): only where and what kind.
                    tracing::warn!(kind = ?e.classify(), line = e.line(), column = e.column(), "unreadable session entry in redis; ignored");
                    None
                }
            }))
        })
    }

    fn insert<'a>(
        &'a self,
        k: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.set(k, session, ttl, false).await.map(|_| ()) })
    }

    fn update<'a>(
        &'a self,
        k: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // XX: only while the key exists — a session ended meanwhile stays ended.
        Box::pin(self.set(k, session, ttl, true))
    }

    fn remove<'a>(&'a self, k: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            self.call(conn.del::<_, ()>(key(k))).await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let ping = redis::cmd("PING");
            self.call(ping.query_async::<()>(&mut conn)).await
        })
    }

    fn use_once<'a>(&'a self, mark: Mark, k: &'a StoreKey, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let mut set = redis::cmd("SET");
            set.arg(mark_key(mark, k)).arg(1).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64);
            // `OK` when set, nil when the key was already there.
            let set: Option<String> = self.call(set.query_async(&mut conn)).await?;
            Ok(set.is_some())
        })
    }

    fn release<'a>(&'a self, mark: Mark, k: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            self.call(conn.del::<_, ()>(mark_key(mark, k))).await
        })
    }
}

impl RateLimiter for RedisStore {
    fn hit_ip<'a>(&'a self, ip: &'a str) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let Some(rate) = self.per_ip else { return Ok(()) };
            let (n, ttl) = self.window(&HIT_SCRIPT, format!("ferrygate:ratelimit:ip:{ip}"), rate).await?;
            if n > u64::from(rate.count) {
                return Err(Refusal::Over(ttl.max(Duration::from_secs(1))));
            }
            Ok(())
        })
    }

    fn account_open<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let Some(rate) = self.per_account else { return Ok(()) };
            let (n, ttl) = self.window(&PEEK_SCRIPT, format!("ferrygate:ratelimit:account:{account}"), rate).await?;
            if n >= u64::from(rate.count) {
                return Err(Refusal::Over(ttl.max(Duration::from_secs(1))));
            }
            Ok(())
        })
    }

    fn account_failed<'a>(&'a self, account: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(rate) = self.per_account {
                let _ = self.window(&HIT_SCRIPT, format!("ferrygate:ratelimit:account:{account}"), rate).await;
            }
        })
    }
}
