//! The credentials the gateway issues and blocks beyond sessions: API keys and the admin
//! denylist. Both live in the store and in every instance's local view, which a background task
//! keeps current (a pub/sub notice makes every instance re-read the registry that changed, and a
//! periodic re-read covers missed notices). Proxied requests read the views only; the last use
//! of each key is written behind.

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

use super::denylist::{DenyEntry, Denylist, Subject};
use super::keys::{check_key, ApiKeyRecord, KeyEntry, KeyRefusal, KeyView};
use super::sessions::Activity;
use crate::apikey::{KeyHasher, PresentedKey};
use crate::clock::unix_now;
use crate::metrics::Metrics;
use crate::policy::Identity;
use crate::store::{CredentialStore, Registry, StoreError};

/// How often key uses are written behind and lapsed denylist entries dropped. Neither costs a
/// store command when there is nothing to do: a quiet gateway sends Redis nothing.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// API keys and the denylist: the store's records and this instance's views of them.
pub struct Credentials {
    store: Arc<dyn CredentialStore>,
    keys: ArcSwap<KeyView>,
    /// Keys that passed the hash check, by their exact text, with the hasher that checked them:
    /// a hit skips the HMAC while the key is still the view's (revoking replaces the view).
    verified: quick_cache::sync::Cache<Box<str>, (Arc<KeyEntry>, u64)>,
    denylist: ArcSwap<Denylist>,
    uses: Activity,
    metrics: Option<Arc<Metrics>>,
}

impl Credentials {
    /// Empty views over `store`, filled by [`Self::sync_forever`] (and by every write made here).
    pub fn new(store: Arc<dyn CredentialStore>, metrics: Option<Arc<Metrics>>) -> Self {
        Credentials {
            store,
            keys: ArcSwap::from_pointee(KeyView::default()),
            verified: quick_cache::sync::Cache::new(4096),
            denylist: ArcSwap::from_pointee(Denylist::default()),
            uses: Activity::default(),
            metrics,
        }
    }

    // --- the request path: local views only ---

    /// The identity a well-formed key speaks for, if the key is known, matches and is unexpired.
    /// Notes the use (written behind).
    pub fn authenticate_key(&self, hasher: &KeyHasher, key: PresentedKey<'_>, now: u64) -> Result<Arc<KeyEntry>, KeyRefusal> {
        let view = self.keys.load();
        if let Some((hit, by)) = self.verified.get(key.expose()) {
            let current = by == hasher.id() && view.get(&hit.record.id).is_some_and(|e| Arc::ptr_eq(e, &hit));
            if current && hit.record.expires_at.is_none_or(|e| e > now) {
                self.uses.record(&hit.record.id, now);
                return Ok(hit);
            }
            self.verified.remove(key.expose());
        }
        let entry = check_key(&view, hasher, key, now)?.clone();
        self.verified.insert(key.expose().into(), (entry.clone(), hasher.id()));
        self.uses.record(&entry.record.id, now);
        Ok(entry)
    }

    /// The subject of the denylist entry that cuts `identity` off, if any.
    pub fn denies(&self, identity: &Identity, now: u64) -> Option<Subject> {
        self.denylist.load().denies(identity, now)
    }

    /// Whether a user is on the denylist (logins and refreshes are refused).
    pub fn denies_user(&self, user_id: &str, now: u64) -> bool {
        self.denylist.load().denies_user(user_id, now)
    }

    // --- the endpoints: the store first, then the local view at once ---

