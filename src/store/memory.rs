//! The embedded store: one process, nothing survives a restart. Revocations reach the local view
//! directly (there is no other instance to tell).

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::StreamExt;

use crate::clock::{now_ms, unix_now};
use crate::limits::{gcra, Decision, Flush, Limit, LockoutPolicy, LockoutState};

use super::{
    Backend, CredentialStore, LimitStore, ProviderStore, Registry, RevocationNotices, Rotation, SessionRecord, SessionStore, Settlement,
    StoreError, UsageStore, UserRecord, UserStore, WindowUse, TOKEN_WINDOW_GRACE_SECONDS,
};
use crate::llm::budget::Window;

#[derive(Default)]
struct Inner {
    users: HashMap<String, UserRecord>,
    sessions: HashMap<String, (SessionRecord, u64 /* idle deadline */)>,
    revoked: HashMap<String, u64>,
    /// GCRA theoretical arrival times (ms) and when they stop mattering (ms).
    tats: HashMap<String, (u64, u64)>,
    lockouts: HashMap<String, (LockoutState, u64 /* keep until, unix s */)>,
    /// Sliding-window totals by "key:window" (and when they stop mattering, ms).
    windows: HashMap<String, (u64, u64)>,
    /// Provider states: (version, JSON).
    providers: HashMap<String, (u64, String)>,
    locks: HashMap<String, u64>,
    /// Credential registries: id -> JSON.
    records: HashMap<Registry, HashMap<String, String>>,
    key_uses: HashMap<String, u64>,
    /// Token windows by "user\0window": (use, when it may be dropped, unix s).
    token_windows: HashMap<String, (WindowUse, u64)>,
}

/// An in-process store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the whole store: keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn live(entry: &(SessionRecord, u64), now: u64) -> bool {
    now < entry.1 && now < entry.0.expires_at
}

/// The `version` of a provider state's JSON (what the compare-and-set compares).
fn json_version(json: &str) -> Result<u64, StoreError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(v.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0))
}

