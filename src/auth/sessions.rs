//! Sessions: login, refresh-token rotation with reuse detection, logout, and the local view of
//! revoked sessions that proxied requests are checked against.
//!
//! The proxied request path only reads [`Revocations`] and writes [`Activity`] (both local,
//! lock-free or sharded); the store is written here and read by the background sync, never
//! awaited per proxied request.

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The hasher of the maps read on every request: foldhash, seeded per process (SipHash costs
/// ~5x more, and these keys are server-issued session ids).
type FastHash = foldhash::fast::RandomState;

use crate::clock::unix_now;
use crate::metrics::Metrics;
use crate::store::{SessionStore, StoreError};

/// What proxied requests do when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageMode {
    /// Keep serving on the last known revocation view.
    ServeCached,
    /// Refuse authenticated requests with 503 until the store is back.
    Deny,
}

/// What a role change does to the user's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Sessions get the new role at their next refresh.
    Refresh,
    /// Sessions are revoked at once.
    Revoke,
}

/// Session lifetimes and behaviour (`sessions:` in gateway.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub on_store_outage: OutageMode,
    pub on_role_change: RoleChange,
    /// How often recorded activity is written to the store.
    pub activity_flush: Duration,
    /// How often the revocation view is reconciled with the store.
    pub reconcile_every: Duration,
    /// End a provider stream when the access token it started with expires.
    pub end_streams_at_expiry: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(7 * 86_400),
            on_store_outage: OutageMode::ServeCached,
            on_role_change: RoleChange::Refresh,
            activity_flush: Duration::from_secs(5),
            reconcile_every: Duration::from_secs(5),
            end_streams_at_expiry: false,
        }
    }
}

// === impl Revocations ===

/// The local view of revoked sessions: session id -> revoked until (unix seconds).
/// Reads are lock-free; writes (rare) copy the map.
#[derive(Default)]
pub struct Revocations {
    map: ArcSwap<HashMap<String, u64, FastHash>>,
}

impl Revocations {
    /// Whether access tokens of `session_id` are refused at `now`.
    pub fn is_revoked(&self, session_id: &str, now: u64) -> bool {
        self.map.load().get(session_id).is_some_and(|until| *until > now)
    }

    /// Adds revocations (keeping the later deadline) and drops expired ones.
    pub fn merge(&self, batch: &[(String, u64)], now: u64) {
        if batch.is_empty() {
            return;
        }
        self.map.rcu(|current| {
            let mut next: HashMap<String, u64, FastHash> =
                current.iter().filter(|(_, u)| **u > now).map(|(k, u)| (k.clone(), *u)).collect();
            for (id, until) in batch {
                let slot = next.entry(id.clone()).or_insert(0);
                *slot = (*slot).max(*until);
            }
            next
        });
    }

    /// The revocations in force at `now` that `known` lacks, grouped by deadline.
    pub fn missing_from(&self, known: &[(String, u64)], now: u64) -> Vec<(u64, Vec<String>)> {
        let known: std::collections::HashSet<&str> = known.iter().map(|(id, _)| id.as_str()).collect();
        let mut by_until: std::collections::BTreeMap<u64, Vec<String>> = std::collections::BTreeMap::new();
        for (id, until) in self.map.load().iter() {
            if *until > now && !known.contains(id.as_str()) {
                by_until.entry(*until).or_default().push(id.clone());
            }
        }
        by_until.into_iter().collect()
    }

    /// How many revocations are in force.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl Activity ===

const SHARDS: usize = 16;

/// Session activity seen by this instance since the last flush (write-behind).
pub struct Activity {
    shards: Vec<Mutex<HashMap<String, u64, FastHash>>>,
    hasher: FastHash,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(), hasher: Default::default() }
    }
}

impl Activity {
    /// Notes that `session_id` was used at `now`.
    pub fn record(&self, session_id: &str, now: u64) {
        let shard = &self.shards[self.hasher.hash_one(session_id) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(session_id) {
            Some(t) => *t = (*t).max(now),
            None => {
                map.insert(session_id.to_string(), now);
            }
        }
    }

    /// Everything recorded so far, left in place.
    pub fn peek(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)));
        }
        out
    }

    /// Takes everything recorded so far.
    pub fn drain(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.lock().unwrap_or_else(|p| p.into_inner()).drain());
        }
        out
    }
}

// === impl Sessions ===

