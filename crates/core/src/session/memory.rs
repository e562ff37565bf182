//! The embedded store: a moka cache bounded by `max_entries`, each entry
//! expiring after its own TTL (the token's `expires_in`), and never served
//! past its session's own expiry even before moka evicts it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::{Session, SessionStore, StoreError, StoreKey};
use crate::provider::BoxFuture;

#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<StoreKey, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &StoreKey, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// In-process sessions; one per replica.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<StoreKey, Entry>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("entries", &self.cache.entry_count()).finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_entries` sessions (least recently used go first).
    pub fn new(max_entries: u64) -> Self {
        Self { cache: Cache::builder().max_capacity(max_entries).expire_after(PerEntry).build() }
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

    fn report(&self) {
        metrics::gauge!("ferrygate_sessions_active").set(self.cache.entry_count() as f64);
    }
}

impl SessionStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            Ok(self.cache.get(key).await.filter(|e| e.session.is_live()).map(|e| Session::clone(&e.session)))
        })
    }

    fn insert<'a>(
        &'a self,
        key: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.cache.insert(*key, Entry { session: Arc::new(session.clone()), ttl }).await;
            self.report();
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.cache.invalidate(key).await;
            self.report();
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::now_ms;

    fn session(ttl: Duration) -> Session {
        Session {
            provider: "p".into(),
            user: "u".into(),
            user_id: None,
            org_id: None,
            external_id: None,
            token: None,
            token_type: String::new(),
            expires_at_ms: now_ms() + ttl.as_millis() as u64,
        }
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