#[async_trait]
impl Backend for MemoryStore {
    fn is_local(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.values().find(|u| u.email.eq_ignore_ascii_case(email)).cloned())
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut all: Vec<UserRecord> = self.lock().users.values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.users.values().any(|u| u.email.eq_ignore_ascii_case(&user.email)) || inner.users.contains_key(&user.id) {
            return Ok(false);
        }
        inner.users.insert(user.id.clone(), user.clone());
        Ok(true)
    }

    async fn set_user_role(&self, id: &str, role: &str) -> Result<bool, StoreError> {
        Ok(self.lock().users.get_mut(id).map(|u| u.role = role.to_string()).is_some())
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().users.remove(id).is_some())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &SessionRecord, idle_seconds: u64, now: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // Expired sessions are dropped here so the map never grows without bound.
        inner.sessions.retain(|_, e| live(e, now));
        inner.sessions.insert(session.id.clone(), (session.clone(), now + idle_seconds));
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let now = unix_now();
        Ok(self.lock().sessions.get(id).filter(|e| live(e, now)).map(|e| e.0.clone()))
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let now = unix_now();
        let mut all: Vec<SessionRecord> =
            self.lock().sessions.values().filter(|e| live(e, now) && e.0.user_id == user_id).map(|e| e.0.clone()).collect();
        all.sort_by_key(|s| s.created_at);
        Ok(all)
    }

    async fn rotate_refresh(
        &self,
        session_id: &str,
        presented: &str,
        next: &str,
        now: u64,
        idle_seconds: u64,
    ) -> Result<Rotation, StoreError> {
        let mut inner = self.lock();
        let Some(entry) = inner.sessions.get_mut(session_id).filter(|e| live(e, now)) else {
            return Ok(Rotation::Missing);
        };
        if entry.0.refresh_jti != presented {
            return Ok(Rotation::Reused);
        }
        entry.0.refresh_jti = next.to_string();
        entry.0.last_activity = now;
        entry.1 = now + idle_seconds;
        Ok(Rotation::Rotated)
    }

    async fn touch_sessions(&self, activity: &[(String, u64)], idle_seconds: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for (id, at) in activity {
            if let Some(entry) = inner.sessions.get_mut(id) {
                if *at > entry.0.last_activity {
                    entry.0.last_activity = *at;
                    entry.1 = entry.1.max(at + idle_seconds);
                }
            }
        }
        Ok(())
    }

    async fn revoke_sessions(&self, session_ids: &[String], until: u64) -> Result<(), StoreError> {
        let now = unix_now();
        let mut inner = self.lock();
        inner.revoked.retain(|_, u| *u > now);
        for id in session_ids {
            inner.sessions.remove(id);
            inner.revoked.insert(id.clone(), until);
        }
        Ok(())
    }

    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.lock().revoked.iter().filter(|(_, u)| **u > now).map(|(k, u)| (k.clone(), *u)).collect())
    }

    async fn watch_revocations(&self) -> Result<RevocationNotices, StoreError> {
        // One process: revocations reach the local view directly, nothing is ever announced.
        Ok(futures_util::stream::pending().boxed())
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn rate_limit(&self, key: &str, limit: Limit, now_ms: u64) -> Result<Decision, StoreError> {
        let mut inner = self.lock();
        if inner.tats.len() > 10_000 {
            inner.tats.retain(|_, (_, until)| *until > now_ms);
        }
        let tat = inner.tats.get(key).map(|(t, _)| *t);
        let (decision, new_tat) = gcra(tat, now_ms, limit);
        inner.tats.insert(key.to_string(), (new_tat, new_tat + limit.window_ms));
        Ok(decision)
    }

    async fn login_failed(&self, account: &str, policy: LockoutPolicy, now: u64) -> Result<LockoutState, StoreError> {
        let mut inner = self.lock();
        if inner.lockouts.len() > 10_000 {
            inner.lockouts.retain(|_, (_, until)| *until > now);
        }
        let current = inner.lockouts.get(account).filter(|(_, until)| *until > now).map(|(s, _)| *s).unwrap_or_default();
        let next = policy.after_failure(current, now);
        inner.lockouts.insert(account.to_string(), (next, now + policy.ttl_seconds(&next, now)));
        Ok(next)
    }

    async fn lockout_state(&self, account: &str) -> Result<LockoutState, StoreError> {
        let now = unix_now();
        Ok(self.lock().lockouts.get(account).filter(|(_, until)| *until > now).map(|(s, _)| *s).unwrap_or_default())
    }

    async fn login_succeeded(&self, account: &str) -> Result<(), StoreError> {
        self.lock().lockouts.remove(account);
        Ok(())
    }

    async fn heartbeat(&self, _instance: &str, _now_ms: u64, _ttl_ms: u64) -> Result<u64, StoreError> {
        Ok(1)
    }

    async fn sync_windows(&self, flushes: &[Flush]) -> Result<Vec<(u64, u64)>, StoreError> {
        // One process needs no sync (its local windows are the truth), but the operation still
        // behaves like the shared one: totals per key and window.
        let mut inner = self.lock();
        let now_ms = unix_now() * 1000;
        inner.windows.retain(|_, (_, until)| *until > now_ms);
        Ok(flushes
            .iter()
            .map(|f| {
                let keep = (f.window + 2) * f.window_ms;
                let slot = inner.windows.entry(format!("{}:{}", f.key, f.window)).or_insert((0, keep));
                slot.0 += f.hits;
                let total = slot.0;
                let previous = inner.windows.get(&format!("{}:{}", f.key, f.window.wrapping_sub(1))).map_or(0, |(n, _)| *n);
                (total, previous)
            })
            .collect())
    }
}

#[async_trait]
impl ProviderStore for MemoryStore {
    async fn provider_states(&self, names: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let inner = self.lock();
        Ok(names.iter().map(|n| inner.providers.get(n).map(|(_, json)| json.clone())).collect())
    }

