//! Rate limits at run time: local windows for API traffic (synchronized with a shared store in
//! the background, so a proxied request never waits on Redis) and exact store-side checks for
//! logins. The arithmetic lives in [`crate::limits`]; this module adds the store and the clock.

use std::sync::Arc;

use crate::clock::now_ms;
use crate::ids::new_id;
use crate::limits::{Decision, Limit, LockoutPolicy, LockoutState, SlidingWindows};
use crate::store::{LimitStore, StoreError};

/// Login and API limits (None: not limited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub login_ip: Option<Limit>,
    pub login_account: Option<Limit>,
    pub api_user: Option<Limit>,
    pub api_ip: Option<Limit>,
}

/// Rate limits at run time: local windows for API traffic (synchronized with a shared store in
/// the background) and exact store-side checks for logins.
pub struct Limiter {
    windows: SlidingWindows,
    store: Arc<dyn LimitStore>,
    /// This instance's name in the store's heartbeat set.
    instance: String,
}

impl Limiter {
    /// A limiter whose shared counts live in `store`.
    pub fn new(store: Arc<dyn LimitStore>) -> Self {
        let windows = SlidingWindows::default();
        if !store.is_local() {
            // Shared: until the heartbeat says otherwise, assume one other instance.
            windows.set_instances(2);
        }
        Limiter { windows, store, instance: new_id() }
    }

    /// An API check: local, no store round trip.
    pub fn api(&self, key: &str, limit: Limit) -> Decision {
        self.windows.check(key, limit, now_ms())
    }

    /// An exact check in the store (logins).
    pub async fn exact(&self, key: &str, limit: Limit) -> Result<Decision, StoreError> {
        self.store.rate_limit(key, limit, now_ms()).await
    }

    /// Pushes local hits to the store and learns other instances' counts, every `every`, until
    /// shutdown. A local store needs no sync.
    pub async fn sync_forever(&self, every: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.store.is_local() {
            let _ = shutdown.changed().await;
            return;
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            let flushes = self.windows.take_flushes(now, 60_000);
            if flushes.is_empty() {
                // No limited traffic: nothing to share, no store traffic at all.
                continue;
            }
            if let Ok(n) = self.store.heartbeat(&self.instance, now, 3 * every.as_millis() as u64 + 1000).await {
                self.windows.set_instances(n);
            }
            match self.store.sync_windows(&flushes).await {
                Ok(totals) => {
                    let now = now_ms();
                    for (f, (total, previous)) in flushes.iter().zip(totals) {
                        self.windows.apply(f, total, previous, f.limit, now);
                    }
                }
                // Hits stay pending and go with the next sync; meanwhile limits are local.
                Err(e) => tracing::debug!(error = %e, "rate-limit sync failed"),
            }
        }
    }
}

// === lockout I/O ===

impl Limiter {
    /// The lockout state of `account`.
    pub async fn lockout_state(&self, account: &str) -> Result<LockoutState, StoreError> {
        self.store.lockout_state(account).await
    }

    /// Records a failed login and returns the account's new lockout state (atomic in the store).
    pub async fn login_failed(&self, account: &str, policy: LockoutPolicy, now: u64) -> Result<LockoutState, StoreError> {
        self.store.login_failed(account, policy, now).await
    }

    /// A successful login clears the account's failures and lockout history.
    pub async fn login_succeeded(&self, account: &str) -> Result<(), StoreError> {
        self.store.login_succeeded(account).await
    }
}
