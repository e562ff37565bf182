//! Resident memory of the embedded session store with 100 000 live sessions
//! (each with a realistic token), as the process's own RSS. Run with
//! `cargo bench --bench session_rss`.

use std::time::Duration;

use ferrygate::core::session::{now_ms, Session, SessionStore, StoreKey};
use ferrygate::core::MemoryStore;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let before = rss_kib("VmRSS:");
    let cap: u64 = std::env::var("CAP").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let store = MemoryStore::new(cap);
    rt.block_on(async {
        for i in 0..100_000u32 {
            let session = Session {
                site: "acme".into(),
                provider: "acme-qwyk".into(),
                user: format!("user{i}@customer-{}.example", i % 997),
                user_id: Some(format!("{}", 100_000 + i)),
                org_id: Some(format!("{}", i % 50)),
                external_id: None,
                groups: Vec::new(),
                token: Some(format!("eyJhbGciOiJIUzI1NiJ9.{i:08}-payload-of-a-typical-access-token.signature")),
                token_type: "bearer".into(),
                refresh_token: None,
                token_expires_at_ms: None,
                expires_at_ms: now_ms() + 7_200_000,
            };
            let mut key = [7u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            store.insert(&StoreKey(key), &session, Duration::from_secs(7200)).await.unwrap();
        }
        store.sync().await;
    });
    let after = rss_kib("VmRSS:");
    println!(
        "memory store: {} live sessions; process RSS {:.1} MiB (before {:.1} MiB, +{:.1} MiB, {:.0} bytes/session), peak {:.1} MiB",
        store.len(),
        after as f64 / 1024.0,
        before as f64 / 1024.0,
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / 100_000.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}