    /// Stores a new key's record (never the key) and makes it usable here at once.
    pub async fn add_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store.put_record(Registry::ApiKeys, &record.id, &json).await?;
        self.reload(Registry::ApiKeys).await
    }

    /// Revokes a key everywhere; false if there was none.
    pub async fn remove_key(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove_record(Registry::ApiKeys, id).await?;
        self.reload(Registry::ApiKeys).await?;
        Ok(removed)
    }

    /// One key's record, from the store.
    pub async fn key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.all_keys().await?.into_iter().find(|k| k.id == id))
    }

    /// Every key's record with its last use (from the store, plus uses not yet written).
    pub async fn keys_with_uses(&self) -> Result<Vec<(ApiKeyRecord, Option<u64>)>, StoreError> {
        let mut uses = self.store.key_uses().await?;
        for (id, at) in self.uses.peek() {
            let slot = uses.entry(id).or_insert(0);
            *slot = (*slot).max(at);
        }
        let mut keys: Vec<_> = self.all_keys().await?.into_iter().map(|k| (uses.get(&k.id).copied(), k)).map(|(u, k)| (k, u)).collect();
        keys.sort_by(|a, b| a.0.created_at.cmp(&b.0.created_at).then(a.0.id.cmp(&b.0.id)));
        Ok(keys)
    }

    async fn all_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(self.store.records(Registry::ApiKeys).await?.iter().filter_map(|j| parse_record::<ApiKeyRecord>(j)).collect())
    }

    /// Adds a denylist entry everywhere.
    pub async fn add_entry(&self, entry: &DenyEntry) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store.put_record(Registry::Denylist, &entry.id, &json).await?;
        self.reload(Registry::Denylist).await
    }

    /// Lifts a denylist entry everywhere; false if there was none.
    pub async fn remove_entry(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove_record(Registry::Denylist, id).await?;
        self.reload(Registry::Denylist).await?;
        Ok(removed)
    }

    /// The denylist entries in force, oldest first.
    pub async fn entries(&self) -> Result<Vec<DenyEntry>, StoreError> {
        let now = unix_now();
        let mut all: Vec<DenyEntry> =
            self.store.records(Registry::Denylist).await?.iter().filter_map(|j| parse_record::<DenyEntry>(j)).collect();
        all.retain(|e| e.in_force(now));
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    // --- keeping the views current ---

    /// Re-reads one registry from the store into its local view. Lapsed denylist entries are
    /// removed from the store on the way (by whichever instance sees them first).
    pub async fn reload(&self, registry: Registry) -> Result<(), StoreError> {
        let records = self.store.records(registry).await?;
        let now = unix_now();
        match registry {
            Registry::ApiKeys => {
                let view: KeyView = records
                    .iter()
                    .filter_map(|j| parse_record::<ApiKeyRecord>(j))
                    .filter_map(KeyEntry::new)
                    .map(|e| (e.record.id.clone(), Arc::new(e)))
                    .collect();
                self.keys.store(Arc::new(view));
            }
            Registry::Denylist => {
                let entries: Vec<DenyEntry> = records.iter().filter_map(|j| parse_record::<DenyEntry>(j)).collect();
                for lapsed in entries.iter().filter(|e| !e.in_force(now)) {
                    self.store.remove_record(Registry::Denylist, &lapsed.id).await?;
                }
                self.denylist.store(Arc::new(Denylist::new(&entries, now)));
            }
        }
        if let Some(m) = &self.metrics {
            m.auth.credentials(self.keys.load().len(), self.denylist.load().len());
        }
        Ok(())
    }

    async fn reload_all(&self) -> Result<(), StoreError> {
        self.reload(Registry::ApiKeys).await?;
        self.reload(Registry::Denylist).await
    }

    /// Writes the key uses seen since the last flush (kept for the next one on failure).
    async fn flush_uses(&self) -> Result<(), StoreError> {
        let batch = self.uses.drain();
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.store.touch_keys(&batch).await;
        if result.is_err() {
            for (id, at) in &batch {
                self.uses.record(id, *at);
            }
        }
        result
    }

    /// Keeps the views current until `shutdown` fires: subscribes to change notices and re-reads
    /// a registry on every notice and both on (re)connect (a notice is lost only with its
    /// connection, and a new connection re-reads everything); writes key uses behind.
    pub async fn sync_forever(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        self.store.prepare();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.watch_records().await {
                Ok(mut notices) => {
                    backoff = Duration::from_millis(100);
                    // Until a full re-read succeeds, every tick tries again.
                    let mut synced = self.resync().await;
                    let mut tick = tokio::time::interval(FLUSH_EVERY);
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            notice = notices.next() => match notice {
                                Some(registry) => {
                                    if let Err(e) = self.reload(registry).await {
                                        tracing::debug!(error = %e, "credential reload failed");
                                    }
                                }
                                None => break,
                            },
                            _ = tick.tick() => {
                                if synced {
                                    self.housekeeping().await;
                                } else {
                                    synced = self.resync().await;
                                }
                            }
                            _ = shutdown.changed() => {
                                let _ = self.flush_uses().await;
                                return;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "credential subscription failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The periodic work: key uses written behind, lapsed entries dropped; nothing otherwise.
    async fn housekeeping(&self) {
        let flushed = self.flush_uses().await;
        let lapsed = self.denylist.load().has_lapsed(unix_now());
        let result = match (flushed, lapsed) {
            (Ok(()), true) => self.reload(Registry::Denylist).await,
            (r, _) => r,
        };
        if let Err(e) = result {
            if let Some(m) = &self.metrics {
                m.ops.store_error("credentials");
            }
            tracing::debug!(error = %e, "credential housekeeping failed");
        }
    }

    /// Writes key uses and re-reads both registries; false if the store failed.
    async fn resync(&self) -> bool {
        let result = match self.flush_uses().await {
            Ok(()) => self.reload_all().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            if let Some(m) = &self.metrics {
                m.ops.store_error("credentials");
            }
            tracing::debug!(error = %e, "credential sync failed; serving on the last known views");
        }
        result.is_ok()
    }
}

/// A record from the store; a corrupt one is skipped (and logged), never fatal.
fn parse_record<T: serde::de::DeserializeOwned>(json: &str) -> Option<T> {
    match serde_json::from_str(json) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a corrupt credential record in the store");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::{generate, parse, to_hex};
    use crate::store::memory::MemoryStore;

    fn record(key: &str, id: &str, hasher: &KeyHasher) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.into(),
            name: "ci".into(),
            user_id: "bot".into(),
            role: "user".into(),
            scopes: None,
            hash: to_hex(&hasher.hash(key)),
            last4: key[key.len() - 4..].into(),
            created_at: 1,
            created_by: "admin".into(),
            expires_at: None,
            rate_limit: None,
        }
    }

    #[tokio::test]
    async fn a_key_works_until_removed_and_its_use_is_written_behind() {
        let store = Arc::new(MemoryStore::new());
        let c = Credentials::new(store.clone(), None);
        let hasher = KeyHasher::new(&[3; 32]);
        let (key, id) = generate().unwrap();
        c.add_key(&record(&key, &id, &hasher)).await.unwrap();
        let entry = c.authenticate_key(&hasher, parse(&key).unwrap(), 50).unwrap();
        assert_eq!(entry.identity.user_id, "bot");
        let listed = c.keys_with_uses().await.unwrap();
        assert_eq!(listed[0].1, Some(50), "a use not yet flushed is listed");
        c.flush_uses().await.unwrap();
        assert_eq!(store.key_uses().await.unwrap().get(&id), Some(&50));
        // Cached now: still checked against the view, the hasher and the expiry.
        assert!(c.authenticate_key(&hasher, parse(&key).unwrap(), 50).is_ok());
        let other = KeyHasher::new(&[4; 32]);
        assert_eq!(c.authenticate_key(&other, parse(&key).unwrap(), 50).unwrap_err(), KeyRefusal::Mismatch, "another secret");
        assert!(c.remove_key(&id).await.unwrap());
        assert!(!c.remove_key(&id).await.unwrap());
        assert_eq!(c.authenticate_key(&hasher, parse(&key).unwrap(), 51).unwrap_err(), KeyRefusal::Unknown);
    }

    #[tokio::test]
    async fn lapsed_entries_leave_the_store_on_reload() {
        let store = Arc::new(MemoryStore::new());
        let c = Credentials::new(store.clone(), None);
        let now = unix_now();
        let entry = |id: &str, expires_at| DenyEntry {
            id: id.into(),
            subject: Subject::UserId,
            value: "u".into(),
            reason: "r".into(),
            created_by: "a".into(),
            created_at: now,
            expires_at,
        };
        c.add_entry(&entry("live", None)).await.unwrap();
        c.add_entry(&entry("gone", Some(now - 1))).await.unwrap();
        assert_eq!(store.records(Registry::Denylist).await.unwrap().len(), 1);
        assert_eq!(c.entries().await.unwrap().len(), 1);
        assert!(c.denies_user("u", now));
        assert!(c.remove_entry("live").await.unwrap());
        assert!(!c.denies_user("u", now));
    }
}
