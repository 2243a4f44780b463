//! The provider health tracker at run time: a local snapshot of every provider's [`State`]
//! (read lock-free on the request path) kept in step with the store, where updates are applied
//! with optimistic concurrency so instances never overwrite each other's signals.

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::health::{Rules, State, Status};
use crate::metrics::Metrics;
use crate::store::{ProviderStore, StoreError};

use crate::clock::now_ms;

/// A state as the store keeps it (JSON; the store compares only its `version`).
fn encode(s: &State) -> Result<String, StoreError> {
    serde_json::to_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A state from the store; unreadable JSON (another version's, or damage) counts as never seen.
fn decode(json: Option<String>) -> Option<State> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

/// Shared provider health.
pub struct Tracker {
    store: Arc<dyn ProviderStore>,
    states: ArcSwap<HashMap<String, State>>,
    rules: ArcSwap<Rules>,
    metrics: Option<Arc<Metrics>>,
}

impl Tracker {
    /// A tracker over `store`.
    pub fn new(store: Arc<dyn ProviderStore>, rules: Rules, metrics: Option<Arc<Metrics>>) -> Self {
        Tracker { store, states: ArcSwap::from_pointee(HashMap::new()), rules: ArcSwap::from_pointee(rules), metrics }
    }

    /// Replaces the health rules (on reload).
    pub fn set_rules(&self, rules: Rules) {
        self.rules.store(Arc::new(rules));
    }

    /// The current rules.
    pub fn rules(&self) -> Rules {
        **self.rules.load()
    }

    /// The local view of every provider (never waits on the store).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<HashMap<String, State>>> {
        self.states.load()
    }

    /// One provider's state (default: healthy, never seen).
    pub fn state(&self, name: &str) -> State {
        self.states.load().get(name).cloned().unwrap_or_default()
    }

    /// Installs a state from the store: always after our own compare-and-set (`force`), and on
    /// refresh only when newer than what this instance last saw from the store.
    fn set_local(&self, name: &str, state: State, force: bool) {
        self.states.rcu(|m| {
            let mut next = HashMap::clone(m);
            let newer = next.get(name).is_none_or(|cur| if force { cur.version <= state.version } else { cur.version < state.version });
            if newer {
                next.insert(name.to_string(), state.clone());
            }
            next
        });
        self.publish_metrics(name, &self.state(name));
    }

    /// Applies `change` to the local view at once (optimistically; the version stays the last one
    /// seen from the store, so the store's answer replaces it).
    fn apply_local(&self, name: &str, change: &(dyn Fn(&mut State, &Rules, u64) + Sync)) {
        let rules = self.rules();
        self.states.rcu(|m| {
            let mut next = HashMap::clone(m);
            let mut s = next.get(name).cloned().unwrap_or_default();
            let version = s.version;
            change(&mut s, &rules, now_ms());
            s.version = version;
            next.insert(name.to_string(), s);
            next
        });
        self.publish_metrics(name, &self.state(name));
    }

    fn publish_metrics(&self, name: &str, s: &State) {
        if let Some(m) = &self.metrics {
            m.llm.provider_state(name, s.status.as_str(), s.consecutive_failures);
        }
    }

    /// Applies `change` to a provider's state: locally at once (this instance reacts without
    /// waiting), then in the store (compare-and-set on the version, retried on conflict).
    pub async fn update(&self, name: &str, change: impl Fn(&mut State, &Rules, u64) + Sync) -> Result<State, StoreError> {
        self.apply_local(name, &change);
        self.store_update(name, &change).await
    }

    async fn store_update(&self, name: &str, change: &(dyn Fn(&mut State, &Rules, u64) + Sync)) -> Result<State, StoreError> {
        let rules = self.rules();
        for _ in 0..5 {
            let current = decode(self.store.provider_state(name).await?).unwrap_or_default();
            let mut next = current.clone();
            change(&mut next, &rules, now_ms());
            next.version = current.version + 1;
            if self.store.provider_cas(name, current.version, &encode(&next)?).await? {
                self.set_local(name, next.clone(), true);
                return Ok(next);
            }
        }
        Err(StoreError::Unavailable("provider state kept changing".into()))
    }

    /// Claims a trial request of a half-open provider ([`State::claim_trial`]): a
    /// compare-and-set in the store, so `half_open_trials` bounds the trials of every instance
    /// together; when the store cannot be asked, the claim is this instance's alone. Only a
    /// half-open provider's request waits for this (one store round trip).
    pub async fn claim_trial(&self, name: &str) -> bool {
        let rules = self.rules();
        if !self.state(name).trial_open(now_ms()) {
            return false;
        }
        match self.store_claim(name, &rules).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::debug!(provider = %name, error = %e, "trial claimed locally: the store cannot be asked");
                self.claim_local(name, &rules)
            }
        }
    }

    async fn store_claim(&self, name: &str, rules: &Rules) -> Result<bool, StoreError> {
        for _ in 0..5 {
            let current = decode(self.store.provider_state(name).await?).unwrap_or_default();
            let now = now_ms();
            if !current.is_half_open(now) {
                // Another instance's trial has decided already (healthy again, or out anew).
                let available = current.is_available(now);
                self.set_local(name, current, false);
                return Ok(available);
            }
            let mut next = current.clone();
            if !next.claim_trial(now, rules) {
                self.set_local(name, current, false);
                return Ok(false);
            }
            next.version = current.version + 1;
            if self.store.provider_cas(name, current.version, &encode(&next)?).await? {
                self.set_local(name, next, true);
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn claim_local(&self, name: &str, rules: &Rules) -> bool {
        let now = now_ms();
        let mut claimed = false;
        self.states.rcu(|m| {
            let mut next = HashMap::clone(m);
            let mut s = next.get(name).cloned().unwrap_or_default();
            let version = s.version;
            claimed = s.claim_trial(now, rules);
            s.version = version;
            next.insert(name.to_string(), s);
            next
        });
        claimed
    }

    /// Records one outcome: in the local view at once (the next request already sees it), in
    /// the store without waiting (the request path never awaits the store).
    pub fn record(self: &Arc<Self>, name: &str, change: impl Fn(&mut State, &Rules, u64) + Send + Sync + 'static) {
        self.apply_local(name, &change);
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.store_update(&name, &change).await {
                tracing::debug!(provider = %name, error = %e, "provider health not saved to the store");
            }
        });
    }

    /// Pulls the states of `names` from the store into the local view.
    pub async fn refresh(&self, names: &[String]) -> Result<(), StoreError> {
        let states = self.store.provider_states(names).await?;
        for (name, state) in names.iter().zip(states) {
            match decode(state) {
                Some(s) => self.set_local(name, s, false),
                None => self.publish_metrics(name, &self.state(name)),
            }
        }
        Ok(())
    }

    /// Keeps the local view fresh until shutdown: every second, and at once on a notice that a
    /// provider changed on another instance.
    pub async fn sync_forever<F, Fut>(&self, names: F, mut shutdown: tokio::sync::watch::Receiver<bool>)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Vec<String>>,
    {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let mut notices = self.store.watch_providers().await.ok();
            loop {
                let notice = async {
                    match notices.as_mut() {
                        Some(n) => n.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = notice => match changed {
                        Some(name) => { let _ = self.refresh(&[name]).await; }
                        None => break,
                    },
                    _ = tick.tick() => {
                        let _ = self.refresh(&names().await).await;
                        if notices.is_none() {
                            break;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// A manual override from the admin API.
pub fn override_change(status: Status, reason: Option<String>, duration: Option<Duration>) -> impl Fn(&mut State, &Rules, u64) {
    move |s: &mut State, _: &Rules, now: u64| s.mark(status, reason.clone(), duration.map(|d| d.as_millis() as u64), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn updates_land_locally_and_in_the_store_and_refresh_brings_them_back() {
        let store: Arc<dyn ProviderStore> = Arc::new(MemoryStore::new());
        let a = Tracker::new(store.clone(), Rules::default(), None);
        let b = Tracker::new(store.clone(), Rules::default(), None);
        for _ in 0..3 {
            a.update("openai", |s, r, now| s.record_failure("500", None, now, r)).await.unwrap();
        }
        assert_eq!(a.state("openai").status, Status::Unhealthy);
        assert_eq!(b.state("openai").status, Status::Healthy, "b has not refreshed yet");
        b.refresh(&["openai".to_string()]).await.unwrap();
        assert_eq!(b.state("openai").consecutive_failures, 3);
        // b's success lands on top of a's failures (no lost update).
        b.update("openai", |s, r, now| s.record_success(10.0, now, r)).await.unwrap();
        a.refresh(&["openai".to_string()]).await.unwrap();
        assert_eq!((a.state("openai").status, a.state("openai").consecutive_failures), (Status::Healthy, 0));
    }

    #[tokio::test]
    async fn the_trials_of_a_half_open_provider_are_shared_by_every_instance() {
        let store: Arc<dyn ProviderStore> = Arc::new(MemoryStore::new());
        let rules = Rules { unhealthy_ms: 60_000, half_open_trials: 2, ..Rules::default() };
        let a = Tracker::new(store.clone(), rules, None);
        let b = Tracker::new(store.clone(), rules, None);
        let c = Tracker::new(store.clone(), rules, None);
        for _ in 0..3 {
            a.update("openai", |s, r, now| s.record_failure("500", None, now, r)).await.unwrap();
        }
        assert!(!a.claim_trial("openai").await, "still inside its period: no trial");
        // The period ends (moved into the past in the shared state, rather than waited for).
        a.update("openai", |s, _, now| s.unhealthy_until = now.saturating_sub(1)).await.unwrap();
        for t in [&b, &c] {
            t.refresh(&["openai".to_string()]).await.unwrap();
        }
        // Two trials in all: the first two claims win, wherever they are made.
        assert!(b.claim_trial("openai").await);
        assert!(a.claim_trial("openai").await, "a's local view is stale, the store decides");
        assert!(!c.claim_trial("openai").await, "both trials are out");
        assert!(!b.claim_trial("openai").await);
        // A trial succeeds: healthy everywhere, no claim needed.
        b.update("openai", |s, r, now| s.record_success(10.0, now, r)).await.unwrap();
        c.refresh(&["openai".to_string()]).await.unwrap();
        assert!(c.state("openai").is_healthy(now_ms()));
        assert!(!c.claim_trial("openai").await, "a healthy provider has no trial to claim");
    }
}