    async fn provider_cas(&self, name: &str, expected: u64, next: &str) -> Result<bool, StoreError> {
        let version = json_version(next)?;
        let mut inner = self.lock();
        let current = inner.providers.get(name).map_or(0, |(v, _)| *v);
        if current != expected {
            return Ok(false);
        }
        inner.providers.insert(name.to_string(), (version, next.to_string()));
        Ok(true)
    }

    async fn try_lock(&self, key: &str, _owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut inner = self.lock();
        if inner.locks.get(key).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        inner.locks.insert(key.to_string(), now + ttl_ms);
        Ok(true)
    }

    async fn watch_providers(&self) -> Result<futures_util::stream::BoxStream<'static, String>, StoreError> {
        Ok(futures_util::stream::pending().boxed())
    }
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn put_record(&self, registry: Registry, id: &str, json: &str) -> Result<(), StoreError> {
        self.lock().records.entry(registry).or_default().insert(id.to_string(), json.to_string());
        Ok(())
    }

    async fn remove_record(&self, registry: Registry, id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if registry == Registry::ApiKeys {
            inner.key_uses.remove(id);
        }
        Ok(inner.records.entry(registry).or_default().remove(id).is_some())
    }

    async fn records(&self, registry: Registry) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().records.get(&registry).map(|m| m.values().cloned().collect()).unwrap_or_default())
    }

    async fn touch_keys(&self, uses: &[(String, u64)]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for (id, at) in uses {
            let slot = inner.key_uses.entry(id.clone()).or_insert(0);
            *slot = (*slot).max(*at);
        }
        Ok(())
    }

    async fn key_uses(&self) -> Result<HashMap<String, u64>, StoreError> {
        Ok(self.lock().key_uses.clone())
    }

    async fn watch_records(&self) -> Result<futures_util::stream::BoxStream<'static, Registry>, StoreError> {
        // One process: the writer updates its local view itself.
        Ok(futures_util::stream::pending().boxed())
    }

    // One process: there is nobody to share fetched keys with.
    async fn shared_keys(&self, _provider: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn put_shared_keys(&self, _provider: &str, _json: &str, _ttl_ms: u64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim_fetch(&self, _provider: &str, _owner: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn watch_shared_keys(&self) -> Result<futures_util::stream::BoxStream<'static, String>, StoreError> {
        Ok(futures_util::stream::pending().boxed())
    }
}

fn token_key(user: &str, w: &Window) -> String {
    format!("{user}\0{}", w.key())
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn reserve_tokens(&self, user: &str, windows: &[Window], amount: u64) -> Result<Option<(usize, u64)>, StoreError> {
        let now = unix_now();
        let mut inner = self.lock();
        if inner.token_windows.len() > 10_000 {
            inner.token_windows.retain(|_, (_, until)| *until > now);
        }
        for (i, w) in windows.iter().enumerate() {
            let used = inner.token_windows.get(&token_key(user, w)).map_or(0, |(u, _)| u.total);
            if used.saturating_add(amount) > w.limit {
                return Ok(Some((i, used)));
            }
        }
        for w in windows {
            let until = w.ends_at() + TOKEN_WINDOW_GRACE_SECONDS;
            let entry = inner.token_windows.entry(token_key(user, w)).or_insert_with(|| (WindowUse::default(), until));
            entry.0.total = entry.0.total.saturating_add(amount);
        }
        Ok(None)
    }

    async fn settle_tokens(&self, settlements: &[Settlement]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for s in settlements {
            for w in &s.windows {
                if let Some((u, _)) = inner.token_windows.get_mut(&token_key(&s.user, w)) {
                    u.total = u.total.saturating_add_signed(s.delta);
                    *u.by_model.entry(s.model.clone()).or_default() += s.used;
                }
            }
        }
        Ok(())
    }

    async fn token_use(&self, user: &str, windows: &[Window]) -> Result<Vec<WindowUse>, StoreError> {
        let inner = self.lock();
        Ok(windows.iter().map(|w| inner.token_windows.get(&token_key(user, w)).map(|(u, _)| u.clone()).unwrap_or_default()).collect())
    }
}
