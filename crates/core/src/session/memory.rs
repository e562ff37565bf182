//! The embedded store: a moka cache bounded by `max_entries`, each entry
//! expiring after its own TTL (the token's `expires_in`), and never served
//! past its session's own expiry even before moka evicts it.
//!
//! A session is kept in a compact binary form, one allocation per entry
//! instead of one per string, under the first 128 bits of its store key: with
//! moka's own ~420 bytes per entry, that keeps 100 000 sessions near 60 MiB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use moka::Expiry;

use super::{Mark, Session, SessionStore, StoreError, StoreKey};
use crate::error::BoxFuture;

#[derive(Clone)]
struct Entry {
    session: Arc<[u8]>,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<u128, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &u128, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &u128,
        entry: &Entry,
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl Expiry<u128, Duration> for PerEntry {
    fn expire_after_create(&self, _key: &u128, ttl: &Duration, _now: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

/// 128 bits of an HMAC output: collisions are out of reach (birthday bound 2^64).
fn short(key: &StoreKey) -> u128 {
    let mut half = [0u8; 16];
    half.copy_from_slice(&key.0[..16]);
    u128::from_le_bytes(half)
}

/// `expires_at_ms` (8 bytes LE), then each string as a u16 LE length + 1
/// (0 for none) and its bytes.
fn encode(s: &Session) -> Result<Vec<u8>, StoreError> {
    // Group names hold no control characters (`crate::identity::usable_group`).
    let groups = s.groups.join("\n");
    let token_expires = s.token_expires_at_ms.map(|ms| ms.to_string());
    let fields = [
        Some(s.site.as_str()),
        Some(s.provider.as_str()),
        Some(s.user.as_str()),
        s.user_id.as_deref(),
        s.org_id.as_deref(),
        s.external_id.as_deref(),
        s.token.as_deref(),
        Some(s.token_type.as_str()),
        (!groups.is_empty()).then_some(groups.as_str()),
        s.refresh_token.as_deref(),
        token_expires.as_deref(),
    ];
    let mut out = Vec::with_capacity(8 + fields.iter().map(|f| 2 + f.map_or(0, str::len)).sum::<usize>());
    out.extend_from_slice(&s.expires_at_ms.to_le_bytes());
    for field in fields {
        let tag = match field {
            None => 0,
            Some(v) => u16::try_from(v.len() + 1).map_err(|_| StoreError::new("session field over 64 KiB"))?,
        };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(field.unwrap_or("").as_bytes());
    }
    Ok(out)
}

fn decode(bytes: &[u8]) -> Option<Session> {
    let (expires, mut rest) = bytes.split_at_checked(8)?;
    let mut next = || -> Option<Option<String>> {
        let (tag, tail) = rest.split_at_checked(2)?;
        let tag = u16::from_le_bytes([tag[0], tag[1]]) as usize;
        if tag == 0 {
            rest = tail;
            return Some(None);
        }
        let (value, tail) = tail.split_at_checked(tag - 1)?;
        rest = tail;
        Some(Some(String::from_utf8(value.to_vec()).ok()?))
    };
    Some(Session {
        site: next()??,
        provider: next()??,
        user: next()??,
        user_id: next()?,
        org_id: next()?,
        external_id: next()?,
        token: next()?,
        token_type: next()??,
        groups: next()?.map(|g| g.split('\n').map(str::to_owned).collect()).unwrap_or_default(),
        refresh_token: next()?,
        token_expires_at_ms: next()?.map(|ms| ms.parse()).transpose().ok()?,
        expires_at_ms: u64::from_le_bytes(expires.try_into().ok()?),
    })
}

/// In-process sessions; one per replica.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<u128, Entry>,
    /// Keys marked by [`SessionStore::use_once`], each for its own TTL.
    used: Cache<u128, Duration>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("entries", &self.cache.entry_count()).finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_entries` sessions (least recently used go first).
    pub fn new(max_entries: u64) -> Self {
        Self {
            cache: Cache::builder().max_capacity(max_entries).expire_after(PerEntry).build(),
            used: Cache::builder().max_capacity(max_entries).expire_after(PerEntry).build(),
        }
    }

    /// Sessions currently held (approximate until pending work runs).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs moka's pending maintenance (evictions), for exact counts in tests.
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}

impl SessionStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            let Some(entry) = self.cache.get(&short(key)).await else { return Ok(None) };
            let session = decode(&entry.session).ok_or_else(|| StoreError::new("corrupt session entry"))?;
            Ok(session.is_live().then_some(session))
        })
    }

    fn insert<'a>(
        &'a self,
        key: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let session: Arc<[u8]> = encode(session)?.into();
            self.cache.insert(short(key), Entry { session, ttl }).await;
            Ok(())
        })
    }

    fn update<'a>(
        &'a self,
        key: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let session: Arc<[u8]> = encode(session)?.into();
            // One step: replaced only while present, never re-created.
            let done = self
                .cache
                .entry(short(key))
                .and_compute_with(|present| {
                    let op = match present {
                        Some(_) => Op::Put(Entry { session, ttl }),
                        None => Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
            Ok(matches!(done, CompResult::ReplacedWith(_)))
        })
    }

    fn remove<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Through the entry API, like `update`: the two are ordered per key,
            // so a logout cannot slip between an update's read and its write.
            self.cache.entry(short(key)).and_compute_with(|_| std::future::ready(Op::Remove)).await;
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn use_once<'a>(&'a self, _: Mark, key: &'a StoreKey, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        // Marks of every kind share one cache: their keys are HMACs in domains of their own.
        // moka's entry API inserts at most once per key: of concurrent callers, one is fresh.
        Box::pin(async move { Ok(self.used.entry(short(key)).or_insert(ttl).await.is_fresh()) })
    }

    fn release<'a>(&'a self, _: Mark, key: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.used.invalidate(&short(key)).await;
            Ok(())
        })
    }

    fn active(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            // moka counts lazily: run its pending work (expiries included) first.
            self.cache.run_pending_tasks().await;
            Some(self.cache.entry_count())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ttl: Duration) -> Session {
        Session::for_test("u", ttl)
    }

    #[tokio::test]
    async fn a_key_is_used_once_until_released() {
        let store = MemoryStore::new(10);
        let key = StoreKey([3; 32]);
        let ttl = Duration::from_secs(60);
        assert!(store.use_once(Mark::State, &key, ttl).await.unwrap());
        assert!(!store.use_once(Mark::State, &key, ttl).await.unwrap(), "used twice");
        store.release(Mark::State, &key).await.unwrap();
        assert!(store.use_once(Mark::State, &key, ttl).await.unwrap(), "a released key is fresh again");
        store.release(Mark::Renewal, &StoreKey([4; 32])).await.unwrap();
    }

    #[test]
    fn the_compact_form_round_trips() {
        let mut s = session(Duration::from_secs(60));
        s.user_id = Some("42".into());
        s.token = Some("tok".into());
        s.org_id = Some(String::new());
        s.refresh_token = Some("rt".into());
        s.token_expires_at_ms = Some(1_700_000_000_000);
        assert_eq!(decode(&encode(&s).unwrap()), Some(s.clone()));
        let bytes = encode(&s).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "a truncated entry must not decode");
        }
    }

    #[tokio::test]
    async fn update_replaces_a_stored_session_and_never_brings_one_back() {
        let store = MemoryStore::new(100);
        let key = StoreKey([3; 32]);
        let mut s = session(Duration::from_secs(60));
        assert!(!store.update(&key, &s, Duration::from_secs(60)).await.unwrap(), "nothing stored: no update");
        assert!(store.get(&key).await.unwrap().is_none(), "an update must not create the entry");
        store.insert(&key, &s, Duration::from_secs(60)).await.unwrap();
        s.token = Some("renewed".into());
        assert!(store.update(&key, &s, Duration::from_secs(60)).await.unwrap());
        assert_eq!(store.get(&key).await.unwrap().unwrap().token.as_deref(), Some("renewed"));
        store.remove(&key).await.unwrap();
        assert!(!store.update(&key, &s, Duration::from_secs(60)).await.unwrap(), "a removed session stays removed");
        assert!(store.get(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let store = MemoryStore::new(100);
        let (short, long) = (StoreKey([1; 32]), StoreKey([2; 32]));
        store.insert(&short, &session(Duration::from_secs(7200)), Duration::from_secs(2)).await.unwrap();
        store.insert(&long, &session(Duration::from_secs(7200)), Duration::from_secs(7200)).await.unwrap();
        assert!(store.get(&short).await.unwrap().is_some());
        // Poll (bounded) until the short entry's own TTL has passed; the long one stays.
        let deadline = Instant::now() + Duration::from_secs(6);
        while store.get(&short).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "a 2 s entry was still served after 6 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(store.get(&long).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_store_is_bounded() {
        let store = MemoryStore::new(50);
        for i in 0..500u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            store.insert(&StoreKey(k), &session(Duration::from_secs(60)), Duration::from_secs(60)).await.unwrap();
        }
        store.sync().await;
        assert!(store.len() <= 50, "{} entries held", store.len());
    }
}