/// The long-lived session machinery shared by the proxy, the /auth endpoints and the sync task.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    pub revocations: Revocations,
    pub activity: Activity,
    pub settings: SessionSettings,
    healthy: AtomicBool,
    metrics: Option<Arc<Metrics>>,
}

/// Why a session-backed request cannot proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionVeto {
    Revoked,
    StoreUnavailable,
}

impl Sessions {
    /// Session machinery over `store`.
    pub fn new(store: Arc<dyn SessionStore>, settings: SessionSettings) -> Self {
        // A shared store is not ready until the sync task has reached it once.
        let healthy = AtomicBool::new(store.is_local());
        Sessions { store, revocations: Revocations::default(), activity: Activity::default(), settings, healthy, metrics: None }
    }

    /// Counts revocations and store errors in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        if let Some(m) = &metrics {
            m.ops.store_up(self.store_healthy());
        }
        self.metrics = metrics;
        self
    }

    /// Whether the store answered at the last check.
    pub fn store_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The session store (for the endpoints that read and write sessions).
    pub fn store(&self) -> &dyn SessionStore {
        self.store.as_ref()
    }

    /// Marks the store's health (the sync task, and callers that saw it fail). Counting the
    /// failure is the caller's: each failure is counted once, under the operation that saw it.
    pub fn set_store_healthy(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.ops.store_up(healthy);
        }
        if was != healthy {
            if healthy {
                tracing::info!("store reachable again");
            } else {
                tracing::warn!("store unreachable: serving on the last known revocation view");
            }
        }
    }

    /// A failure seen by the background sync: counted as `sync`, and the store marked down.
    fn sync_failed(&self) {
        if let Some(m) = &self.metrics {
            m.ops.store_error("sync");
        }
        self.set_store_healthy(false);
    }

    /// The hot-path check for a proxied request's session: local only, never the store.
    pub fn check(&self, session_id: &str, now: u64) -> Result<(), SessionVeto> {
        if self.revocations.is_revoked(session_id, now) {
            return Err(SessionVeto::Revoked);
        }
        if self.settings.on_store_outage == OutageMode::Deny && !self.store_healthy() {
            return Err(SessionVeto::StoreUnavailable);
        }
        self.activity.record(session_id, now);
        Ok(())
    }

    /// Revokes sessions everywhere: in the store (which tells other instances), then locally at once.
    pub async fn revoke(&self, session_ids: &[String], until: u64, now: u64) -> Result<(), StoreError> {
        // Store first: a revocation that failed is reported as failed (503) and changes nothing,
        // rather than holding on this instance only.
        self.store.revoke_sessions(session_ids, until).await?;
        if let Some(m) = &self.metrics {
            m.auth.sessions_revoked(session_ids.len());
        }
        let batch: Vec<(String, u64)> = session_ids.iter().map(|s| (s.clone(), until)).collect();
        self.revocations.merge(&batch, now);
        Ok(())
    }

    /// Pulls every revocation in force from the store into the local view, and writes back any
    /// the store has lost (a Redis restarted empty, a failover that lost the last writes): a
    /// revoked token must never work again, on any instance, because the store forgot it.
    pub async fn reconcile(&self, now: u64) -> Result<(), StoreError> {
        let all = self.store.revocations(now).await?;
        self.revocations.merge(&all, now);
        let lost = self.revocations.missing_from(&all, now);
        if !lost.is_empty() {
            let n: usize = lost.iter().map(|(_, ids)| ids.len()).sum();
            tracing::warn!(revocations = n, "the store had lost revocations still in force; writing them back");
            for (until, ids) in lost {
                self.store.revoke_sessions(&ids, until).await?;
            }
        }
        Ok(())
    }

    /// Writes recorded activity to the store.
    pub async fn flush_activity(&self) -> Result<(), StoreError> {
        let batch = self.activity.drain();
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.store.touch_sessions(&batch, self.settings.idle_timeout.as_secs()).await;
        if result.is_err() {
            // Keep the activity for the next flush: an outage must not make sessions idle out.
            for (id, at) in &batch {
                self.activity.record(id, *at);
            }
        }
        result
    }

    /// Keeps the local view in step with the store until `shutdown` fires: subscribes to
    /// revocation notices, reconciles on (re)connect and periodically, flushes activity, and
    /// tracks the store's health. Reconnects by itself.
    pub async fn sync_forever(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        self.store.prepare();
        let mut backoff = Duration::from_millis(100);
        loop {
            let now = unix_now;
            match self.store.watch_revocations().await {
                Ok(mut notices) => {
                    match self.reconcile(now()).await {
                        Ok(()) => {
                            self.set_store_healthy(true);
                            backoff = Duration::from_millis(100);
                        }
                        Err(_) => self.sync_failed(),
                    }
                    // Check often while unhealthy so recovery is noticed quickly; otherwise
                    // sync every `reconcile_every`.
                    let every = self.settings.reconcile_every.min(self.settings.activity_flush);
                    let mut tick = tokio::time::interval(Duration::from_millis(250));
                    let mut last_sync = tokio::time::Instant::now();
                    loop {
                        tokio::select! {
                            notice = notices.next() => match notice {
                                Some(batch) => self.revocations.merge(&batch, now()),
                                None => break,
                            },
                            _ = tick.tick() => {
                                if self.store_healthy() && last_sync.elapsed() < every {
                                    continue;
                                }
                                last_sync = tokio::time::Instant::now();
                                let result = match self.flush_activity().await {
                                    Ok(()) => self.reconcile(now()).await,
                                    Err(e) => Err(e),
                                };
                                match result {
                                    Ok(()) => self.set_store_healthy(true),
                                    Err(_) => self.sync_failed(),
                                }
                            }
                            _ = shutdown.changed() => {
                                let _ = self.flush_activity().await;
                                return;
                            }
                        }
                    }
                    self.sync_failed();
                }
                Err(e) => {
                    self.sync_failed();
                    tracing::debug!(error = %e, "store subscription failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_expire_and_keep_the_later_deadline() {
        let r = Revocations::default();
        r.merge(&[("a".into(), 100), ("b".into(), 50)], 10);
        assert!(r.is_revoked("a", 99));
        assert!(!r.is_revoked("a", 100));
        assert!(!r.is_revoked("c", 0));
        r.merge(&[("a".into(), 80), ("c".into(), 200)], 60);
        assert!(r.is_revoked("a", 99), "the later deadline wins");
        assert!(!r.is_revoked("b", 60));
        assert_eq!(r.len(), 2, "expired entries are dropped on write");
    }

    #[test]
    fn revocations_the_store_lacks_are_found_by_deadline() {
        let r = Revocations::default();
        r.merge(&[("a".into(), 100), ("b".into(), 100), ("c".into(), 200), ("old".into(), 20)], 10);
        let known = vec![("b".to_string(), 100)];
        let mut lost = r.missing_from(&known, 50);
        for (_, ids) in &mut lost {
            ids.sort();
        }
        assert_eq!(lost, vec![(100, vec!["a".to_string()]), (200, vec!["c".to_string()])]);
        assert!(r.missing_from(&[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)], 50).is_empty());
    }

    #[tokio::test]
    async fn revocations_a_wiped_store_lost_are_written_back() {
        let store = Arc::new(crate::store::memory::MemoryStore::new());
        let s = Sessions::new(store.clone(), SessionSettings::default());
        let now = unix_now();
        s.revoke(&["gone".into()], now + 600, now).await.unwrap();
        let wiped = Arc::new(crate::store::memory::MemoryStore::new());
        let t = Sessions::new(wiped.clone(), SessionSettings::default());
        t.revocations.merge(&[("gone".into(), now + 600)], now);
        assert!(wiped.revocations(now).await.unwrap().is_empty());
        t.reconcile(now).await.unwrap();
        assert_eq!(wiped.revocations(now).await.unwrap(), vec![("gone".to_string(), now + 600)]);
    }

    #[test]
    fn activity_keeps_the_latest_time_per_session_until_drained() {
        let a = Activity::default();
        a.record("s1", 10);
        a.record("s1", 30);
        a.record("s1", 20);
        a.record("s2", 5);
        let mut got = a.drain();
        got.sort();
        assert_eq!(got, vec![("s1".to_string(), 30), ("s2".to_string(), 5)]);
        assert!(a.drain().is_empty());
    }

    #[tokio::test]
    async fn deny_mode_refuses_while_the_store_is_down() {
        let store: Arc<dyn SessionStore> = Arc::new(crate::store::memory::MemoryStore::new());
        let s = Sessions::new(store, SessionSettings { on_store_outage: OutageMode::Deny, ..Default::default() });
        assert_eq!(s.check("x", 1), Ok(()));
        s.set_store_healthy(false);
        assert_eq!(s.check("x", 1), Err(SessionVeto::StoreUnavailable));
        s.revoke(&["x".into()], 100, 1).await.unwrap();
        assert_eq!(s.check("x", 1), Err(SessionVeto::Revoked));
    }
}
